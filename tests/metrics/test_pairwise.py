"""Nearest-neighbour measures against float64 numpy/scipy versions of the published algorithms."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from gendl_jax.metrics import (
    density_coverage,
    kth_neighbour_distances,
    nearest_neighbours,
    nn_two_sample,
    prdc,
    precision_recall,
)


def _kth(x, k):
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def _reference_prdc(real, fake, k_pr, k_dc):
    """Kynkaanniemi et al. 2019 and Naeem et al. 2020, directly from the full distance matrices."""
    d_rf = cdist(real, fake)
    real_r, fake_r = _kth(real, k_pr), _kth(fake, k_pr)
    precision = np.mean((d_rf <= real_r[:, None]).any(axis=0))
    recall = np.mean((d_rf <= fake_r[None, :]).any(axis=1))
    real_r5 = _kth(real, k_dc)
    density = np.sum(d_rf <= real_r5[:, None]) / (k_dc * fake.shape[0])
    coverage = np.mean(d_rf.min(axis=1) <= real_r5)
    return precision, recall, density, coverage


@pytest.mark.parametrize("seed", range(3))
def test_prdc_match_reference_blocked_and_unblocked(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 20))
    real = rng.normal(size=(int(rng.integers(60, 150)), d))
    fake = rng.normal(size=(int(rng.integers(60, 150)), d)) * rng.uniform(0.7, 1.3) + rng.uniform(0, 0.5)
    p, r, de, c = _reference_prdc(real, fake, 3, 5)
    for block in (1024, 17):
        pr = precision_recall(real, fake, k=3, block_size=block)
        dc = density_coverage(real, fake, k=5, block_size=block)
        np.testing.assert_allclose(
            [pr["precision"], pr["recall"], dc["density"], dc["coverage"]], [p, r, de, c], rtol=1e-12
        )
    np.testing.assert_allclose(kth_neighbour_distances(real, 4, block_size=13), _kth(real, 4), rtol=1e-9)


@pytest.mark.parametrize("k_pr,k_dc", [(3, 5), (4, 2), (18, 3)])  # (18: lax.top_k for k > 16)
def test_prdc_in_one_call_is_both_measures_and_the_reference(k_pr, k_dc):
    """On fresh inputs with repeated rows (ties in every k-nearest search): ``prdc`` gives the reference
    values, and exactly those of ``precision_recall`` and ``density_coverage``, blocked or not."""
    rng = np.random.default_rng()
    d = int(rng.integers(2, 12))
    real = rng.normal(size=(int(rng.integers(80, 160)), d))
    fake = rng.normal(size=(int(rng.integers(80, 160)), d)) * rng.uniform(0.7, 1.3) + rng.uniform(0, 0.5)
    # Repeated rows within each set (some radii 0). No fake copies a real point: a real point whose k-th
    # neighbour is that point would have the fake exactly on its ball's boundary, where the rounding of
    # the distance expansion (different for a real-real and a fake-real pair) decides a closed ball.
    for x, n_copies in ((real, 20), (fake, 10)):
        rows = rng.permutation(len(x))
        x[rows[:n_copies]] = x[rows[n_copies : n_copies + 10][rng.integers(0, 10, n_copies)]]
    ref = dict(zip(("precision", "recall", "density", "coverage"), _reference_prdc(real, fake, k_pr, k_dc)))
    for block in (1024, 19):
        out = prdc(real, fake, k_precision_recall=k_pr, k_density_coverage=k_dc, block_size=block)
        both = {
            **precision_recall(real, fake, k=k_pr, block_size=block),
            **density_coverage(real, fake, k=k_dc, block_size=block),
        }
        assert out == both
        np.testing.assert_allclose([out[m] for m in ref], [ref[m] for m in ref], rtol=1e-12)


def test_kth_neighbour_distances_count_repeated_points():
    """The k nearest with multiplicity: a point with two copies has its 1st and 2nd neighbours at 0."""
    rng = np.random.default_rng()
    base = rng.normal(size=(40, 3))
    x = np.concatenate([base, base[:10], base[:10]])[rng.permutation(60)]
    for k in (1, 2, 3, 17):
        np.testing.assert_allclose(kth_neighbour_distances(x, k, block_size=16), _kth(x, k), rtol=1e-9, atol=1e-6)
    assert np.sum(kth_neighbour_distances(x, 2) < 1e-6) == 30  # the 10 points with 3 copies each


def test_prdc_high_dimensional_gaussians_medium():
    """The prdc README setting (identical N(0, I) in high dimension) at 1,200 x 1,200 in 128-d."""
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(1200, 128)), rng.normal(size=(1200, 128))
    p, r, de, c = _reference_prdc(real, fake, 5, 5)
    pr = precision_recall(real, fake, k=5, block_size=512)
    dc = density_coverage(real, fake, k=5, block_size=512)
    np.testing.assert_allclose(
        [pr["precision"], pr["recall"], dc["density"], dc["coverage"]], [p, r, de, c], rtol=1e-12
    )


@pytest.mark.slow
def test_prdc_readme_case():
    """prdc's README case: 10k vs 10k of N(0, I) in 1000-d, k = 5, against the reference algorithm
    (full scikit-learn distance matrices). The README prints P 0.4772, R 0.4705, D 1.0555, C 0.9735
    for one unseeded draw; this draw (seed 0) gave P 0.4563, R 0.4858, D 0.9125, C 0.9563 here."""
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(0)
    real = rng.normal(size=(10000, 1000)).astype(np.float32)
    fake = rng.normal(size=(10000, 1000)).astype(np.float32)
    pr = precision_recall(real, fake, k=5)
    dc = density_coverage(real, fake, k=5)
    real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
    d_rf = pairwise_distances(real64, fake64)
    real_r = np.partition(pairwise_distances(real64), 5, axis=1)[:, 5]  # index 0 is the point itself
    fake_r = np.partition(pairwise_distances(fake64), 5, axis=1)[:, 5]
    expected = [
        (d_rf <= real_r[:, None]).any(0).mean(),
        (d_rf <= fake_r[None, :]).any(1).mean(),
        (d_rf <= real_r[:, None]).sum() / (5 * 10000),
        (d_rf.min(1) <= real_r).mean(),
    ]
    np.testing.assert_allclose([pr["precision"], pr["recall"], dc["density"], dc["coverage"]], expected, atol=2e-4)


def test_identical_sets():
    x = np.random.default_rng(5).normal(size=(200, 8))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    assert density_coverage(x, x)["coverage"] == 1.0
    # Each point copied: its nearest other point is its copy, with the other label.
    assert nn_two_sample(x, x)["accuracy"] == 0.0


@pytest.mark.parametrize("seed", range(2))
def test_nn_two_sample_matches_reference(seed):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(90, 3)), rng.normal(size=(70, 3)) + 0.7
    z = np.concatenate([real, fake])
    label = np.r_[np.zeros(90), np.ones(70)]
    d = cdist(z, z)
    np.fill_diagonal(d, np.inf)
    correct = label[d.argmin(1)] == label
    out = nn_two_sample(real, fake, block_size=32)
    np.testing.assert_allclose(
        [out["accuracy"], out["accuracy_real"], out["accuracy_fake"]],
        [correct.mean(), correct[:90].mean(), correct[90:].mean()],
    )


@pytest.mark.parametrize("k", [3, 20])  # argmin passes (k <= 16) and lax.top_k
def test_nearest_neighbours_match_reference(k):
    rng = np.random.default_rng(9)
    train = rng.normal(size=(300, 4, 4, 1))
    fake = rng.normal(size=(25, 4, 4, 1))
    dist, idx = nearest_neighbours(fake, train, k=k, block_size=64)
    d = cdist(fake.reshape(25, -1), train.reshape(300, -1))
    ref_idx = np.argsort(d, axis=1)[:, :k]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, np.take_along_axis(d, ref_idx, 1), rtol=1e-9)


def test_bad_input():
    x = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="k=5 needs more samples"):
        precision_recall(x, x, k=5)
    with pytest.raises(ValueError, match="NaN"):
        density_coverage(x, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="same dimension"):
        nn_two_sample(x, x[:, :1])
    with pytest.raises(TypeError, match="k must be an int"):
        precision_recall(x, x, k=2.0)
    with pytest.raises(ValueError, match="k_density_coverage=5 needs more samples: real has 5 samples"):
        prdc(x, x, k_precision_recall=2)
    with pytest.raises(ValueError, match="k_precision_recall=4 needs more samples: fake has 4 samples"):
        prdc(x, x[:4], k_precision_recall=4, k_density_coverage=2)
    with pytest.raises(ValueError, match="k=6 needs more samples"):
        nearest_neighbours(x, x, k=6)
