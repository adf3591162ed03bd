"""Number of statistically Different Bins (NDB; Richardson & Weiss 2018, "On GANs and GMMs").

The row of Borji's table "given two sets of samples from the same distribution, the number of samples
that fall into a given bin should be the same up to sampling noise": the real samples are clustered
into K bins by k-means (:func:`kmeans`); every real and fake sample goes to the bin of its nearest
centre; for each bin a two-sided two-proportion z-test (pooled variance) asks whether the real and the
fake shares differ at level ``alpha``. NDB counts the bins where they do; ``NDB / K`` is about ``alpha``
for a model that matches the data and grows as modes are dropped or over-produced. The Jensen-Shannon
divergence between the two bin histograms is reported too.

Distances to the K centres are held as (N, K) float64 (K is small: 100 by default); k-means++
seeding, then Lloyd iterations until no assignment changes, all jitted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import xlogy
from scipy.stats import norm

from gendl_jax.metrics.common import as_samples, positive_int, same_dim, x64
from gendl_jax.metrics.pairwise import sq_dists


def _kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is a sample drawn with
    probability proportional to its squared distance to the nearest centre so far. (k, d)."""
    first_key, key = jax.random.split(key)
    first = x[jax.random.randint(first_key, (), 0, x.shape[0])]
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=1)

    def add(i, carry):
        centres, d2, key = carry
        key, sub = jax.random.split(key)
        new = x[jax.random.categorical(sub, jnp.log(d2))]  # a sample already chosen has weight 0
        return centres.at[i].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, axis=1)), key

    centres, _, _ = lax.fori_loop(1, k, add, (centres, d2, key))
    return centres


@functools.partial(jax.jit, static_argnames=("k", "max_iter"))
def _kmeans(key: jax.Array, x: jax.Array, k: int, max_iter: int):
    def assign(centres):
        return jnp.argmin(sq_dists(x, centres), axis=1)

    def update(centres, labels):
        sums = jax.ops.segment_sum(x, labels, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), labels, num_segments=k)
        return jnp.where(
            counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centres
        )  # an empty bin keeps its centre

    def cond(carry):
        _, _, changed, it = carry
        return changed & (it < max_iter)

    def body(carry):
        centres, labels, _, it = carry
        centres = update(centres, labels)
        new_labels = assign(centres)
        return centres, new_labels, jnp.any(new_labels != labels), it + 1

    centres = _kmeans_plus_plus(key, x, k)
    centres, labels, changed, iterations = lax.while_loop(cond, body, (centres, assign(centres), True, 0))
    inertia = jnp.sum(jnp.min(sq_dists(x, centres), axis=1))
    return centres, labels, iterations, ~changed, inertia


def _check_bins(x: np.ndarray, n_bins) -> int:
    n_bins = positive_int(n_bins, "n_bins", minimum=2)
    distinct = len(np.unique(x, axis=0))
    if distinct < n_bins:
        raise ValueError(
            f"n_bins={n_bins} needs at least as many distinct samples, got {distinct} distinct rows (of {len(x)})"
        )
    return n_bins


@x64
def kmeans(x, n_clusters: int, *, key: jax.Array, max_iter: int = 300) -> dict:
    """k-means of ``x`` (n, d): k-means++ seeding, then Lloyd iterations until no assignment changes.

    Returns a dict: ``centres`` (k, d) float64, ``labels`` (n,) the index of each row's nearest centre,
    ``inertia`` (sum of squared distances to it), ``iterations`` and ``converged`` (False when
    ``max_iter`` Lloyd iterations did not reach a fixed point).
    """
    x = as_samples(x, "x")
    k = _check_bins(x, n_clusters)
    max_iter = positive_int(max_iter, "max_iter")
    centres, labels, iterations, converged, inertia = _kmeans(key, jnp.asarray(x), k, max_iter)
    return {
        "centres": np.asarray(centres),
        "labels": np.asarray(labels),
        "inertia": float(inertia),
        "iterations": int(iterations),
        "converged": bool(converged),
    }


@jax.jit
def _nearest_centre(x: jax.Array, centres: jax.Array) -> jax.Array:
    return jnp.argmin(sq_dists(x, centres), axis=1)


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    kl = lambda a: float(np.sum(xlogy(a, a) - xlogy(a, m)))
    return (kl(p) + kl(q)) / 2


@x64
def ndb(real, fake, *, key: jax.Array, n_bins: int = 100, alpha: float = 0.05, max_iter: int = 300) -> dict:
    """NDB (Richardson & Weiss 2018) of ``fake`` (m, d) against ``real`` (n, d).

    Args:
      real, fake: samples (e.g. classifier features); the bins are k-means clusters of ``real``.
      key: PRNG key of the k-means++ seeding.
      n_bins: K, at most the number of distinct real rows.
      alpha: level of each bin's two-sided z-test, in (0, 1).
      max_iter: Lloyd iterations at most (``kmeans_converged`` says whether they sufficed).

    Returns a dict: ``ndb`` (number of bins whose real and fake shares differ), ``ndb_fraction`` (NDB / K),
    ``js_divergence`` (nats, between the two bin histograms), ``p_values``, ``different`` (per bin),
    ``real_proportions``, ``fake_proportions`` (K each), ``kmeans_iterations`` and ``kmeans_converged``.
    """
    real, fake = as_samples(real, "real"), as_samples(fake, "fake")
    same_dim(real, fake, "real", "fake")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    clusters = kmeans(real, n_bins, key=key, max_iter=max_iter)
    k = len(clusters["centres"])
    fake_labels = np.asarray(_nearest_centre(jnp.asarray(fake), jnp.asarray(clusters["centres"])))
    n, m = len(real), len(fake)
    p = np.bincount(clusters["labels"], minlength=k) / n
    q = np.bincount(fake_labels, minlength=k) / m
    pooled = (p * n + q * m) / (n + m)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p - q) / se, 0.0)  # se = 0: the bin is empty in both sets (or holds everything)
    p_values = 2 * norm.sf(np.abs(z))
    different = p_values < alpha
    return {
        "ndb": int(different.sum()),
        "ndb_fraction": float(different.mean()),
        "js_divergence": _js_divergence(p, q),
        "p_values": p_values.tolist(),
        "different": different.tolist(),
        "real_proportions": p.tolist(),
        "fake_proportions": q.tolist(),
        "kmeans_iterations": clusters["iterations"],
        "kmeans_converged": clusters["converged"],
    }
