"""Trains the MNIST LeNet that the evaluation metrics use, and writes it into the package.

    GENDL_DATA_DIR=/path/to/mnist python experiments/train_mnist_classifier.py

Deterministic for a given seed on a given backend: data order from ``BatchIterator(seed)``,
initialisation and shift augmentation from ``PRNGKey(seed)``. Adam (lr 1e-3, cosine decay to 0),
batch 128, random shifts of up to 2 pixels. Writes the orbax checkpoint to
``gendl_jax/metrics/assets/mnist_lenet`` (``--out-checkpoint``) and ``mnist_classifier.json``
(test accuracy, training time) plus ``training.png`` into ``experiments/results/mnist_classifier``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.metrics import classifier as clf


def main(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    iterator = BatchIterator(train, args.batch_size, seed=args.seed)
    steps_per_epoch = len(train) // args.batch_size
    total = args.epochs * steps_per_epoch

    net = clf.init_classifier(jax.random.PRNGKey(args.seed))
    optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, total))
    state = (net.params, optimizer.init(net.params), jax.random.PRNGKey(args.seed + 1))
    step = jax.jit(clf.cross_entropy_step(net.model, optimizer, args.max_shift), donate_argnums=0)

    history = []
    t0 = time.perf_counter()
    for s in range(total):
        batch = iterator.batch_at(s)
        state, metrics = step(state, {"x": batch["x"][0], "y": batch["y"][0]})
        if (s + 1) % steps_per_epoch == 0:
            trained = clf.MnistClassifier(net.model, state[0])
            acc = trained.accuracy(test.images, test.labels)
            history.append(
                {
                    "epoch": (s + 1) // steps_per_epoch,
                    "step": s + 1,
                    "train_loss": float(metrics["loss"]),
                    "test_accuracy": acc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(json.dumps(history[-1]), flush=True)
    train_s = time.perf_counter() - t0
    trained = clf.MnistClassifier(net.model, state[0])
    test_acc = trained.accuracy(test.images, test.labels)

    ckpt = pathlib.Path(args.out_checkpoint)
    if ckpt.exists():
        shutil.rmtree(ckpt)
    clf.save_classifier(trained, ckpt)
    reloaded = clf.load_classifier(ckpt)
    reloaded_acc = reloaded.accuracy(test.images, test.labels)
    n_params = sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(trained.params))
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    record = {
        "command": "python experiments/train_mnist_classifier.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("data_dir", "out", "out_checkpoint")
        ),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in clf.MNIST_CLASSIFIER_CONFIG.items()},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_shift": args.max_shift,
        "seed": args.seed,
        "steps": total,
        "train_seconds": train_s,
        "test_accuracy": test_acc,
        "test_accuracy_after_reload": reloaded_acc,
        "parameters": n_params,
        "checkpoint_bytes": size,
        "history": history,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }
    (out / "mnist_classifier.json").write_text(json.dumps(record, indent=2))

    fig, ax = plt.subplots(figsize=(4, 3), dpi=120)
    ax.plot([h["epoch"] for h in history], [100 * (1 - h["test_accuracy"]) for h in history], "o-")
    ax.axhline(1.0, color="tab:red", ls="--", lw=0.8, label="1% error (required < 1%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title(f"LeNet {clf.MNIST_CLASSIFIER_CONFIG['channels']}: test acc {100 * test_acc:.2f}%", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "training.png")
    print(f"test accuracy {test_acc:.4f} (after reload {reloaded_acc:.4f}); {train_s:.0f} s; checkpoint {size} bytes")
    if test_acc < 0.99:
        raise SystemExit(f"test accuracy {test_acc:.4f} is below the required 0.99")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-shift", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/mnist_classifier")
    p.add_argument("--out-checkpoint", default=str(clf.ASSET_DIR))
    main(p.parse_args())
