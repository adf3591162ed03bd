"""PacGAN mode coverage against a brute-force float64 numpy count."""

import numpy as np
import pytest

from gendl_jax.metrics import mode_coverage, mode_histogram


def _reference(samples, modes, std, threshold=3.0):
    counts = np.zeros(len(modes), int)
    for x in samples:
        d = np.sqrt(((modes - x) ** 2).sum(axis=1))
        j = int(np.argmin(d))
        if d[j] <= threshold * std:
            counts[j] += 1
    hq = counts.sum()
    p = counts / hq
    rkl = float(sum(pk * np.log(len(modes) * pk) for pk in p if pk > 0)) if hq else float("inf")
    return {
        "modes": int((counts > 0).sum()),
        "n_modes": len(modes),
        "high_quality": hq / len(samples),
        "reverse_kl": rkl,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    modes = rng.uniform(-4, 4, size=(9, 2))
    std = 0.1
    keep = rng.choice(9, size=rng.integers(1, 9), replace=False)  # drop some modes
    comp = rng.choice(keep, size=700)
    samples = modes[comp] + rng.normal(scale=std * rng.uniform(0.5, 2.0), size=(700, 2))
    got = mode_coverage(samples, modes, std)
    ref = _reference(samples, modes, std)
    assert got["modes"] == ref["modes"] and got["n_modes"] == 9
    np.testing.assert_allclose(got["high_quality"], ref["high_quality"])
    np.testing.assert_allclose(got["reverse_kl"], ref["reverse_kl"], rtol=1e-9)


def test_perfect_and_collapsed_generators():
    modes = np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * np.arange(8) / 8])
    perfect = np.repeat(modes, 10, axis=0)
    r = mode_coverage(perfect, modes, 0.01)
    assert r == {"modes": 8, "n_modes": 8, "high_quality": 1.0, "reverse_kl": 0.0}
    collapsed = np.repeat(modes[:1], 80, axis=0)
    r = mode_coverage(collapsed, modes, 0.01)
    assert r["modes"] == 1
    np.testing.assert_allclose(r["reverse_kl"], np.log(8))
    far = np.full((5, 2), 10.0)
    assert mode_coverage(far, modes, 0.01)["reverse_kl"] == float("inf")


def test_bad_input():
    modes = np.zeros((3, 2))
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(np.zeros((0, 2)), modes, 0.1)
    with pytest.raises(ValueError, match="modes"):
        mode_coverage(np.zeros((4, 2)), np.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(np.zeros((4, 2)), modes, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        mode_coverage(np.full((4, 2), np.nan), modes, 0.1)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_histogram_against_brute_force_in_other_dimensions(seed):
    """d in 1..5, a random threshold: the jitted nearest-mode kernel against the float64 numpy loop."""
    rng = np.random.default_rng(seed)
    d, k = int(rng.integers(1, 6)), int(rng.integers(2, 12))
    modes = rng.uniform(-5, 5, size=(k, d))
    std, threshold = float(rng.uniform(0.05, 0.3)), float(rng.uniform(1.0, 4.0))
    samples = modes[rng.integers(0, k, 500)] + rng.normal(scale=2 * std, size=(500, d))
    ref = _reference(samples, modes, std, threshold)
    got = mode_coverage(samples, modes, std, threshold)
    assert got["modes"] == ref["modes"] and got["n_modes"] == k
    np.testing.assert_allclose(
        [got["high_quality"], got["reverse_kl"]], [ref["high_quality"], ref["reverse_kl"]], rtol=1e-9
    )
    assert mode_histogram(samples, modes, std, threshold).sum() == round(ref["high_quality"] * 500)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_modes_are_rejected(bad):
    """issue 27: NaN modes gave 0 modes and reverse KL inf without complaint."""
    rng = np.random.default_rng(0)
    modes = rng.uniform(-1, 1, size=(8, 2))
    samples = modes[rng.integers(0, 8, 100)]
    rows = sorted(rng.choice(8, size=2, replace=False).tolist())
    modes[rows[0], 0] = bad
    modes[rows[1], 1] = bad
    with pytest.raises(ValueError, match=rf"modes must be finite: rows \[{rows[0]}, {rows[1]}\].*\(2 of 8\)"):
        mode_coverage(samples, modes, 0.01)
    with pytest.raises(ValueError, match="modes must be finite"):
        mode_histogram(samples, modes, 0.01)


def test_non_finite_samples_are_reported_with_their_count():
    rng = np.random.default_rng(1)
    modes = rng.uniform(-1, 1, size=(4, 2))
    samples = modes[rng.integers(0, 4, 50)].copy()
    samples[[3, 17, 40], 1] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match="samples contain NaN or inf in 3 of 50 rows.*model"):
        mode_coverage(samples, modes, 0.1)


@pytest.mark.parametrize("value", [0.0, -0.1, np.nan, np.inf])
@pytest.mark.parametrize("name", ["std", "threshold"])
def test_std_and_threshold_must_be_finite_and_positive(name, value):
    modes = np.zeros((3, 2))
    kwargs = {"std": 0.1, "threshold": 3.0, name: value}
    with pytest.raises(ValueError, match=f"{name} must be finite and > 0"):
        mode_coverage(np.zeros((4, 2)), modes, **kwargs)


def test_shapes_and_types():
    modes = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"modes must have shape \(K, d=2\) with K >= 1"):
        mode_coverage(np.zeros((4, 2)), np.zeros((0, 2)), 0.1)
    with pytest.raises(ValueError, match=r"modes must have shape \(K, d=2\)"):
        mode_coverage(np.zeros((4, 2)), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match=r"samples must have shape \(n, d\)"):
        mode_coverage(np.zeros(4), modes, 0.1)
    with pytest.raises(ValueError, match=r"samples must have shape \(n, d\) with n >= 1 and d >= 1"):
        mode_coverage(np.zeros((4, 0)), np.zeros((3, 0)), 0.1)
    with pytest.raises(TypeError, match="samples must hold real numbers"):
        mode_coverage(np.zeros((4, 2), bool), modes, 0.1)
    with pytest.raises(TypeError, match="modes must hold real numbers"):
        mode_coverage(np.zeros((4, 2)), modes.astype(complex), 0.1)
    with pytest.raises(TypeError, match="std must be a real scalar"):
        mode_coverage(np.zeros((4, 2)), modes, np.array([0.1, 0.2]))
    assert mode_coverage(np.zeros((4, 2), np.int32), np.zeros((3, 2), np.int64), 1)["modes"] == 1
