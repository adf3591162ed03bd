"""CIFAR-10 / CIFAR-100 from small fake files in the published format: Python 2 pickles (protocol 2, byte strings)
of dicts with bytes keys, ``b"data"`` (N, 3072) uint8 rows in CHW order, in a tarball or its extracted folder."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from gendl_jax.data import cifar, load_dataset
from gendl_jax.data.cifar import CIFAR_FILES, CIFAR_FOLDERS, load_cifar, load_cifar10, load_cifar100, read_cifar_batch


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did: byte strings (and str) as BINSTRING, which Python 3 reads back with
    ``encoding="bytes"`` as bytes, and numpy's reconstructor under its old module name (below)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    raw = buf.getvalue()
    # the published files name numpy 1's module; numpy 2 pickles under numpy._core
    return raw.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")


def fake_batch(rng, n: int, kind: str) -> tuple[bytes, np.ndarray, dict[str, np.ndarray]]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    if kind == "cifar10":
        labels = {"labels": rng.integers(0, 10, n)}
    else:
        labels = {"fine_labels": rng.integers(0, 100, n), "coarse_labels": rng.integers(0, 20, n)}
    batch = {b"batch_label": b"fake batch", b"data": data, b"filenames": [b"x_%d.png" % i for i in range(n)]}
    batch.update({k.encode(): [int(v) for v in vals] for k, vals in labels.items()})
    return py2_pickle(batch), data, labels


def hwc(data: np.ndarray) -> np.ndarray:
    """The images of (N, 3072) rows, element by element: pixel (y, x) of channel c is row[c * 1024 + y * 32 + x]."""
    n = data.shape[0]
    out = np.zeros((n, 32, 32, 3), np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, y, :, c] = data[:, c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
    return out


def make_cifar(root, name: str, *, tarball: bool, folder: bool, seed: int = 0, n: int = 7) -> dict:
    """Fake files of ``name`` under ``root``; returns {split: (images, {label kind: labels}), "md5": {file: md5}}."""
    rng = np.random.default_rng(seed)
    kind = "cifar10" if name == "cifar10" else "cifar100"
    files, expected, md5 = {}, {}, {}
    for split, members in CIFAR_FILES[name].items():
        datas, labels = [], {}
        for i, (file_name, _) in enumerate(members):
            raw, data, lab = fake_batch(rng, n + i, kind)
            files[file_name] = raw
            md5[file_name] = hashlib.md5(raw).hexdigest()
            datas.append(data)
            for k, v in lab.items():
                labels.setdefault(k, []).append(v)
        expected[split] = (hwc(np.concatenate(datas)), {k: np.concatenate(v) for k, v in labels.items()})
    files[{"cifar10": "batches.meta", "cifar100": "meta"}[name]] = py2_pickle({b"label_names": [b"a"]})
    if folder:
        d = root / CIFAR_FOLDERS[name]
        d.mkdir(parents=True)
        for file_name, raw in files.items():
            (d / file_name).write_bytes(raw)
    if tarball:
        root.mkdir(parents=True, exist_ok=True)
        path = root / cifar.CIFAR_ARCHIVES[name][0]
        with tarfile.open(path, "w:gz") as tar:
            for file_name, raw in files.items():
                info = tarfile.TarInfo(f"{CIFAR_FOLDERS[name]}/{file_name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
        md5["tarball"] = hashlib.md5(path.read_bytes()).hexdigest()
    expected["md5"] = md5
    return expected


@pytest.mark.parametrize("where", ["folder", "tarball"])
def test_cifar10(tmp_path, where):
    expected = make_cifar(tmp_path, "cifar10", tarball=where == "tarball", folder=where == "folder")
    for split, count in (("train", 7 + 8 + 9 + 10 + 11), ("test", 7)):
        images, labels = load_cifar10(split, tmp_path, verify_checksums=False)
        assert images.shape == (count, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1]["labels"])
        assert not images.flags.writeable
        ds = load_dataset("cifar10", split, data_dir=tmp_path, verify_checksums=False)
        assert ds.name == "cifar10" and ds.max_value == 255 and ds.shape == (32, 32, 3)
        np.testing.assert_array_equal(ds.images, expected[split][0])
        np.testing.assert_array_equal(ds.labels, expected[split][1]["labels"])


@pytest.mark.parametrize("where", ["folder", "tarball"])
def test_cifar100_fine_and_coarse(tmp_path, where):
    expected = make_cifar(tmp_path / "cifar", "cifar100", tarball=where == "tarball", folder=where == "folder")
    for split in ("train", "test"):
        images, fine = load_cifar100(split, tmp_path, verify_checksums=False)
        _, coarse = load_cifar100(split, tmp_path, verify_checksums=False, labels="coarse")
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(fine, expected[split][1]["fine_labels"])
        np.testing.assert_array_equal(coarse, expected[split][1]["coarse_labels"])
        ds = load_dataset("cifar100", split, data_dir=tmp_path, verify_checksums=False)
        np.testing.assert_array_equal(ds.labels, expected[split][1]["fine_labels"])
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        load_cifar100("train", tmp_path, verify_checksums=False, labels="super")


def test_the_folder_is_preferred_and_the_environment_is_read(tmp_path, monkeypatch):
    make_cifar(tmp_path / "t", "cifar10", tarball=True, folder=False, seed=1)
    both = tmp_path / "t"
    expected = make_cifar(both, "cifar10", tarball=False, folder=True, seed=2)
    assert cifar.find_cifar("cifar10", both) == both / "cifar-10-batches-py"
    monkeypatch.setenv("GENDL_DATA_DIR", str(both))
    np.testing.assert_array_equal(load_cifar("cifar10", "test", verify_checksums=False)[0], expected["test"][0])


def test_checksums(tmp_path, monkeypatch):
    expected = make_cifar(tmp_path / "f", "cifar10", tarball=False, folder=True)
    published = CIFAR_FILES["cifar10"]["test"][0][1]
    with pytest.raises(ValueError) as info:
        load_cifar10("test", tmp_path / "f")
    message = str(info.value)
    assert "MD5 mismatch for " + str(tmp_path / "f" / "cifar-10-batches-py" / "test_batch") in message
    assert f"expected {published}" in message and f"found {expected['md5']['test_batch']}" in message
    # with the fake's own checksums published, the check passes
    monkeypatch.setitem(
        cifar.CIFAR_FILES,
        "cifar10",
        {s: tuple((f, expected["md5"][f]) for f, _ in members) for s, members in CIFAR_FILES["cifar10"].items()},
    )
    images, _ = load_cifar10("test", tmp_path / "f")
    np.testing.assert_array_equal(images, expected["test"][0])
    tar = make_cifar(tmp_path / "t", "cifar10", tarball=True, folder=False)
    with pytest.raises(
        ValueError,
        match=r"MD5 mismatch for .*cifar-10-python.tar.gz: expected c58f30108f718f92721af3b95e74349a \(the published "
        + r"checksum\), found "
        + tar["md5"]["tarball"],
    ):
        load_cifar10("train", tmp_path / "t")
    monkeypatch.setitem(cifar.CIFAR_ARCHIVES, "cifar10", ("cifar-10-python.tar.gz", tar["md5"]["tarball"]))
    np.testing.assert_array_equal(load_cifar10("train", tmp_path / "t")[0], tar["train"][0])


def test_published_checksums():
    assert cifar.CIFAR_ARCHIVES["cifar10"][1] == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR_ARCHIVES["cifar100"][1] == "eb9058c3a382ffc7106e4002c42a8d85"
    assert dict(CIFAR_FILES["cifar10"]["train"])["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert dict(CIFAR_FILES["cifar100"]["test"])["test"] == "f0ef6b0ae62326f3e7ffdfab6717acfc"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo never run",))


def test_refused_pickle_globals():
    data = np.zeros((1, 3072), np.uint8)
    evil = py2_pickle({b"data": data, b"labels": [0], b"x": _Evil()})
    with pytest.raises(ValueError, match=r"evil: refused the global posix.system|evil: refused the global os.system"):
        read_cifar_batch(evil, "evil", "cifar10")
    modern = pickle.dumps({b"data": data, b"labels": [0]}, protocol=5)  # numpy's protocol-5 path
    with pytest.raises(ValueError, match=r"refused the global numpy._core.numeric._frombuffer"):
        read_cifar_batch(modern, "modern", "cifar10")
    objects = py2_pickle({b"data": np.array([None], dtype=object), b"labels": [0]})
    with pytest.raises(ValueError, match="refused the object dtype"):
        read_cifar_batch(objects, "objects", "cifar10")
    with pytest.raises(ValueError, match="junk: not a CIFAR batch pickle"):
        read_cifar_batch(b"\x80\x02garbage", "junk", "cifar10")


def test_bad_batches():
    rng = np.random.default_rng(3)
    good = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    cases = [
        ([1, 2], "a CIFAR batch is a dict, got list"),
        ({b"data": good}, r"no key b'labels'"),
        ({b"data": good[:, :3000], b"labels": [0, 1]}, r"b'data' must be a uint8 array of shape \(N, 3072\)"),
        ({b"data": good.astype(np.int32), b"labels": [0, 1]}, "uint8"),
        ({b"data": good, b"labels": [0]}, "b'labels' must be 2 ints"),
        ({b"data": good, b"labels": [0, 10]}, r"b'labels' must lie in 0..9, found 0..10"),
    ]
    for batch, match in cases:
        with pytest.raises(ValueError, match=match):
            read_cifar_batch(py2_pickle(batch), "b", "cifar10")
    fine = {b"data": good, b"fine_labels": [0, 99], b"coarse_labels": [0, 20]}
    assert read_cifar_batch(py2_pickle(fine), "b", "fine")[1].tolist() == [0, 99]
    with pytest.raises(ValueError, match=r"must lie in 0..19"):
        read_cifar_batch(py2_pickle(fine), "b", "coarse")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar100 not found \(it is never downloaded\); looked for"):
        load_cifar100("train", tmp_path)
    make_cifar(tmp_path, "cifar10", tarball=False, folder=True)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 not found"):
        load_cifar10("train", tmp_path, verify_checksums=False)
    np.testing.assert_array_equal(load_cifar10("test", tmp_path, verify_checksums=False)[1].shape, (7,))
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ValueError, match="has no member cifar-10-batches-py/data_batch_1"):
        load_cifar10("train", bad, verify_checksums=False)
    (bad / "cifar-100-python.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match=r"cifar-100-python.tar.gz: not a readable .tar.gz"):
        load_cifar100("test", bad, verify_checksums=False)
    with pytest.raises(ValueError, match="split for CIFAR must be one of"):
        load_cifar10("valid", tmp_path, verify_checksums=False)
