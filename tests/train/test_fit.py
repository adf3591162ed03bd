"""The fit loop and the CLI end to end on tiny networks: files written, resume, sampling."""

import json
import pathlib

import jax
import numpy as np
import pytest

from gendl_jax import cli
from gendl_jax.objectives import wgan_gp
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

TINY = wgan_gp.WGANGPConfig(hidden=(16, 16), n_critic=2)


def _train(tmp_path, name="run", **kw):
    settings = dict(
        data="ring8",
        steps=30,
        batch_size=32,
        out=str(tmp_path / name),
        log_every=10,
        sample_every=15,
        checkpoint_every=10,
        n_samples=500,
        progress=False,
    )
    settings.update(kw)
    return train_and_evaluate("wgan-gp", TINY, TrainConfig(**settings))


def test_run_folder_contents(tmp_path):
    summary = _train(tmp_path)
    run = tmp_path / "run"
    record = json.loads((run / "config.json").read_text())
    assert record["objective"] == "wgan-gp" and record["config"]["hidden"] == [16, 16]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in lines] == [10, 20, 30]
    assert {"d_loss", "g_loss", "w1_estimate", "gp", "g_grad_norm"} <= set(lines[0])
    samples = np.load(run / "samples.npy")
    assert samples.shape == (500, 2) and np.all(np.isfinite(samples))
    assert (run / "samples_0000015.png").stat().st_size > 1000
    assert (run / "samples_0000030.png").stat().st_size > 1000
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    # The summary's coverage numbers are those of samples.npy.
    from gendl_jax.data import ring8
    from gendl_jax.metrics import mode_coverage

    dist = ring8()
    assert {k: summary[k] for k in ("modes", "high_quality", "reverse_kl")} == {
        k: v for k, v in mode_coverage(samples, dist.modes, dist.std).items() if k != "n_modes"
    }


def test_existing_run_is_not_overwritten_and_resume_continues_exactly(tmp_path):
    _train(tmp_path, "straight", steps=30)
    _train(tmp_path, "split", steps=20)
    with pytest.raises(FileExistsError, match="resume"):
        _train(tmp_path, "split", steps=30)
    with pytest.raises(ValueError, match="n_critic"):
        train_and_evaluate(
            "wgan-gp",
            wgan_gp.WGANGPConfig(hidden=(16, 16), n_critic=3),
            TrainConfig(
                data="ring8", steps=30, batch_size=32, out=str(tmp_path / "split"), resume=True, progress=False
            ),
        )
    summary = _train(tmp_path, "split", steps=30, resume=True)
    assert summary["resumed_from"] == 20
    # Resuming gives the same parameters, bit for bit, as the uninterrupted run on CPU.
    np.testing.assert_array_equal(
        np.load(tmp_path / "split" / "samples.npy"), np.load(tmp_path / "straight" / "samples.npy")
    )
    _, state_a, _ = load_run(tmp_path / "split")
    _, state_b, _ = load_run(tmp_path / "straight")
    import jax

    for a, b in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b)):
        np.testing.assert_array_equal(a, b)


def test_cli_train_and_sample(tmp_path, capsys):
    out = tmp_path / "cli"
    cli.main(
        [
            "train",
            "wgan",
            "--hidden",
            "8",
            "8",
            "--n-critic",
            "2",
            "--data",
            "grid25",
            "--steps",
            "4",
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--log-every",
            "2",
            "--no-progress",
            "--n-samples",
            "100",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_modes"] == 25 and summary["steps"] == 4
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["n_critic"] == 2 and record["config"]["optimizer"] == "rmsprop"
    cli.main(["sample", str(out), "-n", "7", "--out", str(tmp_path / "s.npy")])
    assert np.load(tmp_path / "s.npy").shape == (7, 2)


def test_cli_trains_and_resumes_a_wgan_sn_run(tmp_path, capsys):
    """The critic's power-iteration vectors are checkpointed with it: a resumed run equals a straight one."""
    common = [
        "--hidden",
        "8",
        "8",
        "--n-critic",
        "2",
        "--data",
        "ring8",
        "--batch-size",
        "16",
        "--log-every",
        "2",
        "--checkpoint-every",
        "3",
        "--no-progress",
        "--n-samples",
        "50",
    ]
    cli.main(["train", "wgan-sn", *common, "--steps", "6", "--out", str(tmp_path / "straight")])
    cli.main(["train", "wgan-sn", *common, "--steps", "3", "--out", str(tmp_path / "split")])
    cli.main(["train", "wgan-sn", *common, "--steps", "6", "--out", str(tmp_path / "split"), "--resume"])
    (_, straight, _), (_, split, _) = load_run(tmp_path / "straight"), load_run(tmp_path / "split")
    assert straight.config.spectral_norm and straight.discriminator.batch_stats
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(split)):
        np.testing.assert_array_equal(a, b)


def test_cli_samples_a_gan_with_truncation_drs_and_ddls(tmp_path, capsys):
    out = tmp_path / "gan"
    cli.main(
        [
            "train",
            "gan",
            "--model",
            "mlp",
            "--hidden",
            "16",
            "16",
            "--data",
            "ring8",
            "--steps",
            "6",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--log-every",
            "3",
            "--no-progress",
            "--n-samples",
            "100",
        ]
    )
    drs = tmp_path / "drs.npy"
    cli.main(
        [
            "sample",
            str(out),
            "-n",
            "400",
            "--out",
            str(drs),
            "--drs-acceptance",
            "0.5",
            "--calibration",
            "600",
            "--truncation",
            "2",
            "--no-progress",
        ]
    )
    info = json.loads(drs.with_suffix(".json").read_text())
    assert np.load(drs).shape == (400, 2) and info["sampler"] == "drs" and info["truncation"] == 2.0
    assert info["kept"] == pytest.approx(0.5, abs=0.08) and info["calibration"]["n_real"] == 600
    ddls = tmp_path / "ddls.npy"
    cli.main(
        [
            "sample",
            str(out),
            "-n",
            "300",
            "--out",
            str(ddls),
            "--ddls-steps",
            "5",
            "--calibration",
            "600",
            "--no-progress",
        ]
    )
    info = json.loads(ddls.with_suffix(".json").read_text())
    assert np.load(ddls).shape == (300, 2) and info["sampler"] == "ddls" and info["ddls_steps"] == 5
    assert np.isfinite(np.load(ddls)).all()
    capsys.readouterr()
    with pytest.raises(SystemExit):  # DRS and DDLS are not combined: one clear line
        cli.main(["sample", str(out), "-n", "10", "--drs-acceptance", "0.5", "--ddls-steps", "3"])
    assert "not combined" in capsys.readouterr().err


def test_cli_refuses_discriminator_samplers_for_a_hinge_gan(tmp_path, capsys):
    """A hinge discriminator's output is a score, not log p_data / p_g: DRS and DDLS refuse it (the run's
    objective declares it), truncation still works."""
    out = tmp_path / "hinge"
    cli.main(
        [
            "train",
            "gan",
            "--hidden",
            "8",
            "--data",
            "ring8",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--discriminator-loss",
            "hinge",
            "--generator-loss",
            "hinge",
            "--out",
            str(out),
            "--log-every",
            "1",
            "--no-progress",
            "--n-samples",
            "50",
        ]
    )
    for flags in (["--drs-acceptance", "0.5"], ["--ddls-steps", "3"]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main(["sample", str(out), "-n", "10", *flags])
        err = capsys.readouterr().err
        assert flags[0] in err and "log density ratio" in err
    cli.main(["sample", str(out), "-n", "10", "--truncation", "1.0", "--out", str(tmp_path / "t.npy")])
    assert np.load(tmp_path / "t.npy").shape == (10, 2)


def test_cli_refuses_discriminator_samplers_for_a_wgan(tmp_path, capsys):
    out = tmp_path / "wgan"
    cli.main(
        [
            "train",
            "wgan",
            "--hidden",
            "8",
            "--data",
            "ring8",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--log-every",
            "1",
            "--no-progress",
            "--n-samples",
            "50",
        ]
    )
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["sample", str(out), "-n", "10", "--drs-acceptance", "0.5"])
    assert "not a calibrated log density ratio" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sample", str(out), "-n", "10", "--label", "1"])
    assert "is not a class-conditional run" in capsys.readouterr().err
    cli.main(["sample", str(out), "-n", "10", "--truncation", "1.0", "--out", str(tmp_path / "t.npy")])
    import jax

    from gendl_jax import sampling

    _, state, _ = load_run(out)  # the CLI's samples are G of latents truncated to |z_i| <= 1
    expected = sampling.sample_gan(state, jax.random.fold_in(jax.random.PRNGKey(0), 1), 10, truncation=1.0).samples
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), expected, rtol=1e-6, atol=1e-6)
    plain = sampling.sample_gan(state, jax.random.fold_in(jax.random.PRNGKey(0), 1), 10).samples
    assert not np.allclose(expected, plain, atol=1e-4)


def test_cli_rejects_unknown_objective(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "vae-x"])
    assert e.value.code == 2
    assert "gan, wgan, wgan-gp" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "gan", "--data", "no_such_dataset", "--out", str(tmp_path / "x"), "--no-progress"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "unknown dataset 'no_such_dataset'" in err and "ring8" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli.main(["sample", str(tmp_path / "not_a_run")])
    assert "config.json" in capsys.readouterr().err


def _nan_at(step_index):
    """The GAN objective whose update number ``step_index`` (0-based) produces NaN losses and parameters."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from gendl_jax.objectives import gan, get_objective

    def step(state, batch):
        new, metrics = gan.step(state, batch)
        bad = state.step == step_index
        poison = lambda leaf: jnp.where(bad, jnp.nan, leaf) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf
        new = new.replace(generator=jax.tree_util.tree_map(poison, new.generator))
        return new, {**metrics, "d_loss": jnp.where(bad, jnp.nan, metrics["d_loss"])}

    return dataclasses.replace(get_objective("gan"), step=step)


def _nan_run(tmp_path, name, **kw):
    from gendl_jax.objectives import gan

    train = TrainConfig(
        data="ring8",
        steps=20,
        batch_size=32,
        out=str(tmp_path / name),
        log_every=5,
        checkpoint_every=5,
        sample_every=0,
        n_samples=100,
        progress=False,
        **kw,
    )
    return train_and_evaluate(_nan_at(6), gan.GANConfig(hidden=(8, 8)), train)


def test_nonfinite_stops_naming_step_metric_and_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import jax

    from gendl_jax.train import checkpoints

    with pytest.raises(FloatingPointError) as e:
        _nan_run(tmp_path, "stop")
    message = str(e.value)
    assert "d_loss=nan at step 7" in message
    assert f"{tmp_path / 'stop' / 'checkpoints'}/5 (left intact)" in message
    manager = checkpoints.checkpoint_manager(tmp_path / "stop" / "checkpoints")
    assert manager.all_steps() == [5]  # nothing after the bad update was saved
    _, state, _ = load_run(tmp_path / "stop")
    assert int(state.step) == 5
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(state))
    manager.close()

    def stopped_run(command, rest):
        raise FloatingPointError(message)

    # The CLI turns it into one line on stderr, without a traceback, and exits with 1.
    monkeypatch.setattr(cli, "_dispatch", stopped_run)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "gan"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"gendl train: error: {message}\n"


def test_skip_nonfinite_drops_the_bad_update_and_counts_it(tmp_path):
    import jax

    summary = _nan_run(tmp_path, "skip", skip_nonfinite=True)
    assert summary["skipped_updates"] == 1 and summary["steps"] == 20
    _, state, _ = load_run(tmp_path / "skip")
    assert int(state.step) == 20
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(state))
    lines = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [row["skipped_updates"] for row in lines] == [0, 1, 1, 1]


def test_skip_keeps_the_previous_state_but_advances_key_and_step():
    import jax
    import jax.numpy as jnp

    from gendl_jax.objectives import gan, get_objective
    from gendl_jax.train.guard import guard_nonfinite

    obj = get_objective("gan")
    x = np.random.default_rng(0).normal(size=(1, 16, 2)).astype(np.float32)
    state = obj.init(jax.random.PRNGKey(0), gan.GANConfig(hidden=(8, 8)), {"x": x})
    bad = {"x": np.full_like(x, np.nan)}
    new, metrics = jax.jit(guard_nonfinite(obj.step, skip=True))(state, bad)
    assert not bool(metrics["finite"])
    for a, b in zip(
        jax.tree_util.tree_leaves((new.generator, new.discriminator, new.hparams)),
        jax.tree_util.tree_leaves((state.generator, state.discriminator, state.hparams)),
    ):
        np.testing.assert_array_equal(a, b)
    assert int(new.step) == 1 and not np.array_equal(new.key, state.key)
    good, metrics = jax.jit(guard_nonfinite(obj.step, skip=True))(state, {"x": x})
    assert bool(metrics["finite"])
    reference, _ = jax.jit(obj.step)(state, {"x": x})
    for a, b in zip(jax.tree_util.tree_leaves(good), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(a, b)
    del jnp


def test_run_records_environment_and_tensorboard(tmp_path):
    import subprocess

    _train(tmp_path, "env", steps=10)
    info = [json.loads(line) for line in (tmp_path / "env" / "run_info.jsonl").read_text().splitlines()]
    assert len(info) == 1
    assert info[0]["config"]["objective"] == "wgan-gp" and info[0]["device_count"] >= 1
    import jax

    assert info[0]["packages"]["jax"] == jax.__version__
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=pathlib.Path(__file__).parent
    ).stdout.strip()
    if head:  # a git checkout: the run names its revision
        assert info[0]["git_revision"] == head
    assert list((tmp_path / "env" / "tensorboard").glob("events.out.tfevents.*"))


def test_best_metric_must_be_logged(tmp_path):
    with pytest.raises(ValueError, match="best_metric 'nope'.*w1_estimate"):
        _train(tmp_path, "best", steps=10, best_metric="nope")
    _train(tmp_path, "best2", steps=30, best_metric="w1_estimate", best_mode="max", keep_checkpoints=1)
    from gendl_jax.train import checkpoints

    manager = checkpoints.checkpoint_manager(tmp_path / "best2" / "checkpoints")
    lines = {
        json.loads(line)["step"]: json.loads(line)["w1_estimate"]
        for line in (tmp_path / "best2" / "metrics.jsonl").read_text().splitlines()
    }
    best = max(lines, key=lines.get)
    assert sorted(manager.all_steps()) == sorted({best, 30})
    manager.close()


DEVICES_SCRIPT = """
import sys, jax, numpy as np
from gendl_jax.objectives import gan
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate
out = sys.argv[1]
config = gan.GANConfig(hidden=(16, 16), g_batch_norm=True)
for n in (1, 4):
    train_and_evaluate("gan", config, TrainConfig(data="ring8", steps=10, batch_size=32, out=f"{out}/d{n}",
                       devices=n, log_every=5, checkpoint_every=5, sample_every=0, n_samples=100, progress=False))
_, one, _ = load_run(f"{out}/d1")
_, four, _ = load_run(f"{out}/d4")
err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
          zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(four)))
print("max abs difference", err)
for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(four)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
try:
    TrainConfig(devices=8).validate()
    train_and_evaluate("gan", config, TrainConfig(data="ring8", steps=1, devices=8, out=f"{out}/d8", progress=False))
except ValueError as e:
    print("error:", e)
try:
    train_and_evaluate("gan", config, TrainConfig(data="ring8", steps=1, batch_size=30, devices=4,
                       out=f"{out}/odd", progress=False))
except ValueError as e:
    print("error:", e)
"""


def test_devices_flag_trains_data_parallel_like_one_device(tmp_path):
    import os
    import subprocess
    import sys

    # PJRT_NPROC: a thread pool large enough for 4 devices' collectives (see test_parallel.multi_device_env)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", PJRT_NPROC="8")
    result = subprocess.run(
        [sys.executable, "-c", DEVICES_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "max abs difference" in result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.stdout
    assert "8" in errors[0] and "4" in errors[0]
    assert "batch_size=30" in errors[1] and "4 devices" in errors[1]


def test_cli_trains_and_samples_a_class_conditional_gan(tmp_path, capsys):
    out = tmp_path / "cgan"
    common = [
        "--model",
        "mlp",
        "--hidden",
        "16",
        "--data",
        "digits",
        "--batch-size",
        "16",
        "--log-every",
        "1",
        "--no-progress",
        "--n-samples",
        "20",
    ]
    cli.main(["train", "gan", *common, "--num-classes", "10", "--steps", "3", "--out", str(out)])
    _, state, record = load_run(out)
    assert record["config"]["num_classes"] == 10 and state.config.num_classes == 10
    assert state.discriminator.params["projection"]["kernel"].shape == (16, 10)
    cli.main(["sample", str(out), "-n", "9", "--out", str(tmp_path / "s.npy")])
    from gendl_jax.objectives import adversarial

    key = jax.random.PRNGKey(0)  # `gendl sample`'s default seed; labels uniform from the same key
    expected = adversarial.generate(
        state, jax.random.normal(key, (9, 100)), labels=adversarial.sample_labels(state, key, 9)
    )
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-6, atol=1e-6)
    cli.main(["sample", str(out), "-n", "9", "--truncation", "1.5", "--out", str(tmp_path / "t.npy")])
    assert np.load(tmp_path / "t.npy").shape == (9, 8, 8, 1)
    cli.main(["sample", str(out), "-n", "9", "--label", "3", "--out", str(tmp_path / "three.npy")])
    threes = adversarial.generate(state, jax.random.normal(key, (9, 100)), labels=np.full(9, 3, np.int32))
    np.testing.assert_allclose(np.load(tmp_path / "three.npy"), threes, rtol=1e-6, atol=1e-6)
    assert json.loads((tmp_path / "three.json").read_text())["label"] == 3
    from gendl_jax import sampling

    cli.main(["sample", str(out), "-n", "9", "--label", "3", "--truncation", "1.5", "--out", str(tmp_path / "t3.npy")])
    want = sampling.sample_gan(state, jax.random.fold_in(key, 1), 9, truncation=1.5, label=3).samples
    z = sampling.truncated_latents(jax.random.split(jax.random.fold_in(key, 1), 1)[0], 1000, 100, 1.5)[:9]
    np.testing.assert_allclose(
        want, adversarial.generate(state, z, labels=np.full(9, 3, np.int32)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.load(tmp_path / "t3.npy"), want, rtol=1e-6, atol=1e-6)
    # discriminator rejection sampling, each proposal scored with its label (calibration with labels)
    cli.main(
        [
            "sample",
            str(out),
            "-n",
            "40",
            "--drs-acceptance",
            "0.5",
            "--calibration",
            "200",
            "--no-progress",
            "--out",
            str(tmp_path / "drs.npy"),
        ]
    )
    info = json.loads((tmp_path / "drs.json").read_text())
    assert np.load(tmp_path / "drs.npy").shape == (40, 8, 8, 1) and info["sampler"] == "drs"
    assert info["calibration"]["n_real"] == 200
    capsys.readouterr()
    for argv, message in [
        (["sample", str(out), "-n", "9", "--ddls-steps", "3"], "implemented for unconditional GANs"),
        (["sample", str(out), "-n", "9", "--label", "10"], "--label 10: the run's classes are 0..9"),
        (
            ["train", "gan", *common, "--num-classes", "5", "--steps", "1", "--out", str(tmp_path / "few")],
            r"num_classes=5, but dataset 'digits' has labels in [0, 9]; num_classes must be > 9",
        ),
        (
            [
                "train",
                "gan",
                "--model",
                "mlp",
                "--hidden",
                "8",
                "--data",
                "ring8",
                "--num-classes",
                "3",
                "--steps",
                "1",
                "--no-progress",
                "--out",
                str(tmp_path / "toy"),
            ],
            "needs labelled data; dataset 'ring8' has no labels",
        ),
    ]:
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert message in capsys.readouterr().err
