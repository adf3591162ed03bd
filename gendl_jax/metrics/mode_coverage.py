"""Mode coverage of samples from a mixture with known modes (the PacGAN / VEEGAN protocol).

A sample is *high quality* if it lies within ``threshold`` standard deviations of its nearest
mode; a mode is *covered* if it is the nearest mode of at least one high-quality sample. The
reverse KL compares the histogram of nearest modes of the high-quality samples with the uniform
distribution over modes: ``KL(p_gen || uniform) = sum_k p_k log(K p_k)`` (0 log 0 = 0). With no
high-quality sample it is ``+inf``. Lin et al. 2018 (PacGAN) evaluate 2,500 samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check(samples, modes, std, threshold):
    samples = np.asarray(samples)
    modes = np.asarray(modes)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape (n, d) with n >= 1, got {samples.shape}")
    if modes.ndim != 2 or modes.shape[0] == 0 or modes.shape[1] != samples.shape[1]:
        raise ValueError(f"modes must have shape (K, d={samples.shape[1]}) with K >= 1, got {modes.shape}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples contain NaN or inf")


@jax.jit
def _nearest(samples: jax.Array, modes: jax.Array) -> tuple[jax.Array, jax.Array]:
    d2 = jnp.sum(jnp.square(samples[:, None, :] - modes[None, :, :]), axis=-1)
    nearest = jnp.argmin(d2, axis=1)
    return nearest, jnp.sqrt(jnp.take_along_axis(d2, nearest[:, None], axis=1)[:, 0])


def mode_histogram(samples, modes, std: float, threshold: float = 3.0) -> np.ndarray:
    """Counts of high-quality samples per nearest mode: (n, d), (K, d) -> (K,) int."""
    _check(samples, modes, std, threshold)
    nearest, dist = _nearest(jnp.asarray(samples, jnp.float32), jnp.asarray(modes, jnp.float32))
    nearest, dist = np.asarray(nearest), np.asarray(dist)
    hq = dist <= threshold * std
    return np.bincount(nearest[hq], minlength=len(modes))


def mode_coverage(samples, modes, std: float, threshold: float = 3.0) -> dict[str, float]:
    """PacGAN's three numbers for samples (n, d) of a mixture with modes (K, d) and isotropic ``std``.

    Returns ``{"modes": covered modes, "n_modes": K, "high_quality": fraction of high-quality
    samples, "reverse_kl": KL(mode histogram of HQ samples || uniform)}``.
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
