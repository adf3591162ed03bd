"""Why is a generator's Inception Score low? Class balance, classifier confidence and per-class FID of saved samples.

For each ``.npz`` of MNIST samples (key ``images``, (N, 28, 28[, 1]) in [-1, 1], as
``experiments/mnist_gans.py --save-samples`` writes them) and for MNIST test itself (the reference row),
with the shipped LeNet: :func:`gendl_jax.metrics.inception_score_breakdown` (one-split IS = class balance x
confidence, predicted-class histogram, quantiles of the top class probability, IS of the samples whose top
probability is >= ``--threshold``) and :func:`gendl_jax.metrics.per_class_fid` (samples of predicted class k
against the test digits of class k, in the LeNet's 128-d features), and the IS variants m-IS, MODE and AM
score (p*(y): the LeNet's mean prediction on MNIST test, as ``gendl eval`` uses), and NDB against MNIST test
(:func:`gendl_jax.evaluation.ndb_measures`: 100 k-means bins of the test features) with, as its floor, 10,000
random MNIST train images scored the same way; the coverage metric C (:func:`gendl_jax.metrics.mass_coverage`) of
MNIST test under each sample set's KDE, with the same floor; the SSIM diversity (mean SSIM of 100 random
pairs within each predicted class); the birthday paradox test (Arora & Zhang 2017) in the LeNet features: the
probability that a batch of s samples holds a pair closer than the 1% quantile of the nearest-neighbour distances
among the 10,000 train images, for s = 100 ... 1,600 (the train images themselves are a row too); the Geometry
Score (:func:`gendl_jax.evaluation.geometry_measures`, pixels, ``--geometry-iterations`` landmark draws) of
each set against MNIST test, with the same floor.

    GENDL_DATA_DIR=/path/to/mnist python experiments/diagnose_samples.py \\
        experiments/results/mnist_gans_h200/samples_dcgan-wide.npz \\
        --out experiments/results/mnist_gans_h200/diagnostics.json
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from gendl_jax.data import load_dataset
from gendl_jax.evaluation import geometry_measures, ndb_measures, within_class_ssim
from gendl_jax.metrics import (
    am_score,
    birthday_support_size,
    inception_score_breakdown,
    kth_neighbour_distances,
    mass_coverage,
    mean_prediction,
    mnist_classifier,
    mode_score,
    modified_inception_score,
    per_class_fid,
)

BIRTHDAY_SIZES = (100, 200, 400, 800, 1600)


def diagnose(logits, features, test_logits, test_features, test_labels, threshold: float) -> dict:
    """The breakdown, IS variants and per-class FIDs of one sample set's LeNet ``logits`` (N, 10) and
    ``features`` (N, 128), against MNIST test's logits, features and labels."""
    row = inception_score_breakdown(logits, threshold=threshold, from_logits=True)
    reference = mean_prediction(test_logits, from_logits=True)
    mis = modified_inception_score(logits, from_logits=True)
    row.update(
        modified_inception_score=mis["score"],
        modified_inception_score_per_class=mis["per_class"],
        mode_score=mode_score(logits, reference, from_logits=True),
        am_score=am_score(logits, reference, from_logits=True),
    )
    row["per_class_fid"] = per_class_fid(test_features, test_labels, features, np.argmax(logits, axis=1)).tolist()
    return row


def _mean(score) -> str:
    return "n/a (too few)" if score is None else f"{score[0]:.3f}"


def main(args) -> None:
    classifier = mnist_classifier()
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    test_logits, test_features = classifier.logits_and_features(test.images, value_range=(0, 255))
    rows = {"MNIST test": diagnose(test_logits, test_features, test_logits, test_features, test.labels, args.threshold)}
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    floor_idx = np.random.default_rng(0).choice(len(train), 10000, replace=False)
    _, train_features = classifier.logits_and_features(train.images[floor_idx], value_range=(0, 255))
    rows["MNIST test"]["ndb_floor_train_vs_test"] = ndb_measures(test_features, train_features, jax.random.PRNGKey(0))
    rows["MNIST test"]["mass_coverage_floor_train"] = mass_coverage(test_features, train_features)["coverage"]
    rows["MNIST test"]["ssim_diversity"] = within_class_ssim(test.images, test_logits)
    threshold = float(np.quantile(kth_neighbour_distances(train_features, 1), 0.01))

    def birthday(features) -> dict:
        return {"threshold": threshold, **birthday_support_size(features, BIRTHDAY_SIZES, threshold=threshold)}

    rows["MNIST test"]["birthday"] = birthday(test_features)
    rows["MNIST test"]["birthday_train_10000"] = birthday(train_features)

    def geometry(images) -> dict:  # the same key for every set: MNIST test's MRLT is the same in every score
        return geometry_measures(images, test.images, key=jax.random.PRNGKey(2), n_iterations=args.geometry_iterations)

    rows["MNIST test"]["geometry_floor_train_10000"] = geometry(train.images[floor_idx])
    for path in args.samples:
        with np.load(path) as f:
            if "images" not in f:
                raise ValueError(f"{path} has no array 'images' (keys: {sorted(f.keys())})")
            images = f["images"].astype(np.float32)
        logits, features = classifier.logits_and_features(images)
        rows[str(path)] = diagnose(logits, features, test_logits, test_features, test.labels, args.threshold)
        rows[str(path)]["ndb_vs_test"] = ndb_measures(test_features, features, jax.random.PRNGKey(0))
        rows[str(path)]["mass_coverage_of_test"] = mass_coverage(test_features, features)["coverage"]
        rows[str(path)]["ssim_diversity"] = within_class_ssim(images, logits)
        rows[str(path)]["birthday"] = birthday(features)
        rows[str(path)]["geometry"] = geometry(images)
    for name, row in rows.items():
        q = row["top_probability_quantiles"]
        print(
            f"{name}: IS(1 split) {row['inception_score_one_split']:.3f} = balance {row['class_balance']:.3f} "
            f"x confidence {row['confidence']:.4f}; top-prob quantiles "
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in q.items())
            + f"; below {row['threshold']}: {row['fraction_below_threshold']:.3f}; IS of the {row['n_confident']} "
            f"confident: {_mean(row['inception_score_confident'])}; m-IS {row['modified_inception_score']:.4f}, "
            f"MODE {row['mode_score']:.3f}, AM {row['am_score']:.4f}; per-class FID "
            + " ".join(f"{v:.1f}" for v in row["per_class_fid"])
            + "".join(
                f"; {k} {v['ndb_fraction']:.2f} (JS {v['ndb_js']:.4f})" for k, v in row.items() if k.startswith("ndb")
            )
            + "".join(f"; {k} {v:.4f}" for k, v in row.items() if k.startswith(("mass_coverage", "ssim")))
            + "".join(
                f"; {k} P(duplicate) " + " ".join(f"{s}: {p:.2f}" for s, p in v["probabilities"].items())
                for k, v in row.items()
                if k.startswith("birthday")
            )
            + "".join(f"; {k} score {v['geometry_score']:.5f}" for k, v in row.items() if k.startswith("geometry")),
            flush=True,
        )
    if args.out:
        command = (
            "python experiments/diagnose_samples.py "
            + " ".join(map(str, args.samples))
            + (f" --threshold {args.threshold} --geometry-iterations {args.geometry_iterations} --out {args.out}")
        )
        pathlib.Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=2))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", nargs="+", type=pathlib.Path, help=".npz files with an 'images' array in [-1, 1]")
    p.add_argument("--threshold", type=float, default=0.9, help="top class probability of a 'confident' sample")
    p.add_argument("--geometry-iterations", type=int, default=100, help="landmark draws of the Geometry Score")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="JSON to write (default: print only)")
    main(p.parse_args())
