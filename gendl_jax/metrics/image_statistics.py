"""Low-level image statistics of generated against real images (Zeng et al. 2017, "Statistics of deep generated
images"; the "low-level image statistics" row of Borji 2018): the mean power spectrum, the distribution of
random filter responses, and the distributions of per-image mean intensity and contrast.

* :func:`radial_power_spectrum`: the mean power ``|FFT(x)|^2 / (H W)`` of a set of images, averaged over rings of
  integer frequency radius (white noise of variance s^2 has the flat spectrum s^2).
* :func:`random_filters`: zero-mean, unit-norm Gaussian filters (a response ignores the image's mean level).
* :func:`low_level_statistics`: the distances between a real and a generated set: the RMS of the log10 ratio of
  their power spectra over the radii, and exact 1-D W1 distances (by sorting) between the pooled responses of
  each random filter, between per-image means and between per-image contrasts (standard deviations).

Inputs are (N, H, W) or (N, H, W, C) images in one value range (channels are averaged); everything is computed
in float64 on the host and in jitted float64 kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax.metrics.common import positive_int, x64
from gendl_jax.transport.one_d import wasserstein_1d


def _images(x, name: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) finite real images -> (N, H, W) float64 (channel mean)."""
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim not in (3, 4) or arr.shape[0] < 2 or min(arr.shape[1:3]) < 2:
        raise ValueError(
            f"{name} must be at least 2 images of shape (N, H, W) or (N, H, W, C), H, W >= 2, got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr.mean(axis=3) if arr.ndim == 4 else arr


@x64
def radial_power_spectrum(images) -> np.ndarray:
    """Mean power spectrum of (N, H, W[, C]) images, averaged over rings: (R + 1,), R = min(H, W) // 2.

    Entry r is the mean over images and over the frequencies (k_y, k_x) (in cycles per image, the FFT's signed
    frequencies) with ``round(sqrt(k_y^2 + k_x^2)) == r`` of ``|FFT(x)[k]|^2 / (H W)``; entry 0 is the squared
    mean intensity. Frequencies beyond radius R (the corners) are left out.
    """
    x = _images(images, "images")
    h, w = x.shape[1:]
    power = np.asarray(_mean_power(jnp.asarray(x)))
    radius = np.rint(np.hypot(*np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij"))).astype(int)
    r_max = min(h, w) // 2
    return np.array([power[radius == r].mean() for r in range(r_max + 1)])


@jax.jit
def _mean_power(x):
    return jnp.mean(jnp.abs(jnp.fft.fft2(x)) ** 2, axis=0) / (x.shape[1] * x.shape[2])


def random_filters(key, n_filters: int = 32, size: int = 5) -> np.ndarray:
    """``n_filters`` random (size, size) filters, float64: Gaussian entries, then zero mean and unit Frobenius norm
    (drawn with ``key``)."""
    n_filters, size = positive_int(n_filters, "n_filters"), positive_int(size, "size", minimum=2)
    f = np.asarray(jax.random.normal(key, (n_filters, size, size), jnp.float32), np.float64)
    f = f - f.mean(axis=(1, 2), keepdims=True)
    return f / np.linalg.norm(f.reshape(n_filters, -1), axis=1)[:, None, None]


def filter_responses(images, filters) -> np.ndarray:
    """Responses of (N, H, W[, C]) images to (F, k, k) filters (valid cross-correlation, no flip):
    (F, N, H - k + 1, W - k + 1) float64. Holds N (H - k + 1) (W - k + 1) k^2 values at once: for small sets."""
    x = _images(images, "images")
    filters = _check_filters(filters, x)
    windows = np.lib.stride_tricks.sliding_window_view(x, filters.shape[1:], axis=(1, 2))
    return np.einsum("nyxij,fij->fnyx", windows, filters)


def _check_filters(filters, x) -> np.ndarray:
    filters = np.asarray(filters, np.float64)
    if filters.ndim != 3 or filters.shape[1] != filters.shape[2] or filters.shape[1] > min(x.shape[1:]):
        raise ValueError(f"filters must be (F, k, k) with k <= min(H, W) = {min(x.shape[1:])}, got {filters.shape}")
    return filters


def sampled_filter_responses(images, filters, key, max_responses: int) -> np.ndarray:
    """(F, M) responses of (N, H, W[, C]) images to (F, k, k) filters at M positions (image, row, column): every
    position if there are at most ``max_responses``, else ``M = max_responses`` positions drawn uniformly with
    replacement from ``key``, the same for all filters."""
    x = _images(images, "images")
    filters = _check_filters(filters, x)
    k = filters.shape[1]
    n, h, w = x.shape[0], x.shape[1] - k + 1, x.shape[2] - k + 1
    if n * h * w <= max_responses:
        return filter_responses(x, filters).reshape(len(filters), -1)
    flat = np.asarray(jax.random.randint(key, (max_responses,), 0, n * h * w))
    i, rest = np.divmod(flat, h * w)
    y, c = np.divmod(rest, w)
    d = np.arange(k)
    patches = x[i[:, None, None], y[:, None, None] + d[None, :, None], c[:, None, None] + d[None, None, :]]
    return filters.reshape(len(filters), -1) @ patches.reshape(max_responses, -1).T


@x64
def low_level_statistics(
    real, fake, *, key, n_filters: int = 32, filter_size: int = 5, max_responses: int = 200_000
) -> dict:
    """Distances between the low-level statistics of ``real`` and ``fake`` images (both (N, H, W[, C]), one value
    range, the same H and W; set sizes may differ).

    Args:
      key: PRNG key of the random filters and of the response subsample.
      n_filters, filter_size: the random filters (:func:`random_filters`).
      max_responses: per set, the responses pooled over images and positions are taken at this many positions
        at most (:func:`sampled_filter_responses`) before the W1.

    Returns a dict: ``log_power_spectrum_rms`` (RMS over the radii 1..R of log10 of the ratio of the two
    :func:`radial_power_spectrum`, the mean level at radius 0 left to ``mean_intensity_w1``),
    ``filter_response_w1`` (mean over filters of the 1-D W1 between the response distributions; W1 scales with the
    images' values), ``mean_intensity_w1`` and ``contrast_w1`` (1-D W1 between the per-image means and between the
    per-image standard deviations), and ``power_spectrum_real`` / ``power_spectrum_fake`` (lists).
    """
    real, fake = _images(real, "real"), _images(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake images must have the same size, got {real.shape[1:]} and {fake.shape[1:]}")
    max_responses = positive_int(max_responses, "max_responses")
    k_filters, k_real, k_fake = jax.random.split(key, 3)
    filters = random_filters(k_filters, n_filters, filter_size)
    spectra = [radial_power_spectrum(x) for x in (real, fake)]
    if min(s[1:].min() for s in spectra) <= 0:
        raise ValueError("a power spectrum has a zero ring (constant images?): its log ratio is undefined")
    log_ratio = np.log10(spectra[1][1:] / spectra[0][1:])

    r_real = sampled_filter_responses(real, filters, k_real, max_responses)
    r_fake = sampled_filter_responses(fake, filters, k_fake, max_responses)
    w1 = lambda u, v: float(wasserstein_1d(jnp.asarray(u), jnp.asarray(v), p=1))
    response_w1 = [w1(a, b) for a, b in zip(r_real, r_fake)]
    return {
        "log_power_spectrum_rms": float(np.sqrt(np.mean(log_ratio**2))),
        "filter_response_w1": float(np.mean(response_w1)),
        "mean_intensity_w1": w1(real.mean(axis=(1, 2)), fake.mean(axis=(1, 2))),
        "contrast_w1": w1(real.std(axis=(1, 2)), fake.std(axis=(1, 2))),
        "power_spectrum_real": spectra[0].tolist(),
        "power_spectrum_fake": spectra[1].tolist(),
    }
