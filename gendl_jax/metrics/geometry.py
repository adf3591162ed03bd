"""Geometry Score (Khrulkov & Oseledets 2018, "Geometry Score: A Method For Comparing Generative Adversarial
Networks", ICML; the row of Borji 2018's table that "compares geometrical properties of the underlying data
manifold between real and generated data").

Protocol, for a sample set X (N, d), as implemented here (``protocol="authors"``, the default, follows the
authors' code, github.com/KhrulkovV/geometry-score, ``gs/utils.py`` ``witness`` and ``gs/geom_score.py``
``rlt``/``rlts``, so that the numbers compare with published Geometry Scores):

1. Repeat ``n_iterations`` times: draw L = ``n_landmarks`` = 64 landmarks uniformly at random *without*
   replacement from X (the authors' code draws with replacement, so it may repeat a landmark); the
   witnesses are all of X.
2. alpha_max = ``gamma`` x max_{w, l} d(w, l), d the *unsquared* Euclidean distance, the max over every
   witness and every landmark of the iteration (the code: ``alpha_max = cdist(X, L).max() * gamma``).
   ``gamma=None`` is the code's ``rlt`` default, gamma = 1/128 x N / 5000 (1/128 at N = 5000, each set
   with its own N in :func:`geometry_score`).
3. The complex: GUDHI's (weak, relaxed) ``WitnessComplex(nearest_landmark_table)`` on the table of each
   witness's landmarks sorted by unsquared distance, ``create_simplex_tree(max_alpha_square=alpha_max,
   limit_dimension=2)`` (the code passes alpha_max, a distance, as GUDHI's ``max_alpha_square``: the
   relaxation is compared with distance differences). Its filtration, which we derived from GUDHI's
   ``Witness_complex.h`` and checked against gudhi 3.13 (identical simplices and values, to 2e-16 of
   max d, on random sets; see the tests): every landmark is a vertex at 0; a witness w gives a simplex
   sigma (an edge or a triangle of landmarks) the relaxation

       r_w(sigma) = max(0, max_{l in sigma} d(w, l) - min_{l' not in sigma} d(w, l'))

   (0 when sigma holds every landmark), and sigma enters at f(sigma) = max(min_w r_w(sigma), the values of
   its facets); it is kept when f(sigma) <= alpha_max. (So an edge of the two nearest landmarks of some
   witness, or a triangle of its three nearest, enters at 0.)
4. H1 persistence over Z/2 of that filtration (edges and triangles): the classes still alive at the
   cut-off die there; zero-length intervals are dropped (as GUDHI's ``min_persistence=0``).
   GUDHI's ``st.persistence(homology_coeff_field=2)``, which the authors' code calls, leaves out the
   homology of the complex's top dimension (``persistence_dim_max=False``): when an iteration's complex
   has no triangle (a graph), it reports no H1 class, although the graph may have cycles. We match it
   by default (``count_graph_cycles=False``: such an iteration has RLT = (1, 0, ...)); with
   ``count_graph_cycles=True`` the cycles of a triangle-free complex count, each alive from its edge's
   value to the cut-off (GUDHI's ``persistence_dim_max=True``). (The authors' complex nearly always has
   triangles; the strong one below often has none at small gamma.)
5. RLT(i), i = 0 .. ``i_max`` - 1: the fraction of [0, alpha_max] during which exactly i H1 classes are
   alive (a class is alive on [birth, death)). Time with i_max or more classes alive is counted in no
   bin (as in the authors' code), so RLT sums to 1 unless that happens. MRLT = the mean RLT over the
   iterations.
6. ``geometry_score(real, fake) = sum_i (MRLT_real(i) - MRLT_fake(i))^2`` (the code's ``geom_score``).
   Each MRLT is a mean of ``n_iterations`` independent RLTs, so over the landmark draws the score's expectation
   exceeds the squared distance of the expected RLTs by tr(Cov RLT_real) / n + tr(Cov RLT_fake) / n: a Monte Carlo
   bias that dominates when the two sets are alike (a real-data floor) and shrinks as 1 / n_iterations.
   :func:`geometry_score_estimates` also gives the score with that bias estimated (covariances with n - 1) and
   removed, which compares across numbers of draws (it can be slightly negative).

``protocol="strong-euclidean"`` (this module's earlier protocol) builds GUDHI's
``EuclideanStrongWitnessComplex(...).create_simplex_tree(max_alpha_square=alpha_max^2, limit_dimension=2)``
instead: with D[w, l] the *squared* distance and m_w = min_l D[w, l], sigma enters at
min_w (max_{l in sigma} D[w, l] - m_w), kept when <= alpha_max^2, with alpha_max = gamma x (the largest
distance between two landmarks) and ``gamma=None`` = 1/128; the RLT integrates over [0, alpha_max^2].
(GUDHI keeps the pairs with D[w, l] < float32(m_w + alpha_max^2): the same set except for values within
float32 rounding of the cut-off.) The same gamma gives it a much smaller relaxation (about
gamma x max d / (2 d(w, l)) times the authors'), and its complexes are much sparser: at gamma = 1/128 the
complexes of 5,000 standard Gaussian samples in dimension 128 had no triangle in any of 5 iterations we
drew, so nearly every RLT is (1, 0, ...); the default gamma is nearly useless there. With the authors'
protocol the same sets have about 80 H1 intervals per iteration.

Defaults: ``n_landmarks`` = 64 and gamma as the code's. ``n_iterations``: the code's ``rlts`` default is
n = 1000 (we could not check the paper's own value from stored text); ours, ``DEFAULT_N_ITERATIONS`` = 100,
keeps a call to seconds on a CPU (timings below); the MRLT's Monte Carlo error shrinks as
1 / sqrt(n_iterations): raise it to compare close models, and to match the code's n = 1000.

Timings (2 shared CPU cores, load from other jobs, after compilation; N = 5000 standard Gaussian samples,
L = 64, default gamma):

  ========================  ===================  ======================  =====================
  d (N = 5000, L = 64)      authors' protocol    strong-euclidean        GUDHI, authors' code
                            per it. / 100 it.    per it. / 100 it.       (cdist + WitnessComplex
                                                                         + persistence), per it.
  ========================  ===================  ======================  =====================
  128                       56 ms / 5.6 s        19 ms / 1.9 s           34 ms
  784 (MNIST-sized)         126 ms / 12.6 s      29 ms / 2.9 s           109 ms
  ========================  ===================  ======================  =====================

  plus about 3 s of compilation on the first call of a shape (1-2 s for strong-euclidean). A
  :func:`geometry_score` of two such sets at the default n_iterations is twice the 100-iteration time
  (11 s at d = 128, 25 s at d = 784); the code's n = 1000 is ten times that. On these cores the kernels
  are slower per iteration than GUDHI's single-threaded C++ (the k-smallest selection per witness
  dominates); they are jitted and vmapped so that they run on an accelerator. The authors' complexes here
  have about 80 H1 intervals per iteration; their intervals agreed with GUDHI's WitnessComplex on the same
  landmarks (3 iterations at d = 128 and at d = 784: the same numbers of intervals, endpoints within
  2.3e-13 x alpha_max, RLTs within 4e-13).

Computation: the filtration values are computed by jitted float64 kernels (under ``x64``), ``_ITER_CHUNK``
iterations at a time: the excess table E[w, l] = D[w, l] - min_l D[w, l] (I, N, L) of a chunk comes from
one blocked matmul pass (D unsquared for the authors' protocol, with a landmark's distance to its own row
set to exactly 0; squared, less |w|^2, for the strong one). A witness can put a simplex below the cut-off
only with landmarks whose excess is within alpha of its nearest's (strong), or of its r-th nearest's,
r = 0, 1, 2 the first of its three nearest the simplex misses (authors'); a pass counts those landmarks
per witness. Then each witness's k smallest excesses (k = the counts' 99.5th percentile, rounded up to
4, 6, 8, 12, 16, 24, ...) give the subsets of its ranks that can be below the cut-off, whose values are
scatter-min'ed into dense (L, L) and (L, L, L) arrays; the few witnesses with larger counts are done
again with the largest k. Every one of the L(L-1)/2 edges and L(L-1)(L-2)/6 triangles so gets its exact
value when that value is <= the cut-off and +inf (left out) otherwise (the facets' max taken after), and
nothing of size N x #triangles is held. When the subsets are many (> #triangles / 8, a large gamma), a
second kernel takes the min over each block of witnesses of every simplex's value directly (blocks of
``_DENSE_BUDGET`` / (iterations x #triangles) witnesses). The persistence pairs come from the C extension
``gendl_jax.metrics._persistence`` (column reduction over Z/2, see :func:`h1_persistence`).
"""

from __future__ import annotations

import functools
import itertools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import as_samples, positive_int, same_dim, x64

__all__ = [
    "DEFAULT_N_ITERATIONS",
    "PROTOCOLS",
    "geometry_score",
    "geometry_score_estimates",
    "geometry_score_from_rlts",
    "h1_persistence",
    "relative_living_times",
    "rlt_from_intervals",
    "strong_witness_filtration",
    "witness_filtration",
]

DEFAULT_N_ITERATIONS = 100
_ITER_CHUNK = 8  # iterations per vmapped kernel call
_SCATTER_BUDGET = 1 << 21  # candidate simplices per block (iterations x witnesses x k-subsets)
_DENSE_FRACTION = 1 / 8  # see _filtrations
_DENSE_BUDGET = 1 << 23  # triangle maxima per block of the direct kernel (iterations x witnesses x triangles)
_TRIANGLE_BUDGET = 1 << 24  # float64 triangle values held per chunk (iterations x L^3): 128 MB
_LIGHT_QUANTILE = 0.995  # see _filtrations: the rows done with the subsets of this quantile of the counts
_TABLE_BUDGET = 1 << 24  # float64 witness-landmark excesses held per chunk (iterations x N x L): 128 MB


def _extension():
    try:
        from gendl_jax.metrics import _persistence
    except ImportError as err:
        raise ImportError(
            "gendl_jax.metrics._persistence (the C persistence reduction behind the Geometry Score) is not built: "
            "install the package with `pip install .` or `pip install -e .` (needs a C compiler and the Python headers)"
        ) from err
    return _persistence


# ------------------------------------------------------------------------------------------------ persistence


def h1_persistence(edges, edge_values, triangles, triangle_values, *, n_vertices: int) -> np.ndarray:
    """H1 persistence intervals (Z/2 coefficients) of a filtered 2-complex: (k, 2) float64 (birth, death).

    Args:
      edges: (m, 2) vertex ids in [0, n_vertices) of the edges in the complex, with ``edge_values`` (m,).
      triangles: (t, 3) vertex ids of the triangles, with ``triangle_values`` (t,); the three edges of
        every triangle must be in ``edges`` with values <= the triangle's.
      n_vertices: the vertices, all entering before (or with) the edges.

    The order is the simplex tree's: by value, then dimension (faces first), then lexicographic order of
    the sorted vertex ids. Classes never killed get death ``inf``; zero-length intervals are dropped.
    Rows are sorted by (birth, death).
    """
    n_vertices = positive_int(n_vertices, "n_vertices")
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    triangles = np.asarray(triangles, np.int64).reshape(-1, 3)
    ev = np.asarray(edge_values, np.float64).ravel()
    tv = np.asarray(triangle_values, np.float64).ravel()
    if len(ev) != len(edges):
        raise ValueError(f"edge_values must have one value per edge ({len(edges)}), got {len(ev)}")
    if len(tv) != len(triangles):
        raise ValueError(f"triangle_values must have one value per triangle ({len(triangles)}), got {len(tv)}")
    if np.isnan(ev).any() or np.isnan(tv).any():
        raise ValueError("edge_values and triangle_values must not contain NaN")
    for name, s in (("edges", edges), ("triangles", triangles)):
        if s.size and (s.min() < 0 or s.max() >= n_vertices):
            raise ValueError(f"{name} must hold vertex ids in [0, {n_vertices})")
    edges = np.sort(edges, axis=1)
    triangles = np.sort(triangles, axis=1)
    if (edges[:, 0] == edges[:, 1]).any() or (triangles[:, :-1] == triangles[:, 1:]).any():
        raise ValueError("edges and triangles must have distinct vertices")
    e_order = np.lexsort((edges[:, 1], edges[:, 0], ev))
    edges, ev = edges[e_order], ev[e_order]
    t_order = np.lexsort((triangles[:, 2], triangles[:, 1], triangles[:, 0], tv))
    triangles, tv = triangles[t_order], tv[t_order]
    keys = edges[:, 0] * n_vertices + edges[:, 1]
    by_key = np.argsort(keys, kind="stable")
    if len(np.unique(keys)) != len(keys):
        raise ValueError("edges must not repeat an edge")
    faces = np.stack([triangles[:, [0, 1]], triangles[:, [0, 2]], triangles[:, [1, 2]]], axis=1)  # (t, 3, 2)
    face_keys = faces[..., 0] * n_vertices + faces[..., 1]
    pos = np.searchsorted(keys[by_key], face_keys)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    if len(triangles) and (len(keys) == 0 or (keys[by_key][pos] != face_keys).any()):
        raise ValueError("every edge of a triangle must be in edges")
    ranks = by_key[pos] if len(triangles) else np.zeros((0, 3), np.int64)
    if len(triangles) and (ev[ranks] > tv[:, None]).any():
        raise ValueError("a triangle's value must be >= the values of its edges (a filtration)")
    status = np.frombuffer(
        _extension().h1_pairs(
            n_vertices, np.ascontiguousarray(edges), np.ascontiguousarray(ranks, np.int64), len(edges), len(triangles)
        ),
        np.int64,
    )
    positive = status != -2
    births = ev[positive]
    killer = status[positive]
    deaths = np.where(killer >= 0, tv[np.maximum(killer, 0)] if len(tv) else np.inf, np.inf)
    out = np.stack([births, deaths], axis=1)
    out = out[out[:, 1] > out[:, 0]]
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def rlt_from_intervals(intervals, cutoff: float, i_max: int = 100) -> np.ndarray:
    """RLT (i_max,): the fraction of [0, cutoff] during which exactly i of the ``intervals`` (k, 2)
    (birth, death) are alive, a class being alive on [birth, death); deaths beyond ``cutoff`` (or inf)
    count as ``cutoff`` (the filtration's cut-off: alpha_max for the authors' protocol, alpha_max^2 for the
    strong Euclidean one). Time with i_max or more alive classes is counted in no bin."""
    i_max = positive_int(i_max, "i_max")
    if not (isinstance(cutoff, numbers.Real) and np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a finite number > 0, got {cutoff!r}")
    iv = np.asarray(intervals, np.float64).reshape(-1, 2)
    if np.isnan(iv).any() or (iv[:, 0] < 0).any() or (iv[:, 0] > cutoff).any() or (iv[:, 1] < iv[:, 0]).any():
        raise ValueError("intervals must be (birth, death) rows with 0 <= birth <= cutoff and death >= birth")
    end = float(cutoff)
    births, deaths = np.sort(iv[:, 0]), np.sort(np.minimum(iv[:, 1], end))
    points = np.unique(np.concatenate([[0.0, end], births, deaths]))
    lengths = np.diff(points)
    mids = (points[:-1] + points[1:]) / 2
    alive = np.searchsorted(births, mids, side="right") - np.searchsorted(deaths, mids, side="right")
    keep = alive < i_max
    return np.bincount(alive[keep], weights=lengths[keep], minlength=i_max)[:i_max] / end


# ------------------------------------------------------------------------------------------------ filtration

PROTOCOLS = ("authors", "strong-euclidean")


def _check_protocol(protocol) -> bool:
    """True for the authors' (weak, unsquared) protocol, False for the strong Euclidean one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol == "authors"


def _distances(w, lm, weak, rows, self_rows):
    """Witness-landmark distances up to a per-witness constant, for witnesses w (B, d) (rows ``rows`` (B,)
    of the witness set) and landmark sets lm (I, L, d): (I, B, L).

    Strong (``weak`` False): D[w, l] = |w - l|^2 less |w|^2 (it cancels in every difference, so it is never
    formed). Weak: the unsquared distances, exactly 0 where ``rows`` == ``self_rows`` (I, L) (a landmark
    witnessing itself; the expansion would leave a rounding residue of about 1e-8 |w| there)."""
    part = jnp.sum(lm * lm, axis=2)[:, None, :] - 2.0 * jnp.einsum("bd,ild->ibl", w, lm)
    if not weak:
        return part
    d = jnp.sqrt(jnp.maximum(jnp.sum(w * w, axis=1)[None, :, None] + part, 0.0))
    return jnp.where(rows[None, :, None] == self_rows[:, None, :], 0.0, d)


@functools.partial(jax.jit, static_argnames=("block", "weak"))
def _excess_table(w, lm, self_rows, block: int, weak: bool):
    """The excess E[w, l] = D[w, l] - min_l D[w, l] >= 0 (I, N, L) of the witnesses w (N, d) over the landmark
    sets lm (I, L, d) (D squared for the strong protocol, unsquared for the weak one), computed in blocks of
    ``block`` witnesses, and (I,) the largest unsquared witness-landmark distance (weak; 0 for strong)."""
    n = w.shape[0]
    nb = -(-n // block)
    blocks = jnp.pad(w, ((0, nb * block - n), (0, 0))).reshape(nb, block, w.shape[1])
    rows = jnp.arange(nb * block).reshape(nb, block)

    def one(blk):
        wb, rb = blk
        part = _distances(wb, lm, weak, rb, self_rows)
        top = jnp.max(jnp.where((rb < n)[None, :, None], part, -jnp.inf), axis=(1, 2)) if weak else jnp.zeros(len(lm))
        return part - jnp.min(part, axis=2, keepdims=True), top

    e, top = lax.map(one, (blocks, rows))  # (nb, I, B, L), (nb, I)
    return jnp.moveaxis(e, 1, 0).reshape(lm.shape[0], nb * block, lm.shape[1])[:, :n], jnp.max(top, axis=0)


def _n_refs(weak: bool, n_l: int) -> int:
    """How many ranks r bound the candidates: a landmark can be in a simplex that a witness puts below the
    cut-off alpha only if its excess is <= excess_(r) + alpha, r the first of the witness's ranks the simplex
    misses. Strong: r = 0 (the value is measured from the nearest). Weak: a simplex other than the witness's
    2 or 3 nearest misses one of its 3 nearest, so r = 0, 1 or 2 (for dimension <= 2)."""
    return min(3, n_l) if weak else 1


def _smallest(d: jax.Array, k: int):
    """The k smallest entries of each row of d (R, L), ascending, and their columns (ties to the lower column).
    k passes of argmin masking the pick with a compare (no scatter), faster on XLA:CPU than ``top_k`` for
    small k; ``top_k`` beyond 16."""
    if k > 16:
        neg, pos = lax.top_k(-d, k)
        return -neg, pos.astype(jnp.int32)
    iota = jnp.arange(d.shape[1], dtype=jnp.int32)
    values, picks = [], []
    for _ in range(k):
        j = jnp.argmin(d, axis=1).astype(jnp.int32)
        values.append(jnp.min(d, axis=1))
        picks.append(j)
        d = jnp.where(iota == j[:, None], jnp.inf, d)
    return jnp.stack(values, axis=1), jnp.stack(picks, axis=1)


@functools.partial(jax.jit, static_argnames=("n_refs",))
def _active_counts(e, alpha, n_refs: int):
    """(I, N, n_refs): for r = 0 .. n_refs - 1 the number of landmarks with E[w, l] <= E_(r)[w] + alpha
    (E_(r) the witness's (r+1)-th smallest excess), from E (I, N, L)."""
    flat = e.reshape(-1, e.shape[2])
    ref = _smallest(flat, n_refs)[0].reshape(e.shape[:2] + (n_refs,))
    bound = (ref + alpha[:, None, None]) * (1 + 1e-9)  # a margin for the kernels' rounding
    return jnp.sum(e[:, :, None, :] <= bound[..., None], axis=3, dtype=jnp.int32)


def _subsets(ks: tuple, s: int, weak: bool):
    """The s-subsets of a witness's ranks that can be below the cut-off, (n, s) ascending, and for each the
    rank its value is measured from. Strong (``ks`` = (k0,)): every s-subset of the k0 first ranks, from rank
    0. Weak (``ks`` = (k0, k1, k2), non-decreasing): the subsets whose first missing rank j has every member
    among the k_j first ranks (:func:`_active_counts`), from rank j (rank k2 when none is missing, read as
    +inf: a simplex of all the landmarks is at 0)."""
    k = ks[-1]
    sub = np.array(list(itertools.combinations(range(k), s)), np.int32).reshape(-1, s)
    if not weak:
        return sub, np.zeros(len(sub), np.int32)
    ref = np.array([min(set(range(k + 1)) - set(c)) for c in sub.tolist()], np.int32).reshape(-1)
    bound = np.array(list(ks) + [k] * (k + 1 - len(ks)))
    keep = sub[:, -1] < bound[ref] if len(sub) else np.zeros(0, bool)
    return sub[keep], ref[keep]


def _close(vert, edge, tri, alpha, n_l):
    """A simplex's value at least its faces' (GUDHI's witness complexes insert a simplex with the max of
    its own value and its facets'; a no-op for the strong complex, whose values already grow with the
    simplex), then +inf beyond the cut-off. vert (I, L), edge (I, L * L), tri (I, L^3) or (I, 1)."""
    n_it = vert.shape[0]
    a = alpha[:, None]
    vert = jnp.where(vert <= a, vert, jnp.inf)
    e = jnp.maximum(edge.reshape(n_it, n_l, n_l), jnp.maximum(vert[:, :, None], vert[:, None, :]))
    e = jnp.where(e <= alpha[:, None, None], e, jnp.inf)
    if tri.shape[1] > 1:
        t = jnp.maximum(
            tri.reshape(n_it, n_l, n_l, n_l),
            jnp.maximum(jnp.maximum(e[:, :, :, None], e[:, :, None, :]), e[:, None, :, :]),
        )
        tri = jnp.where(t <= alpha[:, None, None, None], t, jnp.inf).reshape(n_it, -1)
    return vert, e.reshape(n_it, -1), tri


@functools.partial(jax.jit, static_argnames=("ks", "block", "weak", "n_it"))
def _filtration(e, it, alpha, ks: tuple, block: int, weak: bool, n_it: int):
    """Edge (I, L * L) and triangle (I, L^3) values (the min over the rows; +inf where no row puts the
    simplex below the cut-off), an edge (a < b) at a * L + b, a triangle (a < b < c) at (a * L + b) * L + c,
    from rows E (R, L) of the excess tables of the iterations ``it`` (R,) (-1: a padding row). Each row's
    k = ks[-1] landmarks of smallest excess give every edge and triangle it puts below the cut-off when its
    counts (:func:`_active_counts`) are <= ks (the subsets of :func:`_subsets`; rows with larger counts give
    some of theirs, with their exact values); a row's value of a subset is its largest excess less the
    excess of the subset's reference rank (strong: rank 0, excess 0), at least 0."""
    n_r, n_l = e.shape
    k = ks[-1]
    nb = -(-n_r // block)
    blocks = jnp.pad(e, ((0, nb * block - n_r), (0, 0)), constant_values=jnp.inf).reshape(nb, block, n_l)
    its = jnp.pad(it, (0, nb * block - n_r), constant_values=-1).reshape(nb, block)
    pairs, pair_ref = _subsets(ks, 2, weak)
    triples, triple_ref = _subsets(ks, 3, weak)

    def value(ex, ib, sub, ref):
        val = ex[:, sub[:, -1]]
        if weak:
            val = jnp.maximum(val - ex[:, ref], 0.0)
        keep = (ib >= 0)[:, None] & (val <= alpha[jnp.maximum(ib, 0)][:, None])
        return jnp.where(keep, val, jnp.inf).ravel()

    def body(carry, blk):
        edge, tri = carry
        eb, ib = blk  # (B, L), (B,)
        ex, pos = _smallest(eb, k)  # ascending
        ex = jnp.concatenate([ex, jnp.full((len(ex), 1), jnp.inf)], axis=1)  # rank k: none left out
        base = jnp.maximum(ib, 0)[:, None]
        if len(pairs):
            la, lb = pos[:, pairs[:, 0]], pos[:, pairs[:, 1]]
            flat = (base * n_l + jnp.minimum(la, lb)) * n_l + jnp.maximum(la, lb)
            edge = edge.at[flat.ravel()].min(value(ex, ib, pairs, pair_ref))
        if len(triples):
            la, lb, lc = (pos[:, triples[:, q]] for q in range(3))
            lo = jnp.minimum(jnp.minimum(la, lb), lc)
            hi = jnp.maximum(jnp.maximum(la, lb), lc)
            flat = ((base * n_l + lo) * n_l + (la + lb + lc - lo - hi)) * n_l + hi
            tri = tri.at[flat.ravel()].min(value(ex, ib, triples, triple_ref))
        return (edge, tri), None

    init = (jnp.full(n_it * n_l * n_l, jnp.inf), jnp.full(n_it * n_l**3 if n_l >= 3 else n_it, jnp.inf))
    (edge, tri), _ = lax.scan(body, init, (blocks, its))
    return edge.reshape(n_it, -1), tri.reshape(n_it, -1)


@jax.jit
def _vertices_and_close(e, edge, tri, alpha):
    """The strong complex's vertex values (min over the witnesses of E (I, N, L)), then :func:`_close` of the
    minimum of the raw edge and triangle values (a leading axis of passes: (P, I, ...))."""
    return _close(jnp.min(e, axis=1), jnp.min(edge, axis=0), jnp.min(tri, axis=0), alpha, e.shape[2])


@jax.jit
def _weak_close(e, edge, tri, alpha):
    return _close(jnp.zeros(e.shape[::2]), jnp.min(edge, axis=0), jnp.min(tri, axis=0), alpha, e.shape[2])


@functools.partial(jax.jit, static_argnames=("block", "weak"))
def _dense_filtration(e, alpha, block: int, weak: bool):
    """As :func:`_filtration`, every simplex's min over the witnesses of its value computed directly (for
    many landmarks within the cut-off of some witness). Weak: a witness's value of a simplex is its largest
    excess less the smallest excess of a landmark outside it, found among the witness's 4 nearest."""
    n_it, n, n_l = e.shape
    nb = -(-n // block)
    ep = jnp.pad(e, ((0, 0), (0, nb * block - n), (0, 0)), constant_values=jnp.inf)
    blocks = jnp.moveaxis(ep.reshape(n_it, nb, block, n_l), 1, 0)
    valid = (jnp.arange(nb * block) < n).reshape(nb, block)
    tri_idx = np.array(list(itertools.combinations(range(n_l), 3)), np.int32).reshape(-1, 3)
    ar = jnp.arange(n_l, dtype=jnp.int32)

    def body(carry, blk):
        vert, edge, tri = carry
        eb, v = blk  # (I, B, L), (B,)
        emax = jnp.maximum(eb[:, :, :, None], eb[:, :, None, :])  # (I, B, L, L)
        if weak:
            flat_e = eb.reshape(-1, n_l)
            q = min(4, n_l)
            ex, pos = _smallest(flat_e, q)
            ex = jnp.concatenate([ex, jnp.full((len(ex), 5 - q), jnp.inf)], axis=1).reshape(n_it, -1, 5)
            pos = jnp.concatenate([pos, jnp.full((len(pos), 5 - q), -1, jnp.int32)], axis=1).reshape(n_it, -1, 5)
            out = ex[..., 2, None, None]  # an edge misses one of the 3 nearest: their first non-member's excess
            for r in (1, 0):
                p = pos[..., r, None, None]
                out = jnp.where((p == ar[:, None]) | (p == ar[None, :]), out, ex[..., r, None, None])
            emax = jnp.where(v[None, :, None, None], jnp.maximum(emax - out, 0.0), jnp.inf)
        else:
            vert = jnp.minimum(vert, jnp.min(eb, axis=1))
        edge = jnp.minimum(edge, jnp.min(emax, axis=1))
        if len(tri_idx):
            et = jnp.swapaxes(eb, 1, 2)  # (I, L, B): gathers of whole rows
            t = jnp.maximum(jnp.maximum(et[:, tri_idx[:, 0]], et[:, tri_idx[:, 1]]), et[:, tri_idx[:, 2]])
            if weak:  # a triangle misses one of the 4 nearest (or is every landmark: +inf, value 0)
                ex, pos = jnp.swapaxes(ex, 1, 2), jnp.swapaxes(pos, 1, 2)  # (I, 5, B)
                ta, tb, tc = (tri_idx[:, q, None] for q in range(3))
                out = ex[:, 4, None, :]
                for r in (3, 2, 1, 0):
                    p = pos[:, r, None, :]
                    out = jnp.where((p == ta) | (p == tb) | (p == tc), out, ex[:, r, None, :])
                t = jnp.where(v[None, None, :], jnp.maximum(t - out, 0.0), jnp.inf)
            tri = jnp.minimum(tri, jnp.min(t, axis=2))
        return (vert, edge, tri), None

    init = (
        jnp.zeros((n_it, n_l)) if weak else jnp.full((n_it, n_l), jnp.inf),
        jnp.full((n_it, n_l, n_l), jnp.inf),
        jnp.full((n_it, len(tri_idx)), jnp.inf),
    )
    (vert, edge, tri), _ = lax.scan(body, init, (blocks, valid))
    upper = np.triu(np.ones((n_l, n_l), bool), 1).ravel()
    edge = jnp.where(upper, edge.reshape(n_it, -1), jnp.inf)
    flat = (tri_idx[:, 0] * n_l + tri_idx[:, 1]) * n_l + tri_idx[:, 2]
    tri = jnp.full((n_it, n_l**3 if len(tri_idx) else 1), jnp.inf).at[:, flat].set(tri)
    return _close(vert, edge, tri, alpha, n_l)


@jax.jit
def _max_landmark_sq_dist(lm: jax.Array) -> jax.Array:
    """(I,) the largest squared distance between two landmarks of each set (I, L, d) (centred inputs)."""
    sq = jnp.sum(lm * lm, axis=2)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * jnp.einsum("ild,imd->ilm", lm, lm)
    return jnp.max(jnp.maximum(d2, 0.0), axis=(1, 2))


def _bucket(kmax: int, n_l: int) -> int:
    """kmax rounded up to 4, 6, 8, 12, 16, 24, ... (few compiled shapes), at most n_l."""
    k = 4
    while k < kmax:
        k = k * 3 // 2 if k & (k - 1) == 0 else k * 4 // 3
    return min(k, n_l)


@x64
def _filtrations(
    w: np.ndarray,
    lm: np.ndarray,
    self_rows: np.ndarray,
    *,
    weak: bool,
    cutoff: np.ndarray | None = None,
    gamma: float | None = None,
    dense: bool | None = None,
) -> list[dict]:
    """The truncated filtration of each landmark set lm (I, L, d) with witnesses w (N, d): one dict per set.

    ``self_rows`` (I, L): the row of w equal to each landmark, or -1. The cut-off: ``cutoff`` (I,), or
    ``gamma`` x (the largest witness-landmark distance of the set) (the weak protocol's alpha_max).
    ``dense``: compute every simplex's value directly (True), from each witness's k nearest landmarks in
    excess (False), or (None) directly when the subsets would number more than ``_DENSE_FRACTION`` of
    the triangles (the direct kernel costs N x #triangles per iteration, the other N x #subsets scatters).
    """
    n_it, n_l = lm.shape[:2]
    centre = w.mean(axis=0)  # translation-invariant; centring reduces the round-off of |l|^2 - 2 w.l
    wj = jnp.asarray(w - centre)
    chunk = max(1, min(_ITER_CHUNK, n_it, _TRIANGLE_BUDGET // n_l**3, _TABLE_BUDGET // (len(w) * n_l)))
    out = []
    for start in range(0, n_it, chunk):
        stop = min(start + chunk, n_it)
        take = np.minimum(np.arange(start, start + chunk), n_it - 1)  # pad the last chunk
        e, dmax = _excess_table(
            wj, jnp.asarray(lm[take] - centre), jnp.asarray(self_rows[take], jnp.int32), min(1024, len(w)), weak
        )
        a = gamma * np.asarray(dmax) if cutoff is None else np.asarray(cutoff, np.float64)[take]
        aj = jnp.asarray(a)
        counts = np.asarray(_active_counts(e, aj, _n_refs(weak, n_l))).reshape(-1, _n_refs(weak, n_l))
        ks_max = tuple(_bucket(int(c), n_l) for c in counts.max(axis=0))
        # all the rows with the subsets of the 99.5th percentile of the counts, then the few rows above
        ks = tuple(_bucket(int(np.ceil(c)), n_l) for c in np.quantile(counts, _LIGHT_QUANTILE, axis=0))
        n_sub = max(len(_subsets(ks, 3, weak)[0]), len(_subsets(ks, 2, weak)[0]), 1)
        n_tri = n_l * (n_l - 1) * (n_l - 2) // 6
        if dense or (dense is None and n_sub > _DENSE_FRACTION * n_tri):
            block = int(np.clip(_DENSE_BUDGET // (chunk * max(n_tri, n_l * n_l)), 4, 1024))
            result = _dense_filtration(e, aj, min(block, len(w)), weak)
        else:
            rows = e.reshape(-1, n_l)
            it = jnp.repeat(jnp.arange(chunk, dtype=jnp.int32), len(w))
            block = int(np.clip(_SCATTER_BUDGET // n_sub, 16, 8192))
            passes = [_filtration(rows, it, aj, ks, min(block, len(rows)), weak, chunk)]
            heavy = np.flatnonzero((counts > np.array(ks)).any(axis=1))
            if len(heavy):
                size = _bucket(len(heavy), 1 << 62)
                pick = np.zeros(size, np.int64)
                pick[: len(heavy)] = heavy
                n_heavy = max(len(_subsets(ks_max, 3, weak)[0]), len(_subsets(ks_max, 2, weak)[0]), 1)
                hb = int(np.clip(_SCATTER_BUDGET // n_heavy, 16, 8192))
                passes.append(
                    _filtration(
                        rows[pick],
                        jnp.where(jnp.arange(size) < len(heavy), it[pick], -1),
                        aj,
                        ks_max,
                        min(hb, size),
                        weak,
                        chunk,
                    )
                )
            edge, tri = (jnp.stack(p) for p in zip(*passes))
            result = (_weak_close if weak else _vertices_and_close)(e, edge, tri, aj)
        vert, edge, tri = (np.asarray(r) for r in result)
        for i in range(stop - start):
            ab = np.argwhere(np.isfinite(edge[i].reshape(n_l, n_l)))
            abc = np.argwhere(np.isfinite(tri[i].reshape(n_l, n_l, n_l))) if tri.shape[1] > 1 else np.zeros((0, 3), int)
            out.append(
                {
                    "vertex_values": vert[i],
                    "edges": ab,
                    "edge_values": edge[i][ab[:, 0] * n_l + ab[:, 1]],
                    "triangles": abc,
                    "triangle_values": tri[i][(abc[:, 0] * n_l + abc[:, 1]) * n_l + abc[:, 2]]
                    if len(abc)
                    else np.zeros(0),
                    "cutoff": float(a[i]),
                    "active_max": ks_max,
                }
            )
    return out


def _check_gamma(gamma, weak: bool, n: int) -> float:
    if gamma is None:
        return 1 / 128 * n / 5000 if weak else 1 / 128
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise TypeError(f"gamma must be a real number or None, got {type(gamma).__name__}")
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


def _self_rows(w: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(L,) the first row of w equal to each landmark, -1 where none is."""
    first = {}
    for i, row in enumerate(np.ascontiguousarray(w + 0.0)):  # + 0.0: -0.0 as 0.0
        first.setdefault(row.tobytes(), i)
    return np.array([first.get(row.tobytes(), -1) for row in np.ascontiguousarray(lm + 0.0)], np.int64)


@x64
def witness_filtration(witnesses, landmarks, max_alpha_square: float, *, protocol: str = "authors") -> dict:
    """A relaxed witness filtration of ``landmarks`` (L, d) by ``witnesses`` (n, d) up to dimension 2,
    truncated at ``max_alpha_square``, as GUDHI's ``create_simplex_tree(max_alpha_square, limit_dimension=2)``.

    ``protocol="authors"``: GUDHI's weak ``WitnessComplex`` on the table of *unsquared* Euclidean distances
    d(w, l) (the Geometry Score authors' complex): every landmark is a vertex at 0; a witness w gives a
    simplex sigma the value r_w(sigma) = max(0, max_{l in sigma} d(w, l) - min_{l' not in sigma} d(w, l'))
    (0 when sigma holds every landmark); sigma enters at max(min_w r_w(sigma), its facets' values) and is
    kept when that is <= ``max_alpha_square`` (compared with distances, not squared ones).
    ``protocol="strong-euclidean"``: GUDHI's ``EuclideanStrongWitnessComplex``: sigma enters at
    min_w (max_{l in sigma} D[w, l] - min_l D[w, l]), D the *squared* distances.

    Returns a dict: ``vertex_values`` (L,) (inf beyond the cut-off), ``edges`` (m, 2) and ``triangles``
    (t, 3) sorted vertex ids, lexicographic, with ``edge_values`` (m,), ``triangle_values`` (t,) <= the cut-off.
    """
    weak = _check_protocol(protocol)
    w = as_samples(witnesses, "witnesses")
    lm = as_samples(landmarks, "landmarks")
    same_dim(w, lm, "witnesses", "landmarks")
    if not (isinstance(max_alpha_square, numbers.Real) and max_alpha_square >= 0 and np.isfinite(max_alpha_square)):
        raise ValueError(f"max_alpha_square must be a finite number >= 0, got {max_alpha_square!r}")
    f = _filtrations(w, lm[None], _self_rows(w, lm)[None], weak=weak, cutoff=np.array([float(max_alpha_square)]))[0]
    f.pop("active_max")
    f.pop("cutoff")
    return f


def strong_witness_filtration(witnesses, landmarks, max_alpha_square: float) -> dict:
    """:func:`witness_filtration` with ``protocol="strong-euclidean"`` (GUDHI's ``EuclideanStrongWitnessComplex``)."""
    return witness_filtration(witnesses, landmarks, max_alpha_square, protocol="strong-euclidean")


# ------------------------------------------------------------------------------------------------ RLT, score


@x64
def relative_living_times(
    x,
    *,
    key: jax.Array,
    n_landmarks: int = 64,
    gamma: float | None = None,
    i_max: int = 100,
    n_iterations: int = DEFAULT_N_ITERATIONS,
    protocol: str = "authors",
    count_graph_cycles: bool = False,
) -> dict:
    """Relative living times of the H1 classes of ``x`` (N, d) (the protocol of the module docstring).

    Args:
      key: PRNG key of the landmark draws (``jax.random.split(key, n_iterations)``, one per iteration).
      n_landmarks: L, landmarks per iteration (drawn without replacement), 2 <= L <= N.
      gamma: > 0. ``protocol="authors"``: alpha_max = gamma x (the largest distance between a witness and a
        landmark); None: the authors' default 1/128 x N / 5000. ``"strong-euclidean"``: alpha_max = gamma x
        (the largest landmark-landmark distance); None: 1/128.
      i_max: RLT(i) for i = 0 .. i_max - 1.
      n_iterations: landmark draws averaged.
      protocol: ``"authors"`` (GUDHI's weak witness complex on unsquared distances, cut at alpha_max, as the
        authors' code) or ``"strong-euclidean"`` (the Euclidean strong complex on squared distances, cut at
        alpha_max^2); see :func:`witness_filtration`.
      count_graph_cycles: False (as GUDHI's ``persistence()`` and the authors' code): an iteration whose
        complex has no triangle has no H1 class; True: its cycles count (see the module docstring).

    Returns a dict: ``mrlt`` (i_max,), the mean RLT; ``rlts`` (n_iterations, i_max); ``alpha_max``
    (n_iterations,); ``cutoff`` (n_iterations,), the filtration value the complexes are cut at and the RLTs
    integrate to (alpha_max for ``"authors"``, alpha_max^2 for ``"strong-euclidean"``); ``gamma``, the
    value used; ``landmarks`` (n_iterations, L) the rows of x drawn; ``intervals``, per iteration the
    (k, 2) H1 intervals (birth, death) in filtration units, deaths capped at the cut-off.
    """
    weak = _check_protocol(protocol)
    i_max = positive_int(i_max, "i_max")
    if not isinstance(count_graph_cycles, (bool, np.bool_)):
        raise TypeError(f"count_graph_cycles must be a bool, got {type(count_graph_cycles).__name__}")
    n_landmarks = positive_int(n_landmarks, "n_landmarks", minimum=2)
    n_iterations = positive_int(n_iterations, "n_iterations")
    x = as_samples(x, "x")
    gamma = _check_gamma(gamma, weak, len(x))
    if len(x) < n_landmarks:
        raise ValueError(f"x has {len(x)} samples, fewer than n_landmarks={n_landmarks}")
    keys = jax.random.split(key, n_iterations)
    idx = np.asarray(jax.vmap(lambda k: jax.random.choice(k, len(x), (n_landmarks,), replace=False))(keys))
    lm = x[idx]
    if weak:
        filtrations = _filtrations(x, lm, idx, weak=True, gamma=gamma)
        cutoff = np.array([f["cutoff"] for f in filtrations])
        alpha = cutoff
    else:
        alpha = gamma * np.sqrt(np.asarray(_max_landmark_sq_dist(jnp.asarray(lm - x.mean(axis=0)))))
        cutoff = alpha**2
    if (cutoff <= 0).any():
        raise ValueError(
            f"x: the {n_landmarks} landmarks of iteration {int(np.argmax(cutoff <= 0))} are all the "
            "same point (alpha_max = 0); x needs more distinct samples"
        )
    if not weak:
        filtrations = _filtrations(x, lm, idx, weak=False, cutoff=cutoff)
    rlts, intervals = np.zeros((n_iterations, i_max)), []
    for i, f in enumerate(filtrations):
        if len(f["triangles"]) or count_graph_cycles:
            iv = h1_persistence(
                f["edges"], f["edge_values"], f["triangles"], f["triangle_values"], n_vertices=n_landmarks
            )
        else:  # GUDHI's persistence() skips the top dimension, here 1 (or 0)
            iv = np.zeros((0, 2))
        iv[:, 1] = np.minimum(iv[:, 1], cutoff[i])
        iv = iv[iv[:, 1] > iv[:, 0]]
        intervals.append(iv)
        rlts[i] = rlt_from_intervals(iv, float(cutoff[i]), i_max)
    return {
        "mrlt": rlts.mean(axis=0),
        "rlts": rlts,
        "alpha_max": alpha,
        "cutoff": cutoff,
        "gamma": gamma,
        "landmarks": idx,
        "intervals": intervals,
    }


def geometry_score(
    real,
    fake,
    *,
    key: jax.Array,
    n_landmarks: int = 64,
    gamma: float | None = None,
    i_max: int = 100,
    n_iterations: int = DEFAULT_N_ITERATIONS,
    protocol: str = "authors",
    count_graph_cycles: bool = False,
) -> float:
    """Geometry Score sum_i (MRLT_real(i) - MRLT_fake(i))^2 of ``real`` (n, d) and ``fake`` (m, d); 0 is best.

    The MRLTs are :func:`relative_living_times` of each set with the keys ``jax.random.split(key)``
    (real first), so they can be reproduced (and plotted) from the same key. ``gamma=None`` is the
    protocol's default for each set (for ``"authors"``, 1/128 x its own size / 5000, as the authors' code).
    :func:`geometry_score_estimates` gives the same score with its Monte Carlo bias removed.
    """
    return geometry_score_estimates(
        real,
        fake,
        key=key,
        n_landmarks=n_landmarks,
        gamma=gamma,
        i_max=i_max,
        n_iterations=n_iterations,
        protocol=protocol,
        count_graph_cycles=count_graph_cycles,
    )["score"]


def geometry_score_estimates(
    real,
    fake,
    *,
    key: jax.Array,
    n_landmarks: int = 64,
    gamma: float | None = None,
    i_max: int = 100,
    n_iterations: int = DEFAULT_N_ITERATIONS,
    protocol: str = "authors",
    count_graph_cycles: bool = False,
) -> dict:
    """The Geometry Score of ``real`` (n, d) and ``fake`` (m, d) (arguments as :func:`geometry_score`) and its
    bias-corrected estimate.

    With R_k (n_iterations, i_max) the RLTs of each set (independent landmark draws) and MRLT their means,
    ``score`` = ||MRLT_real - MRLT_fake||^2 (= :func:`geometry_score` with the same key) and ``bias`` =
    (tr S_real + tr S_fake) / n_iterations, S the sample covariance (ddof 1) of R_k: an unbiased estimate of what
    the landmark draws add to the score's expectation. ``score_unbiased`` = score - bias is unbiased for
    ||E RLT_real - E RLT_fake||^2 (the score at infinitely many draws; it can be slightly negative). ``bias`` and
    ``score_unbiased`` are None for ``n_iterations`` = 1. Also returns ``mrlt_real`` and ``mrlt_fake`` (i_max,).
    """
    _check_protocol(protocol)
    real, fake = as_samples(real, "real"), as_samples(fake, "fake")
    same_dim(real, fake, "real", "fake")
    for name, arr in (("real", real), ("fake", fake)):
        if isinstance(n_landmarks, numbers.Integral) and not isinstance(n_landmarks, bool) and len(arr) < n_landmarks:
            raise ValueError(f"{name} has {len(arr)} samples, fewer than n_landmarks={n_landmarks}")
    key_real, key_fake = jax.random.split(key)
    kw = dict(
        n_landmarks=n_landmarks,
        gamma=gamma,
        i_max=i_max,
        n_iterations=n_iterations,
        protocol=protocol,
        count_graph_cycles=count_graph_cycles,
    )
    rlts_real = relative_living_times(real, key=key_real, **kw)["rlts"]
    rlts_fake = relative_living_times(fake, key=key_fake, **kw)["rlts"]
    return {
        **geometry_score_from_rlts(rlts_real, rlts_fake),
        "mrlt_real": rlts_real.mean(axis=0),
        "mrlt_fake": rlts_fake.mean(axis=0),
    }


def geometry_score_from_rlts(rlts_real, rlts_fake) -> dict:
    """The Geometry Score and its bias-corrected estimate from RLTs already drawn: ``rlts_real`` (n, i_max) and
    ``rlts_fake`` (m, i_max), e.g. the ``rlts`` of :func:`relative_living_times` of each set (independent
    landmark draws). Lets one real set's RLTs serve many fake sets (a training trajectory) without redrawing them.

    Returns ``score`` = ||mean R_real - mean R_fake||^2, ``bias`` = tr S_real / n + tr S_fake / m (S the sample
    covariance, ddof 1: an unbiased estimate of the score's excess over ||E R_real - E R_fake||^2) and
    ``score_unbiased`` = score - bias; the last two are None when n or m is 1. As
    :func:`geometry_score_estimates`, which calls it.
    """
    rlts = []
    for name, r in (("rlts_real", rlts_real), ("rlts_fake", rlts_fake)):
        r = np.asarray(r, dtype=np.float64)
        if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1:
            raise ValueError(f"{name} must be a non-empty (n_iterations, i_max) array, got shape {r.shape}")
        if not np.isfinite(r).all():
            raise ValueError(f"{name} has non-finite values")
        rlts.append(r)
    rlts_real, rlts_fake = rlts
    if rlts_real.shape[1] != rlts_fake.shape[1]:
        raise ValueError(
            f"rlts_real and rlts_fake must have the same i_max, got {rlts_real.shape[1]} and {rlts_fake.shape[1]}"
        )
    gap = rlts_real.mean(axis=0) - rlts_fake.mean(axis=0)
    score = float(np.sum(gap**2))  # as geometry_score always computed it (gap @ gap rounds differently)
    if min(len(rlts_real), len(rlts_fake)) < 2:
        return {"score": score, "score_unbiased": None, "bias": None}
    bias = float(
        rlts_real.var(axis=0, ddof=1).sum() / len(rlts_real) + rlts_fake.var(axis=0, ddof=1).sum() / len(rlts_fake)
    )
    return {"score": score, "score_unbiased": score - bias, "bias": bias}
