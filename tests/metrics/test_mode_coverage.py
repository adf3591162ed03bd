"""PacGAN mode coverage against a brute-force float64 numpy count."""

import numpy as np
import pytest

from gendl_jax.metrics import mode_coverage


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
    return {"modes": int((counts > 0).sum()), "n_modes": len(modes), "high_quality": hq / len(samples),
            "reverse_kl": rkl}


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
