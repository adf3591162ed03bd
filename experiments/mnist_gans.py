"""GAN, NS-GAN, WGAN, WGAN-GP and DCGAN on MNIST, each scored with every MNIST measure.

Each model is trained with the project's objectives through ``gendl_jax.train.train_and_evaluate``
(batch 64, images in [-1, 1]) for a fixed number of generator steps (``--steps``, a CPU budget, not
convergence), then 10,000 samples are scored against the 10,000 MNIST test images with the shipped
LeNet features (:func:`gendl_jax.metrics.evaluate.image_measures`, what ``gendl eval`` writes). The
real-data floor row scores 10,000 MNIST train images the same way.

    GENDL_DATA_DIR=/path/to/mnist python experiments/mnist_gans.py --steps 3000
    python experiments/mnist_gans.py --models dcgan --steps 1000    # a subset

Writes ``mnist_gans.json``, ``samples_<model>.png``, ``nearest_<model>.png`` into ``--out``; run
folders (checkpoints) go to ``--runs`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from gendl_jax.data import load_dataset
from gendl_jax.metrics.evaluate import image_measures
from gendl_jax.objectives import gan, wgan
from gendl_jax.train import TrainConfig, load_run, plots, train_and_evaluate

MLP = {"model": "mlp", "hidden": (512, 512), "d_activation": "leaky_relu"}
MODELS = {
    "gan": ("gan", gan.GANConfig(**MLP, generator_loss="saturating")),
    "ns-gan": ("gan", gan.GANConfig(**MLP, generator_loss="non-saturating")),
    "wgan": ("wgan", wgan.WGANConfig(**MLP)),
    "wgan-gp": ("wgan-gp", wgan.WGANGPConfig(**MLP)),
    "dcgan": ("gan", gan.GANConfig(model="dcgan", generator_loss="non-saturating")),
}
"""Name -> (objective, config). MLPs: 2 x 512 hidden units, LeakyReLU(0.2) discriminator / critic."""

N_EVAL = 10000


def main(args) -> None:
    out, runs = pathlib.Path(args.out), pathlib.Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    results_path = out / "mnist_gans.json"
    record = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    if "real" not in record["rows"]:
        idx = np.random.default_rng(0).choice(len(train), N_EVAL, replace=False)
        row = image_measures(train.images[idx], test.images, key=jax.random.PRNGKey(0))
        record["rows"]["real"] = {"model": "MNIST train (real-data floor)", **row}
        print(json.dumps(record["rows"]["real"]), flush=True)
    for name in args.models:
        objective, config = MODELS[name]
        steps = args.steps * (args.dcgan_fraction if name == "dcgan" else 1)
        steps = max(1, int(steps))
        run = runs / f"{name}-seed{args.seed}"
        summary = train_and_evaluate(objective, config, TrainConfig(
            data="mnist", data_dir=args.data_dir, steps=steps, batch_size=64, seed=args.seed, out=str(run),
            log_every=100, sample_every=0, checkpoint_every=steps, n_samples=64, progress=False, resume=True))
        obj, state, _ = load_run(run)
        samples = np.asarray(jax.jit(obj.sample, static_argnums=2)(state, jax.random.PRNGKey(args.seed + 7), N_EVAL))
        plots.image_grid(samples[:100], out / f"samples_{name}.png", title=f"{name}, {steps} steps")
        row = image_measures(samples, test.images, key=jax.random.PRNGKey(1), train_images=train.images,
                             picture_path=out / f"nearest_{name}.png")
        record["rows"][name] = {"model": name, "objective": objective, "config": _jsonable(config), "steps": steps,
                                "batch_size": 64, "seed": args.seed, "train_seconds": summary["train_seconds"],
                                "compile_seconds": summary["compile_seconds"], **row}
        print(json.dumps({k: v for k, v in record["rows"][name].items() if k != "config"}), flush=True)
        record["command"] = (f"python experiments/mnist_gans.py --steps {args.steps} "
                             f"--dcgan-fraction {args.dcgan_fraction} --seed {args.seed}")
        results_path.write_text(json.dumps(record, indent=2))
    results_path.write_text(json.dumps(record, indent=2))


def _jsonable(config):
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--steps", type=int, default=3000, help="generator steps per model")
    p.add_argument("--dcgan-fraction", type=float, default=0.5, help="DCGAN gets this fraction of --steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/mnist_gans")
    p.add_argument("--runs", default="runs/mnist_gans")
    main(p.parse_args())
