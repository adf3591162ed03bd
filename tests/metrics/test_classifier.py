"""LeNet and the shipped MNIST classifier: shapes, parameter count, accuracy, batching, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.data import load_dataset
from gendl_jax.metrics import classifier as clf
from gendl_jax.metrics import mnist_classifier, prepare_images
from gendl_jax.models import LeNet


def _n_params(tree):
    return sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(tree))


def test_lenet5_parameter_count_and_shapes():
    model = LeNet()  # LeNet-5 widths: conv 6, 16 (5x5), dense 120, 84, 10 classes
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    expected = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (16 * 5 * 5 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert _n_params(params) == expected == 61706
    logits, feats = jax.jit(model.apply)(params, jnp.ones((3, 28, 28, 1)))
    assert logits.shape == (3, 10) and feats.shape == (3, 84)
    custom = LeNet(num_classes=4, channels=(3, 5), hidden=(7,))
    logits, feats = custom.apply(
        custom.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1))), jnp.ones((2, 28, 28, 1))
    )
    assert logits.shape == (2, 4) and feats.shape == (2, 7)


def test_lenet_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 28, 28, 1\)"):
        LeNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(ValueError, match="channels"):
        LeNet(channels=(6,)).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


def test_shipped_checkpoint_is_small_and_accurate(mnist_dir):
    size = sum(f.stat().st_size for f in clf.ASSET_DIR.rglob("*") if f.is_file())
    assert 0 < size < 5 * 2**20
    test = load_dataset("mnist", split="test", data_dir=mnist_dir)
    assert mnist_classifier().accuracy(test.images, test.labels) >= 0.99


def test_batches_and_head_agree_with_direct_apply(mnist_dir):
    net = mnist_classifier()
    images = load_dataset("mnist", split="test", data_dir=mnist_dir).images[:23]
    logits, feats = net.logits_and_features(images, batch_size=7)  # 4 batches, the last padded
    x = images.astype(np.float32) / 127.5 - 1.0  # (23, 28, 28, 1) uint8 -> [-1, 1]
    direct_logits, direct_feats = net.model.apply(net.params, x)
    np.testing.assert_allclose(logits, direct_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats, direct_feats, rtol=1e-5, atol=1e-5)
    head = net.params["params"]["classifier"]
    np.testing.assert_allclose(
        logits,
        feats.astype(np.float64) @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"]),
        rtol=1e-4,
        atol=1e-4,
    )
    assert feats.shape == (23, 128) and np.all(feats >= 0)  # post-ReLU features


def test_prepare_images():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    as_float = u8.astype(np.float64) / 255.0  # [0, 1] images with value_range=(0, 1)
    np.testing.assert_allclose(prepare_images(u8), prepare_images(as_float, value_range=(0.0, 1.0)), atol=1e-6)
    assert prepare_images(u8).shape == (5, 28, 28, 1)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        prepare_images(np.zeros((5, 32, 32), np.float32))
    with pytest.raises(ValueError, match="value_range"):
        prepare_images(np.full((2, 28, 28), 255.0))
    with pytest.raises(ValueError, match="NaN"):
        prepare_images(np.full((2, 28, 28, 1), np.nan))
    with pytest.raises(TypeError, match="uint8 or floating"):
        prepare_images(np.zeros((2, 28, 28), np.int32))


def test_save_and_load_round_trip(tmp_path):
    net = clf.init_classifier(jax.random.PRNGKey(3), channels=(4, 8), hidden=(16,))
    clf.save_classifier(net, tmp_path / "ckpt")
    back = clf.load_classifier(tmp_path / "ckpt", channels=(4, 8), hidden=(16,))
    for a, b in zip(jax.tree_util.tree_leaves(net.params), jax.tree_util.tree_leaves(back.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("precision, expected", [("highest", "HIGHEST"), (None, None)])
def test_feature_program_precision(precision, expected):
    # Every product of the feature network carries the classifier's precision, so that scores do not
    # depend on a backend's default (possibly TF32 for float32 on recent NVIDIA GPUs); None leaves it.
    shipped = mnist_classifier()
    c = clf.MnistClassifier(shipped.model, shipped.params, precision=precision)
    text = c._apply.lower(c.params, np.zeros((2, 28, 28, 1), np.float32)).as_text()
    products = [
        line for line in text.splitlines() if "stablehlo.convolution" in line or "stablehlo.dot_general" in line
    ]
    assert len(products) == 2 + len(shipped.model.hidden) + 1  # two convolutions, the dense layers, the head
    for line in products:
        if expected is None:
            assert "HIGHEST" not in line and "HIGH" not in line, line
        else:
            assert line.count(expected) == 2, line  # both operands
