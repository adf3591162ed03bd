"""Transfer learning with a LeNet-5: MNIST digits 0-4 -> digits 5-9, and MNIST -> scikit-learn's 8x8 digits.

    GENDL_DATA_DIR=/path/to/mnist python experiments/transfer.py [--seeds 3] [--steps 200]

1. A LeNet-5 is pretrained on MNIST digits 0-4, then trained on digits 5-9 from 10, 100 and
   1,000 labelled images per class, four ways: from scratch, linear probe (only the new head
   trains), full fine-tuning, and frozen early stages (conv1, conv2 frozen). Test accuracy on
   all MNIST test digits 5-9.
2. The same pretrained network is moved to scikit-learn's 8x8 digits (bilinearly resized to
   20x20 and centred in 28x28, like MNIST's digits), a real change of domain, with 10 labelled
   images per class and with the whole training split; test on the held-out split.

Every condition trains for the same number of Adam steps (batch min(64, n)); mean and std over
seeds. Writes ``results.json`` and ``transfer.png`` into ``experiments/results/transfer``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax import finetune as ft
from gendl_jax.data import load_dataset
from gendl_jax.finetune.command import digits_as_mnist
from gendl_jax.models.lenet import LeNet

METHODS = {
    "scratch": None,  # fresh network, everything trains
    "linear probe": "linear_probe",
    "full fine-tune": "full",
    "frozen early stages": ("conv1", "conv2"),
}
HEAD = "classifier"


def to_unit(images: np.ndarray, max_value: int) -> np.ndarray:
    """uint8 (N, H, W, 1) -> float32 in [-1, 1]."""
    return (images.astype(np.float32) / max_value * 2.0 - 1.0).astype(np.float32)


def per_class_subset(y: np.ndarray, n_per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    if n_per_class is None:
        return rng.permutation(len(y))
    idx = [rng.choice(np.flatnonzero(y == c), n_per_class, replace=False) for c in np.unique(y)]
    return rng.permutation(np.concatenate(idx))


@functools.partial(jax.jit, static_argnums=0)
def init_model(model, key, example):
    return model.init(key, example)


def train(model, variables, frozen, x, y, steps, lr, seed, step_cache):
    opt = ft.finetune_optimizer(variables["params"], lr, frozen=frozen)
    key = (model.num_classes, frozen, min(64, len(x)))
    if key not in step_cache:
        step_cache[key] = jax.jit(ft.make_step(model, opt))
    step = step_cache[key]
    state = ft.init_finetune(variables, opt)
    batch = min(64, len(x))
    rng = np.random.default_rng(seed + 1000)
    order = np.array([], int)
    for _ in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = order[:batch], order[batch:]
        state, _ = step(state, {"x": x[idx], "y": y[idx]})
    return state


def run_condition(method, pretrained, x, y, x_test, y_test, num_classes, args, seed, step_cache):
    example = jnp.zeros((1, 28, 28, 1))
    base = LeNet(num_classes=5)
    if METHODS[method] is None:
        model = base.clone(num_classes=num_classes)
        variables = init_model(model, jax.random.PRNGKey(seed), example)
        frozen = ()
    else:
        model, variables = ft.replace_head(base, pretrained, jax.random.PRNGKey(seed), num_classes, example, head=HEAD)
        spec = METHODS[method]
        frozen = ft.frozen_for_mode(variables["params"], spec, head=HEAD) if isinstance(spec, str) else spec
    state = train(model, variables, tuple(frozen), x, y, args.steps, args.lr, seed, step_cache)
    return ft.accuracy(model, state, x_test, y_test)


def pretrain(x, y, args):
    model = LeNet(num_classes=5)
    variables = init_model(model, jax.random.PRNGKey(args.seed), jnp.zeros((1, 28, 28, 1)))
    state = train(model, variables, (), x, y, args.pretrain_steps, args.lr, args.seed, {})
    return {"params": state.params}


def plot(results, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, (task, rows) in zip(axes, results.items()):
        sizes = list(next(iter(rows.values())).keys())
        for method, by_size in rows.items():
            means = [by_size[s]["mean"] for s in sizes]
            stds = [by_size[s]["std"] for s in sizes]
            ax.errorbar(range(len(sizes)), means, yerr=stds, marker="o", capsize=3, label=method)
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("labelled images per class")
        ax.set_ylabel("test accuracy")
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_set = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test_set = load_dataset("mnist", split="test", data_dir=args.data_dir)
    xtr, ytr = to_unit(train_set.images, train_set.max_value), train_set.labels.astype(np.int32)
    xte, yte = to_unit(test_set.images, test_set.max_value), test_set.labels.astype(np.int32)
    low_tr, low_te = ytr < 5, yte < 5
    pretrained = pretrain(xtr[low_tr], ytr[low_tr], args)
    source_acc = ft.accuracy(LeNet(num_classes=5), pretrained, xte[low_te], yte[low_te])
    print(f"pretrained on digits 0-4: test accuracy {source_acc:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    x_hi, y_hi = xtr[~low_tr], ytr[~low_tr] - 5
    x_hi_test, y_hi_test = xte[~low_te], yte[~low_te] - 5
    digits_tr = load_dataset("digits", split="train")
    digits_te = load_dataset("digits", split="test")
    xd, yd = digits_as_mnist(digits_tr.images, digits_tr.max_value), digits_tr.labels.astype(np.int32)
    xd_test, yd_test = digits_as_mnist(digits_te.images, digits_te.max_value), digits_te.labels.astype(np.int32)

    tasks = {
        "MNIST 0-4 -> 5-9": (x_hi, y_hi, x_hi_test, y_hi_test, 5, args.sizes),
        "MNIST 0-4 -> sklearn 8x8 digits": (xd, yd, xd_test, yd_test, 10, [10, None]),
    }
    results, cache = {}, {}
    for task, (x, y, x_test, y_test, num_classes, sizes) in tasks.items():
        results[task] = {}
        for method in METHODS:
            results[task][method] = {}
            for n in sizes:
                accs = []
                for seed in range(args.seeds):
                    idx = per_class_subset(y, n, np.random.default_rng(seed))
                    accs.append(
                        run_condition(
                            method, pretrained, x[idx], y[idx], x_test, y_test, num_classes, args, seed, cache
                        )
                    )
                label = "all" if n is None else str(n)
                results[task][method][label] = {
                    "mean": float(np.mean(accs)),
                    "std": float(np.std(accs)),
                    "accuracies": [float(a) for a in accs],
                }
                print(
                    f"{task} | {method} | {label}/class: {np.mean(accs):.4f} ± {np.std(accs):.4f}"
                    f" ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    summary = {
        "command": args.command,
        "source_test_accuracy_digits_0_4": source_acc,
        "pretrain_steps": args.pretrain_steps,
        "steps": args.steps,
        "lr": args.lr,
        "seeds": args.seeds,
        "digits_train_size": len(yd),
        "digits_test_size": len(yd_test),
        "seconds": time.perf_counter() - t0,
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    plot(results, out / "transfer.png")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/transfer")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200, help="Adam steps per fine-tuning run")
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    a = p.parse_args()
    a.command = "python " + " ".join(sys.argv)
    main(a)
