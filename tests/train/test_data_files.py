"""Training on data from files: point clouds (MLPs of output dimension d, W2 to the held-out points next to a
Gaussian baseline in summary.json) and folders of images (resized to --image-size)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.optimize
import scipy.spatial
from PIL import Image

from gendl_jax.evaluation import evaluate_run
from gendl_jax.objectives import adversarial, gan, get_objective
from gendl_jax.objectives.autoencoders import AutoencoderConfig
from gendl_jax.train import TrainConfig, load_run, run_dir, train_and_evaluate
from gendl_jax.train.fit import gaussian_baseline, point_cloud_measures


def w2_assignment(x, y) -> float:
    """Exact W2 between equal-size uniform point sets: an assignment problem on squared distances (float64)."""
    cost = scipy.spatial.distance.cdist(np.asarray(x, np.float64), np.asarray(y, np.float64), "sqeuclidean")
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def sliced_w2_numpy(x, y, n_directions: int, seed: int) -> float:
    """Sliced W2 with many random directions (an independent Monte Carlo estimate)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_directions, x.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    px, py = np.sort(x @ theta.T, axis=0), np.sort(y @ theta.T, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))


@pytest.mark.parametrize("d", [3, 5])
def test_point_cloud_measures_against_references(d):
    rng = np.random.default_rng(d)
    train = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) + 2.0
    reference = rng.normal(size=(120, d)) * 1.5
    samples = rng.normal(size=(150, d)).astype(np.float32)
    out = point_cloud_measures(samples, reference, train, seed=4)
    assert out["transport_points"] == 120 and out["sliced_projections"] == 500
    np.testing.assert_allclose(out["w2_samples"], w2_assignment(samples[:120], reference), rtol=1e-10)
    baseline = gaussian_baseline(train, 120, 4)
    np.testing.assert_allclose(out["w2_gaussian_baseline"], w2_assignment(baseline, reference), rtol=1e-10)
    keep = np.sort(np.random.default_rng([4, 3]).choice(300, 120, replace=False))
    np.testing.assert_allclose(out["w2_train_points"], w2_assignment(train[keep], reference), rtol=1e-10)
    named = {"samples": samples[:120].astype(np.float64), "gaussian_baseline": baseline, "train_points": train[keep]}
    for name, points in named.items():
        assert 0 < out[f"sliced_w2_{name}"] <= out[f"w2_{name}"] + 1e-12  # a sliced W2 never exceeds the W2
        np.testing.assert_allclose(out[f"sliced_w2_{name}"], sliced_w2_numpy(points, reference, 20000, 0), rtol=0.1)
    again = point_cloud_measures(samples, reference, train, seed=4)
    assert again == out


def test_point_cloud_measures_subsets_the_reference():
    rng = np.random.default_rng(0)
    train, reference, samples = rng.normal(size=(50, 2)), rng.normal(size=(80, 2)), rng.normal(size=(60, 2))
    out = point_cloud_measures(samples, reference, train, seed=3, max_points=25)
    keep = np.sort(np.random.default_rng([3, 1]).choice(80, 25, replace=False))  # the documented subset
    assert out["transport_points"] == 25
    np.testing.assert_allclose(out["w2_samples"], w2_assignment(samples[:25], reference[keep]), rtol=1e-10)
    few = point_cloud_measures(samples, reference, train[:20], seed=3, max_points=25)  # all 20 training points
    ot = pytest.importorskip("ot")
    cost = scipy.spatial.distance.cdist(train[:20], reference[keep], "sqeuclidean")
    floor = np.sqrt(ot.emd2(np.full(20, 1 / 20), np.full(25, 1 / 25), cost))
    np.testing.assert_allclose(few["w2_train_points"], floor, rtol=1e-9)


def test_point_cloud_measures_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3))
    bad = x.copy()
    bad[[2, 5], 0] = np.nan
    with pytest.raises(ValueError, match="2 of the 10 samples hold NaN or inf"):
        point_cloud_measures(bad, x, x)
    with pytest.raises(ValueError, match="same dimension d"):
        point_cloud_measures(x[:, :2], x, x)
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_baseline(x[:1], 5, 0)


def test_gaussian_baseline_fits_mean_and_covariance():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(400, 3)) @ np.array([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 0.2]]) + [1, -2, 3]
    draws = gaussian_baseline(points, 200_000, seed=0)
    assert draws.shape == (200_000, 3) and draws.dtype == np.float64
    np.testing.assert_allclose(draws.mean(0), points.mean(0), atol=0.02)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), np.cov(points, rowvar=False), atol=0.03)
    one = gaussian_baseline(points[:, :1], 10, seed=0)
    assert one.shape == (10, 1)


def test_latent_dimension_follows_the_point_cloud():
    config = gan.GANConfig()
    assert adversarial.latent_dim(config, (2,)) == 2 and adversarial.latent_dim(config, (5,)) == 5
    assert adversarial.latent_dim(config, (1,)) == 2 and adversarial.latent_dim(config, (32, 32, 3)) == 100


def _cloud(tmp_path, n=400, d=5, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, d)) * np.arange(1, d + 1) + 1.0
    path = tmp_path / "cloud.npy"
    np.save(path, points)
    return path, points


def test_gan_trains_on_a_point_cloud(tmp_path):
    path, _ = _cloud(tmp_path)
    out = tmp_path / "run"
    config = gan.GANConfig(hidden=(32, 32))
    train = TrainConfig(data=str(path), steps=4, batch_size=32, out=str(out), progress=False, n_samples=100)
    summary = train_and_evaluate("gan", config, train)
    record = json.loads((out / "config.json").read_text())
    assert record["data_shape"] == [5]
    samples = np.load(out / "samples.npy")
    assert samples.shape == (100, 5) and np.isfinite(samples).all()
    assert summary["transport_points"] == 40 and "held-out split" in summary["w2_reference"]
    for key in ("w2_samples", "sliced_w2_samples", "w2_gaussian_baseline", "sliced_w2_gaussian_baseline"):
        assert np.isfinite(summary[key]) and summary[key] > 0
    assert summary["w2_train_points"] > 0
    assert (out / "samples_0000004.png").is_file()
    # gendl eval scores the run the same way, on fresh samples
    result = evaluate_run(out, n=60, seed=1)
    assert result["transport_points"] == 40 and "held-out split" in result["w2_reference"]
    rows = np.sort(np.random.default_rng([28, 400]).permutation(400)[:40])
    held_out = np.load(path).astype(np.float32)[rows].astype(np.float64)
    fresh = np.asarray(jax.jit(gan.sample, static_argnums=2)(load_run(out)[1], jax.random.PRNGKey(1), 60))
    np.testing.assert_allclose(result["w2_samples"], w2_assignment(fresh[:40].astype(np.float64), held_out), rtol=1e-9)


def test_autoencoder_reports_on_the_held_out_points(tmp_path):
    path, _ = _cloud(tmp_path, d=3)
    config = AutoencoderConfig(latent_dim=2, hidden=(16,), reconstruction="mse", decoder_output="linear")
    train = TrainConfig(
        data=str(path), steps=3, batch_size=32, out=str(tmp_path / "ae"), progress=False, sample_every=0
    )
    summary = train_and_evaluate("ae", config, train)
    assert summary["test_data"] == f"{path} test split" and np.isfinite(summary["test_reconstruction_mse"])


def _folder(root, n=20, size=(40, 36), gray=False, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (*size,) if gray else (*size, 3)
        path = root / ("ab"[i % 2]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def test_a_folder_trains_at_its_image_size(tmp_path):
    folder = _folder(tmp_path / "imgs", gray=True)
    out = tmp_path / "run"
    config = gan.GANConfig(hidden=(16,))
    train = TrainConfig(
        data=str(folder), image_size=12, steps=2, batch_size=6, out=str(out), progress=False, n_samples=10
    )
    train_and_evaluate("gan", config, train)  # 12 x 12: MLPs (model="auto")
    assert json.loads((out / "config.json").read_text())["data_shape"] == [12, 12, 1]
    samples = np.load(out / "samples.npy")
    assert samples.shape == (10, 12, 12, 1) and np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    dcgan = gan.GANConfig(model="dcgan")
    with pytest.raises(
        ValueError,
        match=r"model='dcgan' supports square images of side 28, 32 or 64, got 12x12 .*--image-size 28, 32 or 64",
    ):
        train_and_evaluate(
            "gan", dcgan, TrainConfig(data=str(folder), image_size=12, steps=1, out=str(tmp_path / "x"), batch_size=6)
        )
    with pytest.raises(ValueError, match=r"give image_size \(--image-size N\)"):
        train_and_evaluate("gan", config, TrainConfig(data=str(folder), steps=1, out=str(tmp_path / "y"), batch_size=6))


def test_autoencoder_on_a_folder_reads_its_test_split_at_the_same_size(tmp_path):
    folder = _folder(tmp_path / "imgs", n=22)
    config = AutoencoderConfig(latent_dim=2, hidden=(8,))
    train = TrainConfig(
        data=str(folder), image_size=8, steps=2, batch_size=4, out=str(tmp_path / "ae"), progress=False, sample_every=0
    )
    summary = train_and_evaluate(get_objective("ae"), config, train)
    assert "test split" in summary["test_data"] and np.isfinite(summary["test_reconstruction_mse"])


def test_run_folder_and_settings():
    assert str(run_dir("gan", TrainConfig(data="some/where/cloud.npz"))) == "runs/gan-cloud-seed0"
    assert str(run_dir("gan", TrainConfig(data="grid25", seeds=2))) == "runs/gan-grid25-seeds0-1"
    with pytest.raises(ValueError, match=r"image_size \(--image-size\) must be >= 1"):
        TrainConfig(image_size=0).validate()
