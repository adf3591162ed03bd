"""Mode coverage of samples from a mixture with known modes (the PacGAN / VEEGAN protocol).

A sample is *high quality* if it lies within ``threshold`` standard deviations of its nearest
mode; a mode is *covered* if it is the nearest mode of at least one high-quality sample. The
reverse KL compares the histogram of nearest modes of the high-quality samples with the uniform
distribution over modes: ``KL(p_gen || uniform) = sum_k p_k log(K p_k)`` (0 log 0 = 0). With no
high-quality sample it is ``+inf``. Lin et al. 2018 (PacGAN) evaluate 2,500 samples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _points(x, name: str, d: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # e.g. ragged lists
        raise TypeError(f"{name} must be an array of shape (n, d), got {type(x).__name__}") from e
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if d is None:
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name} must have shape (n, d) with n >= 1 and d >= 1, got {arr.shape}")
    elif arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape (K, d={d}) with K >= 1 (the samples' dimension), got {arr.shape}")
    return arr


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a real scalar, got {type(value).__name__} of shape {np.shape(value)}")
    try:
        value = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real scalar, got {value!r}") from e
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def _check(samples, modes, std, threshold) -> tuple[np.ndarray, np.ndarray, float, float]:
    samples = _points(samples, "samples")
    modes = _points(modes, "modes", samples.shape[1])
    std, threshold = _positive(std, "std"), _positive(threshold, "threshold")
    bad_modes = np.flatnonzero(~np.isfinite(modes).all(axis=1))
    if bad_modes.size:
        raise ValueError(
            f"modes must be finite: rows {bad_modes[:10].tolist()}{' ...' if bad_modes.size > 10 else ''} "
            f"hold NaN or inf ({bad_modes.size} of {len(modes)})"
        )
    bad = int(np.count_nonzero(~np.isfinite(samples).all(axis=1)))
    if bad:
        raise ValueError(
            f"samples contain NaN or inf in {bad} of {len(samples)} rows: the model produced non-finite "
            "values (a model failure, reported rather than counted as low quality); no coverage computed"
        )
    return samples, modes, std, threshold


@jax.jit
def _nearest(samples: jax.Array, modes: jax.Array) -> tuple[jax.Array, jax.Array]:
    d2 = jnp.sum(jnp.square(samples[:, None, :] - modes[None, :, :]), axis=-1)
    nearest = jnp.argmin(d2, axis=1)
    return nearest, jnp.sqrt(jnp.take_along_axis(d2, nearest[:, None], axis=1)[:, 0])


def mode_histogram(samples, modes, std: float, threshold: float = 3.0) -> np.ndarray:
    """Counts of high-quality samples per nearest mode: (n, d), (K, d) -> (K,) int.

    Raises: the errors of :func:`mode_coverage`.
    """
    samples, modes, std, threshold = _check(samples, modes, std, threshold)
    nearest, dist = _nearest(jnp.asarray(samples, jnp.float32), jnp.asarray(modes, jnp.float32))
    nearest, dist = np.asarray(nearest), np.asarray(dist)
    hq = dist <= threshold * std
    return np.bincount(nearest[hq], minlength=len(modes))


def mode_coverage(samples, modes, std: float, threshold: float = 3.0) -> dict[str, float]:
    """PacGAN's three numbers for samples (n, d) of a mixture with modes (K, d) and isotropic ``std``.

    Args:
      samples: (n, d) generated points, n >= 1, all finite.
      modes: (K, d) mode centres, K >= 1, all finite.
      std: the mixture's isotropic standard deviation, finite and > 0.
      threshold: a sample within ``threshold * std`` of its nearest mode is high quality (finite, > 0).

    Returns:
      ``{"modes": covered modes, "n_modes": K, "high_quality": fraction of high-quality samples,
      "reverse_kl": KL(mode histogram of HQ samples || uniform)}``.

    Raises:
      ValueError: a wrong shape (empty, not 2-D, modes of another dimension), non-finite modes (the rows are
        named), ``std`` or ``threshold`` not finite and > 0, or samples with NaN or inf. Non-finite samples
        are a model failure: the error gives their count instead of a score that would count them as
        low quality and hide it.
      TypeError: non-numeric arrays, or a ``std`` / ``threshold`` that is not a real scalar.
    """
    counts = mode_histogram(samples, modes, std, threshold)
    n_hq = int(counts.sum())
    k = len(counts)
    if n_hq == 0:
        reverse_kl = float("inf")
    else:
        p = counts[counts > 0] / n_hq
        reverse_kl = float(np.sum(p * np.log(k * p)))
    return {
        "modes": int(np.count_nonzero(counts)),
        "n_modes": k,
        "high_quality": n_hq / len(np.asarray(samples)),
        "reverse_kl": reverse_kl,
    }
