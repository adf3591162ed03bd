"""Nearest-neighbour measures, computed in blocks so no N x M distance matrix is ever held.

* :func:`precision_recall` (Kynkaanniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models"): a sample is inside a set's manifold if it lies in the closed ball
  around some point of that set whose radius is the point's distance to its k-th nearest
  neighbour (itself excluded) in the same set. Precision: fraction of fake samples inside the
  real manifold; recall: fraction of real samples inside the fake manifold.
* :func:`density_coverage` (Naeem et al. 2020, "Reliable fidelity and diversity metrics for
  generative models"): density = (1 / kM) sum_j sum_i 1[f_j in B(r_i, NND_k(r_i))];
  coverage = (1 / N) sum_i 1[exists j: f_j in B(r_i, NND_k(r_i))].
* :func:`nn_two_sample`: leave-one-out 1-nearest-neighbour classifier accuracy on the union of the
  two sets (Lopez-Paz & Oquab 2017; Xu et al. 2018); 0.5 is ideal, 1.0 means fully separable,
  below 0.5 means fake samples copy real ones.
* :func:`nearest_neighbours`: the k nearest training samples of each generated sample
  (memorisation check) and :func:`nearest_neighbour_picture`.
* :func:`birthday_duplicates` (Arora & Zhang 2017, the birthday paradox test): the probability that a
  random batch of s samples holds a near-duplicate pair (distance <= threshold). A distribution
  with support N gives a duplicate with probability about 1/2 at s ~ sqrt(N), so the smallest such
  s bounds the support size by about s^2 (:func:`birthday_support_size`).

All distances are Euclidean, computed in float64 as ``|a|^2 + |b|^2 - 2 a.b`` (floored at 0) over
blocks of ``block_size`` rows and columns (memory O(block_size^2 + n k)). Balls are closed
(``<=``); the prdc package uses ``<``, which differs only on exact ties.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import (
    DEFAULT_BLOCK_SIZE,
    as_samples,
    check_k,
    flatten_samples,
    positive_int,
    same_dim,
    x64,
)


def row_blocks(x: jax.Array, block: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(n, d) -> padded blocks (nb, block, d), validity (nb, block), global row index (nb, block)."""
    n = x.shape[0]
    nb = -(-n // block)
    xp = jnp.pad(x, ((0, nb * block - n), (0, 0)))
    index = jnp.arange(nb * block).reshape(nb, block)
    return xp.reshape(nb, block, x.shape[1]), index < n, index


def sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    d2 = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(d2, 0.0)


_ARGMIN_PASSES_MAX_K = 16


def _k_smallest(d: jax.Array, index: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The k smallest entries of each row of d (B, M), ascending, and their ``index`` entries.

    Ties go to the lower column (as ``lax.top_k``). For small k, k passes of ``argmin`` (each
    masking its pick): on XLA:CPU much faster than ``top_k``, which sorts.
    """
    if k > _ARGMIN_PASSES_MAX_K:
        neg, pos = lax.top_k(-d, k)
        return -neg, jnp.take_along_axis(index, pos, axis=1)
    rows = jnp.arange(d.shape[0])
    values, picks = [], []
    for _ in range(k):
        j = jnp.argmin(d, axis=1)
        values.append(d[rows, j])
        picks.append(index[rows, j])
        d = d.at[rows, j].set(jnp.inf)
    return jnp.stack(values, axis=1), jnp.stack(picks, axis=1)


def _k_smallest_values(d: jax.Array, k: int) -> jax.Array:
    """The k smallest entries of each row of d (B, M), ascending, repeated entries counted with their
    multiplicity (the first k of the sorted row).

    For small k, pass i takes the smallest entry above pass i-1's and counts its copies: two plain
    reductions a pass, about twice as fast on XLA:CPU as an ``argmin`` pass with its scatter.
    """
    if k > _ARGMIN_PASSES_MAX_K:
        return -lax.top_k(-d, k)[0]
    previous = jnp.full(d.shape[:1], -jnp.inf, d.dtype)
    distinct, copies = [], []
    for _ in range(k):
        m = jnp.min(jnp.where(d > previous[:, None], d, jnp.inf), axis=1)
        distinct.append(m)
        copies.append(jnp.sum(d == m[:, None], axis=1, dtype=jnp.int32))
        previous = m
    distinct, filled = jnp.stack(distinct, axis=1), jnp.cumsum(jnp.stack(copies, axis=1), axis=1)
    # sorted position j holds the first distinct value whose running count exceeds j
    which = jnp.stack([jnp.sum(filled <= j, axis=1) for j in range(k)], axis=1)
    return jnp.take_along_axis(distinct, jnp.minimum(which, k - 1), axis=1)


@functools.partial(jax.jit, static_argnames=("k", "exclude_self", "block", "with_indices"))
def _knn_sq(query: jax.Array, ref: jax.Array, k: int, exclude_self: bool, block: int, with_indices: bool = True):
    """Squared distances (n, k), ascending, and indices (n, k) (None unless ``with_indices``) of each query's
    k nearest ``ref`` rows."""
    n = query.shape[0]
    q_blocks, _, q_index = row_blocks(query, min(block, n))
    r_blocks, r_valid, r_index = row_blocks(ref, min(block, ref.shape[0]))

    def row_block(args):
        q, rows = args

        def scan_cols(carry, col):
            best_d, best_i = carry
            r, valid, cols = col
            d2 = sq_dists(q, r)
            drop = ~valid[None, :]
            if exclude_self:
                drop = drop | (rows[:, None] == cols[None, :])
            d2 = jnp.where(drop, jnp.inf, d2)
            cand_d = jnp.concatenate([best_d, d2], axis=1)
            if not with_indices:
                return (_k_smallest_values(cand_d, k), best_i), None
            cand_i = jnp.concatenate([best_i, jnp.broadcast_to(cols, d2.shape)], axis=1)
            return _k_smallest(cand_d, cand_i, k), None

        init = (jnp.full((q.shape[0], k), jnp.inf, q.dtype), jnp.zeros((q.shape[0], k), r_index.dtype))
        (d, i), _ = lax.scan(scan_cols, init, (r_blocks, r_valid, r_index))
        return d, i

    d, i = lax.map(row_block, (q_blocks, q_index))
    return d.reshape(-1, k)[:n], (i.reshape(-1, k)[:n] if with_indices else None)


def _kth_sq(x: jax.Array, k: int, block: int) -> jax.Array:
    """(n, k) squared distances of each row of x to its k nearest other rows, ascending."""
    return _knn_sq(x, x, k, True, block, with_indices=False)[0]


@functools.partial(jax.jit, static_argnames=("block", "with_fake_radii"))
def _cross_pass(
    fake: jax.Array,
    real: jax.Array,
    real_radii_sq: jax.Array,
    fake_radii_sq: jax.Array,
    block: int,
    with_fake_radii: bool,
):
    """One pass over the fake x real distances. Returns (m, R) int: for each fake row and each column of
    ``real_radii_sq`` (n, R), how many real points' closed balls of those squared radii contain it; (n,) int:
    for each real row, how many fake balls of squared radii ``fake_radii_sq`` (m,) contain it (zeros unless
    ``with_fake_radii``); (n,) its squared distance to the nearest fake row."""
    m, n, n_radii = fake.shape[0], real.shape[0], real_radii_sq.shape[1]
    f_blocks, f_valid, _ = row_blocks(fake, min(block, m))
    r_blocks, r_valid, _ = row_blocks(real, min(block, n))
    pad_r = r_blocks.shape[0] * r_blocks.shape[1] - n
    real_radii = jnp.pad(real_radii_sq, ((0, pad_r), (0, 0))).reshape(r_valid.shape + (n_radii,))
    pad_f = f_blocks.shape[0] * f_blocks.shape[1] - m
    fake_radii = jnp.pad(fake_radii_sq, (0, pad_f)).reshape(f_valid.shape)

    def fake_block(args):
        f, f_ok, f_r2 = args

        def scan_reals(counts, col):
            r, r_ok, r_r2 = col
            d2 = sq_dists(f, r)  # (Bf, Br)
            inside = (d2[:, :, None] <= r_r2[None, :, :]) & r_ok[None, :, None]
            counts = counts + jnp.sum(inside, axis=1, dtype=jnp.int32)
            if with_fake_radii:
                in_fake = jnp.sum((d2 <= f_r2[:, None]) & f_ok[:, None], axis=0, dtype=jnp.int32)
            else:
                in_fake = jnp.zeros(r.shape[0], jnp.int32)
            nearest = jnp.min(jnp.where(f_ok[:, None], d2, jnp.inf), axis=0)
            return counts, (in_fake, nearest)

        counts, (in_fake, nearest) = lax.scan(
            scan_reals, jnp.zeros((f.shape[0], n_radii), jnp.int32), (r_blocks, r_valid, real_radii)
        )
        return counts, in_fake.reshape(-1), nearest.reshape(-1)

    counts, in_fake, nearest = lax.map(fake_block, (f_blocks, f_valid, fake_radii))
    return (counts.reshape(-1, n_radii)[:m], jnp.sum(in_fake, axis=0)[:n], jnp.min(nearest, axis=0)[:n])


def _block(block_size) -> int:
    return positive_int(block_size, "block_size")


@x64
def kth_neighbour_distances(x, k: int, *, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
    """Distance of each row of ``x`` (n, d) to its k-th nearest other row: (n,) float64."""
    x = as_samples(x, "x")
    k = check_k(k, len(x), "x", exclude_self=True)
    return np.sqrt(np.asarray(_kth_sq(jnp.asarray(x), k, _block(block_size))[:, -1]))


def _checked_pair(real, fake, ks: dict, fake_ks: dict):
    real, fake = as_samples(real, "real"), as_samples(fake, "fake")
    same_dim(real, fake, "real", "fake")
    ks = {name: check_k(k, len(real), "real", exclude_self=True, arg=name) for name, k in ks.items()}
    for name, k in fake_ks.items():
        check_k(k, len(fake), "fake", exclude_self=True, arg=name)
    return jnp.asarray(real), jnp.asarray(fake), ks


@x64
def prdc(
    real, fake, *, k_precision_recall: int = 3, k_density_coverage: int = 5, block_size: int = DEFAULT_BLOCK_SIZE
) -> dict[str, float]:
    """:func:`precision_recall` and :func:`density_coverage` of ``fake`` (m, d) against ``real`` (n, d) in
    three passes over the distances (real x real, fake x fake, fake x real) instead of five.

    Returns ``{"precision", "recall", "density", "coverage"}``, the same values as the two functions.
    """
    r, f, ks = _checked_pair(
        real,
        fake,
        {"k_precision_recall": k_precision_recall, "k_density_coverage": k_density_coverage},
        {"k_precision_recall": k_precision_recall},
    )
    k_pr, k_dc = ks["k_precision_recall"], ks["k_density_coverage"]
    block = _block(block_size)
    real_sq = _kth_sq(r, max(k_pr, k_dc), block)
    real_r2 = jnp.stack([real_sq[:, k_pr - 1], real_sq[:, k_dc - 1]], axis=1)
    fake_r2 = _kth_sq(f, k_pr, block)[:, -1]
    counts, in_fake, nearest = (np.asarray(a) for a in _cross_pass(f, r, real_r2, fake_r2, block, True))
    return {
        "precision": float(np.mean(counts[:, 0] > 0)),
        "recall": float(np.mean(in_fake > 0)),
        "density": float(np.mean(counts[:, 1].astype(np.float64)) / k_dc),
        "coverage": float(np.mean(nearest <= np.asarray(real_r2[:, 1]))),
    }


@x64
def precision_recall(real, fake, k: int = 3, *, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` (m, d) against ``real`` (n, d).

    Returns ``{"precision": float, "recall": float}``, each in [0, 1]. With density and coverage too, use
    :func:`prdc` (one distance pass fewer than calling both).
    """
    r, f, ks = _checked_pair(real, fake, {"k": k}, {"k": k})
    block = _block(block_size)
    real_r2 = _kth_sq(r, ks["k"], block)[:, -1:]
    fake_r2 = _kth_sq(f, ks["k"], block)[:, -1]
    counts, in_fake, _ = (np.asarray(a) for a in _cross_pass(f, r, real_r2, fake_r2, block, True))
    return {"precision": float(np.mean(counts[:, 0] > 0)), "recall": float(np.mean(in_fake > 0))}


@x64
def density_coverage(real, fake, k: int = 5, *, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) of ``fake`` (m, d) against ``real`` (n, d).

    Returns ``{"density": float >= 0 (about 1 when the sets match), "coverage": float in [0, 1]}``.
    """
    r, f, ks = _checked_pair(real, fake, {"k": k}, {})
    block = _block(block_size)
    real_r2 = _kth_sq(r, ks["k"], block)[:, -1:]
    counts, _, nearest = (np.asarray(a) for a in _cross_pass(f, r, real_r2, jnp.zeros(len(f)), block, False))
    return {
        "density": float(np.mean(counts[:, 0].astype(np.float64)) / ks["k"]),
        "coverage": float(np.mean(nearest <= np.asarray(real_r2[:, 0]))),
    }


@x64
def nn_two_sample(real, fake, *, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Leave-one-out 1-NN two-sample test between ``real`` (n, d) and ``fake`` (m, d).

    Every point of the union is classified by the label (real / fake) of its nearest other point.
    Returns ``{"accuracy", "accuracy_real", "accuracy_fake"}``; 0.5 is ideal.
    """
    real, fake = as_samples(real, "real", min_n=2), as_samples(fake, "fake", min_n=2)
    same_dim(real, fake, "real", "fake")
    z = jnp.asarray(np.concatenate([real, fake]))
    is_fake = np.r_[np.zeros(len(real), bool), np.ones(len(fake), bool)]
    _, idx = _knn_sq(z, z, 1, True, _block(block_size))
    correct = is_fake[np.asarray(idx[:, 0])] == is_fake
    return {
        "accuracy": float(correct.mean()),
        "accuracy_real": float(correct[: len(real)].mean()),
        "accuracy_fake": float(correct[len(real) :].mean()),
    }


@x64
def nearest_neighbours(fake, train, k: int = 1, *, block_size: int = DEFAULT_BLOCK_SIZE):
    """The k nearest ``train`` samples (n_train, ...) of each ``fake`` sample (n, ...) (memorisation check).

    Samples of any shape are flattened (images compare pixel by pixel).
    Returns ``(distances (n, k) float64 ascending, indices (n, k) int into train)``.
    """
    fake, train = (
        as_samples(flatten_samples(fake, "fake"), "fake"),
        as_samples(flatten_samples(train, "train"), "train"),
    )
    same_dim(fake, train, "fake", "train")
    k = check_k(k, len(train), "train", exclude_self=False)
    d2, idx = _knn_sq(jnp.asarray(fake), jnp.asarray(train), k, False, _block(block_size))
    return np.sqrt(np.asarray(d2)), np.asarray(idx)


def nearest_neighbour_picture(
    fake_images, train_images, indices, path, *, value_range=(-1.0, 1.0), distances=None, max_rows: int = 8
) -> None:
    """PNG: each row is a generated image followed by its nearest training images.

    Args:
      fake_images: (n, H, W, C) or (n, H, W); train_images: (n_train, ...) of the same image shape.
      indices: (n, k) from :func:`nearest_neighbours`; distances: optional (n, k) shown above each.
      path: where the PNG goes. Only the first ``max_rows`` rows are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake_images, train_images, indices = np.asarray(fake_images), np.asarray(train_images), np.asarray(indices)
    if indices.ndim != 2 or indices.shape[0] != fake_images.shape[0]:
        raise ValueError(f"indices must have shape ({fake_images.shape[0]}, k), got {indices.shape}")
    if fake_images.shape[1:] != train_images.shape[1:]:
        raise ValueError(
            f"fake_images and train_images must have the same image shape, got "
            f"{fake_images.shape[1:]} and {train_images.shape[1:]}"
        )
    lo, hi = value_range
    rows, k = min(max_rows, len(indices)), indices.shape[1]
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.1 * (k + 1), 1.1 * rows), dpi=100, squeeze=False)
    for r in range(rows):
        row = [fake_images[r]] + [train_images[j] for j in indices[r]]
        for c, img in enumerate(row):
            img = (np.asarray(img, np.float64) - lo) / (hi - lo)
            ax = axes[r, c]
            ax.imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("generated" if c == 0 else f"NN {c}", fontsize=7)
            if c and distances is not None:
                ax.set_xlabel(f"{float(distances[r][c - 1]):.2f}", fontsize=6)
    fig.tight_layout()
    fig.savefig(pathlib.Path(path))
    plt.close(fig)


@functools.partial(jax.jit, static_argnames=("block",))
def _closest_pair_sq(batch: jax.Array, block: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Squared distance of the closest pair of distinct rows of ``batch`` (s, d), and its two row indices."""
    d2, idx = _knn_sq(batch, batch, 1, True, block)
    i = jnp.argmin(d2[:, 0])
    return d2[i, 0], i, idx[i, 0]


def _check_threshold(threshold) -> float:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (np.isfinite(threshold) and threshold >= 0)
    ):
        raise ValueError(f"threshold must be a finite distance >= 0, got {threshold!r}")
    return float(threshold)


@x64
def birthday_duplicates(
    samples,
    batch_size: int,
    *,
    threshold: float,
    n_batches: int = 100,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict:
    """Birthday paradox test (Arora & Zhang 2017): how often a random batch holds a near-duplicate pair.

    Each of ``n_batches`` batches is ``batch_size`` rows of ``samples`` (n, ...) drawn without replacement
    (``default_rng(seed)``); samples of any shape are flattened. A batch "has a duplicate" when its closest
    pair of distinct rows is within ``threshold`` (Euclidean). Arora & Zhang inspect the closest pairs by
    eye; here the threshold decides, so calibrate it on real data (e.g. a low quantile of the
    nearest-neighbour distances of real samples, :func:`kth_neighbour_distances`).

    Returns a dict: ``duplicate_probability`` (share of batches with a duplicate), ``closest_distances``
    (n_batches,), ``closest_pairs`` ((n_batches, 2) indices into ``samples``), ``batch_size``, ``n_batches``.
    """
    x = as_samples(flatten_samples(samples, "samples"), "samples", min_n=2)
    batch_size = positive_int(batch_size, "batch_size", minimum=2)
    if batch_size > len(x):
        raise ValueError(f"batch_size={batch_size} exceeds the {len(x)} samples")
    threshold = _check_threshold(threshold)
    n_batches = positive_int(n_batches, "n_batches")
    block = _block(block_size)
    rng = np.random.default_rng(seed)
    dists, pairs = np.empty(n_batches), np.empty((n_batches, 2), np.int64)
    for b in range(n_batches):
        rows = rng.choice(len(x), batch_size, replace=False)
        d2, i, j = _closest_pair_sq(jnp.asarray(x[rows]), block)
        dists[b], pairs[b] = np.sqrt(float(d2)), (rows[int(i)], rows[int(j)])
    return {
        "duplicate_probability": float(np.mean(dists <= threshold)),
        "closest_distances": dists,
        "closest_pairs": pairs,
        "batch_size": batch_size,
        "n_batches": n_batches,
    }


def birthday_support_size(
    samples, batch_sizes, *, threshold: float, n_batches: int = 100, seed: int = 0, block_size: int = DEFAULT_BLOCK_SIZE
) -> dict:
    """The birthday paradox test over increasing ``batch_sizes``: the smallest s whose duplicate probability
    is >= 1/2, and s^2, Arora & Zhang's estimate of the support size (about 1.39 N for a uniform
    distribution on N points, since the probability reaches 1/2 at s ~ sqrt(2 ln 2 N)).

    Returns a dict: ``probabilities`` ({s: probability}), ``batch_size_at_half`` (None if no s reaches 1/2:
    the support is larger than the largest s^2 tried) and ``support_size`` (s^2 or None).
    """
    sizes = sorted({positive_int(s, "batch_sizes entries", minimum=2) for s in batch_sizes})
    if not sizes:
        raise ValueError("batch_sizes must hold at least one size")
    probs = {
        s: birthday_duplicates(samples, s, threshold=threshold, n_batches=n_batches, seed=seed, block_size=block_size)[
            "duplicate_probability"
        ]
        for s in sizes
    }
    at_half = next((s for s in sizes if probs[s] >= 0.5), None)
    return {
        "probabilities": probs,
        "batch_size_at_half": at_half,
        "support_size": None if at_half is None else at_half**2,
    }
