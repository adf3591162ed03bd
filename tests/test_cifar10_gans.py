"""experiments/cifar10_gans.py end to end on its synthetic 32 x 32 RGB set, tiny widths and step counts.

The published Inception weights cannot be downloaded here, so the test builds random calibrated ones as the
Inception tests do (``tests/metrics/conftest.py``); the FID / IS are then meaningless, and the script must say so.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "cifar10_gans.py"
MODELS = ("dcgan", "wgan-gp", "sngan", "sngan-diffaug")


def _inception_conftest():
    """tests/metrics/conftest.py as a module (its helpers build the random calibrated FID Inception with torch)."""
    spec = importlib.util.spec_from_file_location("_inception_conftest", ROOT / "tests" / "metrics" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cifar10_gans_synthetic_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    weights = tmp_path / "random-inception.pth"
    state_dict = _inception_conftest().calibrated_state_dict()
    # The helper's logits (fc x 20) are of order 10 on its smooth images, but span ~700 on the saturated samples of
    # a 2-step generator: softmax probabilities then fall below 2.2e-308, XLA:CPU flushes them to 0 inside
    # inception_score's split marginal, and the IS comes out inf. Undoing the x20 keeps them in range.
    state_dict["fc.weight"] = state_dict["fc.weight"] / 20
    torch.save(state_dict, weights)
    out, runs = tmp_path / "results", tmp_path / "runs"
    command = [
        sys.executable,
        str(SCRIPT),
        "--synthetic",
        "--synthetic-n",
        "120",
        "--steps",
        "2",
        "--base-features",
        "4",
        "--batch-size",
        "8",
        "--n-samples",
        "40",
        "--sample-chunk",
        "40",
        "--inception-batch-size",
        "40",
        "--inception-weights",
        str(weights),
        "--out",
        str(out),
        "--runs",
        str(runs),
        "--stats-dir",
        str(runs / "stats"),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "meaningless" in done.stdout
    record = json.loads((out / "cifar10_gans.json").read_text())
    assert record["meaningless"] is True
    assert not record["reference"]["published_weights"]
    assert record["reference"]["n"] == 108  # the 90% train split of 120 images
    assert set(record["rows"]) == set(MODELS)
    for name in MODELS:
        row = record["rows"][name]
        assert math.isfinite(row["inception_fid"]) and row["inception_fid"] >= 0, (name, row["inception_fid"])
        assert math.isfinite(row["inception_is"]) and row["inception_is"] >= 1.0, (name, row["inception_is"])
        assert row["steps"] == 2 and row["n_samples"] == 40 and row["meaningless"]
        assert row["published"], name  # every config states its published row
        assert (out / f"samples_{name}.png").is_file()
    assert record["rows"]["sngan-diffaug"]["config"]["augment"] == "translation,cutout,color"
    assert record["rows"]["sngan"]["config"]["d_steps"] == 5
    assert (runs / "stats").is_dir() and any((runs / "stats").glob("*.npz"))  # the cached train statistics
