"""gendl finetune through the fit loop: the shipped MNIST LeNet as backbone, fine-tuned on sklearn digits."""

import json

import jax
import numpy as np
import pytest

from gendl_jax.cli import main
from gendl_jax.finetune import load_backbone, read_state_dict, run_variables, to_state_dict
from gendl_jax.finetune.command import digits_as_mnist
from gendl_jax.metrics.classifier import ASSET_DIR, mnist_classifier

pytest.importorskip("sklearn")

TINY = ["--batch-size", "16", "--log-every", "2", "--checkpoint-every", "4", "--no-progress"]


def _finetune(out, *flags, backbone=ASSET_DIR):
    main(["finetune", "--backbone", str(backbone), "--freeze", "conv1", "conv2", "--out", str(out), *TINY, *flags])


def _assert_same_params(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_finetune_writes_the_fit_loop_run_and_freezes_the_backbone(tmp_path, capsys):
    out = tmp_path / "run"
    _finetune(out, "--steps", "8")
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(capsys.readouterr().out)
    assert summary["objective"] == "finetune" and summary["steps"] == 8 and summary["frozen"] == ["conv1", "conv2"]
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_size"] == 360 and summary["train_size"] == 1437
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["4", "8"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8] and {"loss", "accuracy"} <= set(rows[0])
    assert (out / "run_info.jsonl").is_file() and (out / "tensorboard").is_dir()
    record = json.loads((out / "config.json").read_text())
    assert record["objective"] == "finetune" and record["config"]["freeze"] == ["conv1", "conv2"]

    tuned = run_variables(out)["params"]
    shipped = mnist_classifier().params["params"]
    for name in ("conv1", "conv2"):
        _assert_same_params(tuned[name], shipped[name])
    assert not np.array_equal(tuned["dense1"]["kernel"], shipped["dense1"]["kernel"])


def test_resume_after_a_stop_is_bitwise_identical(tmp_path):
    _finetune(tmp_path / "straight", "--steps", "12")
    _finetune(tmp_path / "stopped", "--steps", "8")
    with pytest.raises(SystemExit):  # the folder holds checkpoints: continuing needs --resume
        _finetune(tmp_path / "stopped", "--steps", "12")
    _finetune(tmp_path / "stopped", "--steps", "12", "--resume")
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert summary["resumed_from"] == 8
    assert summary["test_accuracy"] == json.loads((tmp_path / "straight" / "summary.json").read_text())["test_accuracy"]
    for step in (None, 12):
        _assert_same_params(run_variables(tmp_path / "stopped", step), run_variables(tmp_path / "straight", step))
    steps = [json.loads(line)["step"] for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_a_finetuned_run_is_the_backbone_of_the_next(tmp_path):
    first = tmp_path / "first"
    _finetune(first, "--steps", "4")
    tuned = run_variables(first)["params"]
    second = tmp_path / "second"
    main(["finetune", "--backbone", str(first), "--mode", "linear_probe", "--steps", "4", "--out", str(second), *TINY])
    assert json.loads((second / "summary.json").read_text())["frozen"] == ["conv1", "conv2", "dense1"]
    again = run_variables(second)["params"]
    for name in ("conv1", "conv2", "dense1"):  # dense1 was trained by the first run, frozen in the second
        _assert_same_params(again[name], tuned[name])
    assert not np.array_equal(again["classifier"]["kernel"], tuned["classifier"]["kernel"])
    # A single checkpoint of the run is a backbone too, and the plain orbax folder still is.
    like = {"params": jax.tree_util.tree_map(np.zeros_like, tuned)}
    from_step = load_backbone(first / "checkpoints" / "4", like, exclude=("classifier",))
    _assert_same_params(from_step["params"]["dense1"], tuned["dense1"])
    from_asset = load_backbone(ASSET_DIR, like, exclude=())
    _assert_same_params(from_asset["params"], mnist_classifier().params["params"])


def test_finetune_from_npz_and_bad_input(tmp_path, capsys):
    variables = jax.tree_util.tree_map(np.asarray, mnist_classifier().params)
    path = tmp_path / "lenet.npz"
    np.savez(path, **to_state_dict(variables))
    assert set(read_state_dict(path)) >= {"conv1.weight", "dense1.weight", "classifier.bias"}
    main(
        ["finetune", "--backbone", str(path), "--freeze", "conv1", "--steps", "2", "--out", str(tmp_path / "ok"), *TINY]
    )
    tuned = run_variables(tmp_path / "ok")["params"]
    _assert_same_params(tuned["conv1"], variables["params"]["conv1"])
    capsys.readouterr()

    def error(*flags):
        with pytest.raises(SystemExit):
            main(["finetune", "--steps", "1", "--no-progress", *flags])
        return capsys.readouterr().err

    assert "valid top-level names" in error("--backbone", str(path), "--freeze", "conv9", "--out", str(tmp_path / "a"))
    err = error("--backbone", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"))
    assert "backbone: nothing at" in err and "nowhere" in err
    assert "no state-dict file" in error("--backbone", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "b"))
    # LeNet-5 widths vs the 32/64/128 checkpoint
    assert "wrong shapes" in error("--backbone", str(path), "--model", "lenet", "--out", str(tmp_path / "c"))
    assert "shapes differ" in error("--backbone", str(ASSET_DIR), "--model", "lenet", "--out", str(tmp_path / "c"))
    assert "largest label 9" in error("--backbone", str(path), "--head", "5", "--out", str(tmp_path / "d"))
    assert "NAME=LR" in error("--backbone", str(path), "--stage-lrs", "conv1", "--out", str(tmp_path / "e"))


def test_digits_as_mnist_geometry():
    images = np.zeros((1, 8, 8, 1), np.uint8)
    images[0, :, :, 0] = 16
    x = digits_as_mnist(images, 16)
    assert x.shape == (1, 28, 28, 1)
    np.testing.assert_allclose(x[0, 4:24, 4:24, 0], 1.0, atol=1e-6)
    assert np.all(x[0, :4] == -1.0) and np.all(x[0, 24:] == -1.0)
