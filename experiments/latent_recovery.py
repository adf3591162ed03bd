"""Memorisation check by latent recovery (Webster et al. 2019): how close can a trained generator get to
images it was trained on, to images it never saw, and to its own samples?

For ``--n`` random MNIST train images, as many MNIST test images and as many of the generator's own
samples (the control: they lie in its range, so their error should be near 0),
:func:`gendl_jax.learned_metrics.latent_reconstruction` searches ``min_z |G(z) - x|^2`` (Adam, ``--restarts``
starts). A generator that memorised its training set reconstructs train images better than test images;
the one-sided Mann-Whitney U test says whether the train errors are smaller.

    GENDL_DATA_DIR=/path/to/mnist python experiments/latent_recovery.py runs/mnist_gans/dcgan-seed0-steps10000

Writes ``latent_recovery.json`` and ``reconstructions.png`` (targets above their reconstructions) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np
from scipy.stats import mannwhitneyu

from gendl_jax import plots
from gendl_jax.data import load_dataset
from gendl_jax.learned_metrics import latent_reconstruction
from gendl_jax.metrics import prepare_images
from gendl_jax.objectives import adversarial
from gendl_jax.train import load_run

GAN_OBJECTIVES = ("gan", "wgan", "wgan-gp", "wgan-sn")


def recover(generate, latent_dim: int, targets: np.ndarray, key, args) -> dict:
    """The latent search for ``targets`` (n, 28, 28, 1) in [-1, 1] under ``generate``, with its reconstructions."""
    t0 = time.perf_counter()
    out = latent_reconstruction(
        generate,
        targets,
        key=key,
        latent_dim=latent_dim,
        n_steps=args.steps,
        learning_rate=args.lr,
        n_restarts=args.restarts,
    )
    out["seconds"] = time.perf_counter() - t0
    out["reconstructions"] = np.asarray(generate(jax.numpy.asarray(out["latents"])))
    return out


def summary(out: dict, n_pixels: int) -> dict:
    e = out["errors"]
    return {
        "mean_error": float(e.mean()),
        "median_error": float(np.median(e)),
        "rms_pixel_error": float(np.sqrt(e.mean() / n_pixels)),
        "mean_latent_norm": float(out["latent_norms"].mean()),
        "seconds": out["seconds"],
    }


def main(args) -> None:
    objective, state, _ = load_run(args.run)
    if objective.name not in GAN_OBJECTIVES:
        raise ValueError(
            f"{args.run} is a {objective.name!r} run; latent recovery needs a generator ({', '.join(GAN_OBJECTIVES)})"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    key = jax.random.PRNGKey(args.seed)
    sets = {
        "MNIST train": prepare_images(train.images[rng.choice(len(train), args.n, replace=False)]),
        "MNIST test": prepare_images(test.images[rng.choice(len(test), args.n, replace=False)]),
        "own samples": np.asarray(objective.sample(state, jax.random.fold_in(key, 1), args.n)),
    }
    n_pixels = int(np.prod(state.data_shape))
    latent_dim = adversarial.latent_dim(state.config, state.data_shape)

    def generate(z):  # one function object, so that the latent search compiles once; the average if kept
        return adversarial.generate(state, z)

    results, rows = {}, {}
    for i, (name, targets) in enumerate(sets.items()):
        results[name] = recover(generate, latent_dim, targets, jax.random.fold_in(key, 2 + i), args)
        rows[name] = summary(results[name], n_pixels)
        print(json.dumps({"set": name, **rows[name]}), flush=True)
    train_e, test_e = results["MNIST train"]["errors"], results["MNIST test"]["errors"]
    record = {
        "command": (
            f"python experiments/latent_recovery.py {args.run} --n {args.n} --steps {args.steps} "
            f"--lr {args.lr} --restarts {args.restarts} --seed {args.seed} --out {args.out}"
        ),
        "run": str(args.run),
        "objective": objective.name,
        "device": jax.devices()[0].device_kind,
        "rows": rows,
        "test_over_train_mean_error": float(test_e.mean() / train_e.mean()),
        "mann_whitney_train_smaller_p_value": float(mannwhitneyu(train_e, test_e, alternative="less").pvalue),
    }
    (out / "latent_recovery.json").write_text(json.dumps(record, indent=2))
    shown = min(8, args.n)
    grid = np.concatenate(
        [np.concatenate([sets[name][:shown], results[name]["reconstructions"][:shown]]) for name in sets]
    )
    plots.image_grid(
        grid,
        out / "reconstructions.png",
        ncols=shown,
        title="rows in pairs: targets, reconstructions (" + ", ".join(sets) + ")",
    )
    print(json.dumps({k: v for k, v in record.items() if k != "rows"}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=pathlib.Path, help="a GAN run folder (gendl train / experiments/mnist_gans.py)")
    p.add_argument("--n", type=int, default=256, help="targets per set")
    p.add_argument("--steps", type=int, default=500, help="Adam steps of the latent search")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (cosine-decayed to 0)")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/latent_recovery")
    main(p.parse_args())
