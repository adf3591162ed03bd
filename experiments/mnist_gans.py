"""GAN, NS-GAN, WGAN, WGAN-GP and DCGAN on MNIST, each scored with every MNIST measure.

Each model is trained with the project's objectives through ``gendl_jax.train.train_and_evaluate``
(batch 64 unless ``--batch-size`` says otherwise, images in [-1, 1]) for a fixed number of generator steps (``--steps``, a CPU budget, not
convergence), then ``--n-eval`` samples are scored against as many random MNIST test images with the shipped
LeNet features (:func:`gendl_jax.evaluation.image_measures`, what ``gendl eval`` writes). The
real-data floor row scores ``--n-eval`` MNIST train images the same way.

    GENDL_DATA_DIR=/path/to/mnist python experiments/mnist_gans.py --steps 4000 --dcgan-fraction 0.05
    python experiments/mnist_gans.py --models dcgan --steps 1000    # a subset

Class-conditional models (``cdcgan-*``) are sampled with uniform labels; their rows also give
``label_accuracy``, the share of samples the LeNet reads as the digit they were drawn for, and the
adversarial accuracy / divergence (Yang et al. 2017; :func:`gendl_jax.evaluation.adversarial_measures`).
Every row has the GAN Quality Index (:func:`gendl_jax.evaluation.quality_index_measures`); the floor's C_real
learns from MNIST train digits outside the floor set (``gqi_c_real_excludes_floor``).

Writes ``mnist_gans.json``, ``samples_<model>.png``, ``nearest_<model>.png`` into ``--out``; run
folders (checkpoints) go to ``--runs`` (not committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax import plots
from gendl_jax.data import load_dataset
from gendl_jax.evaluation import (
    adversarial_measures,
    geometry_measures,
    image_measures,
    quality_index_measures,
)
from gendl_jax.objectives import acgan, adversarial, gan, wgan, wgan_gp
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

MLP = {"model": "mlp", "hidden": (512, 512), "d_activation": "leaky_relu"}
RESNET_WIDTH = 16
"""``base_features`` of the ResNet row, a CPU width: G 64 channels, D 32 (the paper's, 64, gives 256 and 128; the
CIFAR-10 experiment uses it). At 16 a step (5 D updates) takes about 1.5 s on the 2-core CPU, 2.7 s at 32."""
DCGAN_EMA = gan.GANConfig(
    model="dcgan", base_features=64, generator_loss="non-saturating", ema_decay=0.999, lr_decay_steps=-1
)
NS_MLP = {**MLP, "generator_loss": "non-saturating"}
SNGAN_RESNET = gan.GANConfig(
    model="resnet",
    base_features=RESNET_WIDTH,
    spectral_norm=True,
    discriminator_loss="hinge",
    generator_loss="hinge",
    d_steps=5,
    g_learning_rate=2e-4,
    d_learning_rate=2e-4,
    beta1=0.0,
    beta2=0.9,
    lr_decay_steps=-1,
)
"""The SNGAN of Miyato et al. 2018 (ResNet G and D at 28 px, spectral norm in D, hinge losses, 5 D steps, Adam(2e-4,
0, 0.9), decayed linearly to 0) at a CPU width."""
MODELS = {
    "gan": ("gan", gan.GANConfig(**MLP, generator_loss="saturating")),
    "ns-gan": ("gan", gan.GANConfig(**MLP, generator_loss="non-saturating")),
    "wgan": ("wgan", wgan.WGANConfig(**MLP)),
    "wgan-gp": ("wgan-gp", wgan_gp.WGANGPConfig(**MLP)),
    "dcgan": ("gan", gan.GANConfig(model="dcgan", base_features=32, generator_loss="non-saturating")),
    "dcgan-ema": ("gan", DCGAN_EMA),
    "dcgan-deep": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=1)),
    "dcgan-deeper": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=2)),
    "dcgan-deepest": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=3)),
    "dcgan-deepest-d": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=3, d_extra_layers=1)),
    "dcgan-deepest-d-topk": (
        "gan",
        dataclasses.replace(
            DCGAN_EMA, g_extra_layers=3, d_extra_layers=1, top_k_fraction=0.5, top_k_decay=0.96, top_k_period=938
        ),
    ),
    "dcgan-deepest-d-sn": (
        "gan",
        dataclasses.replace(
            DCGAN_EMA,
            g_extra_layers=3,
            d_extra_layers=1,
            spectral_norm=True,
            discriminator_loss="hinge",
            generator_loss="hinge",
        ),
    ),
    "dcgan-wide": ("gan", dataclasses.replace(DCGAN_EMA, base_features=128, g_extra_layers=3, d_extra_layers=1)),
    "dcgan-wide-d2": ("gan", dataclasses.replace(DCGAN_EMA, base_features=128, g_extra_layers=3, d_extra_layers=2)),
    "cdcgan-deep": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=1, num_classes=10)),
    "cdcgan-deepest-d": ("gan", dataclasses.replace(DCGAN_EMA, g_extra_layers=3, d_extra_layers=1, num_classes=10)),
    "wgan-gp-dcgan": (
        "wgan-gp",
        wgan_gp.WGANGPConfig(model="dcgan", base_features=64, ema_decay=0.999, lr_decay_steps=-1),
    ),
    # The GAN-family options (issue 29), each a change of one row above at that row's budget.
    "ns-gan-r1": ("gan", gan.GANConfig(**NS_MLP, r1_weight=10.0)),
    "ns-gan-r2": ("gan", gan.GANConfig(**NS_MLP, r2_weight=10.0)),
    "ns-gan-dragan": ("gan", gan.GANConfig(**NS_MLP, dragan_weight=10.0)),
    "ns-gan-r1-lazy": ("gan", gan.GANConfig(**NS_MLP, r1_weight=10.0, penalty_every=16)),
    "lsgan": ("gan", gan.GANConfig(**MLP, generator_loss="least-squares", discriminator_loss="least-squares")),
    "ns-gan-bf16": ("gan", gan.GANConfig(**NS_MLP, precision="bfloat16")),
    "wgan-gp-one-sided": ("wgan-gp", wgan_gp.WGANGPConfig(**MLP, gp_one_sided=True)),
    "acgan": ("acgan", acgan.ACGANConfig(**MLP, num_classes=10)),
    "dcgan-diffaug": (
        "gan",
        gan.GANConfig(model="dcgan", base_features=32, generator_loss="non-saturating", augment="translation,cutout"),
    ),
    "dcgan-bf16": (
        "gan",
        gan.GANConfig(model="dcgan", base_features=32, generator_loss="non-saturating", precision="bfloat16"),
    ),
    "sngan-resnet": ("gan", dataclasses.replace(SNGAN_RESNET)),
}
"""Name -> (objective, config). MLPs: 2 x 512 hidden units, LeakyReLU(0.2) discriminator / critic;
DCGAN at half the default width (base_features 32) to fit a CPU budget; ``dcgan-ema``: DCGAN at full
width with both learning rates decayed linearly to 0 over the run (``lr_decay_steps=-1`` here means "the
run's steps") and samples from the generator's moving average (decay 0.999); ``dcgan-deep``: the same
with one more stride-1 3x3 conv block in the generator (``g_extra_layers=1``, at 14x14x64, before the
output layer), against a discriminator already winning (D(real) ~ 0.86, D(fake) ~ 0.1 late in the
``dcgan-ema`` run); ``dcgan-deeper``: two such blocks (``g_extra_layers=2``); ``dcgan-deepest``: three;
``dcgan-deepest-d``: three, and one stride-1 block in the discriminator too (``d_extra_layers=1``);
``dcgan-deepest-d-topk``: ``dcgan-deepest-d`` with top-k generator training (Sinha et al. 2020): the
generator's loss keeps the fakes D scores highest, a share falling by 0.96 every 938 updates (an epoch) from 1
to 0.5 (reached after 17 epochs);
``dcgan-deepest-d-sn``: ``dcgan-deepest-d`` as an SN-GAN (Miyato et al. 2018): spectrally normalised
discriminator without BatchNorm, hinge losses for both networks, the same optimiser and schedule;
``dcgan-wide``: ``dcgan-deepest-d`` at twice the width (``base_features=128``, for an accelerator);
``dcgan-wide-d2``: the same with two stride-1 blocks in the discriminator;
``cdcgan-deep`` and ``cdcgan-deepest-d``: ``dcgan-deep`` and ``dcgan-deepest-d`` made class-conditional
(``num_classes=10``: the generator reads ``[z, one_hot(y)]``, the discriminator is a projection discriminator,
Miyato & Koyama 2018), trained on MNIST's labels and sampled with uniform labels; they use the labels, the other
models do not;
``wgan-gp-dcgan``: the same networks trained as WGAN-GP (Gulrajani et al.'s Adam(1e-4, 0.5, 0.9), 5 critic steps, lambda 10, critic
without normalisation), with the same decay and average. Models with an average
also get a ``<name>/raw`` row scored from the trained weights, the average's ablation."""


def train_model(name: str, args) -> tuple[pathlib.Path, dict]:
    """Trains one model (or reuses a finished run folder); returns the folder and its training summary."""
    objective, config = model_config(name, args)
    steps = model_steps(name, args)
    run = pathlib.Path(args.runs) / f"{name}-seed{args.seed}-steps{steps}{_batch_suffix(args)}"
    summary_path = run / "train_summary.json"
    if summary_path.is_file():
        return run, json.loads(summary_path.read_text())
    summary = train_and_evaluate(
        objective,
        config,
        TrainConfig(
            data="mnist",
            data_dir=args.data_dir,
            steps=steps,
            batch_size=args.batch_size,
            seed=args.seed,
            out=str(run),
            log_every=100,
            sample_every=0,
            checkpoint_every=min(steps, 1000),
            n_samples=64,
            progress=args.progress,
            resume=True,
        ),
    )  # an interrupted run continues from its last checkpoint
    summary_path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({"trained": name, **summary}), flush=True)
    return run, summary


def model_steps(name: str, args) -> int:
    """Generator steps of model ``name``: ``--model-steps NAME=N`` if given, else ``--steps`` (times
    ``--dcgan-fraction`` for the DCGANs)."""
    if name in args.model_steps:
        return args.model_steps[name]
    return max(1, int(args.steps * (args.dcgan_fraction if "dcgan" in name.split("-")[0] else 1)))


def model_config(name: str, args):
    objective, config = MODELS[name]
    if config.lr_decay_steps == -1:
        config = dataclasses.replace(config, lr_decay_steps=model_steps(name, args))
    return objective, config


def _name_steps(text: str) -> tuple[str, int]:
    name, _, steps = text.partition("=")
    if name not in MODELS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL=STEPS with MODEL in {list(MODELS)}, got {text!r}")
    return name, int(steps)


def main(args) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = {name: train_model(name, args) for name in args.models}  # all training first
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    # A random subset of MNIST test (its first images are not representative of the whole).
    real = test.images[np.random.default_rng(1).choice(len(test), min(args.n_eval, len(test)), replace=False)]
    results_path = out / "mnist_gans.json"
    record = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    record.pop("command", None)  # each row carries the command that made it
    floor = record["rows"].get("real", {})
    if (
        floor.get("n_fake") != args.n_eval
        or floor.get("classifier_test_accuracy") != classifier_accuracy(test)
        or not floor.get("gqi_c_real_excludes_floor")
        or "geometry_score_unbiased" not in floor
    ):
        idx = np.random.default_rng(0).choice(len(train), args.n_eval, replace=False)
        row = image_measures(train.images[idx], real, key=jax.random.PRNGKey(0))
        row.update(
            quality_index_measures(train.images[idx], train, test, n_train=args.n_eval, exclude=idx),
            gqi_c_real_excludes_floor=True,
        )
        row.update(
            geometry_measures(train.images[idx], real, key=jax.random.PRNGKey(2), n_iterations=args.geometry_iterations)
        )
        record["rows"]["real"] = {
            "model": "MNIST train (real-data floor)",
            **row,
            "classifier_test_accuracy": classifier_accuracy(test),
        }
        print(json.dumps(record["rows"]["real"]), flush=True)
        results_path.write_text(json.dumps(record, indent=2))
    overrides = "".join(f" --model-steps {k}={v}" for k, v in args.model_steps.items())
    command = (
        f"python experiments/mnist_gans.py --models {' '.join(args.models)} --steps {args.steps} "
        f"--dcgan-fraction {args.dcgan_fraction}{overrides}"
        f"{'' if args.batch_size == 64 else f' --batch-size {args.batch_size}'} --seed {args.seed} --n-eval {args.n_eval} "
        f"--out {args.out}"
    )
    for name, (run, summary) in trained.items():
        objective, config = model_config(name, args)
        obj, state, _ = load_run(run)
        sample = jax.jit(obj.sample, static_argnums=2, static_argnames="ema")
        # With a moving average: the average (the model's samples) and, as its ablation, the trained weights.
        base = name + _batch_suffix(args)
        for row_name, ema in [(base, True)] + ([(f"{base}/raw", False)] if config.ema_decay > 0 else []):
            samples = np.asarray(sample(state, jax.random.PRNGKey(args.seed + 7), args.n_eval, ema=ema))
            file_name = row_name.replace("/", "-")
            if args.save_samples:  # the scored samples, to re-score them elsewhere (float16 halves the file)
                np.savez_compressed(out / f"samples_{file_name}.npz", images=samples.astype(np.float16))
            plots.image_grid(
                samples[:100], out / f"samples_{file_name}.png", title=f"{row_name}, {summary['steps']} steps"
            )
            labels = adversarial.sample_labels(state, jax.random.PRNGKey(args.seed + 7), args.n_eval)  # or None
            row = image_measures(
                samples,
                real,
                key=jax.random.PRNGKey(1),
                train_images=train.images,
                picture_path=out / f"nearest_{file_name}.png",
                sample_labels=labels,
            )
            row.update(quality_index_measures(samples, train, test, n_train=args.n_eval))
            row.update(
                geometry_measures(samples, real, key=jax.random.PRNGKey(2), n_iterations=args.geometry_iterations)
            )
            if config.num_classes:
                row.update(adversarial_measures(samples, np.asarray(labels), train, test, n_train=args.n_eval))
                rows_of_digits = jnp.repeat(jnp.arange(config.num_classes, dtype=jnp.int32), 10)  # row c: digit c
                by_class = sample(
                    state, jax.random.PRNGKey(args.seed + 8), rows_of_digits.size, ema=ema, labels=rows_of_digits
                )
                plots.image_grid(
                    np.asarray(by_class),
                    out / f"samples_by_class_{file_name}.png",
                    ncols=10,
                    title=f"{row_name}, {summary['steps']} steps; row c: label c",
                )
            record["rows"][row_name] = {
                "model": row_name,
                "command": command,
                "objective": objective,
                "config": _jsonable(config),
                "steps": summary["steps"],
                "batch_size": args.batch_size,
                "seed": args.seed,
                "train_seconds": summary["train_seconds"],
                "compile_seconds": summary["compile_seconds"],
                "device": jax.devices()[0].device_kind,
                "jax": jax.__version__,
                **row,
            }
            print(json.dumps({k: v for k, v in record["rows"][row_name].items() if k != "config"}), flush=True)
        results_path.write_text(json.dumps(record, indent=2))


def classifier_accuracy(test) -> float:
    """Test accuracy of the shipped MNIST classifier the measures use (identifies it in the results)."""
    from gendl_jax.metrics import mnist_classifier

    return float(mnist_classifier().accuracy(test.images, test.labels))


def _batch_suffix(args) -> str:
    """Run folders and rows of a non-default batch size are told apart by ``-b<size>``."""
    return "" if args.batch_size == 64 else f"-b{args.batch_size}"


def _jsonable(config):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--steps", type=int, default=4000, help="generator steps per model")
    p.add_argument("--dcgan-fraction", type=float, default=0.05, help="the DCGANs get this fraction of --steps")
    p.add_argument(
        "--model-steps",
        type=_name_steps,
        nargs="*",
        default=[],
        metavar="MODEL=STEPS",
        help="steps of single models, overriding --steps / --dcgan-fraction",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="minibatch of every model; rows of another size than 64 are named <model>-b<size>",
    )
    p.add_argument("--n-eval", type=int, default=10000, help="samples scored against as many MNIST test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--geometry-iterations",
        type=int,
        default=100,
        help="landmark draws of the Geometry Score (on pixels) of every row",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save-samples", action="store_true", help="also write the scored samples, samples_<row>.npz")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/mnist_gans")
    p.add_argument("--runs", default="runs/mnist_gans")
    parsed = p.parse_args()
    parsed.model_steps = dict(parsed.model_steps)
    main(parsed)
