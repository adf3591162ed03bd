"""`gendl train --data FOLDER|FILE.npy`: a folder of images at --image-size (DCGAN at 32x32 RGB) and a point cloud
(MLPs, W2 to the held-out points next to a fitted Gaussian in summary.json), end to end, kept short."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.optimize
import scipy.spatial
from PIL import Image

from gendl_jax import cli


def _folder(root, n=24, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(32, 60)), int(rng.integers(32, 60))
        path = root / ("cats", "dogs")[i % 2] / f"{i}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return root


def _train(args, capsys):
    cli.main(["train", *args, "--no-progress"])
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_gan_on_a_folder_of_images(tmp_path, capsys):
    folder, out = _folder(tmp_path / "photos"), tmp_path / "run"
    summary, err = _train(
        ["gan", "--data", str(folder), "--image-size", "32", "--steps", "3", "--batch-size", "8"]
        + ["--base-features", "8", "--n-samples", "16", "--out", str(out)],
        capsys,
    )
    assert summary["data"] == str(folder) and summary["steps"] == 3 and f"run folder: {out}" in err
    record = json.loads((out / "config.json").read_text())
    assert record["data_shape"] == [32, 32, 3] and record["train"]["image_size"] == 32
    samples = np.load(out / "samples.npy")
    assert samples.shape == (16, 32, 32, 3) and np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    assert (out / "samples_0000003.png").is_file()


def _w2(x, y):
    cost = scipy.spatial.distance.cdist(x, y, "sqeuclidean")
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def test_wgan_gp_on_a_point_cloud(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n, d = 400, 3
    points = rng.normal(size=(n, d)) @ np.array([[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0.0, 0.0, 0.5]]) + 4.0
    np.save(tmp_path / "cloud.npy", points)
    out = tmp_path / "run"
    summary, _ = _train(
        ["wgan-gp", "--data", str(tmp_path / "cloud.npy"), "--steps", "5", "--batch-size", "32"]
        + ["--hidden", "32", "32", "--n-samples", "200", "--seed", "3", "--out", str(out)],
        capsys,
    )
    samples = np.load(out / "samples.npy")
    assert samples.shape == (200, d) and np.isfinite(samples).all()
    for key in ("w2_samples", "sliced_w2_samples", "w2_gaussian_baseline", "sliced_w2_gaussian_baseline"):
        assert np.isfinite(summary[key]), key
    # an independent float64 reference: the documented held-out split (10%, permutation seeded from N), a Gaussian
    # fitted to the other 90% drawn with default_rng([seed, 2]), and the W2 as an assignment problem
    test_rows = np.sort(np.random.default_rng([28, n]).permutation(n)[: n // 10])
    held_out = points.astype(np.float32)[test_rows].astype(np.float64)
    train = np.delete(points.astype(np.float32), test_rows, axis=0).astype(np.float64)
    mean, cov = train.mean(0), np.cov(train, rowvar=False)
    baseline = np.random.default_rng([3, 2]).multivariate_normal(mean, cov, size=len(held_out), method="eigh")
    assert summary["transport_points"] == len(held_out) == 40
    np.testing.assert_allclose(summary["w2_gaussian_baseline"], _w2(baseline, held_out), rtol=1e-9)
    np.testing.assert_allclose(summary["w2_samples"], _w2(samples[:40].astype(np.float64), held_out), rtol=1e-9)
    assert summary["w2_reference"].startswith(f"the held-out split of {tmp_path / 'cloud.npy'} (40 points")
    assert json.loads((out / "config.json").read_text())["data_shape"] == [d]


@pytest.mark.parametrize(
    "extra,match",
    [
        ([], r"is a folder of images: give image_size \(--image-size N\)"),
        (["--image-size", "20", "--model", "dcgan"], r"model='dcgan' supports .* pass --image-size 28, 32 or 64"),
    ],
)
def test_folder_errors_are_one_line(tmp_path, capsys, extra, match):
    folder = _folder(tmp_path / "photos", n=4)
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["train", "gan", "--data", str(folder), "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "r")]
            + extra
        )
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gendl train: error: ") and "\n" not in err
    assert re.search(match, err), err
