"""Every applicable measure of a trained run (what ``gendl eval RUN_DIR`` writes into ``eval.json``).

* Image runs on MNIST (28x28x1): with the shipped LeNet (:func:`mnist_classifier`), the Inception
  Score of the samples (and of as many MNIST test images, for reference) and its variants m-IS (by
  predicted class), MODE and AM score (p*(y): the LeNet's mean prediction on the real images); NDB
  (:func:`ndb_measures`), the coverage metric C (a KDE of the sample features), the SSIM of pairs within
  predicted classes (:func:`within_class_ssim`, samples and real images), low-level image statistics
  (:func:`pixel_statistics`: power spectrum, random filter responses, mean intensity and contrast); FID and KID
  against the
  MNIST test set (a random subset of n images when n < 10,000; :func:`mnist_test_subset`), precision/recall (k=3), density/coverage (k=5) and the 1-NN two-sample accuracy
  in the same features; the pixel-space nearest MNIST training images of the first samples
  (``nearest_neighbours.png``) and their mean distance; the class balance of the LeNet's labels against theirs
  on the real images (:func:`class_balance_measures`); the GAN Quality Index (:func:`quality_index_measures`);
  the Geometry Score of the samples against the same MNIST test images, on pixels (:func:`geometry_measures`).
  Class-conditional runs (uniform labels) also get
  ``label_accuracy``, how often the LeNet reads a sample as the digit it was drawn for, and the adversarial
  accuracy and divergence (:func:`adversarial_measures`).
* Runs on a point cloud file (``.npy`` / ``.npz``): exact and sliced W2 of the samples to its held-out split,
  next to a Gaussian fitted to its train split (:func:`gendl_jax.train.point_cloud_measures`).
* 2-D runs on a mixture with known modes: the PacGAN mode coverage, and the exact W1 and W2 between
  the first ``min(n, 2500)`` samples and as many fresh draws of the true mixture
  (:func:`gendl_jax.transport.wasserstein`, an assignment problem on equal-size samples).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import numpy as np

from gendl_jax import data as gdata
from gendl_jax import plots
from gendl_jax.learned_metrics.two_sample import adversarial_accuracy, gan_quality_index
from gendl_jax.metrics.bins import ndb
from gendl_jax.metrics.classifier import mnist_classifier, prepare_images
from gendl_jax.metrics.common import positive_int
from gendl_jax.metrics.fid import fid
from gendl_jax.metrics.geometry import geometry_score_estimates
from gendl_jax.metrics.image_quality import ssim_diversity
from gendl_jax.metrics.image_statistics import low_level_statistics
from gendl_jax.metrics.inception import (
    am_score,
    class_balance,
    inception_score,
    mean_prediction,
    mode_score,
    modified_inception_score,
)
from gendl_jax.metrics.inception_features import load_inception, to_uint8
from gendl_jax.metrics.inception_fid import inception_measures
from gendl_jax.metrics.kernel import kid
from gendl_jax.metrics.likelihood import mass_coverage
from gendl_jax.metrics.mode_coverage import mode_coverage
from gendl_jax.metrics.pairwise import nearest_neighbour_picture, nearest_neighbours, nn_two_sample, prdc
from gendl_jax.objectives import adversarial
from gendl_jax.train import load_run, point_cloud_measures


def ndb_bins(n_real: int) -> int:
    """K of the NDB measure against ``n_real`` real samples: about 50 real samples per bin, from 2 up to 100
    bins (Richardson & Weiss 2018 use 100); 100 from 5,000 real samples on."""
    return int(min(100, max(2, n_real // 50)))


TRANSPORT_MAX_POINTS = 2500
"""Samples used for the exact W1 / W2 of 2-D runs (an n x n assignment problem)."""


def image_measures(
    fake_images,
    real_images,
    *,
    key,
    train_images=None,
    n_neighbour_rows: int = 8,
    picture_path=None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    sample_labels=None,
) -> dict:
    """The MNIST measures of ``fake_images`` against ``real_images``, both (N, 28, 28[, 1]) uint8 or
    floating point in ``value_range`` ((0, 1) for the VAE's Bernoulli means).

    ``train_images`` (uint8 MNIST train): for the nearest-neighbour check, drawn into
    ``picture_path`` if given. ``sample_labels`` (N,) ints: the digits a class-conditional model drew
    ``fake_images`` for; adds ``label_accuracy``, the share of samples the LeNet classifies as their label.
    """
    if sample_labels is not None:
        sample_labels = np.asarray(sample_labels)
        if sample_labels.shape != (len(fake_images),) or not np.issubdtype(sample_labels.dtype, np.integer):
            raise ValueError(
                f"sample_labels must be ({len(fake_images)},) ints, one per fake image, got shape "
                f"{sample_labels.shape} and dtype {sample_labels.dtype}"
            )
    net = mnist_classifier()
    fake_logits, fake_feat = net.logits_and_features(fake_images, value_range=value_range)
    real_logits, real_feat = net.logits_and_features(real_images)
    n_splits = 10 if min(len(fake_feat), len(real_feat)) >= 10 else 1
    subset = min(1000, len(fake_feat), len(real_feat))
    is_mean, is_std = inception_score(fake_logits, n_splits, from_logits=True)
    real_is, real_is_std = inception_score(real_logits, n_splits, from_logits=True)
    kid_mean, kid_std = kid(real_feat, fake_feat, key=key, subset_size=subset)
    real_labels = mean_prediction(real_logits, from_logits=True)  # p*(y) of the MODE and AM scores
    out = {
        "n_fake": len(fake_feat),
        "n_real": len(real_feat),
        "features": "mnist LeNet penultimate (128-d)",
        "inception_score": is_mean,
        "inception_score_std": is_std,
        "inception_score_real": real_is,
        "inception_score_real_std": real_is_std,
        "modified_inception_score": (
            modified_inception_score(fake_logits, from_logits=True)["score"] if _has_class_pair(fake_logits) else None
        ),
        "mode_score": mode_score(fake_logits, real_labels, from_logits=True),
        "am_score": am_score(fake_logits, real_labels, from_logits=True),
        "fid": fid(real_feat, fake_feat),
        "kid": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": subset,
        **prdc(real_feat, fake_feat, k_precision_recall=3, k_density_coverage=5),
        "nn_two_sample": nn_two_sample(real_feat, fake_feat)["accuracy"],
        **ndb_measures(real_feat, fake_feat, key),
        "mass_coverage": mass_coverage(real_feat, fake_feat)["coverage"],
        "ssim_diversity": within_class_ssim(fake_images, fake_logits, value_range),
        "ssim_diversity_real": within_class_ssim(real_images, real_logits, (-1.0, 1.0)),
        **pixel_statistics(real_images, fake_images, key, value_range),
        "predicted_class_histogram": np.bincount(np.argmax(fake_logits, 1), minlength=10).tolist(),
        **class_balance_measures(fake_logits, real_logits),
    }
    if sample_labels is not None:
        out["label_accuracy"] = float(np.mean(np.argmax(fake_logits, 1) == sample_labels))
    if train_images is not None:
        rows = min(n_neighbour_rows, len(fake_feat))
        fake = prepare_images(np.asarray(fake_images)[:rows], value_range)  # in [-1, 1]
        train = np.asarray(train_images).reshape(-1, 28, 28, 1)
        train_scaled = train.astype(np.float32) / 127.5 - 1.0 if train.dtype == np.uint8 else train
        dist, idx = nearest_neighbours(fake, train_scaled, k=3)
        out["nearest_train_distance_mean"] = float(dist[:, 0].mean())
        if picture_path is not None:
            nearest_neighbour_picture(fake, train_scaled, idx, picture_path, distances=dist)
    return out


def class_balance_measures(fake_logits, real_logits) -> dict:
    """The class-balance entries of :func:`image_measures` (:func:`class_balance`; Santurkar et al. 2018): the
    LeNet's hard labels of the samples against the shares of its hard labels on the real images (an estimate,
    so ``class_balance_p_value`` treats it as exact; it is a screen for collapse, not a calibrated test):
    ``class_balance_kl``, ``class_balance_tv``, ``class_balance_p_value``, ``class_balance_min_over_max``,
    ``missing_classes``."""
    real_shares = np.bincount(np.argmax(np.asarray(real_logits), 1), minlength=10) / len(real_logits)
    out = class_balance(np.argmax(np.asarray(fake_logits), 1), 10, reference=real_shares)
    return {
        "class_balance_kl": out["kl_to_reference"],
        "class_balance_tv": out["total_variation"],
        "class_balance_p_value": out["p_value"],
        "class_balance_min_over_max": out["min_over_max"],
        "missing_classes": out["missing_classes"],
    }


def ndb_measures(real_feat, fake_feat, key) -> dict:
    """The NDB entries of :func:`image_measures`: ``ndb_fraction``, ``ndb_js`` and ``ndb_bins`` (:func:`ndb_bins`
    of ``real_feat``), the k-means seeded from ``key`` folded with 1."""
    bins = ndb_bins(len(real_feat))
    out = ndb(real_feat, fake_feat, key=jax.random.fold_in(key, 1), n_bins=bins)
    return {"ndb_fraction": out["ndb_fraction"], "ndb_js": out["js_divergence"], "ndb_bins": bins}


def pixel_statistics(real_images, fake_images, key, value_range=(-1.0, 1.0)) -> dict:
    """The low-level image statistics entries of :func:`image_measures` (:func:`low_level_statistics` of the images
    mapped to [-1, 1], random filters and response positions from ``key`` folded with 2):
    ``log_power_spectrum_rms``, ``filter_response_w1``, ``mean_intensity_w1``, ``contrast_w1``."""
    out = low_level_statistics(
        prepare_images(real_images), prepare_images(fake_images, value_range), key=jax.random.fold_in(key, 2)
    )
    return {k: out[k] for k in ("log_power_spectrum_rms", "filter_response_w1", "mean_intensity_w1", "contrast_w1")}


def _has_class_pair(logits) -> bool:
    """Whether some predicted class holds two samples (m-IS and the within-class SSIM need a pair)."""
    return int(np.bincount(np.argmax(np.asarray(logits), axis=1)).max()) >= 2


def within_class_ssim(images, logits, value_range=(-1.0, 1.0), n_pairs: int = 100) -> float | None:
    """Mean SSIM of ``n_pairs`` random pairs within each predicted class (argmax of ``logits``), images mapped
    to [-1, 1] (data range 2); lower is more diverse. None when no class holds two images."""
    if not _has_class_pair(logits):
        return None
    x = prepare_images(images, value_range)
    return ssim_diversity(x, data_range=2.0, labels=np.argmax(np.asarray(logits), axis=1), n_pairs=n_pairs)["mean"]


def toy_measures(samples, distribution, *, seed: int = 0) -> dict:
    """Mode coverage (PacGAN) and exact W1 / W2 to the true mixture for 2-D ``samples`` (n, 2)."""
    from gendl_jax.transport import wasserstein

    samples = np.asarray(samples, np.float64)
    m = min(len(samples), TRANSPORT_MAX_POINTS)
    truth = distribution.sample(np.random.default_rng(seed), m).astype(np.float64)
    with jax.enable_x64(True):
        w1 = float(wasserstein(samples[:m], truth, p=1))
        w2 = float(wasserstein(samples[:m], truth, p=2))
    return {
        **mode_coverage(samples, distribution.modes, distribution.std),
        "w1_to_true_mixture": w1,
        "w2_to_true_mixture": w2,
        "transport_points": m,
    }


def mnist_test_subset(n: int, seed: int, size: int = 10000) -> np.ndarray:
    """Indices of the MNIST test images a run's n samples are compared with: all of them when
    n >= 10,000, else n drawn without replacement with ``default_rng(seed)`` (the first test images
    are not representative of the whole set)."""
    if n >= size:
        return np.arange(size)
    return np.random.default_rng(seed).choice(size, n, replace=False)


def _pixels(images, value_range=(-1.0, 1.0)) -> np.ndarray:
    """(n, 784) in [-1, 1], as the LeNet reads them: the inputs of the learned classification measures."""
    return prepare_images(images, value_range).reshape(len(images), -1)


def adversarial_measures(
    samples,
    labels,
    train,
    test,
    *,
    n_train: int = 10000,
    seed: int = 2,
    value_range: tuple[float, float] = (-1.0, 1.0),
    steps: int = 2000,
) -> dict:
    """Adversarial accuracy and divergence (:func:`adversarial_accuracy`) of a class-conditional model's samples.

    ``samples`` (n, 28, 28[, 1]) in ``value_range`` and the ``labels`` (n,) they were drawn for train one
    classifier (a one-hidden-layer MLP of 256 units on pixels, ``steps`` Adam steps); ``n_train`` random MNIST
    ``train`` images (the dataset; subset drawn with ``seed``) and their labels train the other; both are scored on
    every image of MNIST ``test``. Returns ``adversarial_accuracy_fake``, ``adversarial_accuracy_real`` and
    ``adversarial_divergence``.
    """
    idx = np.random.default_rng(seed).choice(len(train), min(n_train, len(train)), replace=False)
    out = adversarial_accuracy(
        _pixels(samples, value_range),
        labels,
        _pixels(train.images[idx]),
        train.labels[idx],
        _pixels(test.images),
        test.labels,
        jax.random.PRNGKey(seed + 1),
        num_classes=10,
        steps=steps,
    )
    return {
        "adversarial_accuracy_fake": out["accuracy_fake"],
        "adversarial_accuracy_real": out["accuracy_real"],
        "adversarial_divergence": out["adversarial_divergence"],
    }


def quality_index_measures(
    samples,
    train,
    test,
    *,
    n_train: int = 10000,
    seed: int = 3,
    value_range: tuple[float, float] = (-1.0, 1.0),
    steps: int = 2000,
    exclude=None,
) -> dict:
    """The GAN Quality Index (:func:`gan_quality_index`) of any model's MNIST ``samples`` (n, 28, 28[, 1]) in
    ``value_range``: an MLP (256 hidden units, on pixels, ``steps`` Adam steps) trained on ``n_train`` random MNIST
    ``train`` images labels the samples, a second one learns from those labels, both are scored on every image of
    MNIST ``test``. C_real's ``n_train`` images are ``pool[default_rng(seed).choice(len(pool), n_train, replace=False)]`` with
    ``pool`` the indices of ``train`` not in ``exclude`` (all of them when None; give the indices of ``samples``
    when they are themselves train digits, e.g. a real-data floor, so that C_real does not label its own training
    images); key ``PRNGKey(seed + 1)``. Returns ``gqi``, ``gqi_accuracy_gan``, ``gqi_accuracy_real`` and
    ``gqi_n_train``."""
    n_train = positive_int(n_train, "n_train")
    pool = np.arange(len(train))
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.ndim != 1 or not np.issubdtype(exclude.dtype, np.integer):
            raise ValueError(
                f"exclude must be a 1-D array of train indices, got shape {exclude.shape} and dtype {exclude.dtype}"
            )
        pool = np.setdiff1d(pool, exclude)
    if len(pool) < n_train:
        raise ValueError(f"n_train={n_train} exceeds the {len(pool)} train images left after exclude")
    idx = pool[np.random.default_rng(seed).choice(len(pool), n_train, replace=False)]
    out = gan_quality_index(
        _pixels(samples, value_range),
        _pixels(train.images[idx]),
        train.labels[idx],
        _pixels(test.images),
        test.labels,
        jax.random.PRNGKey(seed + 1),
        num_classes=10,
        steps=steps,
    )
    return {
        "gqi": out["gqi"],
        "gqi_accuracy_gan": out["accuracy_gan"],
        "gqi_accuracy_real": out["accuracy_real"],
        "gqi_n_train": int(n_train),
    }


def geometry_measures(
    samples,
    real_images,
    *,
    key: jax.Array,
    n_iterations: int = 100,
    n_landmarks: int = 64,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict:
    """The Geometry Score (:func:`geometry_score`, Khrulkov & Oseledets 2018; the authors' protocol) of MNIST
    ``samples`` (n, 28, 28[, 1]) in ``value_range`` against ``real_images`` (m, 28, 28[, 1]) uint8 or in [-1, 1], on
    pixels in [-1, 1] flattened to (n, 784) as the authors score MNIST: ``n_iterations`` landmark draws of
    ``n_landmarks`` points per set, keys ``jax.random.split(key)`` (real first). Returns ``geometry_score`` (0 is
    best), ``geometry_score_unbiased`` (its Monte Carlo bias removed: :func:`geometry_score_estimates`; None at one
    draw), ``geometry_score_iterations`` and ``geometry_score_landmarks``; with fewer than ``n_landmarks`` samples in
    either set, both scores are None and ``geometry_score_note`` says why."""
    n_iterations = positive_int(n_iterations, "n_iterations")
    out = {"geometry_score_iterations": n_iterations, "geometry_score_landmarks": n_landmarks}
    if min(len(samples), len(real_images)) < n_landmarks:
        return {
            "geometry_score": None,
            "geometry_score_unbiased": None,
            **out,
            "geometry_score_note": f"needs >= {n_landmarks} samples per set (the landmarks of each draw), got "
            f"{len(samples)} samples and {len(real_images)} real images",
        }
    est = geometry_score_estimates(
        _pixels(real_images).astype(np.float64),
        _pixels(samples, value_range).astype(np.float64),
        key=key,
        n_landmarks=n_landmarks,
        n_iterations=n_iterations,
    )
    return {"geometry_score": est["score"], "geometry_score_unbiased": est["score_unbiased"], **out}


FEATURES: tuple[str, ...] = ("lenet", "inception")
"""Feature networks of ``gendl eval --features``: the shipped MNIST LeNet, or the FID Inception-V3."""
REFERENCE_SPLITS: tuple[str, ...] = ("test", "train")


def inception_run_measures(
    samples,
    data_name: str,
    data_dir,
    *,
    n: int,
    seed: int,
    value_range,
    weights=None,
    preprocessing: str = "pytorch-fid",
    reference: str = "test",
    image_size: int | None = None,
    progress: bool = True,
) -> dict:
    """Inception FID, IS, KID and precision / recall / density / coverage of a run's image samples against ``n``
    images of the ``reference`` split of its data (a random subset when the split is larger; seed ``seed``).

    The samples are quantised to uint8 as saving them to PNG would (:func:`to_uint8`), then scored as
    :func:`gendl_jax.metrics.inception_fid.inception_measures` says.
    """
    if reference not in REFERENCE_SPLITS:
        raise ValueError(f"inception reference must be one of {REFERENCE_SPLITS}, got {reference!r}")
    extractor = load_inception(weights, preprocessing=preprocessing)
    images = gdata.load_dataset(data_name, split=reference, data_dir=data_dir, image_size=image_size).images
    if len(images) > n:
        images = images[np.random.default_rng(seed).choice(len(images), n, replace=False)]
    fake = to_uint8(samples, value_range)
    result = inception_measures(extractor, fake, images, progress=progress)
    result["inception_reference"] = f"{data_name}:{reference}"
    return result


def evaluate_run(
    run,
    *,
    n: int = 10000,
    seed: int = 0,
    out=None,
    classifier_steps: int = 2000,
    geometry_iterations: int = 100,
    features: str = "lenet",
    inception_weights=None,
    inception_preprocessing: str = "pytorch-fid",
    inception_reference: str = "test",
) -> dict:
    """Draws ``n`` samples from the latest checkpoint of ``run`` and writes ``eval.json`` (and a picture).

    ``classifier_steps``: Adam steps of each MLP of the learned MNIST measures (the GQI, and the adversarial
    accuracy of class-conditional runs); ``eval.json`` records it. ``geometry_iterations``: landmark draws of the
    Geometry Score of MNIST runs (key ``PRNGKey(seed + 4)``; 0 skips it). ``features="inception"`` adds the
    Inception FID, IS, KID and precision / recall of :func:`inception_run_measures` (weights from
    ``inception_weights`` or ``$GENDL_INCEPTION_WEIGHTS``) for any image data, against ``inception_reference``
    ("test", the held-out split, or "train"). Returns the dictionary written. Raises ValueError for image data
    other than MNIST without ``features="inception"`` (no feature network for it).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    classifier_steps = positive_int(classifier_steps, "classifier_steps")
    if isinstance(geometry_iterations, bool) or not isinstance(geometry_iterations, int) or geometry_iterations < 0:
        raise ValueError(
            f"geometry_iterations must be an int >= 0 (0 skips the Geometry Score), got {geometry_iterations!r}"
        )
    run = pathlib.Path(run)
    out = pathlib.Path(out) if out is not None else run / "eval.json"
    objective, state, record = load_run(run)
    if objective.sample is None:
        raise ValueError(
            f"{run} was trained as {record['objective']!r}, which has no prior to sample from; "
            "gendl eval scores generative models (GANs, WGANs, the VAE)"
        )
    data_name = record["train"]["data"]
    data_dir = record["train"].get("data_dir")
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(seed)
    samples = np.asarray(jax.jit(objective.sample, static_argnums=2)(state, key, n))
    labels = None
    if objective.conditional(state.config):  # a class-conditional GAN: the labels sample() drew
        labels = np.asarray(adversarial.sample_labels(state, key, n))
    result = {
        "run": str(run),
        "objective": record["objective"],
        "data": data_name,
        "step": int(state.step),
        "n": n,
        "seed": seed,
    }
    if data_name in gdata.TOY_DISTRIBUTIONS:
        dataset = gdata.load_dataset(data_name)
        result.update(toy_measures(samples, dataset.distribution, seed=seed))
        plots.scatter_with_modes(
            samples[:2500],
            dataset.distribution.modes,
            out.with_name("eval_samples.png"),
            title=f"{record['objective']} {data_name}: {n} samples",
        )
    elif data_name == "mnist":
        test = gdata.load_dataset("mnist", split="test", data_dir=data_dir)
        train = gdata.load_dataset("mnist", split="train", data_dir=data_dir)
        real = test.images[mnist_test_subset(n, seed)]
        result.update(
            image_measures(
                samples,
                real,
                key=jax.random.PRNGKey(seed + 1),
                train_images=train.images,
                picture_path=out.with_name("nearest_neighbours.png"),
                value_range=objective.value_range,
                sample_labels=labels,
            )
        )
        if labels is not None:
            result.update(
                adversarial_measures(
                    samples,
                    labels,
                    train,
                    test,
                    n_train=n,
                    seed=seed + 2,
                    value_range=objective.value_range,
                    steps=classifier_steps,
                )
            )
        result.update(
            quality_index_measures(
                samples,
                train,
                test,
                n_train=min(n, len(train)),
                seed=seed + 3,
                value_range=objective.value_range,
                steps=classifier_steps,
            )
        )
        result["classifier_steps"] = classifier_steps
        if geometry_iterations:
            result.update(
                geometry_measures(
                    samples,
                    real,
                    key=jax.random.PRNGKey(seed + 4),
                    n_iterations=geometry_iterations,
                    value_range=objective.value_range,
                )
            )
    elif samples.ndim == 2 and gdata.is_data_path(data_name):  # a point cloud file: W2 to its held-out split
        train_points = gdata.load_dataset(data_name, split="train").points
        held_out = gdata.load_dataset(data_name, split="test").points
        result.update(point_cloud_measures(samples, held_out, train_points, seed=seed))
        result["w2_reference"] = f"the held-out split of {data_name} ({len(held_out)} points, never trained on)"
    elif samples.ndim != 4:
        raise ValueError(
            f"no evaluation protocol for data {data_name!r}: its samples are points of shape {samples.shape[1:]}, "
            "and mode coverage needs a toy mixture (ring8, grid25)"
        )
    elif features != "inception":
        raise ValueError(
            f"no evaluation protocol for data {data_name!r} in LeNet features (an MNIST classifier, 28x28x1); "
            "score these images with --features inception"
        )
    if features == "inception":
        if samples.ndim != 4:
            raise ValueError(f"--features inception scores images; {data_name!r} samples have shape {samples.shape}")
        result.update(
            inception_run_measures(
                samples,
                data_name,
                data_dir,
                n=n,
                seed=seed + 5,
                value_range=objective.value_range,
                weights=inception_weights,
                preprocessing=inception_preprocessing,
                reference=inception_reference,
                image_size=record["train"].get("image_size"),
            )
        )
    result["eval_seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=2))
    return result
