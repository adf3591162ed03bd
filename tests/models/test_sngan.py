"""SNGAN ResNet generator / discriminator (Miyato et al. 2018): parameter counts and forward parity against a PyTorch
implementation of the paper's blocks written here from its layer list, output shapes, spectral normalisation, and
`gendl train gan --model resnet` on MNIST and on a folder of 32x32 RGB images."""

from __future__ import annotations

import json
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gendl_jax import cli
from gendl_jax.models import SNGANDiscriminator, SNGANGenerator

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The published layer lists (Miyato et al. 2018, Appendix B; Mimicry's sngan_32/48/64, the authors' Chainer code),
# written independently of gendl_jax.models.sngan: the generator's first map (side, channels) and its up-blocks
# (in, out); the discriminator's blocks (in, out, downsample), the first one optimised. Widths at base_features 64.
PAPER = {
    32: {"s0": 4, "g": [(256, 256)] * 3, "d": [(3, 128, True), (128, 128, True), (128, 128, False), (128, 128, False)]},
    48: {
        "s0": 6,
        "g": [(512, 256), (256, 128), (128, 64)],
        "d": [(3, 64, True), (64, 128, True), (128, 256, True), (256, 512, True), (512, 1024, False)],
    },
    64: {
        "s0": 4,
        "g": [(1024, 512), (512, 256), (256, 128), (128, 64)],
        "d": [(3, 64, True), (64, 128, True), (128, 256, True), (256, 512, True), (512, 1024, True)],
    },
}
# Parameter counts of the published 32 px networks (3 channels), from the layer list above (no published count found).
G32_PARAMS, D32_PARAMS = 4_276_739, 1_053_825


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


# ---------------------------------------------------------------------------------------------------------------
# The PyTorch reference
# ---------------------------------------------------------------------------------------------------------------


class TorchCBN(torch.nn.Module):
    def __init__(self, c, num_classes):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(c, affine=False)
        self.gain = torch.nn.Embedding(num_classes, c)
        self.bias = torch.nn.Embedding(num_classes, c)

    def forward(self, x, y):
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class TorchGBlock(torch.nn.Module):
    def __init__(self, cin, cout, num_classes):
        super().__init__()
        norm = (lambda c: TorchCBN(c, num_classes)) if num_classes else torch.nn.BatchNorm2d
        self.b1, self.b2 = norm(cin), norm(cout)
        self.c1 = torch.nn.Conv2d(cin, cout, 3, 1, 1)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1)
        self.c_sc = torch.nn.Conv2d(cin, cout, 1, 1, 0)
        self.conditional = bool(num_classes)

    def forward(self, x, y=None):
        bn = (lambda b, h: b(h, y)) if self.conditional else (lambda b, h: b(h))
        up = lambda h: F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.c1(up(F.relu(bn(self.b1, x))))
        h = self.c2(F.relu(bn(self.b2, h)))
        return h + self.c_sc(up(x))


class TorchDBlock(torch.nn.Module):
    def __init__(self, cin, cout, downsample, optimized):
        super().__init__()
        self.optimized, self.downsample = optimized, downsample
        self.c1 = torch.nn.Conv2d(cin, cout if optimized else cin, 3, 1, 1)
        self.c2 = torch.nn.Conv2d(cout if optimized else cin, cout, 3, 1, 1)
        self.learnable_sc = optimized or downsample or cin != cout
        if self.learnable_sc:
            self.c_sc = torch.nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        if self.optimized:
            h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
            return h + self.c_sc(F.avg_pool2d(x, 2))
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = self.c_sc(x) if self.learnable_sc else x
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class TorchG(torch.nn.Module):
    def __init__(self, size, scale=1.0, channels=3, num_classes=0, nz=128):
        super().__init__()
        spec = PAPER[size]
        blocks = [(int(a * scale), int(b * scale)) for a, b in spec["g"]]
        self.s0, self.c0 = spec["s0"], blocks[0][0]
        self.l1 = torch.nn.Linear(nz, self.s0 * self.s0 * self.c0)
        self.blocks = torch.nn.ModuleList([TorchGBlock(a, b, num_classes) for a, b in blocks])
        self.b = torch.nn.BatchNorm2d(blocks[-1][1])
        self.c = torch.nn.Conv2d(blocks[-1][1], channels, 3, 1, 1)

    def forward(self, z, y=None):
        h = self.l1(z).view(z.shape[0], self.c0, self.s0, self.s0)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.c(F.relu(self.b(h))))


class TorchD(torch.nn.Module):
    def __init__(self, size, scale=1.0, channels=3, num_classes=0):
        super().__init__()
        spec = [
            (channels if i == 0 else int(a * scale), int(b * scale), d) for i, (a, b, d) in enumerate(PAPER[size]["d"])
        ]
        self.blocks = torch.nn.ModuleList([TorchDBlock(a, b, d, i == 0) for i, (a, b, d) in enumerate(spec)])
        self.l = torch.nn.Linear(spec[-1][1], 1)
        self.embed = torch.nn.Embedding(num_classes, spec[-1][1]) if num_classes else None

    def forward(self, x, y=None):
        h = x
        for block in self.blocks:
            h = block(h)
        h = torch.sum(F.relu(h), dim=(2, 3))
        out = self.l(h)[:, 0]
        return out if self.embed is None else out + (self.embed(y) * h).sum(1)


def _count_torch(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _variables(module, x, **kwargs):
    return jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False, **kwargs))


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts and shapes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48, 64])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_parameter_counts_match_the_published_architecture(size, num_classes):
    kwargs = {"labels": jnp.zeros((2,), jnp.int32)} if num_classes else {}
    gen = SNGANGenerator(image_shape=(size, size, 3), num_classes=num_classes)
    disc = SNGANDiscriminator(spectral_norm=True, num_classes=num_classes)
    g_params = _variables(gen, jnp.zeros((2, 128)), **kwargs)["params"]
    d_params = _variables(disc, jnp.zeros((2, size, size, 3)), **kwargs)["params"]
    assert _count(g_params) == _count_torch(TorchG(size, num_classes=num_classes))
    assert _count(d_params) == _count_torch(TorchD(size, num_classes=num_classes))
    if size == 32 and not num_classes:
        assert (_count(g_params), _count(d_params)) == (G32_PARAMS, D32_PARAMS)
    if size == 32 and num_classes:
        # conditional BN: 6 block BNs lose their 2 x 256 affine parameters and gain 2 x 256 per class; projection 10 x 128
        assert _count(g_params) == G32_PARAMS + 6 * 2 * 256 * (num_classes - 1)
        assert _count(d_params) == D32_PARAMS + num_classes * 128


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (48, 3), (64, 1)])
def test_output_shapes(size, channels):
    gen = SNGANGenerator(image_shape=(size, size, channels), base_features=2)
    disc = SNGANDiscriminator(base_features=2, spectral_norm=True)
    z, x = jnp.zeros((3, 128)), jnp.zeros((3, size, size, channels))
    g_vars, d_vars = _variables(gen, z), _variables(disc, x)
    images = jax.eval_shape(lambda v: gen.apply(v, z, train=True, mutable=["batch_stats"])[0], g_vars)
    scores = jax.eval_shape(lambda v: disc.apply(v, x, train=True, mutable=["batch_stats"])[0], d_vars)
    assert images.shape == (3, size, size, channels) and scores.shape == (3,)
    # the 28 px adaptation: a 7x7 first map and two up-blocks
    n_blocks = {28: 2, 32: 3, 48: 3, 64: 4}[size]
    assert sorted(k for k in g_vars["params"] if k.startswith("block")) == [f"block{i}" for i in range(1, n_blocks + 1)]
    if size == 28:
        assert g_vars["params"]["project"]["kernel"].shape == (128, 7 * 7 * 8)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="28x28, 32x32, 48x48, 64x64"):
        SNGANGenerator(image_shape=(40, 40, 3))
    disc = SNGANDiscriminator(base_features=2)
    with pytest.raises(ValueError, match="28x28, 32x32, 48x48, 64x64"):
        disc.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), train=False)
    with pytest.raises(ValueError, match="class-conditional"):
        SNGANDiscriminator(base_features=2, num_classes=3).init(
            jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=False
        )


# ---------------------------------------------------------------------------------------------------------------
# Forward parity with the PyTorch reference on the same weights
# ---------------------------------------------------------------------------------------------------------------


def _t(a):
    return torch.tensor(np.asarray(a, np.float64))


def _set_conv(conv, p, scale=1.0):
    conv.weight.data = _t(np.transpose(np.asarray(p["kernel"]) / scale, (3, 2, 0, 1)))
    conv.bias.data = _t(p["bias"])


def _set_dense(dense, p, scale=1.0):
    dense.weight.data = _t(np.asarray(p["kernel"]).T / scale)
    dense.bias.data = _t(p["bias"])


def _set_bn(bn, p, stats):
    if p is not None:
        bn.weight.data, bn.bias.data = _t(p["scale"]), _t(p["bias"])
    bn.running_mean.data, bn.running_var.data = _t(stats["mean"]), _t(stats["var"])


def _copy_generator(tg, params, stats, conditional):
    k, b = np.asarray(params["project"]["kernel"]), np.asarray(params["project"]["bias"])
    s0, c0 = tg.s0, tg.c0
    # flax reshapes the projection to (s0, s0, C0), torch views it as (C0, s0, s0)
    tg.l1.weight.data = _t(k.reshape(-1, s0, s0, c0).transpose(0, 3, 1, 2).reshape(k.shape[0], -1).T)
    tg.l1.bias.data = _t(b.reshape(s0, s0, c0).transpose(2, 0, 1).reshape(-1))
    for i, block in enumerate(tg.blocks, start=1):
        p, s = params[f"block{i}"], stats[f"block{i}"]
        _set_conv(block.c1, p["conv1"])
        _set_conv(block.c2, p["conv2"])
        _set_conv(block.c_sc, p["shortcut"])
        for name, bn in (("bn1", block.b1), ("bn2", block.b2)):
            if conditional:
                _set_bn(bn.bn, None, s[name]["bn"])
                bn.gain.weight.data = _t(p[name]["gain"]["embedding"])
                bn.bias.weight.data = _t(p[name]["bias"]["embedding"])
            else:
                _set_bn(bn, p[name], s[name])
    _set_bn(tg.b, params["bn"], stats["bn"])
    _set_conv(tg.c, params["output"])


def _copy_discriminator(td, params, scales=None):
    scales = scales or {}
    for i, block in enumerate(td.blocks, start=1):
        p = params[f"block{i}"]
        for name, conv in (("conv1", block.c1), ("conv2", block.c2), ("shortcut", getattr(block, "c_sc", None))):
            if conv is not None:
                _set_conv(conv, p[name], scales.get(f"block{i}/{name}", 1.0))
    _set_dense(td.l, params["logit"], scales.get("logit", 1.0))
    if td.embed is not None:
        td.embed.weight.data = _t(np.asarray(params["projection"]["kernel"]).T / scales.get("projection", 1.0))


def _randomise(tree, rng, positive=False):
    """Fresh random leaves (so that biases, gains and running statistics are not their trivial initial values)."""

    def draw(a):
        v = rng.uniform(0.5, 1.5, a.shape) if positive else rng.normal(0.0, 0.3, a.shape)
        return jnp.asarray(v, jnp.float32)

    return jax.tree_util.tree_map(draw, tree)


def _relative_error(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("num_classes", [0, 5])
def test_generator_matches_the_torch_reference(rng, num_classes):
    b = 8  # widths 32 at 32 px: the paper's network at scale 1/8
    gen = SNGANGenerator(image_shape=(32, 32, 3), base_features=b, num_classes=num_classes)
    z = rng.normal(size=(4, 128)).astype(np.float32)
    labels = np.array([0, 3, 4, 3]) if num_classes else None
    kwargs = {"labels": jnp.asarray(labels, jnp.int32)} if num_classes else {}
    variables = gen.init(jax.random.key(1), jnp.asarray(z), train=False, **kwargs)
    params = jax.tree_util.tree_map(
        lambda a: a + jnp.asarray(rng.normal(0, 0.05, a.shape), jnp.float32), variables["params"]
    )
    stats = dict(variables["batch_stats"])
    stats = jax.tree_util.tree_map_with_path(lambda path, a: _randomise(a, rng, positive=path[-1].key == "var"), stats)
    ours = gen.apply({"params": params, "batch_stats": stats}, jnp.asarray(z), train=False, **kwargs)

    ref = TorchG(32, scale=b / 64, num_classes=num_classes).double().eval()
    _copy_generator(ref, jax.device_get(params), jax.device_get(stats), bool(num_classes))
    with torch.no_grad():
        expected = ref(_t(z), None if labels is None else torch.tensor(labels)).numpy().transpose(0, 2, 3, 1)
    assert ours.shape == (4, 32, 32, 3)
    assert _relative_error(ours, expected) < 1e-5


@pytest.mark.parametrize("num_classes", [0, 5])
def test_discriminator_matches_the_torch_reference(rng, num_classes):
    b = 8
    disc = SNGANDiscriminator(base_features=b, num_classes=num_classes)
    x = rng.uniform(-1, 1, size=(4, 32, 32, 3)).astype(np.float32)
    labels = np.array([1, 0, 4, 1]) if num_classes else None
    kwargs = {"labels": jnp.asarray(labels, jnp.int32)} if num_classes else {}
    params = disc.init(jax.random.key(2), jnp.asarray(x), train=False, **kwargs)["params"]
    params = jax.tree_util.tree_map(lambda a: a + jnp.asarray(rng.normal(0, 0.05, a.shape), jnp.float32), params)
    ours = disc.apply({"params": params}, jnp.asarray(x), train=False, **kwargs)

    ref = TorchD(32, scale=b / 64, num_classes=num_classes).double().eval()
    _copy_discriminator(ref, jax.device_get(params))
    with torch.no_grad():
        expected = ref(_t(x.transpose(0, 3, 1, 2)), None if labels is None else torch.tensor(labels)).numpy()
    assert _relative_error(ours, expected) < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Spectral normalisation
# ---------------------------------------------------------------------------------------------------------------


def test_spectral_norm_normalises_every_kernel(rng):
    """Every kernel of D (shortcuts, logit, projection) carries a power-iteration vector; once the iteration has
    converged, D equals the reference with every weight divided by its exact largest singular value."""
    b, num_classes = 4, 3
    x = rng.uniform(-1, 1, size=(3, 32, 32, 3)).astype(np.float32)
    labels = jnp.asarray([2, 0, 1], jnp.int32)
    plain = SNGANDiscriminator(base_features=b, num_classes=num_classes)
    sn = SNGANDiscriminator(base_features=b, num_classes=num_classes, spectral_norm=True)
    variables = sn.init(jax.random.key(3), jnp.asarray(x), train=False, labels=labels)
    params, stats = variables["params"], variables["batch_stats"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        plain.init(jax.random.key(3), jnp.asarray(x), train=False, labels=labels)["params"]
    )

    kernels = {}

    def collect(path, leaf):
        keys = [p.key for p in path]
        if keys[-1] == "kernel":
            kernels["/".join(keys[:-1])] = np.asarray(leaf, np.float64)

    jax.tree_util.tree_map_with_path(collect, params)
    vectors = {
        "/".join(p.key for p in path if not p.key.startswith("sn_"))
        for path, _ in jax.tree_util.tree_leaves_with_path(stats)
    }
    assert {f"{name}/kernel/u" for name in kernels} <= vectors
    assert {"block1/shortcut", "block2/shortcut", "logit", "projection"} <= set(kernels)
    assert len(kernels) == 3 + 3 + 2 + 2 + 1 + 1  # conv1, conv2 (+ shortcut in the two down-blocks), logit, projection

    @jax.jit
    def iterate(stats):
        def one(_, s):
            return sn.apply(
                {"params": params, "batch_stats": s}, x, train=True, labels=labels, mutable=["batch_stats"]
            )[1]["batch_stats"]

        return jax.lax.fori_loop(0, 100, one, stats)

    stats = iterate(stats)
    ours = sn.apply({"params": params, "batch_stats": stats}, x, train=False, labels=labels)
    sigma = {name: np.linalg.norm(k.reshape(-1, k.shape[-1]), 2) for name, k in kernels.items()}
    ref = TorchD(32, scale=b / 64, num_classes=num_classes).double().eval()
    _copy_discriminator(ref, jax.device_get(params), sigma)
    with torch.no_grad():
        expected = ref(_t(x.transpose(0, 3, 1, 2)), torch.tensor(np.asarray(labels))).numpy()
    assert _relative_error(ours, expected) < 1e-4
    unnormalised = plain.apply({"params": params}, x, train=False, labels=labels)
    assert _relative_error(unnormalised, expected) > 0.1


def test_auxiliary_classifier_head(rng):
    """AC-GAN's head: ``Dense(K)`` on the pooled features (the ``logit`` layer's input), spectrally normalised."""
    x = jnp.asarray(rng.uniform(-1, 1, size=(2, 32, 32, 3)), jnp.float32)
    disc = SNGANDiscriminator(base_features=2, spectral_norm=True, aux_classes=7)
    variables = disc.init(jax.random.key(0), x, train=False)
    (logits, class_logits), state = disc.apply(variables, x, train=False, mutable=["intermediates"])
    features = state["intermediates"]["features"][0]
    assert logits.shape == (2,) and class_logits.shape == (2, 7) and "sn_classifier" in variables["batch_stats"]
    kernel = np.asarray(variables["params"]["classifier"]["kernel"], np.float64)
    u = np.asarray(variables["batch_stats"]["sn_classifier"]["classifier/kernel/u"], np.float64)
    # flax's one power-iteration step from the stored u (eval mode), written out in numpy
    v = u @ kernel.T
    v /= np.linalg.norm(v)
    u1 = v @ kernel
    u1 /= np.linalg.norm(u1)
    sigma = (v @ kernel @ u1.T).item()
    expected = np.asarray(features, np.float64) @ (kernel / sigma) + np.asarray(
        variables["params"]["classifier"]["bias"]
    )
    np.testing.assert_allclose(class_logits, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# From the command line
# ---------------------------------------------------------------------------------------------------------------


def _run(args, capsys):
    cli.main(["train", "gan", *args, "--no-progress"])
    captured = capsys.readouterr()
    return json.loads(captured.out)


def test_cli_resnet_on_mnist(tmp_path, capsys, mnist_dir):
    out = tmp_path / "run"
    _run(
        ["--model", "resnet", "--data", "mnist", "--data-dir", str(mnist_dir), "--steps", "2", "--batch-size", "8"]
        + ["--base-features", "4", "--spectral-norm", "--num-classes", "10", "--n-samples", "16", "--out", str(out)],
        capsys,
    )
    samples = np.load(out / "samples.npy")
    assert samples.shape == (16, 28, 28, 1) and np.isfinite(samples).all()
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "resnet"


def _folder(root, n=12, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / ("cats", "dogs")[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(path)
    return root


def test_cli_resnet_on_a_folder_of_32px_images(tmp_path, capsys):
    folder, out = _folder(tmp_path / "photos"), tmp_path / "run"
    _run(
        ["--model", "resnet", "--data", str(folder), "--image-size", "32", "--steps", "2", "--batch-size", "8"]
        + ["--base-features", "4", "--n-samples", "16", "--out", str(out)],
        capsys,
    )
    samples = np.load(out / "samples.npy")
    assert samples.shape == (16, 32, 32, 3) and np.isfinite(samples).all() and np.abs(samples).max() <= 1.0


@pytest.mark.parametrize(
    "data,match",
    [
        (["--data", "ring8"], r"--model resnet .* 28, 32, 48 or 64, got data of shape \(2,\)"),
        (["--data", "FOLDER", "--image-size", "20"], r"--model resnet .* got 20x20 images .*--image-size"),
    ],
)
def test_cli_resnet_errors_are_one_line(tmp_path, capsys, data, match):
    data = [str(_folder(tmp_path / "photos", n=4)) if d == "FOLDER" else d for d in data]
    with pytest.raises(SystemExit) as info:
        cli.main(
            [
                "train",
                "gan",
                "--model",
                "resnet",
                *data,
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--out",
                str(tmp_path / "r"),
            ]
        )
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gendl train: error: ") and "\n" not in err
    assert re.search(match, err), err
