"""Weight files without torch: files written by real ``torch.save`` (zip and legacy formats) read back exactly,
in a process where torch cannot be imported too; malicious, truncated and foreign files refused with one line."""

import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile
import textwrap
import warnings
import zipfile

import ml_dtypes
import numpy as np
import pytest

from gendl_jax.models import read_safetensors, read_state_dict, read_torch, read_torch_object, write_safetensors

FORMATS = ("zip", "legacy")
DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    # Written by torch with _rebuild_tensor_v3 and an UntypedStorage.
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
)
SHAPES = ((), (0,), (3, 0, 2), (7,), (3, 4), (2, 3, 4, 5))
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def save(torch, obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def random_tensor(torch, rng, dtype: str, shape):
    target = getattr(torch, dtype)
    if target.is_floating_point:
        return torch.from_numpy(np.asarray(rng.normal(size=shape), np.float32)).to(target)
    if dtype == "bool":
        return torch.from_numpy(np.asarray(rng.random(shape) < 0.5))
    info = np.iinfo(dtype)
    return torch.from_numpy(np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)))


def np_dtype(name: str) -> np.dtype:
    return np.dtype(getattr(ml_dtypes, name, name))


def assert_same(got: np.ndarray, tensor, dtype: str | None = None):
    """Same shape, dtype and bytes (bit-exact, NaN-safe) as the torch tensor; a C-contiguous array of its own."""
    import torch

    expected = tensor.detach().contiguous()
    assert isinstance(got, np.ndarray)
    assert got.shape == tuple(expected.shape)
    assert got.dtype.name == (dtype or str(expected.dtype).removeprefix("torch."))
    assert got.dtype == np_dtype(got.dtype.name)
    assert got.flags.c_contiguous and got.flags.writeable
    if expected.numel():
        assert got.tobytes() == expected.flatten().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_dtypes_and_shapes_match_torch(tmp_path, torch, fmt, dtype):
    rng = np.random.default_rng([DTYPES.index(dtype), FORMATS.index(fmt)])
    tensors = {f"t{i}": random_tensor(torch, rng, dtype, shape) for i, shape in enumerate(SHAPES)}
    got = read_torch(save(torch, tensors, tmp_path / "w.pth", fmt))
    assert list(got) == list(tensors)
    for key, tensor in tensors.items():
        assert_same(got[key], tensor, dtype)
    if dtype == "bfloat16":
        assert got["t4"].dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_offsets_and_shared_storages(tmp_path, torch, fmt):
    rng = np.random.default_rng(10 + FORMATS.index(fmt))
    base = torch.from_numpy(rng.normal(size=(6, 8)))
    flat = torch.from_numpy(rng.normal(size=30).astype(np.float32))
    tensors = {
        "base": base,
        "transposed": base.T,
        "every_other_column": base[:, 1::2],
        "corner": base[2:, 3:],
        "row": base[3],
        "element": base[1, 2],
        "expanded": torch.from_numpy(rng.normal(size=5))[None].expand(4, 5),
        "a": flat[2:7],
        "b": flat[10:20].view(2, 5),
        "c": flat[25:].view(1, 5).T,
        "parameter": torch.nn.Parameter(flat[:4].clone()),  # _rebuild_parameter
        "parameter_with_state": torch.nn.Parameter(torch.ones(2)),  # _rebuild_parameter_with_state
    }
    tensors["parameter_with_state"].note = "an attribute"
    path = save(torch, tensors, tmp_path / "views.pt", fmt)
    if fmt == "zip":  # five storages for twelve tensors: they really are shared in the file
        assert sum("/data/" in n for n in zipfile.ZipFile(path).namelist()) == 5
    got = read_torch(path)
    for key, tensor in tensors.items():
        assert_same(got[key], tensor)
    arrays = list(got.values())
    for i, x in enumerate(arrays):
        for y in arrays[i + 1 :]:
            assert not np.shares_memory(x, y)


@pytest.mark.parametrize("protocol", [1, 4, 5])
@pytest.mark.parametrize("fmt", FORMATS)
def test_other_pickle_protocols(tmp_path, torch, fmt, protocol):
    rng = np.random.default_rng([protocol, FORMATS.index(fmt)])
    tensors = {"w": torch.from_numpy(rng.normal(size=(3, 2))).T, "n": torch.tensor(4)}
    path = tmp_path / "w.pt"
    torch.save(tensors, path, pickle_protocol=protocol, _use_new_zipfile_serialization=fmt == "zip")
    got = read_torch(path)
    for key, tensor in tensors.items():
        assert_same(got[key], tensor)


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_of_a_torch_module(tmp_path, torch, fmt):
    torch.manual_seed(FORMATS.index(fmt))
    tnn = torch.nn
    net = tnn.Sequential(
        tnn.Conv2d(3, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 6 * 6, 5)
    ).train()
    net(torch.randn(2, 3, 8, 8))  # running statistics and num_batches_tracked move away from their init
    state = net.state_dict()
    got = read_torch(save(torch, state, tmp_path / "net.pth", fmt))
    assert list(got) == list(state)
    for key, tensor in state.items():
        assert_same(got[key], tensor)
    assert got["1.num_batches_tracked"].dtype == np.int64 and got["1.num_batches_tracked"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_nested_dicts_wrappers_and_scalars(tmp_path, torch, fmt):
    rng = np.random.default_rng(20)
    t1, t2, t3 = (torch.from_numpy(rng.normal(size=n).astype(np.float32)) for n in (3, 4, 5))
    nested = {"encoder": {"conv": {"weight": t1}, "bias": t2}, "head.weight": t3}
    got = read_torch(save(torch, nested, tmp_path / "nested.pt", fmt))
    assert list(got) == ["encoder.conv.weight", "encoder.bias", "head.weight"]
    assert_same(got["encoder.conv.weight"], t1)
    checkpoint = {"epoch": 7, "state_dict": {"fc.weight": t1, "fc.bias": t2}, "optimizer": {"lr": 0.1}}
    path = save(torch, checkpoint, tmp_path / "run.ckpt", fmt)
    got = read_torch(path)
    assert list(got) == ["fc.weight", "fc.bias"]
    assert_same(got["fc.bias"], t2)
    whole = read_torch_object(path)
    assert whole["epoch"] == 7 and whole["optimizer"] == {"lr": 0.1}
    assert_same(whole["state_dict"]["fc.weight"], t1)
    got = read_torch(save(torch, {"w": t3, "step": 3, "lr": 0.5, "flag": True}, tmp_path / "s.pt", fmt))
    assert got["step"].dtype == np.int64 and got["step"] == 3
    assert got["lr"].dtype == np.float64 and got["lr"] == 0.5
    assert got["flag"].dtype == np.bool_ and got["flag"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_tensor_entries_are_refused(tmp_path, torch, fmt):
    t = torch.zeros(2)
    cases = [
        ({"w": t, "arch": "resnet18"}, "entry 'arch' is a str"),
        ({"w": {"layers": [t, t]}}, "entry 'w.layers' is a list"),
        ({"w": t, "none": None}, "entry 'none' is a NoneType"),
        ({1: t}, "key 1 under 'the top level' is not a str"),
        ([t, t], "holds a list, not a state dict"),
        ({"a.b": t, "a": {"b": t}}, "two entries flatten to the key 'a.b'"),
    ]
    for i, (obj, message) in enumerate(cases):
        path = save(torch, obj, tmp_path / f"bad{i}.pt", fmt)
        with pytest.raises(ValueError, match=message) as err:
            read_torch(path)
        assert str(path) in str(err.value)


def test_reads_where_torch_cannot_be_imported(tmp_path, torch):
    """Files saved by torch in both formats, read in a fresh interpreter where importing torch fails."""
    rng = np.random.default_rng(30)
    base = torch.from_numpy(rng.normal(size=(4, 6)).astype(np.float32))
    tensors = {
        "conv.weight": torch.from_numpy(rng.normal(size=(2, 3, 3, 3)).astype(np.float32)),
        "transposed": base.T,
        "slice": base[:, 1::2],
        "half": base.to(torch.bfloat16)[1:],
        "count": torch.tensor(5),
        "mask": torch.from_numpy(rng.random(5) < 0.5),
        "empty": torch.zeros(0, 3),
    }
    manifest = {}
    for fmt in FORMATS:
        folder = tmp_path / fmt
        folder.mkdir()
        save(torch, tensors, folder / "weights.pth", fmt)
        for key, tensor in tensors.items():
            value = tensor.detach().contiguous()
            value = value.float() if value.dtype == torch.bfloat16 else value  # exact; .npy has no bfloat16
            np.save(folder / f"{key}.npy", value.numpy())
            manifest[key] = str(tensor.dtype).removeprefix("torch.")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    script = textwrap.dedent(
        """
        import importlib.abc, json, pathlib, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch could be imported")
        import numpy as np
        from gendl_jax.models.weights import read_state_dict, read_torch

        root = pathlib.Path(sys.argv[1])
        manifest = json.loads((root / "manifest.json").read_text())
        for fmt in ("zip", "legacy"):
            got = read_torch(root / fmt / "weights.pth")
            assert list(got) == list(manifest), (fmt, list(got))
            assert set(read_state_dict(root / fmt / "weights.pth")) == set(manifest)
            for key, dtype in manifest.items():
                expected = np.load(root / fmt / f"{key}.npy")
                assert got[key].dtype.name == dtype, (fmt, key, got[key].dtype)
                value = got[key].astype(np.float32) if dtype == "bfloat16" else got[key]
                assert value.shape == expected.shape and value.dtype == expected.dtype, (fmt, key)
                np.testing.assert_array_equal(value, expected)
        assert "torch" not in sys.modules
        print("read", len(manifest), "tensors from each format without torch")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read 7 tensors from each format without torch" in done.stdout


class _Evil:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def zip_container(payload: bytes, path: pathlib.Path) -> pathlib.Path:
    """A zip archive laid out as torch.save writes it, holding ``payload`` as data.pkl."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


def legacy_container(payload: bytes, path: pathlib.Path, magic: bytes | None = None) -> pathlib.Path:
    """A legacy torch stream: magic number, protocol version, sys info, ``payload``, an empty storage-key list."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    magic = magic if magic is not None else pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    parts = [magic, pickle.dumps(1001, protocol=2), pickle.dumps(sys_info, protocol=2), payload, pickle.dumps([], 2)]
    path.write_bytes(b"".join(parts))
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "numpy"])
def test_malicious_globals_are_refused_and_never_run(tmp_path, fmt, attack):
    marker = tmp_path / "pwned"
    if attack == "os.system":
        evil, refused = _Evil(os.system, f"echo pwned > {marker}"), rf"{os.system.__module__}\.system"
    elif attack == "builtins.eval":
        # Protocol 2 writes builtins as Python 2's __builtin__.
        evil, refused = _Evil(eval, f"open({str(marker)!r}, 'w').close()"), r"__builtin__\.eval"
    else:
        evil, refused = np.arange(3.0), r"numpy\._?core\.multiarray\._reconstruct"
    payload = pickle.dumps({"fc.weight": evil}, protocol=2)
    container = zip_container if fmt == "zip" else legacy_container
    path = container(payload, tmp_path / "evil.pth")
    for reader in (read_torch, read_state_dict, read_torch_object):
        with pytest.raises(ValueError, match=f"refused to load the global {refused}") as err:
            reader(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    if fmt == "legacy":  # a global in the first pickle (where the magic number belongs) is refused too
        path = legacy_container(pickle.dumps([], 2), tmp_path / "evil_magic.pt", magic=pickle.dumps(evil, protocol=2))
        with pytest.raises(ValueError, match=f"refused to load the global {refused}"):
            read_torch(path)
        assert not marker.exists()


def test_legacy_storage_views_match_torch(tmp_path, torch):
    """Storage views (view_metadata, written by torch < 1.0 only) in a hand-built legacy stream; torch reads it too."""
    rebuild = torch._utils._rebuild_tensor_v2
    root = np.arange(12, dtype=np.float32) * 1.5

    class Ref:
        def __init__(self, pid):
            self.pid = pid

    class Tensor:
        def __init__(self, pid, offset, size, stride):
            self.args = (Ref(pid), offset, size, stride, False, __import__("collections").OrderedDict())

        def __reduce__(self):
            return rebuild, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.pid if isinstance(obj, Ref) else None

    whole = ("storage", torch.FloatStorage, "root", "cpu", 12, None)
    view = ("storage", torch.FloatStorage, "root", "cpu", 12, ("view", 4, 6))
    obj = {"whole": Tensor(whole, 0, (3, 4), (4, 1)), "view": Tensor(view, 1, (2, 2), (1, 2))}
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    path = legacy_container(buffer.getvalue(), tmp_path / "views.pt")
    # The storage-key list written by legacy_container is empty: append the one root storage instead.
    data = path.read_bytes()
    data = data[: -len(pickle.dumps([], 2))] + pickle.dumps(["root"], 2) + (12).to_bytes(8, "little") + root.tobytes()
    path.write_bytes(data)
    got = read_torch(path)
    np.testing.assert_array_equal(got["whole"], root.reshape(3, 4))
    v = root[4:10]
    np.testing.assert_array_equal(got["view"], [[v[1 + i + 2 * j] for j in range(2)] for i in range(2)])
    expected = torch.load(path, weights_only=False)
    for key in obj:
        assert_same(got[key], expected[key])


def test_big_endian_zip_is_byteswapped(tmp_path, torch):
    rng = np.random.default_rng(40)
    tensors = {dtype: random_tensor(torch, rng, dtype, (3, 2)) for dtype in DTYPES}
    tensors["transposed"] = tensors["float64"].T
    little = save(torch, tensors, tmp_path / "little.pt", "zip")
    # The same archive as a big-endian machine writes it: byteorder "big" and every storage byteswapped
    # (storage i holds the tensor of DTYPES[i]; "transposed" shares the float64 one).
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(tmp_path / "big.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "little/byteorder":
                data = b"big"
            elif info.filename.startswith("little/data/"):
                itemsize = np_dtype(DTYPES[int(info.filename.rsplit("/", 1)[1])]).itemsize
                data = np.frombuffer(data, f"<u{itemsize}").astype(f">u{itemsize}").tobytes()
            dst.writestr(info.filename, data)
    got = read_torch(tmp_path / "big.pt")
    for key, tensor in tensors.items():
        assert_same(got[key], tensor)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files_are_refused(tmp_path, torch, fmt):
    rng = np.random.default_rng(50)
    state = {f"layer{i}.weight": torch.from_numpy(rng.normal(size=(16, 16)).astype(np.float32)) for i in range(4)}
    data = save(torch, state, tmp_path / "full.pt", fmt).read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 300, 20, 1):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError) as err:
            read_torch(path)
        text = str(err.value)
        assert text.startswith(f"{path}: ") and "\n" not in text
        assert any(word in text for word in ("truncated", "corrupt", "not a torch file")), text


def test_foreign_files_are_refused(tmp_path, torch):
    rng = np.random.default_rng(60)
    cases = {
        "random.pt": (rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes(), "not a torch file"),
        "empty.pt": (b"", "the file is empty"),
        "pickle.pt": (pickle.dumps({"w": [1.0, 2.0]}, protocol=2), "not a torch file"),
        "text.pt": (b"hello\nworld\n" * 100, "not a torch file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message) as err:
            read_torch(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
    # The tar format of torch < 0.4: members "storages", "tensors", "pickle".
    with tarfile.open(tmp_path / "old.pt", "w", format=tarfile.PAX_FORMAT) as tar:
        for member in ("storages", "tensors", "pickle"):
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(pickle.dumps(0, 2)[:4]))
    with pytest.raises(ValueError, match="tar-based format of torch < 0.4 is not supported"):
        read_torch(tmp_path / "old.pt")
    with zipfile.ZipFile(tmp_path / "other.zip.pt", "w") as archive:
        archive.writestr("readme.txt", "not torch")
    with pytest.raises(ValueError, match="not a file written by torch.save"):
        read_torch(tmp_path / "other.zip.pt")
    with warnings.catch_warnings():  # torch.jit is deprecated, but users still have its archives
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with pytest.raises(ValueError, match="TorchScript archive"):
        read_torch(tmp_path / "scripted.pt")
    with pytest.raises(FileNotFoundError):
        read_torch(tmp_path / "missing.pt")


def test_read_state_dict_by_suffix(tmp_path, torch):
    rng = np.random.default_rng(70)
    state = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "bn.running_mean": rng.normal(size=4).astype(np.float32),
        "bn.num_batches_tracked": np.asarray(3, np.int64),
        "fc.weight": rng.normal(size=(2, 8)).astype(np.float16),  # not bfloat16: .npz cannot store it
    }
    np.savez(tmp_path / "w.npz", **state)
    write_safetensors(tmp_path / "w.safetensors", state)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    for suffix in (".pth", ".pt", ".bin", ".ckpt"):
        save(torch, tensors, tmp_path / f"w{suffix}", "zip" if suffix != ".pt" else "legacy")
    for name in ("w.npz", "w.safetensors", "w.pth", "w.pt", "w.bin", "w.ckpt"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(state), name
        for key, value in state.items():
            assert got[key].dtype == value.dtype and got[key].tobytes() == value.tobytes(), (name, key)
    assert read_safetensors(tmp_path / "w.safetensors").keys() == state.keys()
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"one of \.npz, \.safetensors, \.pth, \.pt, \.bin, \.ckpt, got 'w\.h5'"):
        read_state_dict(tmp_path / "w.h5")
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "nothing.pth")
