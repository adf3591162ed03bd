"""Geometry Score: the witness filtrations and their H1 intervals against GUDHI's WitnessComplex (the authors'
protocol, from a nearest-landmark table of scipy distances) and EuclideanStrongWitnessComplex (and brute-force
numpy filtrations), the C column reduction against a pure-Python reduction of the full boundary matrix, RLTs
against a fine-grid integration, the behaviour on circles and blobs, and bad input."""

import itertools

import gudhi
import jax
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from gendl_jax.metrics import geometry
from gendl_jax.metrics.geometry import (
    geometry_score,
    geometry_score_estimates,
    geometry_score_from_rlts,
    h1_persistence,
    relative_living_times,
    rlt_from_intervals,
    strong_witness_filtration,
    witness_filtration,
)

STRONG = dict(protocol="strong-euclidean")


def _key(rng):
    return jax.random.PRNGKey(int(rng.integers(1 << 30)))


def _circle(rng, n, radius=1.0, centre=(0.0, 0.0), noise=0.01):
    t = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], 1)
    return points + noise * rng.normal(size=(n, 2))


def _cutoff_between(values, q):
    """A cut-off half way between two consecutive filtration values near quantile q, clear of both."""
    values = np.unique(values)
    j = int(q * (len(values) - 1))
    while values[j + 1] - values[j] < 1e-9 * values[-1]:
        j += 1
    return (values[j] + values[j + 1]) / 2


def _brute_force(w, lm):
    """Every vertex, edge and triangle value min_w (max_{l in sigma} D[w, l] - min_l D[w, l]), D by differences."""
    d = ((w[:, None, :] - lm[None, :, :]) ** 2).sum(-1)
    e = d - d.min(1, keepdims=True)
    n = len(lm)
    edges = {s: np.max(e[:, list(s)], axis=1).min() for s in itertools.combinations(range(n), 2)}
    tris = {s: np.max(e[:, list(s)], axis=1).min() for s in itertools.combinations(range(n), 3)}
    return e.min(0), edges, tris, d.min(1).max()


def _gudhi_tree(w, lm, alpha_sq):
    return gudhi.EuclideanStrongWitnessComplex(witnesses=w, landmarks=lm).create_simplex_tree(
        max_alpha_square=alpha_sq, limit_dimension=2
    )


def _clipped(iv, cutoff):
    """(k, 2) intervals with deaths capped at the cut-off and the zero-length ones dropped, sorted."""
    iv = np.array(iv, np.float64).reshape(-1, 2)
    iv[:, 1] = np.minimum(iv[:, 1], cutoff)
    iv = iv[iv[:, 1] > iv[:, 0]]
    return iv[np.lexsort((iv[:, 1], iv[:, 0]))]


def _gudhi_h1(w, lm, alpha_sq, dim_max=False):
    st = _gudhi_tree(w, lm, alpha_sq)
    st.persistence(homology_coeff_field=2, persistence_dim_max=dim_max)
    return _clipped(st.persistence_intervals_in_dimension(1), alpha_sq)


def _assert_same_intervals(ours, ref, atol, where=""):
    """H1 intervals equal to ``atol``. An interval no longer than ``atol`` counts as zero-length: where a birth and
    a death are equal in exact arithmetic but come from two witnesses whose values tie to within rounding, one
    computation can give a length of about 1e-15 and the other exactly 0 (which persistence drops)."""
    ours, ref = (np.asarray(iv, np.float64).reshape(-1, 2) for iv in (ours, ref))
    ours, ref = (iv[iv[:, 1] - iv[:, 0] > atol] for iv in (ours, ref))
    assert ours.shape == ref.shape, where
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=atol, err_msg=where)


def _clear_of_cutoff(values, alpha_sq, m_max):
    """GUDHI cuts at D < float32(m_w + alpha^2): values within float32 rounding of the cut-off are ambiguous."""
    values = np.asarray(list(values))
    return not np.any(np.abs(values - alpha_sq) <= 1e-6 * (m_max + alpha_sq))


@pytest.mark.parametrize("d", [2, 3, 5])
def test_filtration_matches_gudhi_and_brute_force(d):
    rng = np.random.default_rng()
    for _ in range(20):  # redraw the rare set with a value on the float32 cut-off of GUDHI
        w = rng.normal(size=(int(rng.integers(150, 300)), d))
        lm = w[rng.choice(len(w), int(rng.integers(10, 18)), replace=False)]
        vert, edges, tris, m_max = _brute_force(w, lm)
        alpha_sq = float(np.quantile(list(tris.values()), 0.3))  # about 30% of the triangles in the complex
        alpha_sq *= 1 + 1e-3 * rng.uniform()
        if _clear_of_cutoff([*edges.values(), *tris.values()], alpha_sq, m_max):
            break
    ours = strong_witness_filtration(w, lm, alpha_sq)
    np.testing.assert_allclose(ours["vertex_values"], vert, atol=1e-12)  # every landmark witnesses itself: 0
    exp_e = sorted(s for s, v in edges.items() if v <= alpha_sq)
    exp_t = sorted(s for s, v in tris.items() if v <= alpha_sq)
    assert [tuple(s) for s in ours["edges"]] == exp_e
    assert [tuple(s) for s in ours["triangles"]] == exp_t
    scale = 1e-10 * (m_max + alpha_sq)
    np.testing.assert_allclose(ours["edge_values"], [edges[s] for s in exp_e], rtol=1e-9, atol=scale)
    np.testing.assert_allclose(ours["triangle_values"], [tris[s] for s in exp_t], rtol=1e-9, atol=scale)
    # GUDHI's simplex tree: the same simplices with the same values (vertices at 0)
    st = _gudhi_tree(w, lm, alpha_sq)
    g = {tuple(s): f for s, f in st.get_filtration()}
    assert st.dimension() == (2 if exp_t else 1)
    assert sorted(s for s in g if len(s) == 2) == exp_e
    assert sorted(s for s in g if len(s) == 3) == exp_t
    np.testing.assert_allclose([g[s] for s in exp_e], ours["edge_values"], rtol=1e-9, atol=scale)
    np.testing.assert_allclose([g[s] for s in exp_t], ours["triangle_values"], rtol=1e-9, atol=scale)
    np.testing.assert_allclose([g[(i,)] for i in range(len(lm))], 0.0, atol=1e-12)
    # and the H1 intervals
    iv = _clipped(
        h1_persistence(
            ours["edges"], ours["edge_values"], ours["triangles"], ours["triangle_values"], n_vertices=len(lm)
        ),
        alpha_sq,
    )
    _assert_same_intervals(iv, _gudhi_h1(w, lm, alpha_sq, dim_max=True), scale)


KERNELS = [(False, 0.995), (False, 0.3), (True, 0.995)]  # (dense, the quantile of the counts done first)


@pytest.mark.parametrize("dense,quantile", KERNELS)
def test_both_kernels_give_the_brute_force_filtration(dense, quantile, monkeypatch):
    """The k-nearest-landmarks kernel (with few or many witnesses done again with the largest k) and the
    direct kernel, on several landmark sets at once."""
    monkeypatch.setattr(geometry, "_LIGHT_QUANTILE", quantile)
    rng = np.random.default_rng()
    w = rng.normal(size=(int(rng.integers(200, 400)), 3))
    sets = np.stack([w[rng.choice(len(w), 14, replace=False)] for _ in range(3)])
    refs = [_brute_force(w, lm) for lm in sets]
    alpha_sq = np.array([_cutoff_between([*r[1].values(), *r[2].values()], q) for r, q in zip(refs, (0.02, 0.2, 0.6))])
    out = geometry._filtrations(w, sets, np.full(sets.shape[:2], -1), weak=False, cutoff=alpha_sq, dense=dense)
    for f, (vert, edges, tris, m_max), a2 in zip(out, refs, alpha_sq):
        np.testing.assert_allclose(f["vertex_values"], vert, atol=1e-12)
        exp_e = sorted(s for s, v in edges.items() if v <= a2)
        exp_t = sorted(s for s, v in tris.items() if v <= a2)
        assert [tuple(s) for s in f["edges"]] == exp_e and [tuple(s) for s in f["triangles"]] == exp_t
        scale = 1e-10 * (m_max + a2)
        np.testing.assert_allclose(f["edge_values"], [edges[s] for s in exp_e], rtol=1e-9, atol=scale)
        np.testing.assert_allclose(f["triangle_values"], [tris[s] for s in exp_t], rtol=1e-9, atol=scale)


def _check_iterations_against_gudhi(x, out, count_graph_cycles=False):
    """Yields (iteration, alpha_max^2, squared landmark distances) after checking its H1 intervals."""
    for i, idx in enumerate(out["landmarks"]):
        lm = x[idx]
        assert len(np.unique(idx)) == len(idx)  # without replacement
        a2 = out["cutoff"][i]
        d = ((x[:, None, :] - lm[None]) ** 2).sum(-1)
        m_max = d.min(1).max()
        pair = ((lm[:, None] - lm[None]) ** 2).sum(-1)
        e = d - d.min(1, keepdims=True)
        pairs = np.array(list(itertools.combinations(range(len(lm)), 2)))
        triples = np.array(list(itertools.combinations(range(len(lm)), 3)))
        edge_values = np.maximum(e[:, pairs[:, 0]], e[:, pairs[:, 1]]).min(0)
        triangle_values = np.max(e[:, triples], axis=2).min(0)
        values = np.concatenate([edge_values, triangle_values])
        if not _clear_of_cutoff(values, a2, m_max):
            continue  # a value on GUDHI's float32 cut-off: the two complexes may differ by that simplex
        ref = _gudhi_h1(x, lm, a2, dim_max=count_graph_cycles)
        _assert_same_intervals(out["intervals"][i], ref, 1e-10 * (m_max + a2), f"iteration {i}")
        yield i, a2, pair


def test_random_sets_intervals_and_alpha_match_gudhi():
    rng = np.random.default_rng()
    x = rng.uniform(size=(400, 3))
    gamma = float(rng.uniform(0.1, 0.2))
    out = relative_living_times(x, key=_key(rng), n_landmarks=20, gamma=gamma, n_iterations=4, **STRONG)
    n_bars = 0
    for i, a2, pair in _check_iterations_against_gudhi(x, out):
        assert a2 == pytest.approx(gamma**2 * pair.max(), rel=1e-12)
        assert out["alpha_max"][i] == pytest.approx(gamma * np.sqrt(pair.max()), rel=1e-12)
        np.testing.assert_allclose(out["rlts"][i], rlt_from_intervals(out["intervals"][i], a2, 100))
        n_bars += len(out["intervals"][i])
    assert n_bars > 0  # the check compared some intervals
    np.testing.assert_allclose(out["mrlt"], out["rlts"].mean(0))


def test_triangle_free_complexes_follow_gudhi_persistence_dim_max():
    """GUDHI's persistence() leaves out the top dimension: a complex without triangles gets no H1 class
    (count_graph_cycles=False, the default), its cycles count with persistence_dim_max=True (True)."""
    rng = np.random.default_rng()
    kw = dict(n_landmarks=24, gamma=1 / 32, n_iterations=16, **STRONG)
    for _ in range(8):  # sparse complexes: some iterations have cycles and no triangle
        x = rng.normal(size=(600, 16))
        key = _key(rng)
        default = relative_living_times(x, key=key, **kw)
        cycles = relative_living_times(x, key=key, count_graph_cycles=True, **kw)
        differ = [i for i in range(16) if len(cycles["intervals"][i]) and not len(default["intervals"][i])]
        if differ:
            break
    assert differ
    list(_check_iterations_against_gudhi(x, default))
    list(_check_iterations_against_gudhi(x, cycles, count_graph_cycles=True))
    for i in differ:
        np.testing.assert_array_equal(default["rlts"][i], np.eye(100)[0])
        assert cycles["rlts"][i, 0] < 1


def test_noisy_circle_one_long_bar_two_circles_two_strong():
    rng = np.random.default_rng()
    for x, n_holes in (
        (_circle(rng, 600), 1),
        (np.concatenate([_circle(rng, 300), _circle(rng, 300, centre=(3.0, 0.0))]), 2),
    ):
        out = relative_living_times(x, key=_key(rng), n_landmarks=32, gamma=1 / 8, n_iterations=4, **STRONG)
        long_bars = []
        for i, a2, _ in _check_iterations_against_gudhi(x, out):
            iv = out["intervals"][i]
            long_bars.append(int(np.sum(iv[:, 1] - iv[:, 0] > 0.4 * a2)))
        assert max(long_bars) == n_holes and np.median(long_bars) == n_holes, long_bars
        assert np.argmax(out["mrlt"]) == n_holes


# ------------------------------------------------------------------------------------------ authors' protocol


def _weak_brute_force(w, lm):
    """GUDHI's weak relaxed witness filtration by its definition, from scipy distances d (unsquared): a witness
    gives sigma max(0, max_{l in sigma} d(w, l) - min_{l' not in sigma} d(w, l')); sigma enters at the max of
    the min over witnesses and its facets' values; vertices at 0. Returns (edges, triangles) as dicts."""
    d = cdist(w, lm)
    n = len(lm)

    def own(s):
        rest = np.delete(d, list(s), axis=1)
        outside = rest.min(1) if rest.shape[1] else np.full(len(w), np.inf)
        return np.maximum(d[:, list(s)].max(1) - outside, 0.0).min()

    edges = {s: own(s) for s in itertools.combinations(range(n), 2)}
    tris = {
        s: max(own(s), *(edges[f] for f in itertools.combinations(s, 2))) for s in itertools.combinations(range(n), 3)
    }
    return edges, tris


def _gudhi_weak_tree(w, lm, alpha):
    """The authors' complex: GUDHI's WitnessComplex from the table of each witness's landmarks sorted by
    (unsquared) distance, with alpha passed as max_alpha_square. A last column holds a far sentinel landmark
    (id L): GUDHI reads one entry past a row's end when every landmark of the row is within the relaxation;
    the sentinel (never within it) keeps that read inside the table and adds only the isolated vertex L."""
    d = cdist(w, lm)
    order = np.argsort(d, axis=1)
    table = np.dstack([order, np.take_along_axis(d, order, 1)])
    far = np.broadcast_to(np.array([len(lm), 10 * d.max() + 10 * alpha + 1]), (len(w), 1, 2))
    st = gudhi.WitnessComplex(nearest_landmark_table=np.concatenate([table, far], 1)).create_simplex_tree(
        max_alpha_square=alpha, limit_dimension=2
    )
    return st, d


def _gudhi_weak_h1(w, lm, alpha, dim_max=False):
    st, _ = _gudhi_weak_tree(w, lm, alpha)
    assert all(len(s) == 1 for s, _ in st.get_filtration() if len(lm) in s)
    st.persistence(homology_coeff_field=2, persistence_dim_max=dim_max)
    return _clipped(st.persistence_intervals_in_dimension(1), alpha)


def _clear(values, alpha, scale, rel=1e-9):
    return not np.any(np.abs(np.asarray(list(values)) - alpha) <= rel * scale)


@pytest.mark.parametrize("d", [2, 3, 6])
def test_authors_filtration_matches_gudhi_and_brute_force(d):
    rng = np.random.default_rng()
    for _ in range(20):  # redraw the rare set with a value at the cut-off
        w = rng.normal(size=(int(rng.integers(150, 300)), d))
        lm = w[rng.choice(len(w), int(rng.integers(10, 18)), replace=False)]
        edges, tris = _weak_brute_force(w, lm)
        alpha = float(np.quantile(list(tris.values()), 0.3)) * (1 + 1e-3 * rng.uniform())
        scale = cdist(w, lm).max()
        if _clear([*edges.values(), *tris.values()], alpha, scale):
            break
    ours = witness_filtration(w, lm, alpha)  # the default protocol: the authors'
    np.testing.assert_array_equal(ours["vertex_values"], 0.0)  # GUDHI inserts every landmark at 0
    exp_e = sorted(s for s, v in edges.items() if v <= alpha)
    exp_t = sorted(s for s, v in tris.items() if v <= alpha)
    assert exp_t and any(v > 0 for v in tris.values() if v <= alpha)
    assert [tuple(s) for s in ours["edges"]] == exp_e
    assert [tuple(s) for s in ours["triangles"]] == exp_t
    tol = dict(rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(ours["edge_values"], [edges[s] for s in exp_e], **tol)
    np.testing.assert_allclose(ours["triangle_values"], [tris[s] for s in exp_t], **tol)
    st, _ = _gudhi_weak_tree(w, lm, alpha)
    g = {tuple(s): f for s, f in st.get_filtration() if len(lm) not in s}
    assert sorted(s for s in g if len(s) == 2) == exp_e
    assert sorted(s for s in g if len(s) == 3) == exp_t
    np.testing.assert_allclose([g[s] for s in exp_e], ours["edge_values"], **tol)
    np.testing.assert_allclose([g[s] for s in exp_t], ours["triangle_values"], **tol)
    np.testing.assert_array_equal([g[(i,)] for i in range(len(lm))], 0.0)
    iv = _clipped(
        h1_persistence(
            ours["edges"], ours["edge_values"], ours["triangles"], ours["triangle_values"], n_vertices=len(lm)
        ),
        alpha,
    )
    _assert_same_intervals(iv, _gudhi_weak_h1(w, lm, alpha, dim_max=True), tol["atol"])


@pytest.mark.parametrize("dense,quantile", KERNELS)
def test_both_kernels_give_the_authors_brute_force_filtration(dense, quantile, monkeypatch):
    monkeypatch.setattr(geometry, "_LIGHT_QUANTILE", quantile)
    rng = np.random.default_rng()
    w = rng.normal(size=(int(rng.integers(200, 400)), 3))
    sets = np.stack([w[rng.choice(len(w), 14, replace=False)] for _ in range(3)])
    sets[2, :3] = rng.normal(size=(3, 3))  # landmarks that are not witnesses
    refs = [_weak_brute_force(w, lm) for lm in sets]

    alpha = np.array([_cutoff_between([*r[0].values(), *r[1].values()], q) for r, q in zip(refs, (0.02, 0.2, 0.6))])
    self_rows = np.stack([geometry._self_rows(w, lm) for lm in sets])
    assert (self_rows[:2] >= 0).all() and (self_rows[2, :3] == -1).all()
    out = geometry._filtrations(w, sets, self_rows, weak=True, cutoff=alpha, dense=dense)
    for f, (edges, tris), a in zip(out, refs, alpha):
        np.testing.assert_array_equal(f["vertex_values"], 0.0)
        exp_e = sorted(s for s, v in edges.items() if v <= a)
        exp_t = sorted(s for s, v in tris.items() if v <= a)
        assert [tuple(s) for s in f["edges"]] == exp_e and [tuple(s) for s in f["triangles"]] == exp_t
        np.testing.assert_allclose(f["edge_values"], [edges[s] for s in exp_e], rtol=1e-9, atol=1e-12 * a)
        np.testing.assert_allclose(f["triangle_values"], [tris[s] for s in exp_t], rtol=1e-9, atol=1e-12 * a)


def _check_authors_iterations(x, out, gamma, count_graph_cycles=False):
    """Checks each iteration's cut-off (gamma x the largest scipy witness-landmark distance) and H1 intervals
    against GUDHI's WitnessComplex; yields (iteration, cut-off) for the iterations compared."""
    for i, idx in enumerate(out["landmarks"]):
        lm = x[idx]
        assert len(np.unique(idx)) == len(idx)
        d = cdist(x, lm)
        alpha = gamma * d.max()
        assert out["cutoff"][i] == pytest.approx(alpha, rel=1e-12) and out["alpha_max"][i] == out["cutoff"][i]
        ref = _gudhi_weak_h1(x, lm, alpha, dim_max=count_graph_cycles)
        ref[:, 1] = np.minimum(ref[:, 1], out["cutoff"][i])  # the two cut-offs may differ in the last bit
        bounds = np.concatenate([ref.ravel(), out["intervals"][i].ravel()])
        if not _clear(bounds[bounds < alpha * (1 - 1e-12)], alpha, d.max()):
            continue  # a value at the cut-off (its rounding may put it on either side)
        _assert_same_intervals(out["intervals"][i], ref, 1e-12 * d.max(), f"iteration {i}")
        yield i, alpha


def test_authors_random_sets_intervals_and_cutoff_match_gudhi():
    rng = np.random.default_rng()
    x = rng.uniform(size=(int(rng.integers(400, 600)), 3))
    gamma = float(rng.uniform(0.02, 0.05))
    out = relative_living_times(x, key=_key(rng), n_landmarks=20, gamma=gamma, n_iterations=4)
    assert out["gamma"] == gamma
    n_bars = 0
    for i, _ in _check_authors_iterations(x, out, gamma):
        np.testing.assert_allclose(out["rlts"][i], rlt_from_intervals(out["intervals"][i], out["cutoff"][i], 100))
        n_bars += len(out["intervals"][i])
    assert n_bars > 0


def test_authors_default_gamma_noisy_circle_one_long_bar_two_circles_two():
    """At the authors' default gamma = 1/128 x N / 5000, checked against GUDHI iteration by iteration."""
    rng = np.random.default_rng()
    n = 3000
    for x, n_holes in (
        (_circle(rng, n), 1),
        (np.concatenate([_circle(rng, n // 2), _circle(rng, n // 2, centre=(3.0, 0.0))]), 2),
    ):
        out = relative_living_times(x, key=_key(rng), n_iterations=4)  # 64 landmarks, gamma None
        assert out["gamma"] == 1 / 128 * n / 5000
        long_bars = []
        for i, alpha in _check_authors_iterations(x, out, 1 / 128 * n / 5000):
            iv = out["intervals"][i]
            long_bars.append(int(np.sum(iv[:, 1] - iv[:, 0] > 0.5 * alpha)))
        assert len(long_bars) >= 3 and max(long_bars) == n_holes and np.median(long_bars) == n_holes, long_bars
        assert np.argmax(out["mrlt"]) == n_holes


def test_geometry_score_behaviour_at_the_authors_defaults():
    """N = 5000 (gamma = 1/128, the authors' default there): a circle against another circle (another radius,
    another centre) scores small, against two circles or a Gaussian blob large."""
    rng = np.random.default_rng()
    n, kw = 5000, dict(n_iterations=8)
    one, other = _circle(rng, n), _circle(rng, n, radius=2.0, centre=(5.0, -1.0), noise=0.02)
    two = np.concatenate([_circle(rng, n // 2), _circle(rng, n // 2, centre=(3.0, 0.0))])
    blob = rng.normal(size=(n, 2))
    same = geometry_score(one, other, key=_key(rng), **kw)
    vs_two = geometry_score(one, two, key=_key(rng), **kw)
    vs_blob = geometry_score(one, blob, key=_key(rng), **kw)
    assert same < 0.05 and vs_two > 0.5 and vs_blob > 0.3, (same, vs_two, vs_blob)


# ------------------------------------------------------------------------------------------ reduction


def _reference_h1(n_vertices, edges, ev, tris, tv):
    """Standard reduction of the full boundary matrix (vertices, edges, triangles), columns as Python sets."""
    simplices = [((0.0, 0, (v,)), frozenset()) for v in range(n_vertices)]
    simplices += [((f, 1, tuple(e)), frozenset((v,) for v in e)) for e, f in zip(edges, ev)]
    simplices += [
        ((f, 2, tuple(t)), frozenset(tuple(sorted(c)) for c in itertools.combinations(t, 2))) for t, f in zip(tris, tv)
    ]
    simplices.sort(key=lambda s: s[0])
    index = {s[0][2]: i for i, s in enumerate(simplices)}
    low_owner, intervals, paired = {}, [], set()
    for j, ((f, dim, _), faces) in enumerate(simplices):
        col = {index[c] for c in faces}
        while col and max(col) in low_owner:
            col ^= low_owner[max(col)][1]
        if col:
            low_owner[max(col)] = (j, col)
            paired.add(max(col))
            if dim == 2:
                intervals.append((simplices[max(col)][0][0], f))
    for i, ((f, dim, _), _) in enumerate(simplices):
        if dim == 1 and i not in paired and not any(own == i for own, _ in low_owner.values()):
            intervals.append((f, np.inf))
    iv = np.array([p for p in intervals if p[1] > p[0]], np.float64).reshape(-1, 2)
    return iv[np.lexsort((iv[:, 1], iv[:, 0]))]


@pytest.mark.parametrize("trial", range(4))
def test_c_reduction_matches_python_reduction(trial):
    rng = np.random.default_rng()
    n = int(rng.integers(6, 14))
    all_edges = list(itertools.combinations(range(n), 2))
    keep = rng.uniform(size=len(all_edges)) < rng.uniform(0.4, 0.9)
    edges = [e for e, k in zip(all_edges, keep) if k]
    ev = {e: float(rng.integers(0, 6)) for e in edges}  # integer values: many ties
    tris = [
        t
        for t in itertools.combinations(range(n), 3)
        if all(c in ev for c in itertools.combinations(t, 2)) and rng.uniform() < 0.6
    ]
    tv = [max(ev[c] for c in itertools.combinations(t, 2)) + float(rng.integers(0, 3)) for t in tris]
    perm_e, perm_t = rng.permutation(len(edges)), rng.permutation(len(tris))  # the input order is irrelevant
    e_arr = np.array(edges, np.int64).reshape(-1, 2)[perm_e][:, ::-1]  # and so is the vertex order in a row
    t_arr = np.array(tris, np.int64).reshape(-1, 3)[perm_t]
    t_arr = rng.permuted(t_arr, axis=1)
    ours = h1_persistence(e_arr, np.array([ev[e] for e in edges])[perm_e], t_arr, np.array(tv)[perm_t], n_vertices=n)
    ref = _reference_h1(n, edges, [ev[e] for e in edges], tris, tv)
    np.testing.assert_array_equal(ours, ref)


def test_h1_persistence_cycle_and_filled_square():
    # a square 0-1-2-3 born at 3 (its last edge), filled by two triangles: the class dies at the later one
    edges = [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)]
    ev = [1.0, 1.0, 2.0, 3.0, 4.0]
    iv = h1_persistence(edges, ev, [(0, 1, 2), (0, 2, 3)], [5.0, 6.0], n_vertices=4)
    np.testing.assert_array_equal(iv, [[3.0, 6.0], [4.0, 5.0]])
    iv = h1_persistence(edges, ev, np.zeros((0, 3)), [], n_vertices=4)
    np.testing.assert_array_equal(iv, [[3.0, np.inf], [4.0, np.inf]])
    with pytest.raises(ValueError, match="every edge of a triangle"):
        h1_persistence(edges[:4], ev[:4], [(0, 1, 2)], [5.0], n_vertices=4)
    with pytest.raises(ValueError, match="filtration"):
        h1_persistence(edges, ev, [(0, 1, 2)], [0.5], n_vertices=4)


# ------------------------------------------------------------------------------------------ RLT


def _grid_rlt(intervals, end, i_max, n_grid=400_000):
    t = (np.arange(n_grid) + 0.5) * (end / n_grid)
    alive = ((intervals[:, :1] <= t) & (t < np.minimum(intervals[:, 1:], end))).sum(0)
    return np.array([np.mean(alive == i) for i in range(i_max)])


@pytest.mark.parametrize("i_max", [1, 3, 100])
def test_rlt_against_fine_grid(i_max):
    rng = np.random.default_rng()
    end = float(rng.uniform(0.5, 2.0))
    k = int(rng.integers(1, 12))
    births = rng.uniform(0, end, k)
    deaths = births + rng.exponential(0.3 * end, k)
    deaths[rng.uniform(size=k) < 0.2] = np.inf  # essential classes
    iv = np.stack([births, deaths], 1)
    rlt = rlt_from_intervals(iv, end, i_max)
    np.testing.assert_allclose(rlt, _grid_rlt(iv, end, i_max), atol=4 * (2 * k + 2) / 400_000)
    if i_max == 100:
        assert rlt.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(rlt_from_intervals(np.zeros((0, 2)), end, 5), [1, 0, 0, 0, 0])


def test_rlts_sum_to_one():
    rng = np.random.default_rng()
    for protocol in geometry.PROTOCOLS:
        out = relative_living_times(
            rng.normal(size=(500, 2)), key=_key(rng), n_landmarks=24, gamma=0.1, n_iterations=4, protocol=protocol
        )
        np.testing.assert_allclose(out["rlts"].sum(1), 1.0, atol=1e-12)
        assert out["mrlt"].shape == (100,) and out["rlts"].shape == (4, 100)


# ------------------------------------------------------------------------------------------ behaviour


def test_geometry_score_behaviour_strong():
    rng = np.random.default_rng()
    kw = dict(n_landmarks=32, gamma=1 / 8, n_iterations=16, **STRONG)
    one, other = _circle(rng, 1000), _circle(rng, 1000, radius=2.0, centre=(5.0, -1.0))  # the RLTs are scale-free
    two = np.concatenate([_circle(rng, 500), _circle(rng, 500, centre=(3.0, 0.0))])
    blob = rng.normal(size=(1000, 2))
    same = geometry_score(one, other, key=_key(rng), **kw)
    vs_two = geometry_score(one, two, key=_key(rng), **kw)
    vs_blob = geometry_score(one, blob, key=_key(rng), **kw)
    assert same < 0.05 and vs_two > 0.3 and vs_blob > 0.3, (same, vs_two, vs_blob)
    # the score is the squared distance of the MRLTs drawn with jax.random.split(key)
    key = _key(rng)
    k_real, k_fake = jax.random.split(key)
    a = relative_living_times(one, key=k_real, **kw)["mrlt"]
    b = relative_living_times(blob, key=k_fake, **kw)["mrlt"]
    assert geometry_score(one, blob, key=key, **kw) == np.sum((a - b) ** 2)
    # the same key gives the same landmarks and RLTs
    again = relative_living_times(one, key=k_real, **kw)
    np.testing.assert_array_equal(again["mrlt"], a)


def test_geometry_score_is_zero_for_identical_mrlts():
    rng = np.random.default_rng()
    # at a small gamma a high-dimensional Gaussian has no H1 class: both MRLTs are (1, 0, ...), the score 0
    real, fake = rng.normal(size=(200, 64)), rng.normal(size=(200, 64))
    kw = dict(gamma=1e-3, n_landmarks=16, n_iterations=3, **STRONG)
    k_real, k_fake = jax.random.split(key := _key(rng))
    np.testing.assert_array_equal(relative_living_times(real, key=k_real, **kw)["mrlt"], np.eye(100)[0])
    np.testing.assert_array_equal(relative_living_times(fake, key=k_fake, **kw)["mrlt"], np.eye(100)[0])
    assert geometry_score(real, fake, key=key, **kw) == 0.0


def test_bias_corrected_score_against_numpy():
    """score_unbiased = score - (tr S_real + tr S_fake) / n, S the covariance (ddof 1) of each set's n RLTs,
    recomputed in float64 numpy (np.cov) from relative_living_times with the same keys."""
    rng = np.random.default_rng()
    x = np.concatenate([_circle(rng, 150), _circle(rng, 150, centre=(2.5, 0.0), noise=0.05)])
    y = _circle(rng, 250, radius=2.0, noise=0.1)
    kw = dict(n_landmarks=16, n_iterations=int(rng.integers(8, 16)))
    est = geometry_score_estimates(x, y, key=(key := _key(rng)), **kw)
    k_real, k_fake = jax.random.split(key)
    ra = relative_living_times(x, key=k_real, **kw)["rlts"]
    rb = relative_living_times(y, key=k_fake, **kw)["rlts"]
    n = kw["n_iterations"]
    gap = ra.mean(axis=0) - rb.mean(axis=0)
    bias = (np.trace(np.cov(ra, rowvar=False)) + np.trace(np.cov(rb, rowvar=False))) / n
    assert est["score"] == geometry_score(x, y, key=key, **kw)
    np.testing.assert_allclose(est["score"], gap @ gap, rtol=1e-12)
    np.testing.assert_allclose([est["bias"], est["score_unbiased"]], [bias, gap @ gap - bias], rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(est["mrlt_fake"], rb.mean(axis=0))
    # one real set's RLTs reused against the fake set's: the same three numbers
    from_rlts = geometry_score_from_rlts(ra, rb)
    names = ("score", "bias", "score_unbiased")
    assert [from_rlts[k] for k in names] == [est[k] for k in names]
    assert geometry_score_estimates(x, y, key=key, n_landmarks=16, n_iterations=1)["score_unbiased"] is None
    assert geometry_score_from_rlts(ra, rb[:1])["bias"] is None


@pytest.mark.parametrize("n_real,n_fake", [(2, 2), (2, 3), (3, 2)])
def test_bias_corrected_score_is_unbiased_exactly(n_real, n_fake):
    """RLTs drawn iid from two small discrete distributions (random support vectors and weights): the exact
    expectation of score - bias over every possible draw equals the squared distance of the two means; the plain
    score's expectation exceeds it."""
    rng = np.random.default_rng()
    support = [rng.dirichlet(np.ones(5), size=3), rng.dirichlet(np.ones(5), size=3)]
    weights = [rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))]
    target = np.sum((weights[0] @ support[0] - weights[1] @ support[1]) ** 2)
    expected_plain = expected_corrected = 0.0
    for i in itertools.product(range(3), repeat=n_real):
        for j in itertools.product(range(3), repeat=n_fake):
            w = np.prod(weights[0][list(i)]) * np.prod(weights[1][list(j)])
            est = geometry_score_from_rlts(support[0][list(i)], support[1][list(j)])
            expected_plain += w * est["score"]
            expected_corrected += w * est["score_unbiased"]
    np.testing.assert_allclose(expected_corrected, target, rtol=1e-10, atol=1e-15)
    assert expected_plain > target + 1e-6


def test_gamma_none_is_each_protocols_default():
    rng = np.random.default_rng()
    x = rng.normal(size=(int(rng.integers(50, 200)), 3))
    key = _key(rng)
    authors = relative_living_times(x, key=key, n_landmarks=8, n_iterations=2)
    assert authors["gamma"] == 1 / 128 * len(x) / 5000  # the authors' rlt default
    explicit = relative_living_times(x, key=key, n_landmarks=8, n_iterations=2, gamma=1 / 128 * len(x) / 5000)
    np.testing.assert_array_equal(authors["cutoff"], explicit["cutoff"])
    for i, idx in enumerate(authors["landmarks"]):
        assert authors["cutoff"][i] == pytest.approx(authors["gamma"] * cdist(x, x[idx]).max(), rel=1e-12)
    assert relative_living_times(x, key=key, n_landmarks=8, n_iterations=2, **STRONG)["gamma"] == 1 / 128


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input():
    rng = np.random.default_rng()
    x = rng.normal(size=(50, 2))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="fewer than n_landmarks=64"):
        relative_living_times(x, key=key)
    with pytest.raises(ValueError, match="fake has 50 samples, fewer than n_landmarks=64"):
        geometry_score(rng.normal(size=(100, 2)), x, key=key)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        relative_living_times(bad, key=key, n_landmarks=8)
    with pytest.raises(ValueError, match="real contains NaN"):
        geometry_score(bad, x, key=key, n_landmarks=8)
    for gamma in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
            relative_living_times(x, key=key, n_landmarks=8, gamma=gamma)
    with pytest.raises(TypeError, match="gamma must be a real number"):
        relative_living_times(x, key=key, n_landmarks=8, gamma="1/128")
    with pytest.raises(ValueError, match="i_max must be >= 1"):
        relative_living_times(x, key=key, n_landmarks=8, i_max=0)
    with pytest.raises(ValueError, match="real and fake must have the same dimension, got 2 and 3"):
        geometry_score(x, rng.normal(size=(50, 3)), key=key, n_landmarks=8)
    with pytest.raises(ValueError, match="n_landmarks must be >= 2"):
        relative_living_times(x, key=key, n_landmarks=1)
    with pytest.raises(ValueError, match="all the same point"):
        relative_living_times(np.ones((20, 2)), key=key, n_landmarks=8)
    with pytest.raises(TypeError, match="count_graph_cycles must be a bool"):
        relative_living_times(x, key=key, n_landmarks=8, count_graph_cycles=1)
    with pytest.raises(ValueError, match="cutoff must be a finite number > 0"):
        rlt_from_intervals(np.zeros((0, 2)), 0.0)
    for bad_protocol in ("weak", None):
        with pytest.raises(ValueError, match="protocol must be one of"):
            relative_living_times(x, key=key, n_landmarks=8, protocol=bad_protocol)
        with pytest.raises(ValueError, match="protocol must be one of"):
            geometry_score(x, x, key=key, n_landmarks=8, protocol=bad_protocol)
        with pytest.raises(ValueError, match="protocol must be one of"):
            witness_filtration(x, x[:8], 0.1, protocol=bad_protocol)
    with pytest.raises(ValueError, match="all the same point"):
        relative_living_times(np.ones((20, 2)), key=key, n_landmarks=8, **STRONG)
    rlts = rng.dirichlet(np.ones(10), size=4)
    with pytest.raises(ValueError, match=r"rlts_fake must be a non-empty \(n_iterations, i_max\) .* shape \(10,\)"):
        geometry_score_from_rlts(rlts, rlts[0])
    with pytest.raises(ValueError, match=r"rlts_real must be a non-empty .* got shape \(0, 10\)"):
        geometry_score_from_rlts(rlts[:0], rlts)
    with pytest.raises(ValueError, match="rlts_real and rlts_fake must have the same i_max, got 10 and 9"):
        geometry_score_from_rlts(rlts, rlts[:, :9])
    nan_rlts = rlts.copy()
    nan_rlts[1, 2] = np.nan
    with pytest.raises(ValueError, match="rlts_fake has non-finite values"):
        geometry_score_from_rlts(rlts, nan_rlts)
