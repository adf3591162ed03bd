"""experiments/colour_transfer.py end to end on tiny sizes (every 16th row and column of the two photographs,
200 sub-sampled pixels), into tmp_path; the outputs are checked by numbers recomputed here, not only by their files."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

pytest.importorskip("sklearn")

ARGS = ["--stride", "16", "--n-sub", "200", "--n-eval", "200", "--sliced-iterations", "20", "--k", "5"]


def _tv(p, q):
    return 0.5 * np.abs(p - q).sum()


@pytest.fixture(scope="module")
def run(tmp_path_factory, experiment):
    out = tmp_path_factory.mktemp("colour_transfer")
    module = experiment("colour_transfer")
    results = module.main(["--out", str(out), *ARGS])
    return module, out, results


def test_files_and_json(run):
    _, out, results = run
    names = [
        "histograms",
        "transfer_china_to_flower",
        "transfer_flower_to_china",
        "transfer_histograms",
        "zoom_china_sky",
    ]
    for name in [*names, "sliced_convergence"]:
        path = out / f"{name}.png"
        assert path.stat().st_size < 1_000_000
        assert matplotlib.image.imread(path).ndim == 3
    saved = json.loads((out / "results.json").read_text())  # strict JSON: infinities are written as "inf"
    assert saved["command"].endswith(" ".join(ARGS[-4:]))
    assert set(saved["directions"]) == {"china_to_flower", "flower_to_china"}
    for direction in saved["directions"].values():
        assert set(direction["sinkhorn_converged"]) == {"sinkhorn_0.001", "sinkhorn_0.01", "sinkhorn_0.1"}
        assert all(isinstance(v, bool) for v in direction["sinkhorn_converged"].values())
        for row in direction["distances_to_target"].values():
            assert 0.0 <= row["clipped_fraction"] <= 1.0
    assert "arrays" not in saved and "arrays" in results


def test_exact_map_is_a_permutation_of_the_target_samples(run):
    """Equal sizes, uniform weights: the exact plan is a scaled permutation, so its barycentric map sends the source
    sub-sample onto the target sub-sample, each target pixel used once."""
    _, _, results = run
    for direction, arrays in results["arrays"].items():
        mapped, ys = np.asarray(arrays["mapped"], np.float64), np.asarray(arrays["ys"], np.float64)
        assert mapped.shape == ys.shape == (200, 3)
        d2 = ((mapped[:, None, :] - ys[None, :, :]) ** 2).sum(-1)
        nearest = d2.argmin(1)
        assert np.sqrt(d2.min(1)).max() < 1e-5, direction
        # Each target pixel is used as often as its colour occurs among the targets (duplicates share a colour).
        used = np.bincount(nearest, minlength=200)
        colours, inverse = np.unique(np.round(ys * 255).astype(int), axis=0, return_inverse=True)
        per_colour_used = np.bincount(inverse.ravel(), weights=used, minlength=len(colours))
        per_colour_count = np.bincount(inverse.ravel(), minlength=len(colours))
        np.testing.assert_array_equal(per_colour_used, per_colour_count)
        assert results["directions"][direction]["exact_map_permutation_error"] < 1e-5


def test_transfers_move_the_histograms_towards_the_target(run):
    module, _, results = run
    photos = module.load_photographs(16)
    for direction, arrays in results["arrays"].items():
        src, tgt = direction.split("_to_")
        target = photos[tgt].reshape(-1, 3)
        q = module.histogram_3d(target, 8)
        # Recomputed here from the returned uint8 images with numpy: the total variation between 3-D histograms.
        tv_before = _tv(module.histogram_3d(photos[src].reshape(-1, 3), 8), q)
        rows = results["directions"][direction]["distances_to_target"]
        assert rows["source"]["total_variation"] == pytest.approx(tv_before, abs=1e-6)
        for name in ("exact_1nn", "exact_5nn", "sliced"):
            image = arrays["images"][name]
            assert image.shape == photos[src].shape and image.dtype == np.uint8
            tv_after = _tv(module.histogram_3d(image.reshape(-1, 3), 8), q)
            assert rows[name]["total_variation"] == pytest.approx(tv_after, abs=1e-6)
            assert tv_after < 0.5 * tv_before, (direction, name, tv_after, tv_before)
            assert rows[name]["hellinger"] < rows["source"]["hellinger"]
            assert rows[name]["w2_exact_subsample"] < 0.5 * rows["source"]["w2_exact_subsample"]
        # The sliced transfer matches each channel's marginal: its 1-D W1 (match distance, in 8-bit levels).
        for c in range(3):
            before = rows["source"]["match_distance_rgb"][c]
            assert rows["sliced"]["match_distance_rgb"][c] < 0.1 * before
        # A larger epsilon blurs the plan: the barycentric map pulls colours towards the target's mean.
        assert rows["sinkhorn_0.1_5nn"]["sw2_all_pixels"] > rows["sinkhorn_0.001_5nn"]["sw2_all_pixels"]
        curve = results["directions"][direction]["sliced_curve"]
        assert curve[-1] < 0.1 * curve[0]


def test_sliced_transfer_matches_a_one_dimensional_cloud_exactly(experiment):
    """In 1-D one step of the sliced transfer is the monotone rearrangement: x ends on a permutation of y."""
    import jax

    from gendl_jax import transport

    module = experiment("colour_transfer")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1)).astype(np.float32)
    y = (rng.exponential(size=(50, 1)) + 3).astype(np.float32)
    moved, curve = module.sliced_transfer(x, y, jax.random.key(0), iterations=1)
    moved = np.asarray(moved)
    np.testing.assert_allclose(np.sort(moved[:, 0]), np.sort(y[:, 0]), rtol=1e-6)
    np.testing.assert_array_equal(np.argsort(moved[:, 0]), np.argsort(x[:, 0]))  # order kept
    # The curve's value is the root mean square move: W2 between x and y on the line.
    assert float(curve[0]) == pytest.approx(float(transport.wasserstein_1d(x[:, 0], y[:, 0], p=2)), rel=1e-5)
