"""Parzen-window (Gaussian kernel density) log-likelihood of test data under generated samples.

The protocol of Goodfellow et al. 2014 (after Breuleux et al. 2011): fit an isotropic Gaussian
KDE with bandwidth sigma to the generated samples, pick sigma by the mean log-likelihood of a
validation set (:func:`select_parzen_bandwidth`), then report the mean log-likelihood of the test
set (:func:`parzen_log_likelihood`). Theis et al. 2016 show how poor an estimate of the true
likelihood this is in high dimension; it is here because the lecture (Borji's table) lists it.

log p(x) = logsumexp_j(-|x - s_j|^2 / (2 sigma^2)) - log m - (d / 2) log(2 pi sigma^2).
Float64; the sum over samples runs in blocks with a running logsumexp.

The same KDE gives the next row of Borji's table, the coverage metric of Tolstikhin et al. 2017
(AdaGAN), ``C = P_data(p_model(x) > t)`` with t such that ``P_model(p_model(x) > t) = 0.95``:
:func:`mass_coverage`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import DEFAULT_BLOCK_SIZE, as_samples, positive_int, same_dim, x64
from gendl_jax.metrics.pairwise import row_blocks, sq_dists


@functools.partial(jax.jit, static_argnames=("block",))
def _log_densities(test, samples, sigma, block: int) -> jax.Array:
    n, d = test.shape
    t_blocks, _, _ = row_blocks(test, min(block, n))
    s_blocks, s_valid, _ = row_blocks(samples, min(block, samples.shape[0]))

    def row_block(t):
        def scan_cols(carry, col):
            run_max, run_sum = carry
            s, valid = col
            logits = jnp.where(valid[None, :], -sq_dists(t, s) / (2.0 * sigma**2), -jnp.inf)
            new_max = jnp.maximum(run_max, jnp.max(logits, axis=1))
            run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.sum(jnp.exp(logits - new_max[:, None]), axis=1)
            return (new_max, run_sum), None

        init = (jnp.full(t.shape[0], -jnp.inf, t.dtype), jnp.zeros(t.shape[0], t.dtype))
        (run_max, run_sum), _ = lax.scan(scan_cols, init, (s_blocks, s_valid))
        return run_max + jnp.log(run_sum)

    lse = lax.map(row_block, t_blocks).reshape(-1)[:n]
    return lse - jnp.log(samples.shape[0]) - 0.5 * d * jnp.log(2.0 * jnp.pi * sigma**2)


def _check_bandwidth(bandwidth) -> float:
    try:
        value = float(bandwidth)
    except (TypeError, ValueError) as e:
        raise TypeError(f"bandwidth must be a positive float, got {bandwidth!r}") from e
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"bandwidth must be a positive finite float, got {bandwidth!r}")
    return value


@x64
def parzen_log_densities(test, samples, bandwidth: float, *, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
    """log p(x) (n,) of each row of ``test`` (n, d) under the KDE of ``samples`` (m, d)."""
    test, samples = as_samples(test, "test"), as_samples(samples, "samples")
    same_dim(test, samples, "test", "samples")
    sigma = _check_bandwidth(bandwidth)
    block = positive_int(block_size, "block_size")
    return np.asarray(_log_densities(jnp.asarray(test), jnp.asarray(samples), jnp.asarray(sigma), block))


def parzen_log_likelihood(
    test, samples, bandwidth: float, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[float, float]:
    """Mean log-likelihood of ``test`` (n, d) under the Gaussian KDE of ``samples`` (m, d).

    Returns ``(mean, standard error of the mean)`` in nats; pick ``bandwidth`` with
    :func:`select_parzen_bandwidth` on a validation set disjoint from ``test``.
    """
    logp = parzen_log_densities(test, samples, bandwidth, block_size=block_size)
    sem = float(logp.std(ddof=1) / np.sqrt(len(logp))) if len(logp) > 1 else float("nan")
    return float(logp.mean()), sem


def select_parzen_bandwidth(validation, samples, candidates=None, *, block_size: int = DEFAULT_BLOCK_SIZE):
    """The bandwidth among ``candidates`` with the highest mean validation log-likelihood.

    Args:
      validation: (n, d), disjoint from the test set; samples: (m, d).
      candidates: positive floats; None: 20 values log-spaced over [0.05, 1] x the mean
        per-coordinate std of ``samples`` (at least 1e-3 x).
    Returns:
      ``(best_bandwidth, {bandwidth: mean validation log-likelihood})``.
    """
    samples_arr = as_samples(samples, "samples")
    if candidates is None:
        scale = max(float(samples_arr.std(axis=0).mean()), 1e-12)
        candidates = np.logspace(np.log10(0.05), 0.0, 20) * scale
    candidates = [_check_bandwidth(c) for c in np.atleast_1d(np.asarray(candidates, np.float64))]
    if not candidates:
        raise ValueError("candidates must hold at least one bandwidth")
    scores = {c: parzen_log_likelihood(validation, samples_arr, c, block_size=block_size)[0] for c in candidates}
    return max(scores, key=scores.get), scores


@x64
def mass_coverage(
    real, fake, *, bandwidth: float | None = None, mass: float = 0.95, block_size: int = DEFAULT_BLOCK_SIZE
) -> dict:
    """Coverage metric C (Tolstikhin et al. 2017): the share of real samples inside the region that holds
    ``mass`` of the model's probability, ``C = P_data(p_model(x) > t)`` with ``P_model(p_model(x) > t) = mass``.

    p_model is the Gaussian KDE of the first half of ``fake``; t is the ``1 - mass`` quantile of the KDE's
    log-density at the second half (held out, so that no sample sits on its own kernel). C is about
    ``mass`` when the sets match, lower when real data lies where the model puts little mass (dropped modes).

    Args:
      real: (n, d); fake: (m, d) with m >= 4 (two halves of at least 2).
      bandwidth: the KDE's sigma; None: :func:`select_parzen_bandwidth` of the first half on the second.
      mass: in (0, 1).

    Returns a dict: ``coverage``, ``threshold_log_density`` (t, nats), ``bandwidth``.
    """
    real, fake = as_samples(real, "real"), as_samples(fake, "fake", min_n=4)
    same_dim(real, fake, "real", "fake")
    if not isinstance(mass, (int, float)) or isinstance(mass, bool) or not 0 < mass < 1:
        raise ValueError(f"mass must be a number in (0, 1), got {mass!r}")
    fit, held = fake[: len(fake) // 2], fake[len(fake) // 2 :]
    if bandwidth is None:
        bandwidth, _ = select_parzen_bandwidth(held, fit, block_size=block_size)
    sigma = _check_bandwidth(bandwidth)
    threshold = float(np.quantile(parzen_log_densities(held, fit, sigma, block_size=block_size), 1 - mass))
    real_logp = parzen_log_densities(real, fit, sigma, block_size=block_size)
    return {"coverage": float(np.mean(real_logp > threshold)), "threshold_log_density": threshold, "bandwidth": sigma}
