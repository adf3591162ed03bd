"""Training data from files: image folders (reading, resizing, labels), .npy / .npz arrays, the held-out split."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from gendl_jax.data import (
    HELD_OUT_FRACTION,
    IMAGE_EXTENSIONS,
    ArrayDataset,
    BatchIterator,
    PointCloudDataset,
    data_label,
    held_out_split,
    is_data_path,
    list_image_files,
    load_array_file,
    load_dataset,
    load_image_folder,
    make_iterator,
    read_image,
    resize_and_crop,
    select_split,
)


def _save(path: pathlib.Path, array: np.ndarray, mode: str | None = None, **kwargs) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return path


def _rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gray(rng, h, w):
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def _expected(path, size):
    """A direct PIL computation of what one image of a folder becomes: shorter side to ``size`` (the longer
    truncated), bicubic, the centre square (offsets rounded), in mode L or RGB."""
    im = Image.open(path)
    im = im.convert("L") if im.mode in ("1", "L") else im.convert("RGB")
    w, h = im.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    if new != (w, h):
        im = im.resize(new, Image.BICUBIC)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    out = np.asarray(im.crop((left, top, left + size, top + size)))
    return out[..., None] if out.ndim == 2 else out


# ------------------------------------------------------------------------------------------------
# listing and reading


def test_list_image_files_is_recursive_sorted_and_skips_what_is_not_an_image(tmp_path):
    rng = np.random.default_rng(0)
    names = ["b/2.png", "a/z.JPG", "a/sub/1.webp", "a-b/0.tiff", "c.Png", "a/y.bmp"]
    for name in names:
        _save(tmp_path / name, _rgb(rng, 5, 4))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "labels.csv").write_text("0,1")
    _save(tmp_path / ".hidden" / "x.png", _rgb(rng, 5, 4))
    _save(tmp_path / "a" / ".x.png", _rgb(rng, 5, 4))
    got = list_image_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "a/sub/1.webp",
        "a/y.bmp",
        "a/z.JPG",
        "a-b/0.tiff",
        "b/2.png",
        "c.Png",
    ]
    assert list_image_files(str(tmp_path)) == got
    assert set(IMAGE_EXTENSIONS) == {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}


def test_list_image_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        list_image_files(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"empty holds no image file \(extensions: bmp"):
        list_image_files(tmp_path / "empty")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a folder"):
        list_image_files(tmp_path / "f.png")
    with pytest.raises(TypeError, match="folder"):
        list_image_files(3)


def test_read_image_modes(tmp_path):
    rng = np.random.default_rng(1)
    gray, rgb = _gray(rng, 6, 9), _rgb(rng, 6, 9)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "g.png", gray)), gray[..., None])
    np.testing.assert_array_equal(read_image(_save(tmp_path / "c.png", rgb)), rgb)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "c.ppm", rgb)), rgb)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "g.pgm", gray)), gray[..., None])
    bits = rng.integers(0, 2, (6, 9)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), (bits * 255).astype(np.uint8)[..., None])
    rgba = rng.integers(0, 256, (6, 9, 4), dtype=np.uint8)
    out = read_image(_save(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(out, rgba[..., :3])  # pytorch-fid's convert("RGB") drops alpha
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))
    deep = rng.integers(0, 65536, (6, 9), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I")
        np.testing.assert_array_equal(read_image(tmp_path / "d.png"), np.asarray(im.convert("RGB")))
    jpg = read_image(_save(tmp_path / "c.jpg", rgb, quality=95))
    assert jpg.shape == (6, 9, 3) and jpg.dtype == np.uint8


def test_read_image_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"this is no png")
    with pytest.raises(ValueError, match=r"bad.png: not a readable image"):
        read_image(tmp_path / "bad.png")
    good = _save(tmp_path / "cut.png", _rgb(np.random.default_rng(2), 40, 40))
    (tmp_path / "cut2.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut2.png: not a readable image"):
        read_image(tmp_path / "cut2.png")
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_image(tmp_path / "nothing.png")


@pytest.mark.parametrize("h,w", [(37, 50), (50, 37), (32, 32), (100, 33), (31, 31), (64, 96), (17, 40)])
@pytest.mark.parametrize("size", [16, 32])
def test_resize_and_crop_matches_pil(tmp_path, h, w, size):
    rng = np.random.default_rng(h * w + size)
    for name, image in (("c.png", _rgb(rng, h, w)), ("g.png", _gray(rng, h, w))):
        path = _save(tmp_path / name, image)
        out = resize_and_crop(read_image(path), size)
        assert out.shape == (size, size, 3 if name == "c.png" else 1) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, _expected(path, size))
    with pytest.raises(ValueError, match="image_size"):
        resize_and_crop(image, 0)
    with pytest.raises(ValueError, match=r"uint8 array of shape \(H, W, 1\) or \(H, W, 3\)"):
        resize_and_crop(image, 8)  # (H, W) without a channel axis


def test_resize_keeps_an_image_of_the_right_size():
    image = _rgb(np.random.default_rng(3), 32, 45)
    np.testing.assert_array_equal(resize_and_crop(image, 32), image[:, 6:38])  # no resampling, centre square


# ------------------------------------------------------------------------------------------------
# folders


def _class_folder(root: pathlib.Path, rng) -> dict[str, int]:
    """dog/ (RGB png, jpg, a grayscale png in a sub-folder), cat/ (grayscale), bird/ (RGB); returns the labels
    by relative path."""
    _save(root / "dog" / "d1.png", _rgb(rng, 40, 30))
    _save(root / "dog" / "d2.jpg", _rgb(rng, 24, 50), quality=90)
    _save(root / "dog" / "puppies" / "p.png", _gray(rng, 33, 33))
    _save(root / "cat" / "c1.png", _gray(rng, 20, 20))
    _save(root / "bird" / "b1.PNG", _rgb(rng, 16, 70))
    return {"bird/b1.PNG": 0, "cat/c1.png": 1, "dog/d1.png": 2, "dog/d2.jpg": 2, "dog/puppies/p.png": 2}


def test_load_image_folder_with_class_folders(tmp_path):
    labels = _class_folder(tmp_path, np.random.default_rng(4))
    ds = load_image_folder(tmp_path, 16)
    assert isinstance(ds, ArrayDataset) and ds.max_value == 255 and ds.name == str(tmp_path)
    assert ds.images.shape == (5, 16, 16, 3) and ds.images.dtype == np.uint8  # mixed: grayscale -> RGB
    files = list_image_files(tmp_path)
    assert [labels[f.relative_to(tmp_path).as_posix()] for f in files] == ds.labels.tolist()
    assert ds.labels.dtype == np.int64
    for i, f in enumerate(files):
        expected = _expected(f, 16)
        if expected.shape[2] == 1:
            expected = np.asarray(Image.fromarray(expected[..., 0]).convert("RGB"))
        np.testing.assert_array_equal(ds.images[i], expected, err_msg=str(f))


def test_load_image_folder_flat_and_grayscale(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(3):
        _save(tmp_path / f"{i}.png", _gray(rng, 30 + i, 28))
    ds = load_image_folder(tmp_path, 28, name="flat")
    assert ds.name == "flat" and ds.labels is None and ds.images.shape == (3, 28, 28, 1)
    for i, f in enumerate(list_image_files(tmp_path)):
        np.testing.assert_array_equal(ds.images[i], _expected(f, 28))


def test_load_image_folder_errors(tmp_path):
    rng = np.random.default_rng(6)
    _class_folder(tmp_path / "mixed", rng)
    _save(tmp_path / "mixed" / "stray.png", _rgb(rng, 8, 8))
    with pytest.raises(ValueError, match=r"both at its top level \(e.g. stray.png\) and in sub-folders"):
        load_image_folder(tmp_path / "mixed", 8)
    _class_folder(tmp_path / "emptyclass", rng)
    (tmp_path / "emptyclass" / "fish").mkdir()
    with pytest.raises(ValueError, match="class sub-folders without images: fish"):
        load_image_folder(tmp_path / "emptyclass", 8)
    _class_folder(tmp_path / "broken", rng)
    (tmp_path / "broken" / "cat" / "c2.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"c2.jpg: not a readable image"):
        load_image_folder(tmp_path / "broken", 8)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="holds no image file"):
        load_image_folder(tmp_path / "none", 8)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "absent", 8)
    with pytest.raises(ValueError, match="image_size must be an int >= 1"):
        load_image_folder(tmp_path / "mixed", 0)


# ------------------------------------------------------------------------------------------------
# arrays


def test_uint8_images_from_npy_and_npz(tmp_path):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (9, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", images)
    ds = load_array_file(tmp_path / "a.npy")
    assert isinstance(ds, ArrayDataset) and ds.max_value == 255 and ds.labels is None
    np.testing.assert_array_equal(ds.images, images)
    gray = images[..., 0]
    labels = rng.integers(0, 4, 9)
    np.savez(tmp_path / "b.npz", images=gray, labels=labels)
    ds = load_array_file(tmp_path / "b.npz", name="b")
    assert ds.name == "b" and ds.images.shape == (9, 6, 5, 1)
    np.testing.assert_array_equal(ds.images[..., 0], gray)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    with open(tmp_path / "c.NPZ", "wb") as f:  # np.savez would append .npz to a path
        np.savez(f, images, y=labels.astype(np.uint8))  # arr_0 and y
    ds = load_array_file(tmp_path / "c.NPZ")
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


@pytest.mark.parametrize("d", [1, 3, 5])
def test_point_clouds(tmp_path, d):
    rng = np.random.default_rng(d)
    points = rng.normal(size=(50, d)) * 3.0 + 1.0
    np.save(tmp_path / "cloud.npy", points)
    ds = load_array_file(tmp_path / "cloud.npy")
    assert isinstance(ds, PointCloudDataset) and ds.shape == (d,) and len(ds) == 50 and ds.labels is None
    assert ds.points.dtype == np.float32
    np.testing.assert_array_equal(ds.points, points.astype(np.float32))
    labels = rng.integers(0, 3, 50)
    np.savez(tmp_path / "cloud.npz", x=points.astype(np.float16), y=labels)
    ds = load_array_file(tmp_path / "cloud.npz")
    np.testing.assert_array_equal(ds.points, points.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(ds.labels, labels)


@pytest.mark.parametrize(
    "array,match",
    [
        (
            np.zeros((4, 5, 5), np.int64),
            r"got int64 of shape \(4, 5, 5\) \(integer pixels in 0..255: save them as uint8\)",
        ),
        (np.zeros((4, 5, 5, 3), np.float32), r"float32 of shape \(4, 5, 5, 3\) \(float images"),
        (np.zeros((4, 3), np.uint8), r"expected uint8 images of shape \(N, H, W, C\) or \(N, H, W\), or a floating"),
        (np.zeros(4), r"got float64 of shape \(4,\)"),
        (np.zeros((4, 3), bool), "got bool"),
        (np.zeros((0, 3)), r"no examples: the array has shape \(0, 3\)"),
        (np.zeros((4, 0)), r"d >= 1"),
        (np.array(2.0), r"no examples"),
        (
            np.array([[0.0, np.nan], [1.0, 2.0], [np.inf, 0.0]]),
            r"2 point\(s\) are not \(NaN or inf\), first rows: \[0, 2\]",
        ),
        (np.array([[0.0, 1e300], [1.0, 2.0]]), r"1 point\(s\) are not \(beyond the float32 range\)"),
    ],
)
def test_bad_arrays(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=match) as info:
        load_array_file(tmp_path / "bad.npy")
    assert "bad.npy" in str(info.value)


def test_bad_array_files(tmp_path):
    images = np.zeros((4, 5, 5), np.uint8)
    cases = {
        "two.npz": dict(images=images, x=images),
        "none.npz": dict(pixels=images),
        "extra.npz": dict(images=images, labels=np.arange(4), names=np.arange(4)),
        "shape.npz": dict(images=images, labels=np.arange(3)),
        "negative.npz": dict(images=images, labels=np.array([0, 1, -1, 2])),
        "float.npz": dict(images=images, labels=np.zeros(4)),
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
    expected = {
        "two.npz": r"two.npz: holds examples under several keys \['images', 'x'\]",
        "none.npz": r"none.npz: no examples: expected one of the keys \['images', 'x', 'arr_0'\], the file has \['pixels'\]",
        "extra.npz": r"extra.npz: unexpected keys \['names'\]",
        "shape.npz": r"shape.npz: labels must have shape \(4,\)",
        "negative.npz": r"negative.npz: labels must be >= 0, found -1",
        "float.npz": r"float.npz: labels must be integers, got dtype float64",
    }
    for name, match in expected.items():
        with pytest.raises(ValueError, match=match):
            load_array_file(tmp_path / name)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects.npy: cannot read it as a numpy array file"):
        load_array_file(tmp_path / "objects.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"junk.npz: cannot read it"):
        load_array_file(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        load_array_file(tmp_path / "absent.npy")
    with pytest.raises(ValueError, match=r"must end with .npy or .npz"):
        load_array_file(tmp_path / "x.csv")


# ------------------------------------------------------------------------------------------------
# the held-out split and load_dataset


@pytest.mark.parametrize("n", [2, 3, 9, 10, 11, 57, 1000])
def test_held_out_split_is_disjoint_covering_and_fixed(n):
    train, test = held_out_split(n)
    assert len(test) == max(1, int(np.floor(HELD_OUT_FRACTION * n))) and len(train) == n - len(test)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    again = held_out_split(n)
    np.testing.assert_array_equal(again[1], test)
    perm = np.random.default_rng([28, n]).permutation(n)  # the documented recipe
    np.testing.assert_array_equal(test, np.sort(perm[: len(test)]))
    with pytest.raises(ValueError, match="at least 2 examples"):
        held_out_split(1)


def test_load_dataset_splits_arrays(tmp_path):
    rng = np.random.default_rng(8)
    points = rng.normal(size=(101, 3))
    np.savez(tmp_path / "cloud.npz", x=points, y=np.arange(101))  # labels = row, to see which rows a split holds
    path = str(tmp_path / "cloud.npz")
    parts = {s: load_dataset(path, s) for s in ("train", "test", "all")}
    assert all(isinstance(p, PointCloudDataset) and p.name == path for p in parts.values())
    assert [len(parts[s]) for s in ("train", "test", "all")] == [91, 10, 101]
    rows = {s: parts[s].labels for s in parts}
    assert np.intersect1d(rows["train"], rows["test"]).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([rows["train"], rows["test"]])), np.arange(101))
    for s in ("train", "test"):
        np.testing.assert_array_equal(parts[s].points, points[rows[s]].astype(np.float32))
    with pytest.raises(ValueError, match=r"split for .*cloud.npz' must be one of \('train', 'test', 'all'\)"):
        load_dataset(path, "validation")
    np.save(tmp_path / "one.npy", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="has 1 example, which cannot be split"):
        load_dataset(str(tmp_path / "one.npy"))
    assert len(load_dataset(str(tmp_path / "one.npy"), "all")) == 1


def test_load_dataset_splits_folders(tmp_path):
    rng = np.random.default_rng(9)
    for i in range(12):
        _save(tmp_path / "imgs" / f"{'ab'[i % 2]}" / f"{i:02d}.png", _rgb(rng, 20, 24))
    folder = str(tmp_path / "imgs")
    whole = load_dataset(folder, "all", image_size=16)
    train, test = load_dataset(folder, "train", image_size=16), load_dataset(folder, "test", image_size=16)
    assert (len(train), len(test), len(whole)) == (11, 1, 12) and train.shape == (16, 16, 3)
    idx_train, idx_test = held_out_split(12)
    np.testing.assert_array_equal(train.images, whole.images[idx_train])
    np.testing.assert_array_equal(test.labels, whole.labels[idx_test])
    # the split depends on the files, not on the size asked for
    np.testing.assert_array_equal(load_dataset(folder, "test", image_size=8).labels, test.labels)
    with pytest.raises(ValueError, match=r"is a folder of images: give image_size \(--image-size N\)"):
        load_dataset(folder)
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"image_size=32 applies to a folder of images only; .*x.npy"):
        load_dataset(str(tmp_path / "x.npy"), image_size=32)
    with pytest.raises(ValueError, match="image_size=32 applies to a folder of images only; 'grid25'"):
        load_dataset("grid25", image_size=32)


def test_a_folder_is_cached_until_its_files_change(tmp_path):
    rng = np.random.default_rng(10)
    for i in range(3):
        _save(tmp_path / f"{i}.png", _rgb(rng, 8, 8))
    a = load_dataset(str(tmp_path), "all", image_size=8)
    assert load_dataset(str(tmp_path), "all", image_size=8) is a and not a.images.flags.writeable
    _save(tmp_path / "3.png", _rgb(rng, 8, 8))
    assert len(load_dataset(str(tmp_path), "all", image_size=8)) == 4


def test_names_and_labels(tmp_path):
    (tmp_path / "photos").mkdir()
    assert is_data_path(tmp_path / "photos") and is_data_path("missing.npy") and not is_data_path("mnist")
    assert not is_data_path(str(tmp_path / "nothing"))
    assert data_label(str(tmp_path / "photos")) == "photos" and data_label(str(tmp_path / "photos") + "/") == "photos"
    assert data_label("some/dir/cloud.NPZ") == "cloud" and data_label("grid25") == "grid25"


def test_unknown_name_mentions_files(tmp_path):
    with pytest.raises(ValueError, match=r"or a folder of images or an .npy / .npz file \(no such folder or file\)"):
        load_dataset(str(tmp_path / "no_such_folder"), data_dir=tmp_path)


def test_point_cloud_batches(tmp_path):
    points = np.random.default_rng(11).normal(size=(40, 3)).astype(np.float32)
    ds = PointCloudDataset("c", points, np.arange(40))
    it = BatchIterator(ds, 8, seed=1, inner_steps=2, value_range=(0.0, 1.0))
    assert it.steps_per_epoch == 2 and it.example_shape == (3,)
    for s in range(4):
        batch = it.batch_at(s)
        assert batch["x"].shape == (2, 8, 3) and batch["x"].dtype == np.float32
        np.testing.assert_array_equal(batch["x"], points[batch["y"]])  # no scaling
    epoch = np.concatenate([it.batch_at(s)["y"].ravel() for s in range(2)])
    assert len(set(epoch.tolist())) == 32
    assert it.position(3)["dataset_size"] == 40
    big = PointCloudDataset("big", np.zeros((300, 2), np.float32))
    assert make_iterator(big, None, 0, 1).batch_size == 256


def test_point_cloud_dataset_validation():
    good = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="float32"):
        PointCloudDataset("p", good.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        PointCloudDataset("p", good[:, :0])
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) hold NaN or inf \(first rows: \[2\]\)"):
        PointCloudDataset("p", bad)
    with pytest.raises(ValueError, match="labels"):
        PointCloudDataset("p", good, np.arange(3))
    with pytest.raises(TypeError, match="ArrayDataset or a PointCloudDataset"):
        select_split(object(), "train")
