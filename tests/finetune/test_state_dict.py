"""torchvision-style state dicts: a torch ResNet-18 imported from .npz / .safetensors / torch.save files gives the
same logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.finetune import (
    StateDictMismatch,
    from_state_dict,
    load_state_dict,
    read_safetensors,
    to_state_dict,
    write_safetensors,
)
from gendl_jax.models import resnet


def torch_resnet18(num_classes: int):
    """A torch ResNet-18 with torchvision's module names and layout (torchvision is not installed here)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return torch.relu(h + (x if self.downsample is None else self.downsample(x)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, cout in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", tnn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1)))
                cin = cout
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            h = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for i in range(4):
                h = getattr(self, f"layer{i + 1}")(h)
            return self.fc(h.mean(dim=(2, 3)))

    net = Net()
    # Non-trivial BatchNorm statistics and affine parameters, so eval mode is really exercised.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def torch_model_and_state():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch_resnet18(num_classes=10)
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return net, state


@pytest.fixture(scope="module")
def flax_like():
    model = resnet.resnet18(num_classes=10)
    return jax.jit(model.apply), jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))


@pytest.mark.parametrize("fmt", [".npz", ".safetensors", ".pth", ".pt (legacy torch format)"])
def test_torch_resnet18_logits_match_after_import(tmp_path, torch_model_and_state, flax_like, fmt):
    torch = pytest.importorskip("torch")
    net, state = torch_model_and_state
    apply, like = flax_like
    path = tmp_path / f"resnet18{fmt.split()[0]}"
    if fmt == ".npz":
        np.savez(path, **state)
    elif fmt == ".safetensors":
        write_safetensors(path, state)
    else:  # read back without torch by gendl_jax.models.weights.read_torch
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=fmt == ".pth")
    variables = load_state_dict(path, like)
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    logits = apply(variables, np.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_export_round_trip_is_exact(torch_model_and_state, flax_like):
    _, state = torch_model_and_state
    _, like = flax_like
    back = to_state_dict(from_state_dict(state, like))
    expected = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(expected)
    for k in expected:
        np.testing.assert_array_equal(back[k], expected[k])


def test_mismatched_state_dict_lists_every_problem(torch_model_and_state, flax_like):
    _, state = torch_model_and_state
    _, like = flax_like
    bad = dict(state)
    del bad["layer2.0.bn1.running_var"]
    bad["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    bad["fc.weight"] = np.zeros((7, 512), np.float32)
    with pytest.raises(StateDictMismatch) as err:
        from_state_dict(bad, like)
    text = str(err.value)
    assert "missing keys (1): ['layer2.0.bn1.running_var']" in text
    assert "unexpected keys (1): ['layer5.0.conv1.weight']" in text
    assert "fc.weight: got (7, 512), expected (10, 512)" in text


def test_skip_keeps_the_new_head(torch_model_and_state):
    _, state = torch_model_and_state
    model = resnet.resnet18(num_classes=3)
    like = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    variables = from_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, like, skip=("fc",))
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], like["params"]["fc"]["kernel"])
    np.testing.assert_array_equal(
        variables["params"]["conv1"]["kernel"], np.transpose(state["conv1.weight"], (2, 3, 1, 0))
    )


def test_safetensors_reader_against_hand_built_file(tmp_path):
    # Built byte by byte from the format's definition: u64 header length, JSON header, raw buffer.
    import json

    import ml_dtypes

    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 3)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(ml_dtypes.bfloat16)
    c = rng.integers(-5, 5, size=(3, 1)).astype(np.int64)
    buffers = [a.tobytes(), b.tobytes(), c.tobytes()]
    offsets = np.cumsum([0] + [len(x) for x in buffers])
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [int(offsets[0]), int(offsets[1])]},
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [int(offsets[1]), int(offsets[2])]},
        "c": {"dtype": "I64", "shape": [3, 1], "data_offsets": [int(offsets[2]), int(offsets[3])]},
    }
    text = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(buffers))
    got = read_safetensors(path)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"].astype(np.float32), b.astype(np.float32))
    np.testing.assert_array_equal(got["c"], c)
    write_safetensors(tmp_path / "u.safetensors", got)
    again = read_safetensors(tmp_path / "u.safetensors")
    assert all(np.array_equal(again[k], got[k]) for k in got)


def test_one_implementation_of_the_readers():
    """finetune re-exports the readers of gendl_jax.models.weights (one implementation)."""
    from gendl_jax import finetune
    from gendl_jax.models import weights

    for name in ("read_safetensors", "write_safetensors", "read_state_dict"):
        assert getattr(finetune, name) is getattr(weights, name)


def test_bad_files(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"one of \.npz, \.safetensors, \.pth, \.pt, \.bin, \.ckpt, got 'w\.h5'"):
        load_state_dict(tmp_path / "w.h5", {})
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="w.pt: not a torch file"):
        load_state_dict(tmp_path / "w.pt", {})
    (tmp_path / "short.safetensors").write_bytes(b"\x01")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_safetensors(tmp_path / "short.safetensors")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        from_state_dict([1, 2], {})


def test_torch_vgg_style_import_flattens_channel_major():
    """A small torchvision-layout VGG (one conv stage, the 4096-wide classifier): the adaptive 7x7
    pool (16 -> 7, uneven windows) and torch's NCHW flatten order must line up with the imported Linear."""
    torch = pytest.importorskip("torch")
    from gendl_jax.models import classic

    tnn = torch.nn
    torch.manual_seed(1)
    net = tnn.Module()
    net.features = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2, 2))
    net.classifier = tnn.Sequential(
        tnn.Linear(8 * 49, 4096),
        tnn.ReLU(),
        tnn.Dropout(),
        tnn.Linear(4096, 4096),
        tnn.ReLU(),
        tnn.Dropout(),
        tnn.Linear(4096, 10),
    )
    net.eval()
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        h = tnn.AdaptiveAvgPool2d((7, 7))(net.features(torch.from_numpy(x)))
        expected = net.classifier(torch.flatten(h, 1)).numpy()
    model = classic.VGG(num_classes=10, layout=(8, "M"))
    like = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    variables = from_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()}, like)
    logits = jax.jit(model.apply)(variables, np.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_skip_needs_real_arrays_for_the_kept_leaves(torch_model_and_state, flax_like):
    _, state = torch_model_and_state
    _, like = flax_like
    with pytest.raises(TypeError, match="like must hold arrays"):
        from_state_dict(state, like, skip=("fc",))
