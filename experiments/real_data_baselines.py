"""Every measure on real MNIST data: the floor (MNIST test vs train) and deliberately degraded sets.

The reference ("real") set is ``--n-ref`` images drawn from MNIST train (seed 0); each evaluated set
is built from MNIST test (IS on the whole set, the other measures on ``--n-eval`` of its images): as is (the floor), with Gaussian pixel noise (std in [-1, 1] units, then
clipped to [-1, 1] as part of the degradation), blurred (Gaussian filter, sigma in pixels), or with
modes dropped (only digits 0-4). Features and logits come from the shipped LeNet
(``gendl_jax.metrics.mnist_classifier``). Each measure should move the right way: IS and
precision/recall/density/coverage down, FID/KID and the 1-NN accuracy up. The IS variants of Borji's table
are scored like IS (whole set): m-IS by predicted class, and the MODE and AM scores against p*(y) = the
LeNet's mean prediction on the reference set (MODE down, AM up for a worse set; m-IS measures diversity
within a class and has no "right way" for these degradations). NDB (bins: k-means of the reference
features) should rise, the coverage metric C (the share of the reference set where a KDE of the set's
features puts 95% of its mass) fall. The mean SSIM of 100 random pairs within each predicted class (whole set)
measures diversity, not quality. The low-level image statistics (Zeng et al. 2017: power spectrum, random
filter responses, per-image mean and contrast; pixels, not features) should rise for noise and blur.

    GENDL_DATA_DIR=/path/to/mnist python experiments/real_data_baselines.py

Writes ``real_data_baselines.json``, ``measures.png`` and ``sets.png`` into ``--out``.
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
from scipy.ndimage import gaussian_filter

from gendl_jax import metrics
from gendl_jax.data import load_dataset
from gendl_jax.evaluation import ndb_bins, ndb_measures, pixel_statistics, within_class_ssim

MEASURES = (
    "inception_score",
    "modified_inception_score",
    "mode_score",
    "am_score",
    "fid",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "nn_two_sample",
    "ndb_fraction",
    "mass_coverage",
    "ssim_diversity",
    "log_power_spectrum_rms",
    "filter_response_w1",
    "mean_intensity_w1",
    "contrast_w1",
)
HIGHER_IS_BETTER = {
    "inception_score": True,
    "modified_inception_score": None,
    "mode_score": True,
    "am_score": False,
    "fid": False,
    "kid": False,
    "precision": True,
    "recall": True,
    "density": True,
    "coverage": True,
    "nn_two_sample": False,
    "ndb_fraction": False,
    "mass_coverage": True,
    "ssim_diversity": None,
    "log_power_spectrum_rms": False,
    "filter_response_w1": False,
    "mean_intensity_w1": False,
    "contrast_w1": False,
}
"""None: no better direction (m-IS rises with within-class diversity and with unconfident predictions alike; the
SSIM of pairs within a class falls with diversity and with pixel noise alike)."""


def degraded_sets(test_images: np.ndarray, test_labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Name -> images (N, 28, 28, 1) float32 in [-1, 1]."""
    x = test_images.astype(np.float32) / 127.5 - 1.0
    rng = np.random.default_rng(seed)
    sets = {"MNIST test (floor)": x}
    for std in (0.1, 0.3, 0.6):
        sets[f"noise std {std}"] = np.clip(x + rng.normal(scale=std, size=x.shape), -1, 1).astype(np.float32)
    for sigma in (0.5, 1.0, 2.0):
        sets[f"blur sigma {sigma}"] = gaussian_filter(x, sigma=(0, sigma, sigma, 0)).astype(np.float32)
    sets["digits 0-4 only"] = x[test_labels < 5]
    return sets


def score(net, name, images, ref_images, ref_feat, ref_labels, key, n_eval: int, seed: int) -> dict:
    """IS and its variants on the whole set (as in the 9.88 reference); the other measures on ``n_eval`` of
    its images. ``ref_labels``: p*(y) (C,) of the MODE and AM scores."""
    t0 = time.perf_counter()
    logits, feat = net.logits_and_features(images)
    is_mean, is_std = metrics.inception_score(logits, 10, from_logits=True)
    label_scores = {
        "modified_inception_score": metrics.modified_inception_score(logits, from_logits=True)["score"],
        "mode_score": metrics.mode_score(logits, ref_labels, from_logits=True),
        "am_score": metrics.am_score(logits, ref_labels, from_logits=True),
    }
    sub = np.random.default_rng(seed).choice(len(feat), min(n_eval, len(feat)), replace=False)
    feat = feat[sub]
    kid_mean, kid_std = metrics.kid(ref_feat, feat, key=key, subset_size=min(1000, len(feat), len(ref_feat)))
    row = {
        "set": name,
        "n": len(images),
        "n_eval": len(feat),
        "inception_score": is_mean,
        "inception_score_std": is_std,
        **label_scores,
        "fid": metrics.fid(ref_feat, feat),
        "kid": kid_mean,
        "kid_std": kid_std,
        **metrics.prdc(ref_feat, feat, k_precision_recall=3, k_density_coverage=5),
        "nn_two_sample": metrics.nn_two_sample(ref_feat, feat)["accuracy"],
        **ndb_measures(ref_feat, feat, key),
        "mass_coverage": metrics.mass_coverage(ref_feat, feat)["coverage"],
        "ssim_diversity": within_class_ssim(images, logits),
        **pixel_statistics(ref_images, images[sub], key),
        "classifier_entropy_nats": float(np.mean(-np.sum(_softmax(logits) * _log_softmax(logits), 1))),
    }
    row["seconds"] = time.perf_counter() - t0
    return row


def _log_softmax(z):
    z = z.astype(np.float64) - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _softmax(z):
    return np.exp(_log_softmax(z))


def plot(rows, sets, out: pathlib.Path) -> None:
    fig, axes = plt.subplots(5, 4, figsize=(14, 15), dpi=100)
    names = [r["set"] for r in rows]
    for ax, m in zip(axes.flat, MEASURES):
        vals = [r[m] for r in rows]
        ax.barh(range(len(vals)), vals, color=["tab:green"] + ["tab:gray"] * (len(vals) - 1))
        ax.set_yticks(range(len(vals)))
        ax.set_yticklabels(names if ax in axes[:, 0] else [], fontsize=7)
        ax.invert_yaxis()
        better = {True: "higher is better", False: "lower is better", None: "no better direction"}[HIGHER_IS_BETTER[m]]
        ax.set_title(f"{m} ({better})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(MEASURES) :]:
        ax.axis("off")
    fig.suptitle(
        "MNIST measures (shipped LeNet features): real test set and degraded versions vs MNIST train", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out / "measures.png")
    plt.close(fig)
    fig, axes = plt.subplots(len(sets), 10, figsize=(8, 0.85 * len(sets)), dpi=100)
    for r, (name, imgs) in enumerate(sets.items()):
        for c in range(10):
            axes[r, c].imshow(imgs[c, ..., 0], cmap="gray", vmin=-1, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(name, fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(out / "sets.png")
    plt.close(fig)


def main(args) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    net = metrics.mnist_classifier()
    ref_idx = np.random.default_rng(args.seed).choice(len(train), args.n_ref, replace=False)
    ref_logits, ref_feat = net.logits_and_features(train.images[ref_idx])
    ref_labels = metrics.mean_prediction(ref_logits, from_logits=True)
    sets = degraded_sets(test.images, test.labels, args.seed)
    rows = []
    for i, (name, images) in enumerate(sets.items()):
        rows.append(
            score(
                net,
                name,
                images,
                train.images[ref_idx],
                ref_feat,
                ref_labels,
                jax.random.PRNGKey(args.seed + i),
                args.n_eval,
                args.seed + i,
            )
        )
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    record = {
        "command": f"python experiments/real_data_baselines.py --n-ref {args.n_ref} --n-eval {args.n_eval} --seed {args.seed}",
        "reference_set": f"{args.n_ref} images of MNIST train (seed {args.seed})",
        "protocol": {
            "inception_score": "whole set (10,000 or 5,139 images), 10 contiguous splits, std ddof 0",
            "is_variants": "whole set, one split; m-IS: pairs within a predicted class, classes weighted by size; MODE / AM: p*(y) = the "
            "LeNet's mean prediction on the reference set",
            "other_measures": f"{args.n_eval} random images of each set vs the reference set",
            "fid": "float64, N-1 covariance",
            "kid": "100 subsets of 1000, cubic kernel",
            "precision_recall_k": 3,
            "density_coverage_k": 5,
            "nn_two_sample": "leave-one-out 1-NN accuracy (0.5 ideal)",
            "ndb": f"{ndb_bins(args.n_ref)} k-means bins of the reference features, z-tests at level 0.05",
            "ssim_diversity": "whole set, 100 random pairs per predicted class, SSIM 11x11 Gaussian window",
            "low_level_statistics": "pixels in [-1, 1]: RMS log10 ratio of radial power spectra (radii 1-14), "
            "mean 1-D W1 of 32 random zero-mean 5x5 filters' responses (200,000 "
            "positions per set), W1 of per-image means and standard deviations",
            "mass_coverage": "reference share where the set's KDE (fit on half, t from the other half, "
            "bandwidth by held-out likelihood) holds 95% of its mass",
            "features": "shipped LeNet penultimate layer (128-d)",
        },
        "classifier_test_accuracy": net.accuracy(test.images, test.labels),
        "rows": rows,
    }
    (out / "real_data_baselines.json").write_text(json.dumps(record, indent=2))
    plot(rows, sets, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-ref", type=int, default=2000)
    p.add_argument("--n-eval", type=int, default=2000, help="images of each set for every measure but IS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/real_data_baselines")
    main(p.parse_args())
