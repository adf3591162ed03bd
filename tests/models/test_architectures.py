"""Classic architectures: parameter counts (via jax.eval_shape) against the published ones, tiny forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.models import classic, resnet
from gendl_jax.models.lenet import LeNet

IMAGENET = (1, 224, 224, 3)
CIFAR = (1, 32, 32, 3)


def jit_init(model, x, *args):
    return jax.jit(lambda k, x: model.init(k, x, *args))(jax.random.PRNGKey(0), x)


def count_params(model, shape) -> int:
    """Number of trainable parameters (the "params" collection; BatchNorm running statistics excluded)."""
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape, jnp.float32)))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(variables["params"]))


# Exact counts: the "num_params" field of torchvision's model documentation
# (https://pytorch.org/vision/stable/models.html, e.g. .../torchvision.models.resnet50.html: 25557032).
# The lecture's table rounds them: ResNet-50 25.6M, ResNet-101 44.5M, ResNet-152 60.2M, WRN-50-2 68.9M,
# VGG-16 138M, AlexNet ~61M.
TORCHVISION_COUNTS = [
    ("resnet18", resnet.resnet18, 11_689_512),
    ("resnet34", resnet.resnet34, 21_797_672),
    ("resnet50", resnet.resnet50, 25_557_032),
    ("resnet101", resnet.resnet101, 44_549_160),
    ("resnet152", resnet.resnet152, 60_192_808),
    ("wide_resnet50_2", resnet.wide_resnet50_2, 68_883_240),
    ("vgg16", classic.vgg16, 138_357_544),
    ("alexnet", classic.AlexNet, 61_100_840),
]


@pytest.mark.parametrize("name,build,published", TORCHVISION_COUNTS, ids=[c[0] for c in TORCHVISION_COUNTS])
def test_imagenet_parameter_counts_equal_torchvision(name, build, published):
    assert count_params(build(), IMAGENET) == published


# Rounded counts from the papers; checked to the precision they are printed with.
PAPER_COUNTS = [
    # He et al. 2016, "Deep Residual Learning", Table 6 (CIFAR-10): 0.27M, 0.85M, 1.7M.
    ("cifar_resnet20", lambda: resnet.CifarResNet(20), CIFAR, 0.27e6, 0.005e6),
    ("cifar_resnet56", lambda: resnet.CifarResNet(56), CIFAR, 0.85e6, 0.005e6),
    ("cifar_resnet110", lambda: resnet.CifarResNet(110), CIFAR, 1.7e6, 0.05e6),
    # Zagoruyko & Komodakis 2016, "Wide Residual Networks", Table 5: WRN-28-10 36.5M.
    ("wrn_28_10", resnet.wrn_28_10, CIFAR, 36.5e6, 0.05e6),
    # He et al. 2016 Table 3 / the lecture's table: ResNet-50 25.6M, ResNet-101 44.5M, ResNet-152 60.2M.
    ("resnet50_lecture", resnet.resnet50, IMAGENET, 25.6e6, 0.05e6),
    ("resnet152_lecture", resnet.resnet152, IMAGENET, 60.2e6, 0.05e6),
    # LeCun et al. 1998: LeNet-5 has "about 60,000" parameters (our 28x28 variant: 61,706).
    ("lenet5", LeNet, (1, 28, 28, 1), 60_000, 2_000),
]


@pytest.mark.parametrize("name,build,shape,published,half_ulp", PAPER_COUNTS, ids=[c[0] for c in PAPER_COUNTS])
def test_parameter_counts_match_papers(name, build, shape, published, half_ulp):
    assert abs(count_params(build(), shape) - published) <= half_ulp


@pytest.fixture(scope="module")
def tiny_resnet():
    model = resnet.ResNet((1, 1, 1, 1), "basic", num_classes=7)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
    return model, x, jit_init(model, x)


def test_basic_resnet_tiny_forward_train_and_eval(tiny_resnet):
    model, x, variables = tiny_resnet
    logits, features = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, x)
    assert logits.shape == (2, 7) and features.shape == (2, 512)
    # The head is a linear map of the pooled features.
    fc = variables["params"]["fc"]
    np.testing.assert_allclose(logits, features @ fc["kernel"] + fc["bias"], rtol=1e-5, atol=1e-5)
    out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert out.shape == (2, 7)
    old = variables["batch_stats"]["bn1"]["mean"]
    new = updates["batch_stats"]["bn1"]["mean"]
    assert not np.allclose(old, new)


def test_frozen_bn_stage_uses_running_statistics_in_train_mode(tiny_resnet):
    free, x, variables = tiny_resnet
    frozen = free.clone(frozen_bn=("bn1", "layer1", "layer2", "layer3", "layer4"))
    out_train, updates = jax.jit(lambda v, x: frozen.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    np.testing.assert_allclose(out_train, jax.jit(free.apply)(variables, x), rtol=1e-5, atol=1e-5)
    jax.tree_util.tree_map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])
    with pytest.raises(ValueError, match="valid names"):
        resnet.resnet18(frozen_bn=("layer9",)).init(jax.random.PRNGKey(0), x)


def test_bottleneck_resnet_tiny_forward():
    model = resnet.ResNet((1, 1, 1, 1), "bottleneck", num_classes=4)
    x = jnp.ones((1, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert variables["params"]["layer4"]["0"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
    assert variables["params"]["layer4"]["0"]["conv2"]["kernel"].shape == (3, 3, 512, 512)
    assert variables["params"]["layer4"]["0"]["downsample"]["0"]["kernel"].shape == (1, 1, 1024, 2048)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, 4)


def test_cifar_resnet_option_a_shortcut_and_wrn_forward():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 32, 32, 3))
    model = resnet.CifarResNet(depth=8, num_classes=10)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 10)
    # Option A: stride-2 subsampling and zero channels; with the residual branch zeroed the block
    # is relu(shortcut).
    block = resnet.CifarBlock(32, stride=2)
    h = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 16))
    bv = jit_init(block, h, False)
    bv["params"]["bn2"]["scale"] = jnp.zeros_like(bv["params"]["bn2"]["scale"])
    out = jax.jit(lambda v, h: block.apply(v, h, False))(bv, h)
    expected = np.zeros((2, 4, 4, 32), np.float32)
    expected[..., 8:24] = np.maximum(np.asarray(h)[:, ::2, ::2, :], 0)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    wrn = resnet.WideResNet(depth=10, widen_factor=1, num_classes=5)
    wv = jax.eval_shape(lambda: wrn.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(wrn.apply, wv, x).shape == (2, 5)


def test_alexnet_and_vgg16_output_shapes():
    for model, size in ((classic.AlexNet(num_classes=9), 63), (classic.vgg16(num_classes=9), 32)):
        x = jnp.zeros((2, size, size, 3))
        out = jax.eval_shape(lambda: model.apply(model.init(jax.random.PRNGKey(0), x), x))
        assert out.shape == (2, 9)


def test_adaptive_avg_pool_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 13, 10, 3)).astype(np.float32)
    ours = jax.jit(lambda a: classic.adaptive_avg_pool(a, (6, 4)))(x)
    ref = torch.nn.AdaptiveAvgPool2d((6, 4))(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "build,bad,match",
    [
        (lambda: resnet.CifarResNet(depth=21), (1, 32, 32, 3), "depth"),
        (lambda: resnet.WideResNet(depth=27), (1, 32, 32, 3), "depth"),
        (lambda: resnet.resnet18(num_classes=0), (1, 32, 32, 3), "num_classes"),
        (lambda: resnet.resnet18(), (32, 32, 3), "x must have shape"),
        (lambda: classic.AlexNet(), (1, 32, 32, 3), "H, W >= 63"),
    ],
)
def test_bad_configuration_raises(build, bad, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: build().init(jax.random.PRNGKey(0), jnp.zeros(bad)))
