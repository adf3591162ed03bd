import gzip
import hashlib
import importlib.util
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from gendl_jax.data import MNIST_FILES, find_mnist_dir, load_mnist, read_idx, resolve_data_dir

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _raw(path: pathlib.Path, offset: int, magic: int) -> np.ndarray:
    """Independent parse: gunzip, check the magic as a big-endian int32, skip the header."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    assert struct.unpack(">i", buf[:4])[0] == magic
    return np.frombuffer(buf, dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def raw_mnist(mnist_dir):
    out = {}
    for split, (img_name, lab_name) in MNIST_FILES.items():
        images = _raw(mnist_dir / img_name, 16, 2051).reshape(-1, 28, 28)
        labels = _raw(mnist_dir / lab_name, 8, 2049)
        out[split] = (images, labels)
    return out


def _copy_split(src: pathlib.Path, dst: pathlib.Path, split: str = "test", sums: bool = True):
    dst.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES[split]:
        shutil.copyfile(src / name, dst / name)
    if sums:
        shutil.copyfile(src / "SHA256SUMS", dst / "SHA256SUMS")
    return dst


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("split,n,counts", [("train", 60000, TRAIN_COUNTS), ("test", 10000, TEST_COUNTS)])
def test_load_mnist_matches_raw_bytes(mnist_dir, raw_mnist, split, n, counts):
    images, labels = load_mnist(split, data_dir=mnist_dir)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    raw_images, raw_labels = raw_mnist[split]
    np.testing.assert_array_equal(images, raw_images)
    np.testing.assert_array_equal(labels, raw_labels)
    assert np.bincount(labels, minlength=10).tolist() == counts
    # Cached in-process, read-only.
    again = load_mnist(split, data_dir=mnist_dir)
    assert again[0] is images and again[1] is labels
    assert not images.flags.writeable


def test_train_mean_pixel(mnist_dir):
    images, _ = load_mnist("train", data_dir=mnist_dir)
    assert images.mean(dtype=np.float64) == pytest.approx(33.318, abs=1e-3)
    assert images.mean(dtype=np.float64) / 255 == pytest.approx(0.1307, abs=1e-4)


def test_sha256sums_file_matches(mnist_dir):
    # The shipped digests are those of the files (an independent hashlib pass).
    lines = (mnist_dir / "SHA256SUMS").read_text().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    for name in (n for pair in MNIST_FILES.values() for n in pair):
        assert hashlib.sha256((mnist_dir / name).read_bytes()).hexdigest() == sums[name]


# --------------------------------------------------------------------------- read_idx


def test_read_idx_raw_and_gzip_agree(mnist_dir, tmp_path):
    name = MNIST_FILES["test"][1]
    raw = tmp_path / "labels-raw"
    raw.write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    a, b = read_idx(mnist_dir / name), read_idx(raw)
    np.testing.assert_array_equal(a, b)
    assert a.flags.writeable


@pytest.mark.parametrize("code,dtype", [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
def test_read_idx_other_types(tmp_path, code, dtype):
    values = (np.arange(24).reshape(2, 3, 4) - 7) * 3
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, code, 3]) + struct.pack(">III", 2, 3, 4) + values.astype(dtype).tobytes())
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, values)


def test_truncated_gzip_raises(mnist_dir, tmp_path):
    name = MNIST_FILES["test"][0]
    bad = tmp_path / name
    data = (mnist_dir / name).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=name):
        read_idx(bad)


def test_truncated_or_extra_payload_raises(mnist_dir, tmp_path):
    name = MNIST_FILES["test"][1]
    payload = gzip.decompress((mnist_dir / name).read_bytes())
    short = tmp_path / "short-labels.gz"
    short.write_bytes(gzip.compress(payload[:-10]))
    with pytest.raises(ValueError, match=r"short-labels\.gz.*9990 bytes, expected 10000.*truncated"):
        read_idx(short)
    long = tmp_path / "long-labels"
    long.write_bytes(payload + b"\x00" * 3)
    with pytest.raises(ValueError, match=r"long-labels.*10003 bytes, expected 10000"):
        read_idx(long)
    huge = tmp_path / "huge-header"  # claims 2^64 bytes: a size error, not a huge allocation
    huge.write_bytes(bytes([0, 0, 8, 2]) + struct.pack(">II", 2**32 - 1, 2**32 - 1) + b"\x01" * 5)
    with pytest.raises(ValueError, match=r"huge-header.*5 bytes, expected 18446744065119617025"):
        read_idx(huge)
    header_only = tmp_path / "header"
    header_only.write_bytes(payload[:6])
    with pytest.raises(ValueError, match="header truncated"):
        read_idx(header_only)


def test_bad_magic_raises(mnist_dir, tmp_path):
    payload = bytearray(gzip.decompress((mnist_dir / MNIST_FILES["test"][1]).read_bytes()))
    payload[0] = 1
    bad = tmp_path / "bad-magic"
    bad.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="bad-magic.*magic"):
        read_idx(bad)
    payload[0] = 0
    payload[2] = 0x07
    bad.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="type code 0x07"):
        read_idx(bad)
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- checks, dirs


def test_checksum_mismatch_raises(mnist_dir, tmp_path):
    d = _copy_split(mnist_dir, tmp_path / "m")
    name = MNIST_FILES["test"][1]
    true = hashlib.sha256((d / name).read_bytes()).hexdigest()
    fake = "0" * 64
    sums = d / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(true, fake))
    with pytest.raises(ValueError, match=f"{name}.*{fake}.*{true}"):
        load_mnist("test", data_dir=d)
    images, _ = load_mnist("test", data_dir=d, verify_checksums=False)
    assert images.shape == (10000, 28, 28)


def test_corrupt_label_rejected(mnist_dir, tmp_path):
    d = _copy_split(mnist_dir, tmp_path / "m", sums=False)
    name = MNIST_FILES["test"][1]
    payload = bytearray(gzip.decompress((d / name).read_bytes()))
    payload[8 + 5] = 10
    (d / name).write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist("test", data_dir=d)


def test_missing_dir_and_files(tmp_path, monkeypatch):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_mnist("test", data_dir=missing)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / MNIST_FILES["test"][0])):
        load_mnist("test", data_dir=tmp_path)
    monkeypatch.delenv("GENDL_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="GENDL_DATA_DIR"):
        load_mnist("test")
    with pytest.raises(FileNotFoundError, match="GENDL_DATA_DIR"):
        resolve_data_dir()
    monkeypatch.setenv("GENDL_DATA_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        resolve_data_dir()


def test_bad_split(mnist_dir):
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", data_dir=mnist_dir)


def test_env_var_honoured(mnist_dir, raw_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("GENDL_DATA_DIR", str(mnist_dir))
    assert resolve_data_dir() == mnist_dir
    np.testing.assert_array_equal(load_mnist("test")[1], raw_mnist["test"][1])
    # A parent directory with an mnist/ subdirectory is accepted too.
    parent = tmp_path / "data"
    _copy_split(mnist_dir, parent / "mnist")
    monkeypatch.setenv("GENDL_DATA_DIR", str(parent))
    assert find_mnist_dir("test") == parent / "mnist"
    np.testing.assert_array_equal(load_mnist("test")[0], raw_mnist["test"][0])


# --------------------------------------------------------------------------- TFDS builder


def test_tensorflow_absent():
    # The TFDS path must work without TensorFlow; this test documents the environment.
    assert importlib.util.find_spec("tensorflow") is None


@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_mnist_bit_exact(tfds_mnist_dir, raw_mnist, split):
    from gendl_jax.data import mnist_data_source

    ds = mnist_data_source(split, tfds_mnist_dir)
    raw_images, raw_labels = raw_mnist[split]
    assert len(ds) == {"train": 60000, "test": 10000}[split] == len(raw_labels)
    for i in (0, 1, 777, len(ds) - 1):
        rec = ds[i]
        assert rec["image"].dtype == np.uint8 and rec["image"].shape == (28, 28, 1)
        np.testing.assert_array_equal(rec["image"][:, :, 0], raw_images[i])
        assert int(rec["label"]) == raw_labels[i]
    recs = ds.__getitems__(list(range(len(ds))))
    np.testing.assert_array_equal(np.stack([r["image"][:, :, 0] for r in recs]), raw_images)
    np.testing.assert_array_equal(np.array([r["label"] for r in recs]), raw_labels)


def test_tfds_prepare_is_idempotent(tfds_mnist_dir, tmp_path):
    from gendl_jax.data import prepare_mnist_tfds

    files = sorted((tfds_mnist_dir / "mnist_idx" / "1.0.0").iterdir())
    assert any(f.name.startswith("mnist_idx-train.array_record") for f in files)
    before = {f: f.stat().st_mtime_ns for f in files}
    t0 = time.perf_counter()
    # idx_dir is not consulted once prepared: a missing one is fine.
    prepare_mnist_tfds(tfds_mnist_dir, idx_dir=tmp_path / "absent")
    assert time.perf_counter() - t0 < 5.0
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_tfds_readable_in_fresh_process_without_builder(tfds_mnist_dir, raw_mnist):
    # A process that never imports gendl_jax reads the prepared data with plain tfds.
    code = (
        "import sys, tensorflow_datasets as tfds\n"
        "ds = tfds.data_source('mnist_idx', split='test', data_dir=sys.argv[1], download=False)\n"
        "r = ds[3]\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(len(ds), r['label'], int(r['image'].sum()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tfds_mnist_dir)], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n, label, total = out.stdout.split()[-3:]
    images, labels = raw_mnist["test"]
    assert (int(n), int(label), int(total)) == (10000, int(labels[3]), int(images[3].sum(dtype=np.int64)))


def test_tfds_prepare_missing_idx_dir(tmp_path):
    from gendl_jax.data import prepare_mnist_tfds

    with pytest.raises(FileNotFoundError, match="absent"):
        prepare_mnist_tfds(tmp_path / "tfds", idx_dir=tmp_path / "absent")
    with pytest.raises(TypeError, match="tfds_data_dir"):
        prepare_mnist_tfds(3)
