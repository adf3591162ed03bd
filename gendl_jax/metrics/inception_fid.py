"""FID, IS, KID and precision / recall in Inception features, from folders, arrays and statistics files.

What ``gendl fid`` and ``gendl eval --features inception`` run. A *source* is one of:

* a folder of images (searched recursively; :data:`gendl_jax.data.files.IMAGE_EXTENSIONS`), streamed in batches
  so that folders larger than memory work; images of different sizes are allowed;
* an ``.npy`` / ``.npz`` array of uint8 images (N, H, W, C) or (N, H, W) (:func:`gendl_jax.data.files.load_array_file`);
* a statistics ``.npz`` holding ``mu`` (d,) and ``sigma`` (d, d), as pytorch-fid's ``--save-stats`` writes.

FID is then pytorch-fid's: features of the chosen block (``dims`` 2048 = pool3), their mean and covariance
(N - 1), and the Frechet distance (:func:`gendl_jax.metrics.fid.frechet_distance`, float64).
IS and KID follow torch-fidelity: IS of the 1008 logits without the fc bias, rows shuffled with seed 2020, 10
splits; KID with the cubic polynomial kernel on 100 subsets of 1,000 drawn with seed 2020.

Example (with the weights file at hand):

.. code-block:: python

    fid = fid_from_paths("real_images/", "samples.npy", weights="pt_inception-2015-12-05-6726825d.pth")
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from gendl_jax.data.datasets import ArrayDataset
from gendl_jax.data.files import is_array_file, list_image_files, load_array_file, read_image
from gendl_jax.metrics.fid import feature_statistics, frechet_distance
from gendl_jax.metrics.inception import inception_score
from gendl_jax.metrics.inception_features import (
    DEFAULT_BATCH_SIZE,
    InceptionExtractor,
    check_uint8_images,
    feature_name,
    load_inception,
    load_statistics,
    save_statistics,
)
from gendl_jax.metrics.kernel import kid
from gendl_jax.metrics.pairwise import prdc

TORCH_FIDELITY_SEED = 2020
"""torch-fidelity's default ``rng_seed``: the IS shuffle and the KID subsets."""


def is_statistics_file(path) -> bool:
    """Whether ``path`` is an ``.npz`` holding ``mu`` or ``sigma`` (a statistics file, not images)."""
    p = pathlib.Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p, allow_pickle=False) as f:
            return "mu" in f.files or "sigma" in f.files
    except (ValueError, OSError, zipfile.BadZipFile):
        return False


def _folder_batches(files: list[pathlib.Path], batch_size: int):
    """uint8 batches of the images in ``files``, in order; a batch holds images of one size (a change of size
    starts a new batch)."""
    batch: list[np.ndarray] = []
    for path in files:
        image = read_image(path)
        if batch and image.shape != batch[0].shape:
            yield np.stack(batch)
            batch = []
        batch.append(image)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def source_images(source) -> tuple[object, int]:
    """``(batches or array, count)`` of the images of a folder or an array file (not a statistics file).

    Raises:
      FileNotFoundError: no such file or folder.
      ValueError: an empty folder, an unreadable image, an array that is not uint8 images.
    """
    p = pathlib.Path(source)
    if p.is_dir():
        files = list_image_files(p)
        return files, len(files)
    if not p.exists():
        raise FileNotFoundError(
            f"{p} does not exist (expected a folder of images, an .npy/.npz file of images, or "
            "a statistics .npz with mu and sigma)"
        )
    if not is_array_file(p):
        raise ValueError(f"{p}: expected a folder of images, an .npy/.npz file of uint8 images, or a statistics .npz")
    data = load_array_file(p)
    if not isinstance(data, ArrayDataset):
        raise ValueError(f"{p} holds a float point cloud; FID needs uint8 images (N, H, W, C)")
    return check_uint8_images(data.images, str(p)), len(data.images)


def source_features(
    source,
    extractor: InceptionExtractor,
    outputs=("2048",),
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Inception features of the images of a folder or an array file (see :func:`source_images`)."""
    images, n = source_images(source)
    if isinstance(images, np.ndarray):
        return extractor.features(images, outputs, batch_size=batch_size, progress=progress)
    batches = _folder_batches(images, batch_size)
    return extractor.features_of_batches(batches, outputs, batch_size=batch_size, total=n, progress=progress)


def source_statistics(
    source,
    extractor: InceptionExtractor | None,
    *,
    dims: int = 2048,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` of a source: read from a statistics file, else computed from its images' features.

    Raises:
      ValueError: a statistics file whose dimension is not ``dims``, or one without ``mu`` / ``sigma``.
    """
    name = feature_name(dims)
    if is_statistics_file(source):
        mu, sigma = load_statistics(source)
        if mu.size != dims:
            raise ValueError(f"{source} holds statistics of dimension {mu.size}, but dims is {dims}")
        return mu, sigma
    if extractor is None:
        raise ValueError(f"{source} is not a statistics file, so its features need the Inception weights")
    feats = source_features(source, extractor, (name,), batch_size=batch_size, progress=progress)[name]
    return feature_statistics(feats, str(source))


def fid_from_paths(
    a,
    b,
    *,
    weights=None,
    dims: int = 2048,
    batch_size: int = DEFAULT_BATCH_SIZE,
    preprocessing: str = "pytorch-fid",
    progress: bool = False,
) -> float:
    """FID between two sources (folders, image arrays or statistics files), as pytorch-fid computes it.

    Args:
      a, b: the two sources (module docstring).
      weights: the Inception weights file (or ``$GENDL_INCEPTION_WEIGHTS``); not needed when both are statistics.
      dims: 64, 192, 768 or 2048 (pool3, the standard).
      batch_size: images per network call.
      preprocessing: "pytorch-fid" or "torch-fidelity" (:mod:`gendl_jax.metrics.inception_features`).
      progress: a progress bar on stderr.
    """
    feature_name(dims)
    extractor = None
    if not (is_statistics_file(a) and is_statistics_file(b)):
        extractor = load_inception(weights, preprocessing=preprocessing)
    mu1, s1 = source_statistics(a, extractor, dims=dims, batch_size=batch_size, progress=progress)
    mu2, s2 = source_statistics(b, extractor, dims=dims, batch_size=batch_size, progress=progress)
    return frechet_distance(mu1, s1, mu2, s2)


def save_source_statistics(
    source,
    out,
    *,
    weights=None,
    dims: int = 2048,
    batch_size: int = DEFAULT_BATCH_SIZE,
    preprocessing: str = "pytorch-fid",
    progress: bool = False,
) -> pathlib.Path:
    """Writes the ``mu`` / ``sigma`` of ``source``'s images to ``out`` (.npz) as pytorch-fid's ``--save-stats``."""
    out = pathlib.Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"the statistics file must end in .npz, got {out.name!r}")
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another name (it is never overwritten)")
    if is_statistics_file(source):
        raise ValueError(f"{source} is already a statistics file")
    extractor = load_inception(weights, preprocessing=preprocessing)
    mu, sigma = source_statistics(source, extractor, dims=dims, batch_size=batch_size, progress=progress)
    return save_statistics(out, mu, sigma)


def inception_measures(
    extractor: InceptionExtractor,
    fake_images,
    real,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    kid_subset_size: int = 1000,
    prdc_k: int = 5,
    progress: bool = False,
) -> dict:
    """FID, IS, KID and precision / recall / density / coverage of ``fake_images`` in Inception features.

    Args:
      extractor: the FID Inception (:func:`~gendl_jax.metrics.inception_features.load_inception`).
      fake_images: uint8 (N, H, W, C) samples.
      real: uint8 real images (N', H, W, C), or a folder / array file of them.
      kid_subset_size: KID's subset size (1,000 as torch-fidelity; lowered to the smaller sample count when
        there are fewer, and reported).
      prdc_k: the k of density / coverage (Naeem et al. 2020); precision / recall use k = 3 (Kynkaanniemi et al.).
    Returns:
      ``inception_fid`` (pool3), ``inception_is`` / ``inception_is_std`` (torch-fidelity: unbiased logits, seed
      2020, 10 splits), ``inception_kid`` / ``inception_kid_std`` (seed 2020, 100 subsets),
      ``inception_precision``, ``inception_recall``, ``inception_density``, ``inception_coverage``, the sample
      counts and ``inception_preprocessing``.
    """
    outputs = ("2048", "logits_unbiased")
    fake = extractor.features(fake_images, outputs, batch_size=batch_size, progress=progress)
    if isinstance(real, np.ndarray):
        real_feats = extractor.features(real, ("2048",), batch_size=batch_size, progress=progress)["2048"]
    else:
        real_feats = source_features(real, extractor, ("2048",), batch_size=batch_size, progress=progress)["2048"]
    mu1, s1 = feature_statistics(real_feats, "real Inception features")
    mu2, s2 = feature_statistics(fake["2048"], "fake Inception features")
    is_mean, is_std = inception_score(fake["logits_unbiased"], 10, from_logits=True, shuffle_seed=TORCH_FIDELITY_SEED)
    subset = min(kid_subset_size, len(real_feats), len(fake["2048"]))
    kid_mean, kid_std = kid(real_feats, fake["2048"], seed=TORCH_FIDELITY_SEED, subset_size=subset)
    pr = prdc(real_feats, fake["2048"], k_precision_recall=3, k_density_coverage=prdc_k)
    return {
        "inception_fid": frechet_distance(mu1, s1, mu2, s2),
        "inception_is": is_mean,
        "inception_is_std": is_std,
        "inception_kid": kid_mean,
        "inception_kid_std": kid_std,
        "inception_kid_subset_size": subset,
        "inception_precision": pr["precision"],
        "inception_recall": pr["recall"],
        "inception_density": pr["density"],
        "inception_coverage": pr["coverage"],
        "inception_n_real": len(real_feats),
        "inception_n_fake": len(fake["2048"]),
        "inception_preprocessing": extractor.preprocessing,
        "inception_published_weights": extractor.published_weights,
    }


__all__ = [
    "TORCH_FIDELITY_SEED",
    "fid_from_paths",
    "inception_measures",
    "is_statistics_file",
    "save_source_statistics",
    "source_features",
    "source_images",
    "source_statistics",
]
