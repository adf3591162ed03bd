"""The fit loop and the CLI end to end on tiny networks: files written, resume, sampling."""

import json

import numpy as np
import pytest

from gendl_jax import cli
from gendl_jax.objectives import wgan
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

TINY = wgan.WGANGPConfig(hidden=(16, 16), n_critic=2)


def _train(tmp_path, name="run", **kw):
    settings = dict(data="ring8", steps=30, batch_size=32, out=str(tmp_path / name), log_every=10,
                    sample_every=15, checkpoint_every=10, n_samples=500, progress=False)
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
        train_and_evaluate("wgan-gp", wgan.WGANGPConfig(hidden=(16, 16), n_critic=3), TrainConfig(
            data="ring8", steps=30, batch_size=32, out=str(tmp_path / "split"), resume=True, progress=False))
    summary = _train(tmp_path, "split", steps=30, resume=True)
    assert summary["resumed_from"] == 20
    # Resuming gives the same parameters, bit for bit, as the uninterrupted run on CPU.
    np.testing.assert_array_equal(np.load(tmp_path / "split" / "samples.npy"),
                                  np.load(tmp_path / "straight" / "samples.npy"))
    _, state_a, _ = load_run(tmp_path / "split")
    _, state_b, _ = load_run(tmp_path / "straight")
    import jax

    for a, b in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b)):
        np.testing.assert_array_equal(a, b)


def test_cli_train_and_sample(tmp_path, capsys):
    out = tmp_path / "cli"
    cli.main(["train", "wgan", "--hidden", "8", "8", "--n-critic", "2", "--data", "grid25", "--steps", "4",
              "--batch-size", "16", "--out", str(out), "--log-every", "2", "--no-progress", "--n-samples", "100"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_modes"] == 25 and summary["steps"] == 4
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["n_critic"] == 2 and record["config"]["optimizer"] == "rmsprop"
    cli.main(["sample", str(out), "-n", "7", "--out", str(tmp_path / "s.npy")])
    assert np.load(tmp_path / "s.npy").shape == (7, 2)


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
