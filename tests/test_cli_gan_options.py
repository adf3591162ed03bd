"""The issue-29 options of the adversarial objectives from the command line: 2 steps on MNIST (and the image-only ones
on a folder of 32x32 RGB images) with tiny DCGANs, finite losses and samples; bad values as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gendl_jax import cli

TINY = ["--steps", "2", "--batch-size", "8", "--base-features", "4", "--n-samples", "16", "--no-progress"]


def _train(args, out, capsys):
    cli.main(["train", *args, *TINY, "--out", str(out)])
    capsys.readouterr()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        for name in ("d_loss", "g_loss"):
            if name in record:
                assert np.isfinite(record[name]), (name, record)
    assert any("d_loss" in r for r in metrics)
    samples = np.load(out / "samples.npy")
    assert np.isfinite(samples).all()
    return metrics, samples


@pytest.mark.parametrize(
    "args",
    [
        ["gan", "--r1-weight", "1", "--r2-weight", "0.5", "--dragan-weight", "2", "--penalty-every", "2"]
        + ["--discriminator-loss", "least-squares", "--generator-loss", "least-squares"]
        + ["--augment", "translation,cutout,color", "--precision", "bfloat16"],
        ["wgan-gp", "--gp-one-sided", "--r1-weight", "0.1", "--n-critic", "2"],
    ],
    ids=["gan-all-options", "wgan-gp-one-sided"],
)
def test_options_train_on_mnist(tmp_path, capsys, mnist_dir, args):
    _, samples = _train([*args, "--data", "mnist", "--data-dir", str(mnist_dir)], tmp_path / "run", capsys)
    assert samples.shape == (16, 28, 28, 1)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    flags = {a[2:].replace("-", "_") for a in args if a.startswith("--")}
    assert flags <= set(config)


def _folder(root, n=16):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "a" / f"{i}.png")
    return root


def test_image_options_train_on_a_folder_of_rgb_images(tmp_path, capsys):
    folder = _folder(tmp_path / "photos")
    args = ["gan", "--augment", "translation,cutout,color", "--precision", "bfloat16", "--r1-weight", "1"]
    _, samples = _train([*args, "--data", str(folder), "--image-size", "32"], tmp_path / "run", capsys)
    assert samples.shape == (16, 32, 32, 3)


@pytest.mark.parametrize(
    "args,message",
    [
        (["gan", "--r1-weight", "-1"], "r1_weight (--r1-weight) must be >= 0"),
        (["wgan-gp", "--dragan-weight", "-0.5"], "dragan_weight (--dragan-weight) must be >= 0"),
        (["gan", "--penalty-every", "0"], "penalty_every (--penalty-every) must be an int >= 1"),
        (["gan", "--augment", "translation,zoom"], "augment (--augment) takes a comma-separated list"),
        (["wgan", "--augment", "color"], "augment (--augment) transforms images (H, W, C)"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *args, "--data", "ring8", "--steps", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gendl train: error: ") and "\n" not in err and message in err, err
