"""Image-quality measures of Borji's table (SSIM, PSNR) and the SSIM diversity of a sample set.

* :func:`ssim` (Wang et al. 2004): per pair of images, the mean over the "valid" region of
  ``((2 mu_a mu_b + C1)(2 s_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``, local statistics
  under an 11 x 11 Gaussian window (sigma 1.5), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with L the data range;
  channels are averaged. This is the paper's reference setting (skimage's
  ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``).
* :func:`psnr`: ``10 log10(L^2 / MSE)`` per pair.
* :func:`ssim_diversity`: the mean SSIM of random pairs of distinct samples, within a class when labels are
  given (Odena et al. 2017 use MS-SSIM per class; 28 x 28 images are too small for its five scales, so
  this is single-scale SSIM). High values mean similar samples: a collapsing generator's rises above the
  real data's.

Float64, jitted, depthwise convolutions (no Python loop over images).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import positive_int, x64


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """(size, size) normalised Gaussian window, float64."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(offsets**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


@jax.jit
def _ssim_per_pair(a: jax.Array, b: jax.Array, window: jax.Array, c1: jax.Array, c2: jax.Array) -> jax.Array:
    """(n, H, W, C) x 2 -> (n,) mean SSIM over the valid region and the channels."""
    channels = a.shape[-1]
    kernel = jnp.broadcast_to(window[:, :, None, None], window.shape + (1, channels))  # HWIO, depthwise

    def local_mean(x):
        return lax.conv_general_dilated(
            x,
            kernel,
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
            precision=lax.Precision.HIGHEST,
        )

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def _as_images(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, H, W) or (n, H, W, C) with n >= 1, got {np.shape(x)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_range(data_range) -> float:
    if (
        isinstance(data_range, bool)
        or not isinstance(data_range, (int, float))
        or not (np.isfinite(data_range) and data_range > 0)
    ):
        raise ValueError(
            f"data_range must be a positive finite number (e.g. 2.0 for images in [-1, 1], 255 for "
            f"uint8), got {data_range!r}"
        )
    return float(data_range)


def _pair(images_a, images_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_images(images_a, "images_a"), _as_images(images_b, "images_b")
    if a.shape != b.shape:
        raise ValueError(f"images_a and images_b must have the same shape, got {a.shape} and {b.shape}")
    return a, b


@x64
def ssim(
    images_a,
    images_b,
    *,
    data_range: float,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """SSIM of each pair ``(images_a[i], images_b[i])``: (n,) float64 in [-1, 1], 1 for identical images.

    Args:
      images_a, images_b: (n, H, W) or (n, H, W, C), same shape, H and W >= ``window_size``.
      data_range: L, the span of possible pixel values (2.0 for [-1, 1], 1.0 for [0, 1], 255 for uint8).
      window_size, sigma: the Gaussian window; k1, k2: the stabilising constants' factors.
    """
    a, b = _pair(images_a, images_b)
    L = _check_range(data_range)
    window_size = positive_int(window_size, "window_size")
    if min(a.shape[1:3]) < window_size:
        raise ValueError(f"images of {a.shape[1]} x {a.shape[2]} pixels are smaller than window_size={window_size}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    window = jnp.asarray(gaussian_window(window_size, float(sigma)))
    c1, c2 = jnp.asarray((k1 * L) ** 2), jnp.asarray((k2 * L) ** 2)
    return np.asarray(_ssim_per_pair(jnp.asarray(a), jnp.asarray(b), window, c1, c2))


def psnr(images_a, images_b, *, data_range: float) -> np.ndarray:
    """PSNR in dB of each pair: ``10 log10(L^2 / MSE)``, (n,) float64; inf for identical images."""
    a, b = _pair(images_a, images_b)
    L = _check_range(data_range)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(L**2 / mse)


def _random_pairs(rng: np.random.Generator, members: np.ndarray, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` pairs of distinct entries of ``members``, drawn with replacement across pairs."""
    i = rng.integers(0, len(members), n_pairs)
    j = (i + rng.integers(1, len(members), n_pairs)) % len(members)  # never i
    return members[i], members[j]


def ssim_diversity(
    images, *, data_range: float, seed: int = 0, labels=None, n_pairs: int = 1000, **ssim_options
) -> dict:
    """Mean SSIM between random pairs of distinct images of a set (lower: more diverse).

    Args:
      images: (n, H, W[, C]), n >= 2.
      data_range: as in :func:`ssim`.
      seed: of the pairs (numpy ``default_rng``).
      labels: (n,) ints; if given, the pairs are drawn within each label that has two or more images
        (``n_pairs`` per label), e.g. the classifier's predicted classes.
      n_pairs: pairs (per label when labels are given).
      ssim_options: ``window_size``, ``sigma``, ``k1``, ``k2`` of :func:`ssim`.

    Returns a dict: ``mean`` (over all pairs drawn), ``standard_error`` and, with labels, ``per_label``
    ({label: mean SSIM}) of the labels used.
    """
    x = _as_images(images, "images")
    n_pairs = positive_int(n_pairs, "n_pairs")
    rng = np.random.default_rng(seed)
    if labels is None:
        if len(x) < 2:
            raise ValueError(f"ssim_diversity needs at least 2 images, got {len(x)}")
        groups = {None: np.arange(len(x))}
    else:
        lab = np.asarray(labels)
        if lab.shape != (len(x),) or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"labels must be (n,) = ({len(x)},) integers, got shape {lab.shape} dtype {lab.dtype}")
        groups = {int(k): np.flatnonzero(lab == k) for k in np.unique(lab) if np.sum(lab == k) >= 2}
        if not groups:
            raise ValueError("ssim_diversity needs a label with at least 2 images")
    values = {}
    for key, members in groups.items():
        i, j = _random_pairs(rng, members, n_pairs)
        values[key] = ssim(x[i], x[j], data_range=data_range, **ssim_options)
    every = np.concatenate(list(values.values()))
    out = {"mean": float(every.mean()), "standard_error": float(every.std(ddof=1) / np.sqrt(len(every)))}
    if labels is not None:
        out["per_label"] = {k: float(v.mean()) for k, v in values.items()}
    return out
