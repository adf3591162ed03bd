"""FGSM (and PGD) against the shipped MNIST LeNet, next to Goodfellow et al. (2014)'s MNIST numbers.

    GENDL_DATA_DIR=/path/to/mnist python experiments/adversarial.py [--n 10000] [--pgd-steps 10] [--pgd-n 1000]

Pixels are in [0, 1] (the classifier's [-1, 1] input is 2x - 1); for each eps the script
reports the test error and the mean confidence (softmax probability of the predicted class) on
all adversarial examples and on the misclassified ones. Writes ``results.json`` and
``fgsm_examples.png`` (rows: clean / perturbation / adversarial, with predicted labels) into
``experiments/results/adversarial``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax.attacks import fgsm, pgd, predictions_and_confidence
from gendl_jax.data import load_dataset
from gendl_jax.metrics.classifier import mnist_classifier

# Goodfellow, Shlens & Szegedy (2014), "Explaining and Harnessing Adversarial Examples", Sec. 4/5,
# MNIST at eps = 0.25.
GOODFELLOW_2014 = {
    "shallow softmax": {"eps": 0.25, "error": 0.999, "mean_confidence": 0.793},
    "maxout network": {"eps": 0.25, "error": 0.894, "mean_confidence": 0.976},
}


def summarize(logits, labels) -> dict:
    pred, conf = predictions_and_confidence(logits)
    wrong = pred != labels
    return {
        "error": float(wrong.mean()),
        "mean_confidence": float(conf.mean()),
        "mean_confidence_misclassified": float(conf[wrong].mean()) if wrong.any() else None,
    }


def attack_in_batches(attack, x, y, batch_size):
    return np.concatenate(
        [np.asarray(attack(x[i : i + batch_size], y[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


def picture_rows(x, x_adv, pred_clean, pred_adv, y, eps, path, count=8):
    fig, axes = plt.subplots(3, count, figsize=(1.3 * count, 4.3), dpi=110)
    for j in range(count):
        delta = x_adv[j, ..., 0] - x[j, ..., 0]
        panels = [
            (x[j, ..., 0], f"clean: {pred_clean[j]}", (0, 1)),
            (delta, f"pert. ±{eps}", (-eps, eps)),
            (x_adv[j, ..., 0], f"adv.: {pred_adv[j]}", (0, 1)),
        ]
        for i, (img, title, (lo, hi)) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray" if i != 1 else "coolwarm", vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=7, color="black" if i != 2 or pred_adv[j] == y[j] else "red")
            ax.axis("off")
    fig.suptitle(f"FGSM, eps = {eps} (pixels in [0, 1]); predicted labels of the MNIST LeNet", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    x = test.images[: args.n].astype(np.float32) / test.max_value
    y = test.labels[: args.n].astype(np.int32)
    clf = mnist_classifier()

    def logits_fn(x01):
        return clf.model.apply(clf.params, 2.0 * x01 - 1.0)[0]

    clean_logits = attack_in_batches(lambda xb, yb: logits_fn(xb), x, y, args.batch_size)
    results = {
        "command": args.command,
        "n": len(x),
        "clean": summarize(clean_logits, y),
        "fgsm": {},
        "pgd": {},
        "goodfellow_2014": GOODFELLOW_2014,
        "pgd_steps": args.pgd_steps,
        "pgd_n": int(min(args.pgd_n, len(x))),
    }
    t0 = time.perf_counter()
    for eps in args.eps:
        x_adv = attack_in_batches(lambda xb, yb: fgsm(logits_fn, xb, yb, eps), x, y, args.batch_size)
        adv_logits = attack_in_batches(lambda xb, yb: logits_fn(xb), x_adv, y, args.batch_size)
        results["fgsm"][str(eps)] = summarize(adv_logits, y)
        if eps == args.picture_eps:
            picture_rows(x, x_adv, clean_logits.argmax(-1), adv_logits.argmax(-1), y, eps, out / "fgsm_examples.png")
        if args.pgd_steps:
            key = jax.random.PRNGKey(args.seed)
            xs, ys = x[: args.pgd_n], y[: args.pgd_n]
            x_pgd = attack_in_batches(
                lambda xb, yb: pgd(logits_fn, xb, yb, eps, steps=args.pgd_steps, key=key), xs, ys, args.batch_size
            )
            assert np.abs(x_pgd - xs).max() <= eps + 1e-6
            results["pgd"][str(eps)] = summarize(
                attack_in_batches(lambda xb, yb: logits_fn(xb), x_pgd, ys, args.batch_size), ys
            )
        print(
            f"eps={eps}: FGSM {results['fgsm'][str(eps)]}"
            + (f"; PGD {results['pgd'][str(eps)]}" if args.pgd_steps else ""),
            flush=True,
        )
    results["attack_seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    import sys

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/adversarial")
    p.add_argument("--n", type=int, default=10000, help="test images attacked (the first n)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.25])
    p.add_argument("--picture-eps", type=float, default=0.25)
    p.add_argument("--pgd-steps", type=int, default=10, help="0: FGSM only")
    p.add_argument("--pgd-n", type=int, default=1000, help="test images attacked by PGD (the first pgd_n)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    a.command = "python " + " ".join(sys.argv)
    main(a)
