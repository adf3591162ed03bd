"""`gendl fid` and `gendl eval --features inception` end to end (random calibrated weights; see conftest.py)."""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pytest
from conftest import smooth_images
from PIL import Image

from gendl_jax import cli
from gendl_jax.metrics import inception_features as inf
from gendl_jax.metrics.fid import feature_statistics, frechet_distance
from gendl_jax.metrics.inception import inception_score
from gendl_jax.metrics.kernel import kid
from gendl_jax.objectives import gan
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # random weights; few samples


def _last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_fid_command_prints_the_fid_last_and_saves_statistics(tmp_path, capsys, inception_weights):
    rng = np.random.default_rng(0)
    a, b = smooth_images(rng, 80, 24, 24, 3), smooth_images(rng, 80, 40, 40, 1)
    (tmp_path / "a").mkdir()
    for i, im in enumerate(a):
        Image.fromarray(im).save(tmp_path / "a" / f"{i}.jpg", quality=95)
    np.save(tmp_path / "b.npy", b)
    w = ["--inception-weights", str(inception_weights), "--dims", "64", "--batch-size", "32"]
    cli.main(["fid", str(tmp_path / "a"), str(tmp_path / "b.npy"), *w, "--no-progress"])
    line = _last_line(capsys)
    assert line.startswith("FID: ")
    value = float(line.split(": ", 1)[1])

    # the same number from the features computed here, read back from the JPEGs with PIL
    extractor = inf.load_inception(inception_weights)
    decoded = np.stack([np.asarray(Image.open(tmp_path / "a" / f"{i}.jpg")) for i in range(80)])
    fa = extractor.features(decoded, ("64",))["64"]
    fb = extractor.features(b, ("64",))["64"]
    expected = frechet_distance(*feature_statistics(fa), *feature_statistics(fb))
    assert value == pytest.approx(expected, rel=1e-6)

    cli.main(["fid", "--save-stats", str(tmp_path / "b.npy"), str(tmp_path / "b_stats.npz"), *w, "--no-progress"])
    with np.load(tmp_path / "b_stats.npz") as f:  # pytorch-fid reads f["mu"][:], f["sigma"][:]
        np.testing.assert_allclose(f["mu"], feature_statistics(fb)[0], rtol=1e-10)
        assert f["sigma"].shape == (64, 64)
    cli.main(["fid", str(tmp_path / "a"), str(tmp_path / "b_stats.npz"), *w, "--no-progress"])
    assert float(_last_line(capsys).split(": ", 1)[1]) == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "holds no image file"),
        ("no_weights", "pt_inception-2015-12-05-6726825d.pth"),
        ("dims", "holds statistics of dimension 64, but dims is 2048"),
    ],
)
def test_fid_command_errors_are_one_line(tmp_path, capsys, monkeypatch, inception_weights, setup, message):
    monkeypatch.delenv(inf.WEIGHTS_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    inf.save_statistics(tmp_path / "s.npz", np.zeros(64), np.eye(64))
    args = {
        "empty": ["fid", str(tmp_path / "empty"), str(tmp_path / "s.npz"), "--dims", "64"],
        "no_weights": ["fid", str(tmp_path / "empty"), str(tmp_path / "s.npz")],
        "dims": ["fid", str(tmp_path / "s.npz"), str(tmp_path / "s.npz")],
    }[setup]
    if setup == "empty":
        args += ["--inception-weights", str(inception_weights)]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gendl fid: error: ") and message in err and "\n" not in err


def test_eval_features_inception_adds_the_inception_scores(tmp_path, mnist_dir, inception_weights):
    run = tmp_path / "mnist"
    train_and_evaluate(
        "gan",
        gan.GANConfig(model="mlp", hidden=(16,)),
        TrainConfig(
            data="mnist",
            data_dir=str(mnist_dir),
            steps=2,
            batch_size=16,
            out=str(run),
            log_every=1,
            sample_every=0,
            checkpoint_every=2,
            n_samples=16,
            progress=False,
        ),
    )
    n = 24
    cli.main(
        ["eval", str(run), "-n", str(n), "--classifier-steps", "1", "--geometry-iterations", "0"]
        + ["--features", "inception", "--inception-weights", str(inception_weights)]
    )
    result = json.loads((run / "eval.json").read_text())
    assert result["inception_reference"] == "mnist:test" and result["inception_n_fake"] == n
    assert "fid" in result  # the LeNet measures stay

    # recomputed with the public functions: the run's samples, as PNG would store them
    objective, state, _ = load_run(run)
    samples = np.asarray(jax.jit(objective.sample, static_argnums=2)(state, jax.random.PRNGKey(0), n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        extractor = inf.load_inception(inception_weights)
    feats = extractor.features(inf.to_uint8(samples, objective.value_range), ("2048", "logits_unbiased"))
    is_mean, _ = inception_score(feats["logits_unbiased"], 10, from_logits=True, shuffle_seed=2020)
    assert result["inception_is"] == pytest.approx(is_mean, rel=1e-6)
    from gendl_jax.data import load_dataset

    test = load_dataset("mnist", split="test", data_dir=str(mnist_dir)).images
    real = test[np.random.default_rng(5).choice(len(test), n, replace=False)]
    real_feats = extractor.features(real, ("2048",))["2048"]
    fid = frechet_distance(*feature_statistics(real_feats), *feature_statistics(feats["2048"]))
    assert result["inception_fid"] == pytest.approx(fid, rel=1e-6)
    assert result["inception_kid"] == pytest.approx(
        kid(real_feats, feats["2048"], seed=2020, subset_size=n)[0], rel=1e-6
    )


def test_eval_features_inception_rejects_point_data(tmp_path):
    from gendl_jax.evaluation import evaluate_run

    with pytest.raises(ValueError, match="features must be one of"):
        evaluate_run(tmp_path, n=10, features="vgg")


def test_train_on_cifar10_then_eval_with_inception_features(tmp_path, monkeypatch, capsys, inception_weights):
    """`gendl train --data cifar10` on fake files in the published format (their own checksums published for the
    test), then `gendl eval --features inception` against the test split, DCGAN at 32 x 32 x 3."""
    from data.test_cifar import make_cifar

    from gendl_jax.data import cifar

    fake = make_cifar(tmp_path / "data", "cifar10", tarball=True, folder=False, n=12)
    monkeypatch.setitem(cifar.CIFAR_ARCHIVES, "cifar10", (cifar.CIFAR_ARCHIVES["cifar10"][0], fake["md5"]["tarball"]))
    out = tmp_path / "run"
    cli.main(
        ["train", "gan", "--data", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "dcgan"]
        + ["--steps", "2", "--batch-size", "8", "--base-features", "8", "--n-samples", "16", "--out", str(out)]
        + ["--no-progress"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    samples = np.load(out / "samples.npy")
    assert samples.shape == (16, 32, 32, 3) and np.isfinite(samples).all()
    cli.main(
        ["eval", str(out), "-n", "12", "--features", "inception", "--inception-weights", str(inception_weights)]
        + ["--inception-preprocessing", "torch-fidelity"]
    )
    result = json.loads((out / "eval.json").read_text())
    assert result["inception_reference"] == "cifar10:test" and result["inception_preprocessing"] == "torch-fidelity"
    assert result["inception_n_real"] == 12 and np.isfinite(result["inception_fid"]) and result["inception_is"] >= 1
