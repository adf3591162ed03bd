"""The classification-based rows of Borji's table on MNIST: the GAN Quality Index, the class balance of a
classifier's labels, and a linear probe of the discriminator's representation.

* **Real sets** (the floor and the degraded sets of ``real_data_baselines.py``: pixel noise, blur, digits 0-4 only):
  the GQI (:func:`gendl_jax.learned_metrics.gan_quality_index`: an MLP trained on ``--n-train`` labelled MNIST train digits
  labels the set, a second MLP learns from those labels, 100 x the ratio of their accuracies on MNIST test) and the
  class balance (:func:`gendl_jax.metrics.class_balance`) of the shipped LeNet's labels against MNIST test's own.
* **A DCGAN's trajectory** (the run of ``gan_tournament.py``, trained here if missing): per snapshot, FID and IS
  (shipped LeNet), the GQI and class balance of ``--n-eval`` samples, and the test accuracy of a linear probe
  (:func:`gendl_jax.learned_metrics.linear_probe`) on the snapshot's discriminator features
  (:func:`gendl_jax.objectives.adversarial.discriminator_features`, inference mode) of ``--n-probe`` labelled train
  digits, as Radford et al. (2016) judge DCGAN's discriminator by a linear model on its features. Baselines for
  the probe: pixels and the same discriminator freshly initialised (random features). Each probe's weight penalty
  is picked from ``L2_GRID`` on a held-out fifth of the probe digits, then refitted on all of them. Spearman's rank correlation with FID across
  snapshots says whether each measure orders the trajectory as FID does.

    GENDL_DATA_DIR=/path/to/mnist python experiments/classification_measures.py

Writes ``classification_measures.json`` and ``classification_measures.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from gendl_jax.data import load_dataset
from gendl_jax.learned_metrics import gan_quality_index, linear_probe
from gendl_jax.metrics import class_balance, fid, inception_score, mnist_classifier, prepare_images
from gendl_jax.objectives import adversarial
from gendl_jax.train import load_run

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gan_tournament import train as train_trajectory
from real_data_baselines import degraded_sets

MEASURES = ("gqi", "class_balance_tv", "probe_accuracy", "inception_score")


def pixels(images) -> np.ndarray:
    """(n, 784) in [-1, 1]; uint8 or [-1, 1] images."""
    return prepare_images(images).reshape(len(images), -1)


def labelled_measures(images, net, test, gqi_data, real_shares, key) -> dict:
    """GQI and class balance of one set of images (n, 28, 28, 1) in [-1, 1] (or uint8). Every set gets the same
    ``key``, so C_real is the same classifier for all and C_gan differs only by its training pairs."""
    logits = net.logits(images)
    balance = class_balance(np.argmax(logits, 1), 10, reference=real_shares)
    gqi = gan_quality_index(pixels(images), *gqi_data, pixels(test.images), test.labels, key, num_classes=10)
    return {
        "gqi": gqi["gqi"],
        "gqi_accuracy_gan": gqi["accuracy_gan"],
        "gqi_accuracy_real": gqi["accuracy_real"],
        "class_balance_tv": balance["total_variation"],
        "class_balance_kl": balance["kl_to_reference"],
        "missing_classes": balance["missing_classes"],
        "class_balance_min_over_max": balance["min_over_max"],
        "predicted_class_histogram": balance["counts"],
    }


L2_GRID = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
"""Weight penalties of the linear probe; the one with the best accuracy on a held-out fifth of the probe digits is
refitted on all of them."""


def tuned_probe(x, y, x_test, y_test, key) -> dict:
    """:func:`linear_probe` with its ``l2`` picked from ``L2_GRID`` on a held-out fifth of ``x``."""
    n_fit = len(x) * 4 // 5
    val = {l2: linear_probe(x[:n_fit], y[:n_fit], x[n_fit:], y[n_fit:], key, l2=l2)["accuracy"] for l2 in L2_GRID}
    best = max(L2_GRID, key=lambda l2: (val[l2], l2))  # ties: the stronger penalty
    out = linear_probe(x, y, x_test, y_test, key, l2=best)
    return {
        "probe_accuracy": out["accuracy"],
        "probe_train_accuracy": out["train_accuracy"],
        "probe_l2": best,
        "probe_validation_accuracy": val,
    }


def probe(state, probe_x, probe_y, test, key) -> dict:
    """Tuned linear probe on the discriminator's features of the probe digits, scored on all of MNIST test."""
    features = jax.jit(adversarial.discriminator_features)

    def extract(x):
        return np.concatenate([np.asarray(features(state, x[i : i + 1000])) for i in range(0, len(x), 1000)])

    return tuned_probe(extract(probe_x), probe_y, extract(prepare_images(test.images)), test.labels, key)


def main(args) -> None:
    t0 = time.time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train))
    gqi_idx, probe_idx = order[: args.n_train], order[args.n_train : args.n_train + args.n_probe]
    gqi_data = (pixels(train.images[gqi_idx]), train.labels[gqi_idx])
    net = mnist_classifier()
    real_shares = np.bincount(np.argmax(net.logits(test.images), 1), minlength=10) / len(test)
    key = jax.random.PRNGKey(args.seed)

    real_rows = []
    for name, images in degraded_sets(test.images, test.labels, args.seed).items():
        real_rows.append(
            {"set": name, "n": len(images), **labelled_measures(images, net, test, gqi_data, real_shares, key)}
        )
        print(json.dumps({k: v for k, v in real_rows[-1].items() if k != "predicted_class_histogram"}), flush=True)

    run, steps = train_trajectory(
        argparse.Namespace(
            model=args.model,
            steps=args.steps,
            snapshots=args.snapshots,
            seed=args.seed,
            runs=args.runs,
            data_dir=args.data_dir,
        )
    )
    probe_x, probe_y = prepare_images(train.images[probe_idx]), train.labels[probe_idx]
    eval_real = test.images[rng.choice(len(test), args.n_eval, replace=False)]
    _, real_features = net.logits_and_features(eval_real)
    objective, last, record = load_run(run, steps[-1])
    example = {"x": np.zeros((last.config.inner_steps, 2, *record["data_shape"]), np.float32)}
    init_state = objective.init(jax.random.PRNGKey(args.seed + 1), last.config, example)  # a fresh initialisation
    baselines = {
        "pixels": tuned_probe(
            pixels(train.images[probe_idx]), probe_y, pixels(test.images), test.labels, jax.random.fold_in(key, 100)
        )["probe_accuracy"],
        "discriminator at a random initialisation": probe(
            init_state, probe_x, probe_y, test, jax.random.fold_in(key, 101)
        )["probe_accuracy"],
    }
    print(json.dumps({"probe_baselines": baselines}), flush=True)
    sample = jax.jit(objective.sample, static_argnums=2)
    rows = []
    for i, step in enumerate(steps):
        state = load_run(run, step)[1]
        samples = np.asarray(sample(state, jax.random.PRNGKey(1000 + i), args.n_eval))
        logits, features = net.logits_and_features(samples, value_range=(-1.0, 1.0))
        rows.append(
            {
                "step": step,
                "fid": fid(real_features, features),
                "inception_score": inception_score(logits, 10, from_logits=True)[0],
                **labelled_measures(samples, net, test, gqi_data, real_shares, key),
                **probe(state, probe_x, probe_y, test, jax.random.fold_in(key, 300 + i)),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "predicted_class_histogram"}), flush=True)

    fids = [r["fid"] for r in rows]
    correlations = {m: float(spearmanr([r[m] for r in rows], fids).statistic) for m in MEASURES}
    result = {
        "command": (
            f"python experiments/classification_measures.py --model {args.model} --steps {args.steps} "
            f"--snapshots {args.snapshots} --n-eval {args.n_eval} --n-train {args.n_train} --n-probe "
            f"{args.n_probe} --seed {args.seed}"
        ),
        "protocol": {
            "gqi": f"MLP (256 hidden, 2000 Adam steps) on pixels; C_real from {args.n_train} MNIST train "
            "digits; both scored on all 10,000 MNIST test digits",
            "class_balance": "shipped LeNet argmax vs its label shares on MNIST test",
            "probe": f"multinomial logistic regression on standardised discriminator features (inference "
            f"mode) of {args.n_probe} MNIST train digits, l2 from {L2_GRID} by accuracy on a "
            "held-out fifth, refitted on all, scored on MNIST test",
        },
        "seconds": time.time() - t0,
        "real_sets": real_rows,
        "probe_baselines": baselines,
        "trajectory": rows,
        "spearman_with_fid": correlations,
    }
    (out / "classification_measures.json").write_text(json.dumps(result, indent=2))
    plot(real_rows, rows, baselines, out / "classification_measures.png")
    print(json.dumps({"spearman_with_fid": correlations, "seconds": result["seconds"]}), flush=True)


def plot(real_rows, rows, baselines, path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = [r["set"] for r in real_rows]
    axes[0].barh(names, [r["gqi"] for r in real_rows], color="tab:blue")
    axes[0].set_xlabel("GQI (100 = as informative as real data)")
    axes[0].invert_yaxis()
    steps = [r["step"] for r in rows]
    axes[1].plot(steps, [r["gqi"] for r in rows], "o-", label="GQI")
    axes[1].set_xlabel("generator step")
    axes[1].set_ylabel("GQI")
    twin = axes[1].twinx()
    twin.plot(steps, [r["fid"] for r in rows], "s--", color="tab:red", label="FID")
    twin.set_ylabel("FID", color="tab:red")
    axes[1].set_title("DCGAN trajectory: GQI and FID")
    axes[2].plot(steps, [100 * r["probe_accuracy"] for r in rows], "o-", label="discriminator features")
    for (name, acc), style in zip(baselines.items(), (":", "--")):
        axes[2].axhline(100 * acc, linestyle=style, color="gray", label=name)
    axes[2].set_xlabel("generator step")
    axes[2].set_ylabel("linear probe test accuracy (%)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dcgan", help="a model of mnist_gans.py without learning-rate decay")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--snapshots", type=int, default=16)
    p.add_argument("--n-eval", type=int, default=5000, help="samples per snapshot (and per real set, all of it)")
    p.add_argument("--n-train", type=int, default=10000, help="labelled train digits of the GQI's C_real")
    p.add_argument("--n-probe", type=int, default=10000, help="labelled train digits of the linear probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", default="runs/gan_tournament")
    p.add_argument("--out", default="experiments/results/classification_measures")
    main(p.parse_args())
