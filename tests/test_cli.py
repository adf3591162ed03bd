"""The `gendl` command's defaults: the first command (`gendl train wgan-gp`) uses the toy settings on the 2-D
mixtures and the paper's settings elsewhere; its output says where the run folder and its picture are."""

from __future__ import annotations

import json

import pytest

from gendl_jax import cli
from gendl_jax.objectives import OBJECTIVES, wgan_gp


def _config(out):
    return json.loads((out / "config.json").read_text())


def test_first_command_uses_the_toy_defaults_and_says_where_the_run_is(tmp_path, capsys):
    out = tmp_path / "first"
    # the defaults of `gendl train wgan-gp`, with a budget of 3 updates instead of 20,000
    cli.main(
        [
            "train",
            "wgan-gp",
            "--steps",
            "3",
            "--lr-decay-steps",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--n-samples",
            "100",
        ]
    )
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout stays one JSON document
    assert summary["data"] == "grid25" and summary["modes"] >= 0
    assert f"run folder: {out}" in captured.err and "samples_0000003.png" in captured.err
    config = _config(out)["config"]
    for name, value in wgan_gp.TOY_CONFIG.items():
        if name != "lr_decay_steps":
            assert config[name] == (list(value) if isinstance(value, tuple) else value), name
    assert config["lr_decay_steps"] == 3  # the toy defaults decay the rates to 0 over whatever budget is asked


def test_image_data_keeps_the_paper_defaults(tmp_path, capsys):
    out = tmp_path / "digits"
    cli.main(
        [
            "train",
            "wgan-gp",
            "--data",
            "digits",
            "--steps",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--n-samples",
            "10",
        ]
    )
    capsys.readouterr()
    config = _config(out)["config"]
    paper = wgan_gp.WGANGPConfig()
    assert config["n_critic"] == paper.n_critic == 5
    assert config["g_learning_rate"] == paper.g_learning_rate == 1e-4
    assert config["hidden"] == list(paper.hidden) and config["lr_decay_steps"] == 0


def test_defaults_follow_the_data_and_flags_still_win():
    obj = OBJECTIVES["wgan-gp"]
    toy, train = obj.defaults("ring8")
    assert toy.hidden == (128, 128, 128) and train["steps"] == wgan_gp.TOY_STEPS
    image, train = obj.defaults("mnist")
    assert image == wgan_gp.WGANGPConfig() and "steps" not in train
    for objective in OBJECTIVES.values():  # every declaration's defaults build its config, on either data
        for data in ("grid25", "mnist"):
            config, _ = objective.defaults(data)
            config.validate()
    assert obj.defaults("grid25", steps=500)[0].lr_decay_steps == 500  # tied to the budget
    assert obj.defaults("mnist", steps=500)[0].lr_decay_steps == 0  # the paper's images: no decay
    for name in ("gan", "wgan", "wgan-sn", "vae"):  # no toy decay declared: --steps changes nothing else
        objective = OBJECTIVES[name]
        assert objective.defaults("ring8", steps=30)[0] == objective.defaults("ring8")[0] == objective.config_cls()
    assert cli._flag_value(["--steps", "3", "--data", "ring8"], "--data") == "ring8"
    assert cli._flag_value(["--data=mnist"], "--data") == "mnist"
    assert cli._flag_value(["--steps", "3"], "--data") is None


def test_an_explicit_lr_decay_wins_over_the_tied_default(tmp_path, capsys):
    out = tmp_path / "explicit"
    cli.main(
        [
            "train",
            "wgan-gp",
            "--steps",
            "2",
            "--lr-decay-steps",
            "7",
            "--out",
            str(out),
            "--no-progress",
            "--n-samples",
            "10",
        ]
    )
    capsys.readouterr()
    assert _config(out)["config"]["lr_decay_steps"] == 7


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_command_covers_the_grid(tmp_path, capsys, seed):
    """The first command itself, as a newcomer runs it: 25 modes and >= 90% high-quality samples (PacGAN
    protocol); about a minute of training each on the 2-core CPU."""
    cli.main(["train", "wgan-gp", "--seed", str(seed), "--out", str(tmp_path / "run"), "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["modes"] == 25 and summary["high_quality"] >= 0.90, summary
