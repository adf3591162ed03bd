"""`gendl eval` end to end on tiny runs: eval.json holds the measures of the run's own samples."""

import json

import jax
import numpy as np
import ot
import pytest
from scipy.special import softmax

from gendl_jax import cli
from gendl_jax.data import ring8
from gendl_jax.metrics import mode_coverage
from gendl_jax.objectives import gan, wgan_gp
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate


def _samples(run, n, seed):
    objective, state, _ = load_run(run)
    return np.asarray(jax.jit(objective.sample, static_argnums=2)(state, jax.random.PRNGKey(seed), n))


def test_eval_toy_run(tmp_path):
    run = tmp_path / "toy"
    train_and_evaluate(
        "wgan-gp",
        wgan_gp.WGANGPConfig(hidden=(16, 16), n_critic=2),
        TrainConfig(
            data="ring8",
            steps=10,
            batch_size=32,
            out=str(run),
            log_every=5,
            sample_every=0,
            checkpoint_every=10,
            n_samples=100,
            progress=False,
        ),
    )
    cli.main(["eval", str(run), "--n", "300", "--seed", "3"])
    result = json.loads((run / "eval.json").read_text())
    samples = _samples(run, 300, 3).astype(np.float64)
    dist = ring8()
    expected = mode_coverage(samples, dist.modes, dist.std)
    assert {k: result[k] for k in expected} == expected
    truth = dist.sample(np.random.default_rng(3), 300).astype(np.float64)
    w1 = ot.emd2(np.full(300, 1 / 300), np.full(300, 1 / 300), ot.dist(samples, truth, metric="euclidean"))
    w2 = np.sqrt(ot.emd2(np.full(300, 1 / 300), np.full(300, 1 / 300), ot.dist(samples, truth)))
    np.testing.assert_allclose([result["w1_to_true_mixture"], result["w2_to_true_mixture"]], [w1, w2], rtol=1e-6)
    assert (run / "eval_samples.png").stat().st_size > 1000


def test_eval_rejects_bad_n(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path / "missing"), "--n", "1"])
    assert "n must be an int >= 2" in capsys.readouterr().err
    from gendl_jax.evaluation import evaluate_run

    with pytest.raises(ValueError, match="classifier_steps must be >= 1, got 0"):
        evaluate_run(tmp_path / "missing", n=10, classifier_steps=0)
    with pytest.raises(
        ValueError,
        match=r"geometry_iterations must be an int >= 0 \(0 skips the Geometry Score\), "
        "got -1",
    ):
        evaluate_run(tmp_path / "missing", n=10, geometry_iterations=-1)


def test_eval_mnist_run(tmp_path, mnist_dir):
    """One tiny class-conditional MLP GAN (its eval has every MNIST measure, the label-based ones too; the
    unconditional MNIST path is the VAE test's): each number of eval.json recomputed with the public functions."""
    from gendl_jax.data import load_dataset
    from gendl_jax.learned_metrics import adversarial_accuracy, gan_quality_index
    from gendl_jax.metrics import (
        am_score,
        class_balance,
        fid,
        geometry_score_estimates,
        inception_score,
        low_level_statistics,
        mass_coverage,
        mnist_classifier,
        mode_score,
        modified_inception_score,
        ndb,
        ssim_diversity,
    )
    from gendl_jax.objectives import adversarial

    run = tmp_path / "mnist"
    train_and_evaluate(
        "gan",
        gan.GANConfig(model="mlp", hidden=(32,), num_classes=10),
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
    cli.main(["eval", str(run), "-n", "300", "--classifier-steps", "200", "--geometry-iterations", "4"])
    result = json.loads((run / "eval.json").read_text())
    samples = _samples(run, 300, 0)
    net = mnist_classifier()
    logits, feats = net.logits_and_features(samples)
    from gendl_jax.evaluation import mnist_test_subset

    test_images = load_dataset("mnist", split="test", data_dir=mnist_dir).images
    real_logits, real_feats = net.logits_and_features(test_images[mnist_test_subset(300, 0)])
    np.testing.assert_allclose(result["fid"], fid(real_feats, feats), rtol=1e-9)
    np.testing.assert_allclose(result["inception_score"], inception_score(logits, 10)[0], rtol=1e-9)
    # MODE and AM scores against p*(y) = the classifier's mean prediction on the real images.
    real_labels = softmax(np.asarray(real_logits, np.float64), axis=1).mean(0)
    np.testing.assert_allclose(result["mode_score"], mode_score(logits, real_labels), rtol=1e-9)
    np.testing.assert_allclose(result["am_score"], am_score(logits, real_labels), rtol=1e-9)
    np.testing.assert_allclose(result["modified_inception_score"], modified_inception_score(logits)["score"], rtol=1e-9)
    # NDB over 6 bins (300 real samples), seeded from the eval key (PRNGKey(seed + 1)) folded with 1.
    bins = ndb(real_feats, feats, key=jax.random.fold_in(jax.random.PRNGKey(1), 1), n_bins=6)
    assert result["ndb_bins"] == 6 and result["ndb_fraction"] == bins["ndb_fraction"]
    assert result["ndb_js"] == pytest.approx(bins["js_divergence"], rel=1e-12)
    assert result["mass_coverage"] == mass_coverage(real_feats, feats)["coverage"]
    # low-level statistics of the images in [-1, 1], keyed by the eval key folded with 2
    stats = low_level_statistics(
        test_images[mnist_test_subset(300, 0)] / 127.5 - 1.0, samples, key=jax.random.fold_in(jax.random.PRNGKey(1), 2)
    )
    for name in ("log_power_spectrum_rms", "filter_response_w1", "mean_intensity_w1", "contrast_w1"):
        assert result[name] == pytest.approx(stats[name], rel=1e-5), name
    want = ssim_diversity(samples, data_range=2.0, labels=np.argmax(logits, 1), n_pairs=100)["mean"]
    assert result["ssim_diversity"] == pytest.approx(want, rel=1e-12)
    # class balance: the LeNet's labels of the samples against the shares of its labels on the real images
    balance = class_balance(
        np.argmax(logits, 1), 10, reference=np.bincount(np.argmax(real_logits, 1), minlength=10) / len(real_logits)
    )
    assert result["class_balance_tv"] == pytest.approx(balance["total_variation"], rel=1e-12)
    assert result["class_balance_kl"] == pytest.approx(balance["kl_to_reference"], rel=1e-12)
    assert result["missing_classes"] == balance["missing_classes"]
    # GQI: MLPs on pixels in [-1, 1], C_real on 300 random train digits (subset seed 3 = eval seed + 3, key
    # PRNGKey(4)), scored on all of MNIST test
    data = {split: load_dataset("mnist", split=split, data_dir=mnist_dir) for split in ("train", "test")}
    idx = np.random.default_rng(3).choice(len(data["train"]), 300, replace=False)
    scaled = lambda images: images.astype(np.float32) / 127.5 - 1.0
    want = gan_quality_index(
        samples,
        scaled(data["train"].images[idx]),
        data["train"].labels[idx],
        scaled(data["test"].images),
        data["test"].labels,
        jax.random.PRNGKey(4),
        num_classes=10,
        steps=200,
    )
    assert result["classifier_steps"] == 200
    assert result["gqi"] == pytest.approx(want["gqi"], rel=1e-12)
    assert result["gqi_accuracy_real"] == pytest.approx(want["accuracy_real"], abs=1e-12)
    # Geometry Score on pixels in [-1, 1] against the same 300 test images, key PRNGKey(seed + 4), 4 draws
    real_pixels = scaled(test_images[mnist_test_subset(300, 0)]).reshape(300, -1).astype(np.float64)
    want = geometry_score_estimates(
        real_pixels, samples.reshape(300, -1).astype(np.float64), key=jax.random.PRNGKey(4), n_iterations=4
    )
    assert result["geometry_score_iterations"] == 4 and result["geometry_score_landmarks"] == 64
    assert result["geometry_score"] == pytest.approx(want["score"], rel=1e-12) and result["geometry_score"] > 0
    assert result["geometry_score_unbiased"] == pytest.approx(want["score_unbiased"], rel=1e-12)
    for name in ("kid", "precision", "recall", "density", "coverage", "nn_two_sample", "nearest_train_distance_mean"):
        assert np.isfinite(result[name])
    assert (run / "nearest_neighbours.png").stat().st_size > 1000
    # the labels the samples were drawn for: how often the LeNet reads them so
    _, state, _ = load_run(run)
    drawn_for = np.asarray(adversarial.sample_labels(state, jax.random.PRNGKey(0), 300))
    assert result["label_accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == drawn_for), abs=1e-12)
    # adversarial accuracy / divergence: MLPs on pixels in [-1, 1], trained on the samples and on 300 random train
    # digits (subset seed 2 = eval seed + 2, key PRNGKey(3)), scored on all of MNIST test
    idx = np.random.default_rng(2).choice(len(data["train"]), 300, replace=False)
    want = adversarial_accuracy(
        samples,
        drawn_for,
        scaled(data["train"].images[idx]),
        data["train"].labels[idx],
        scaled(data["test"].images),
        data["test"].labels,
        jax.random.PRNGKey(3),
        num_classes=10,
        steps=200,
    )
    assert result["adversarial_accuracy_fake"] == pytest.approx(want["accuracy_fake"], abs=1e-12)
    assert result["adversarial_accuracy_real"] == pytest.approx(want["accuracy_real"], abs=1e-12)
    assert result["adversarial_divergence"] == pytest.approx(want["adversarial_divergence"], rel=1e-6)
    assert result["adversarial_accuracy_real"] > 0.7  # 300 real digits already teach the MLP most of MNIST


def test_eval_vae_run_maps_its_value_range(tmp_path, mnist_dir):
    """VAE samples are Bernoulli means in [0, 1]: eval maps them to the classifier's [-1, 1]."""
    from gendl_jax.metrics import inception_score, mnist_classifier
    from gendl_jax.objectives import vae

    run = tmp_path / "vae"
    train_and_evaluate(
        "vae",
        vae.VAEConfig(latent_dim=2, hidden=(16,), eval_importance_samples=2, eval_examples=32),
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
    cli.main(["eval", str(run), "-n", "50", "--classifier-steps", "100"])
    result = json.loads((run / "eval.json").read_text())
    # 50 samples are fewer than the Geometry Score's 64 landmarks: no score, and the reason
    assert result["geometry_score"] is None and result["geometry_score_unbiased"] is None
    assert (
        result["geometry_score_note"]
        == "needs >= 64 samples per set (the landmarks of each draw), got 50 samples and 50 real images"
    )
    samples = _samples(run, 50, 0)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    logits, _ = mnist_classifier().logits_and_features(samples, value_range=(0.0, 1.0))
    np.testing.assert_allclose(result["inception_score"], inception_score(logits, 10)[0], rtol=1e-6)


def test_image_measures_without_a_class_pair(mnist_dir):
    """Eight samples of eight different digits: m-IS and the within-class SSIM need two samples of one predicted
    class, so they are None; every other measure is still computed."""
    from gendl_jax.data import load_dataset
    from gendl_jax.evaluation import image_measures
    from gendl_jax.metrics import mnist_classifier

    test = load_dataset("mnist", split="test", data_dir=mnist_dir)
    predicted = np.argmax(mnist_classifier().logits_and_features(test.images[:200])[0], axis=1)
    one_per_class = [int(np.flatnonzero(predicted == c)[0]) for c in range(8)]
    out = image_measures(test.images[one_per_class], test.images[200:500], key=jax.random.PRNGKey(0))
    assert out["modified_inception_score"] is None and out["ssim_diversity"] is None
    assert out["predicted_class_histogram"] == [1] * 8 + [0, 0]
    for name in (
        "inception_score",
        "mode_score",
        "am_score",
        "ndb_fraction",
        "mass_coverage",
        "ssim_diversity_real",
        "precision",
        "kid",
    ):
        assert np.isfinite(out[name]), name


def test_label_accuracy_of_real_digits_is_the_classifier_accuracy(mnist_dir):
    """``label_accuracy`` (eval.json of class-conditional runs: how often the LeNet reads a sample as the digit it
    was drawn for; checked on a run in test_eval_mnist_run) on real digits with their true labels is the
    classifier's accuracy; labels of the wrong shape are an error."""
    from gendl_jax.data import load_dataset
    from gendl_jax.evaluation import image_measures
    from gendl_jax.metrics import mnist_classifier

    test = load_dataset("mnist", split="test", data_dir=mnist_dir)
    idx = np.random.default_rng().choice(len(test), 300, replace=False)
    images, labels = test.images[idx], test.labels[idx]
    out = image_measures(images, test.images[:300], key=jax.random.PRNGKey(0), sample_labels=labels)
    assert out["label_accuracy"] == pytest.approx(mnist_classifier().accuracy(images, labels), abs=1e-12)
    assert out["label_accuracy"] > 0.95
    with pytest.raises(
        ValueError, match=r"sample_labels must be \(300,\) ints, one per fake image, got shape \(299,\)"
    ):
        image_measures(images, test.images[:300], key=jax.random.PRNGKey(0), sample_labels=labels[:299])


def test_quality_index_c_real_learns_only_train_digits_outside_exclude(mnist_dir):
    """The floor's GQI: C_real must not learn the train digits being scored. With ``exclude`` the subset is drawn
    from the other train indices by the documented rule; asking for more digits than are left is an error."""
    from gendl_jax.data import load_dataset
    from gendl_jax.evaluation import quality_index_measures
    from gendl_jax.learned_metrics import gan_quality_index

    train = load_dataset("mnist", split="train", data_dir=mnist_dir)
    test = load_dataset("mnist", split="test", data_dir=mnist_dir)
    rng = np.random.default_rng()
    exclude = rng.choice(len(train), len(train) - 400, replace=False)  # 400 digits left for C_real
    scored = exclude[:300]
    out = quality_index_measures(train.images[scored], train, test, n_train=300, seed=5, steps=20, exclude=exclude)
    pool = np.setdiff1d(np.arange(len(train)), exclude)
    idx = pool[np.random.default_rng(5).choice(400, 300, replace=False)]
    assert not np.isin(idx, exclude).any()
    scaled = lambda images: images.astype(np.float32) / 127.5 - 1.0
    flat = lambda images: scaled(images).reshape(len(images), -1)
    want = gan_quality_index(
        flat(train.images[scored]),
        flat(train.images[idx]),
        train.labels[idx],
        flat(test.images),
        test.labels,
        jax.random.PRNGKey(6),
        num_classes=10,
        steps=20,
    )
    assert out["gqi"] == pytest.approx(want["gqi"], rel=1e-12) and out["gqi_n_train"] == 300
    with pytest.raises(ValueError, match="n_train=401 exceeds the 400 train images left after exclude"):
        quality_index_measures(train.images[scored], train, test, n_train=401, exclude=exclude)
    with pytest.raises(ValueError, match=r"exclude must be a 1-D array of train indices, got shape \(2, 3\)"):
        quality_index_measures(train.images[scored], train, test, n_train=10, exclude=np.zeros((2, 3), int))
