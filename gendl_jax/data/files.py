"""Training data from files: a folder of images, or a ``.npy`` / ``.npz`` array.

* :func:`list_image_files` and :func:`read_image` find and decode images one by one (also what a command
  that streams a folder in batches needs);
* :func:`resize_and_crop` brings one image to ``image_size x image_size`` as torchvision's
  ``Resize(image_size)`` + ``CenterCrop(image_size)`` do;
* :func:`load_image_folder` reads a whole folder into an :class:`~gendl_jax.data.datasets.ArrayDataset`, with
  class labels from its sub-folders as torchvision's ``ImageFolder`` gives them;
* :func:`load_array_file` reads uint8 images or a float point cloud from an array file.
"""

from __future__ import annotations

import numbers
import os
import pathlib
import zipfile

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gendl_jax.data.datasets import ArrayDataset, PointCloudDataset

__all__ = [
    "ARRAY_IMAGE_KEYS",
    "ARRAY_LABEL_KEYS",
    "IMAGE_EXTENSIONS",
    "PROGRESS_MIN_FILES",
    "is_array_file",
    "list_image_files",
    "load_array_file",
    "load_image_folder",
    "read_image",
    "resize_and_crop",
]

IMAGE_EXTENSIONS: tuple[str, ...] = ("bmp", "jpeg", "jpg", "pgm", "png", "ppm", "tif", "tiff", "webp")
"""File extensions read as images (compared case-insensitively; pytorch-fid's list)."""
ARRAY_IMAGE_KEYS: tuple[str, ...] = ("images", "x", "arr_0")
"""Keys of an ``.npz`` file that may hold the examples (exactly one of them)."""
ARRAY_LABEL_KEYS: tuple[str, ...] = ("labels", "y")
"""Keys of an ``.npz`` file that may hold the labels (at most one of them)."""
PROGRESS_MIN_FILES = 1000
""":func:`load_image_folder` shows a progress bar from this many images on."""

_ARRAY_SUFFIXES = (".npy", ".npz")


def _path(value, name: str) -> pathlib.Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    return pathlib.Path(value).expanduser()


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS and "." in name


def list_image_files(folder) -> list[pathlib.Path]:
    """Every image file under ``folder``, recursively, in a fixed order.

    Images are files whose extension is one of :data:`IMAGE_EXTENSIONS` (any case). Hidden files and folders
    (names starting with ``.``) are skipped; symbolic links to folders are followed (each real folder once).
    The order sorts the paths relative to ``folder`` part by part (a folder's files and sub-folders by name,
    as a sorted walk visits them), so it does not depend on the file system.

    Args:
      folder: a folder (str or path).
    Returns:
      The image paths, each ``folder / relative path``.
    Raises:
      FileNotFoundError: ``folder`` does not exist.
      ValueError: ``folder`` is not a folder, or holds no image file (the message names it and the extensions).
    """
    root = _path(folder, "folder")
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder (a folder of images was expected)")
    found: list[tuple[tuple[str, ...], pathlib.Path]] = []
    seen = set()
    for here, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back to a folder already walked
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = pathlib.Path(here).relative_to(root)
        for f in files:
            if _is_image_name(f):
                found.append(((*rel.parts, f), root / rel / f))
    if not found:
        raise ValueError(f"image folder {root} holds no image file (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _decode(path: pathlib.Path) -> Image.Image:
    """The loaded image of ``path`` in mode "L" (grayscale and 1-bit) or "RGB" (every other mode)."""
    try:
        with Image.open(path) as im:
            if im.mode == "1":
                out = im.convert("L")  # 0 / 255
            elif im.mode in ("L", "RGB"):
                im.load()
                out = im.copy()
            else:  # RGBA, LA, P, CMYK, YCbCr, I;16, I, F, ...: as pytorch-fid reads them
                out = im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    return out


def _as_array(image: Image.Image) -> np.ndarray:
    arr = np.array(image, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def read_image(path) -> np.ndarray:
    """One image file as uint8 pixels, read with PIL.

    Grayscale images (PIL mode "L") and 1-bit images (mode "1", read as 0 / 255) keep one channel; RGB images
    keep three. Every other mode (RGBA, LA, P (palette), CMYK, YCbCr, I;16, I, F, ...) is converted to RGB
    with PIL's ``Image.convert("RGB")``, exactly as pytorch-fid reads images (``Image.open(p).convert("RGB")``):
    an alpha channel is dropped, a palette is looked up, and 16-bit / 32-bit / float values are converted by PIL's
    rules (which clip to 0..255). A multi-frame file (TIFF, WebP) gives its first frame; the EXIF orientation
    is not applied (as pytorch-fid).

    Args:
      path: an image file.
    Returns:
      (H, W, C) uint8 with C = 1 (grayscale) or 3 (everything else).
    Raises:
      FileNotFoundError: no such file.
      ValueError: PIL cannot decode the file (names it and PIL's reason).
    """
    return _as_array(_decode(_path(path, "path")))


def _check_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
    return int(image_size)


def _resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)  # torchvision's Resize(int): the long side truncated
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = round((new_h - size) / 2.0)  # torchvision's CenterCrop (round half to even, as Python rounds)
    left = round((new_w - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def resize_and_crop(image: np.ndarray, image_size: int) -> np.ndarray:
    """``image`` resized so that its shorter side is ``image_size``, then centre-cropped to a square.

    As torchvision's ``Resize(image_size, InterpolationMode.BICUBIC)`` then ``CenterCrop(image_size)`` on a PIL
    image: the longer side becomes ``int(image_size * long / short)`` (truncated), the resampling is Pillow's
    bicubic filter (a = -0.5), which antialiases when shrinking (its support widens with the scale factor), an
    image whose shorter side already is ``image_size`` is not resampled, and the crop starts at
    ``round((side - image_size) / 2)`` on each axis.

    Args:
      image: (H, W, C) uint8 with C = 1 or 3.
      image_size: the side of the result, >= 1.
    Returns:
      (image_size, image_size, C) uint8.
    """
    size = _check_size(image_size)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(
            f"image must be a uint8 array of shape (H, W, 1) or (H, W, 3), got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        )
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    return _as_array(_resize_and_crop(pil, size))


def _class_labels(root: pathlib.Path, files: list[pathlib.Path]) -> tuple[np.ndarray | None, list[str]]:
    """Labels from first-level sub-folders (ImageFolder's rule), or None when every image is at the top."""
    rel = [f.relative_to(root) for f in files]
    top = [r for r in rel if len(r.parts) == 1]
    if len(top) == len(rel):
        return None, []
    if top:
        nested = next(r for r in rel if len(r.parts) > 1)
        raise ValueError(
            f"image folder {root} holds images both at its top level (e.g. {top[0]}) and in sub-folders (e.g. "
            f"{nested}); put every image in a class sub-folder (labelled data) or none (unlabelled)"
        )
    classes = sorted({r.parts[0] for r in rel})
    present = set(classes)
    empty = sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in present
    )
    if empty:
        raise ValueError(
            f"image folder {root} has class sub-folders without images: {', '.join(empty[:10])}"
            f"{' ...' if len(empty) > 10 else ''} (each first-level sub-folder is a class, as in ImageFolder)"
        )
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[r.parts[0]] for r in rel], dtype=np.int64), classes


def load_image_folder(folder, image_size: int, *, progress: bool = True, name: str | None = None) -> ArrayDataset:
    """Every image under ``folder`` (:func:`list_image_files`), as a square uint8 dataset.

    Each image is decoded as :func:`read_image` says (grayscale stays one channel, everything else becomes
    RGB), then brought to ``image_size x image_size`` by :func:`resize_and_crop` (shorter side to
    ``image_size`` with Pillow's antialiased bicubic filter, then the centre square). When the folder mixes
    grayscale and RGB images, the grayscale ones are converted to RGB (the gray value copied into R, G and B,
    as PIL's ``convert("RGB")`` does), so every image has 3 channels.

    Labels: when every image sits in a sub-folder, the first-level sub-folder is its class, numbered in sorted
    order of the names (0 .. K-1), as torchvision's ``ImageFolder`` numbers them (deeper folders belong to their
    first-level folder); when every image sits at the top level, there are no labels.

    Args:
      folder: the folder.
      image_size: the side of every image of the dataset (>= 1).
      progress: show a progress bar (from :data:`PROGRESS_MIN_FILES` images on).
      name: the dataset's name (default: the folder as given).
    Returns:
      :class:`~gendl_jax.data.datasets.ArrayDataset` with images (N, image_size, image_size, C) uint8 (C = 1 when
      every image is grayscale, else 3), ``max_value`` 255 and labels (N,) int64 or None, in the order of
      :func:`list_image_files`.
    Raises:
      FileNotFoundError: no such folder.
      ValueError: not a folder, no image in it, an unreadable image (named), images both at the top level and in
        sub-folders, a class sub-folder without images, or a bad ``image_size``.
    """
    size = _check_size(image_size)
    root = _path(folder, "folder")
    files = list_image_files(root)
    labels, _ = _class_labels(root, files)
    bar = tqdm(
        files,
        desc=f"reading {root}",
        unit="image",
        disable=not progress or len(files) < PROGRESS_MIN_FILES,
        dynamic_ncols=True,
    )
    arrays = [_as_array(_resize_and_crop(_decode(f), size)) for f in bar]
    if len({a.shape[2] for a in arrays}) > 1:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    return ArrayDataset(name or str(folder), np.stack(arrays), labels, 255)


def is_array_file(name) -> bool:
    """Whether ``name`` (a str or path) names an array file by its suffix (``.npy`` or ``.npz``, any case)."""
    return isinstance(name, (str, os.PathLike)) and str(name).lower().endswith(_ARRAY_SUFFIXES)


def _one_key(path: pathlib.Path, keys: list[str], wanted: tuple[str, ...], what: str, required: bool) -> str | None:
    present = [k for k in wanted if k in keys]
    if len(present) > 1:
        raise ValueError(f"{path}: holds {what} under several keys {present}; keep one of {list(wanted)}")
    if not present and required:
        raise ValueError(f"{path}: no {what}: expected one of the keys {list(wanted)}, the file has {keys}")
    return present[0] if present else None


def _read_arrays(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(examples, labels or None) of an array file; numpy's own reading decides between .npy and .npz."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read it as a numpy array file ({type(e).__name__}: {e})") from e
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded as npz:
        keys = list(npz.files)
        x_key = _one_key(path, keys, ARRAY_IMAGE_KEYS, "examples", required=True)
        y_key = _one_key(path, keys, ARRAY_LABEL_KEYS, "labels", required=False)
        unknown = sorted(set(keys) - {x_key, y_key})
        if unknown:
            raise ValueError(
                f"{path}: unexpected keys {unknown}; an .npz file holds the examples under one of "
                f"{list(ARRAY_IMAGE_KEYS)} and optionally labels under one of {list(ARRAY_LABEL_KEYS)}"
            )
        try:
            return npz[x_key], (npz[y_key] if y_key is not None else None)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: cannot read its arrays ({type(e).__name__}: {e})") from e


def _check_array_labels(path: pathlib.Path, labels: np.ndarray, n: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        raise ValueError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{path}: labels must have shape ({n},), one per example, got {labels.shape}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{path}: labels must be >= 0, found {int(labels.min())}")
    return labels.astype(np.int64)


def load_array_file(path, *, name: str | None = None) -> ArrayDataset | PointCloudDataset:
    """Examples from an ``.npy`` or ``.npz`` file (read with ``allow_pickle=False``).

    An ``.npz`` file holds the examples under one of the keys :data:`ARRAY_IMAGE_KEYS` (``images``, ``x`` or
    ``arr_0``, what ``np.savez(f, a)`` writes) and optionally integer labels (N,) >= 0 under one of
    :data:`ARRAY_LABEL_KEYS` (``labels`` or ``y``); other keys are refused. An ``.npy`` file holds the examples.

    * uint8 (N, H, W, C) or (N, H, W) images -> :class:`~gendl_jax.data.datasets.ArrayDataset`, ``max_value``
      255, (N, H, W) given one channel;
    * floating-point (N, d), any d >= 1 -> :class:`~gendl_jax.data.datasets.PointCloudDataset` in float32
      (float64 values are rounded to float32; every value must be finite after that).

    Args:
      path: the file, named ``*.npy`` or ``*.npz`` (any case); numpy reads it by its content.
      name: the dataset's name (default: the path as given).
    Returns:
      An ArrayDataset or a PointCloudDataset; labels int64 or None.
    Raises:
      FileNotFoundError: no such file.
      ValueError: another suffix, a file numpy cannot read (or that needs pickle), missing / ambiguous /
        unknown keys, no examples, another dtype or shape (integers other than uint8, float images, a
        uint8 (N, d) array, ...), non-finite points, or labels that are not (N,) integers >= 0.
    """
    p = _path(path, "path")
    if not is_array_file(p):
        raise ValueError(f"{p}: an array file must end with .npy or .npz")
    if not p.is_file():
        raise FileNotFoundError(f"array file {p} does not exist")
    x, labels = _read_arrays(p)
    name = name or str(path)
    if x.ndim == 0 or x.shape[0] < 1:
        raise ValueError(f"{p}: no examples: the array has shape {x.shape}, expected N >= 1 rows")
    if labels is not None:
        labels = _check_array_labels(p, labels, x.shape[0])
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        images = x[..., None] if x.ndim == 3 else x
        if min(images.shape[1:]) < 1:
            raise ValueError(f"{p}: images must have H, W, C >= 1, got shape {images.shape}")
        return ArrayDataset(name, np.ascontiguousarray(images), labels, 255)
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 2:
        if x.shape[1] < 1:
            raise ValueError(f"{p}: a point cloud needs d >= 1 coordinates, got shape {x.shape}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
            points = x.astype(np.float32)
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            why = "beyond the float32 range" if np.isfinite(x[bad]).all() else "NaN or inf"
            raise ValueError(
                f"{p}: a point cloud must be finite; {bad.size} point(s) are not ({why}), first rows: {bad[:5].tolist()}"
            )
        return PointCloudDataset(name, points, labels)
    raise ValueError(
        f"{p}: expected uint8 images of shape (N, H, W, C) or (N, H, W), or a floating-point point cloud of shape "
        f"(N, d); got {x.dtype} of shape {x.shape}"
        + (" (integer pixels in 0..255: save them as uint8)" if np.issubdtype(x.dtype, np.integer) else "")
        + (" (float images: save them as uint8 0..255)" if np.issubdtype(x.dtype, np.floating) else "")
    )
