"""Test log-likelihood of an MLP VAE on dynamically binarised MNIST (Burda et al. 2016, Table 1 protocol).

The VAE of Burda et al.: 784-200-200-50 with tanh, one stochastic layer of 50 units, Bernoulli
decoder, Adam (eps 1e-4), learning rate 1e-3 * 10^(-i/7) in stage i lasting 3^i epochs, training
sets binarised afresh at every batch. The test NLL is -log p(x) estimated with k = 5,000 importance
samples on the 10,000 test digits (binarised once, seed 0). Anchors (nats, dynamically binarised):
Burda et al.'s VAE (k = 1 training) 86.76; pythae's reproduced VAE 89.78 (k = 200).

The paper's budget is 3,280 epochs (8 stages); the defaults here train what fits a session and can
be continued: the run folder keeps orbax checkpoints, and a larger ``--epochs`` resumes from the
latest one on the same schedule.

    GENDL_DATA_DIR=../shared/data/mnist python experiments/vae_mnist.py --epochs 300
    GENDL_DATA_DIR=../shared/data/mnist python experiments/vae_mnist.py --epochs 3280   # the paper's budget

Writes ``vae_mnist.json`` (test ELBO, IWAE NLL at k = 5,000, training time) and ``vae_mnist.png``
(training curve, samples) into ``--out``; the run folder (checkpoints, pictures) is ``--run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax.data import binarize_dataset, load_dataset
from gendl_jax.objectives import vae
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

TRAIN_SIZE = 60000
ANCHORS = {"burda_et_al_2016_vae_k5000": 86.76, "pythae_vae_k200": 89.78}


def run(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = TRAIN_SIZE // args.batch_size
    config = vae.VAEConfig(
        latent_dim=50,
        hidden=(200, 200),
        activation="tanh",
        binarization="dynamic",
        lr_schedule="burda",
        lr_schedule_steps=steps_per_epoch,
        eval_importance_samples=100,
        eval_examples=1000,
    )
    train = TrainConfig(
        data="mnist",
        steps=args.epochs * steps_per_epoch,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.run,
        data_dir=args.data_dir,
        log_every=steps_per_epoch,
        sample_every=0,
        checkpoint_every=10 * steps_per_epoch,
        resume=True,
        progress=False,
    )
    t0 = time.time()
    summary = train_and_evaluate("vae", config, train)
    wall = time.time() - t0
    previous = {}
    if (out / "vae_mnist.json").is_file():
        previous = json.loads((out / "vae_mnist.json").read_text())
    earlier = previous.get("train_seconds_total", 0.0) if summary["resumed_from"] > 0 else 0.0
    train_seconds = earlier + args.previous_train_seconds + summary["train_seconds"]

    _, state, _ = load_run(args.run)
    test = binarize_dataset(load_dataset("mnist", split="test", data_dir=args.data_dir), config.binarization_seed)
    x = test.images[: args.eval_examples].astype(np.float32)
    described = f"the first {len(x)} digits of the MNIST test split, binarised once (seed {config.binarization_seed})"
    t1 = time.time()
    metrics = vae.evaluate(state, x, jax.random.PRNGKey(args.seed + 10), k=args.k, batch_size=100)
    eval_seconds = time.time() - t1
    print(f"test: ELBO {metrics['elbo']:.2f}, NLL (k={args.k}) {metrics['nll']:.2f} nats; eval {eval_seconds:.0f} s")

    record = {
        "epochs": args.epochs,
        "steps": train.steps,
        "batch_size": args.batch_size,
        "paper_budget_epochs": 3280,
        "config": dataclasses.asdict(config),
        "test_data": described,
        "test": metrics,
        "anchors_nll": ANCHORS,
        "train_seconds_total": train_seconds,
        "train_seconds_this_call": summary["train_seconds"],
        "train_seconds_of_interrupted_calls": args.previous_train_seconds,
        "resumed_from_step": summary["resumed_from"],
        "eval_seconds": eval_seconds,
        "wall_seconds_this_call": wall + eval_seconds,
        "machine": "2-core CPU shared with other jobs, niced",
        "command": f"python experiments/vae_mnist.py --epochs {args.epochs} --batch-size {args.batch_size} "
        f"--k {args.k} --eval-examples {args.eval_examples}",
    }
    (out / "vae_mnist.json").write_text(json.dumps(record, indent=2))
    figure(pathlib.Path(args.run), state, out / "vae_mnist.png", metrics, args)


def figure(run_dir, state, path, metrics, args):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = TRAIN_SIZE // args.batch_size
    fig, (ax, ax_img) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    ax.plot(
        [r["step"] / steps_per_epoch for r in rows], [-r["elbo"] for r in rows], lw=1, label="train -ELBO (one batch)"
    )
    ax.axhline(metrics["nll"], color="k", ls="--", lw=1, label=f"test NLL, k={args.k}: {metrics['nll']:.2f}")
    for (name, value), color in zip(ANCHORS.items(), ("tab:red", "tab:green")):
        ax.axhline(value, color=color, ls=":", lw=1, label=f"{name}: {value}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats")
    ax.set_ylim(80, 130)
    ax.legend(fontsize=7)
    samples = np.asarray(jax.jit(vae.sample, static_argnums=2)(state, jax.random.PRNGKey(0), 64))
    grid = samples.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
    ax_img.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax_img.set_title("decoder means at z ~ N(0, I)", fontsize=9)
    ax_img.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--k", type=int, default=5000, help="importance samples of the test log-likelihood")
    parser.add_argument("--eval-examples", type=int, default=10000, help="test digits scored (the first ones)")
    parser.add_argument(
        "--previous-train-seconds",
        type=float,
        default=0.0,
        help="training time of calls interrupted before they wrote the JSON (added to the total)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--run", default="runs/vae_mnist", help="run folder (checkpoints); resumed if present")
    parser.add_argument("--out", default="experiments/results/vae_mnist")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
