"""Inception features, FID statistics and their files, computed as pytorch-fid and torch-fidelity compute them.

The published FID / IS / KID numbers are measured in the features of one network, the TF Inception graph of
2015-12-05 (:class:`gendl_jax.models.inception.FIDInceptionV3`), with one preprocessing. This module runs that
network on uint8 images of any size with either peer's preprocessing, reads its weights from the file users
already have, and reads and writes pytorch-fid's statistics files.

Preprocessing (``preprocessing=``), the one thing the two reference implementations do differently:

* ``"pytorch-fid"`` (default; pytorch-fid 0.3.0, its ``fid_score.py`` and ``InceptionV3``): pixels / 255, then
  bilinear resize to 299 x 299 with half-pixel centres (``F.interpolate(..., mode="bilinear",
  align_corners=False)``: source coordinate ``(i + 0.5) * in / out - 0.5``, clamped at 0, no anti-aliasing),
  then ``2 x - 1``.
* ``"torch-fidelity"`` (torch-fidelity 0.4 and the original TF graph, hence TTUR and TF-GAN): bilinear resize of
  the 0..255 values as TensorFlow 1.x's ``resize_bilinear`` does (source coordinate ``i * in / out``, no
  half-pixel centres), then ``(x - 128) / 128``.

At 299 x 299 input both resizes are the identity and the two differ only by the scaling (255 vs 256): FIDs agree
to about 1e-3 relative. Below 299 (CIFAR's 32 x 32) the resizes differ and so do the FIDs (by a few percent);
report which one you used. Grayscale images are repeated to three channels (PIL's ``convert("RGB")``).

Weights: ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release; torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` has the same keys) read without PyTorch by
:func:`gendl_jax.models.weights.read_state_dict`; ``.npz`` and ``.safetensors`` copies of the same state dict also
work. The path comes from the ``weights`` argument or ``$GENDL_INCEPTION_WEIGHTS``; nothing is ever downloaded.

Example (with the weights file at hand):

.. code-block:: python

    extractor = load_inception("pt_inception-2015-12-05-6726825d.pth")
    feats = extractor.features(images_uint8, outputs=("2048", "logits_unbiased"))
    mu, sigma = feature_statistics(feats["2048"])
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from gendl_jax.models.inception import FEATURE_DIMS, INCEPTION_INPUT_SIZE, INCEPTION_OUTPUTS, FIDInceptionV3

WEIGHTS_ENV = "GENDL_INCEPTION_WEIGHTS"
"""Environment variable naming the Inception weights file when no path is passed."""

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
PUBLISHED_SHA256_PREFIX = "6726825d"
"""The published weights' SHA-256 starts with these digits (torch hub's file-name convention)."""

PREPROCESSING: tuple[str, ...] = ("pytorch-fid", "torch-fidelity")
FID_DIMS: tuple[int, ...] = (64, 192, 768, 2048)
"""Feature sizes pytorch-fid's ``--dims`` accepts."""

DEFAULT_BATCH_SIZE = 50


def _check_preprocessing(preprocessing) -> str:
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
    return preprocessing


def resize_weights(in_size: int, out_size: int, preprocessing: str = "pytorch-fid") -> np.ndarray:
    """The (out_size, in_size) matrix of one axis of the bilinear resize, in float64.

    Bilinear interpolation is separable, so an image resizes as ``R_h @ X @ R_w.T`` per channel. Rows hold the two
    weights ``1 - t`` and ``t`` of source pixels ``floor(s)`` and ``min(floor(s) + 1, in_size - 1)`` at source
    coordinate ``s``: ``max((i + 0.5) * in / out - 0.5, 0)`` for "pytorch-fid" (torch, ``align_corners=False``),
    ``i * in / out`` for "torch-fidelity" (TensorFlow 1.x). ``in_size == out_size`` gives the identity in both.
    """
    _check_preprocessing(preprocessing)
    for name, v in (("in_size", in_size), ("out_size", out_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    # The source coordinates in float32, as both peers compute them on float32 images (torch's opmath for
    # float; torch-fidelity's float32 grid), so that the interpolation weights agree to the last bit.
    i = np.arange(out_size, dtype=np.float32)
    if preprocessing == "pytorch-fid":
        scale = np.float32(in_size) / np.float32(out_size)
        src = np.maximum(scale * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    else:
        src = i * np.float32(in_size / out_size)
    lo = np.floor(src).astype(np.int64)
    t = (src - lo.astype(np.float32)).astype(np.float64)
    hi = np.minimum(lo + 1, in_size - 1)
    w = np.zeros((out_size, in_size))
    np.add.at(w, (np.arange(out_size), lo), 1.0 - t)
    np.add.at(w, (np.arange(out_size), hi), t)
    return w


@functools.partial(jax.jit, static_argnames=("preprocessing",))
def _preprocess(images: jax.Array, rh: jax.Array, rw: jax.Array, preprocessing: str) -> jax.Array:
    x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if preprocessing == "pytorch-fid":
        x = x / 255.0
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rh, x, precision=hp)
    x = jnp.einsum("pw,nowc->nopc", rw, x, precision=hp)
    return 2.0 * x - 1.0 if preprocessing == "pytorch-fid" else (x - 128.0) / 128.0


def check_uint8_images(images, name: str = "images") -> np.ndarray:
    """``images`` as a uint8 (N, H, W, C) array with C in {1, 3} ((N, H, W) reads as grayscale)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(
            f"{name} must be uint8 images (0..255), got dtype {x.dtype}; convert floats with to_uint8(x, value_range)"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[:3]) < 1:
        raise ValueError(f"{name} must have shape (N, H, W, C) with C 1 or 3 and N, H, W >= 1, got {np.shape(images)}")
    return x


def preprocess(images, preprocessing: str = "pytorch-fid") -> jax.Array:
    """uint8 (N, H, W, C) images -> float32 (N, 299, 299, 3) in [-1, 1], as ``preprocessing`` does (module docs)."""
    x = check_uint8_images(images)
    _check_preprocessing(preprocessing)
    rh = jnp.asarray(resize_weights(x.shape[1], INCEPTION_INPUT_SIZE, preprocessing), jnp.float32)
    rw = jnp.asarray(resize_weights(x.shape[2], INCEPTION_INPUT_SIZE, preprocessing), jnp.float32)
    return _preprocess(jnp.asarray(x), rh, rw, preprocessing)


def to_uint8(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Float images in ``value_range`` -> uint8 as writing them to PNG does (torchvision's ``save_image``):
    ``floor((x - lo) / (hi - lo) * 255 + 0.5)``.

    Raises:
      ValueError: NaN/inf, or values outside ``value_range`` by more than 1e-3 of its width (nothing is clipped
        silently; values within that tolerance are clipped to the range).
    """
    x = np.asarray(images)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images must be floating point, got dtype {x.dtype}")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must have lo < hi, got {value_range!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    tol = 1e-3 * (hi - lo)
    if x.size and (x.min() < lo - tol or x.max() > hi + tol):
        raise ValueError(f"images must lie in value_range={value_range}, got values in [{x.min():.4g}, {x.max():.4g}]")
    u = np.floor((x.astype(np.float64) - lo) / (hi - lo) * 255.0 + 0.5)
    return np.clip(u, 0, 255).astype(np.uint8)


def resolve_weights(weights=None) -> pathlib.Path:
    """The Inception weights file: ``weights`` if given, else ``$GENDL_INCEPTION_WEIGHTS``.

    Raises:
      FileNotFoundError: neither is set, or the file does not exist; the message names the file needed and where
        it is published (this library never downloads it).
    """
    source = "weights" if weights is not None else WEIGHTS_ENV
    path = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
    where = (
        f"the FID Inception weights are pytorch-fid's {WEIGHTS_FILE}, published at {WEIGHTS_URL} "
        f"(torch-fidelity's weights-inception-2015-12-05-6726825d.pth also works); download it once and pass "
        f"--inception-weights PATH or set {WEIGHTS_ENV}=PATH (gendl_jax never downloads it)"
    )
    if path is None or str(path) == "":
        raise FileNotFoundError(f"no Inception weights given: {where}")
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{source}={str(path)!r} is not a file: {where}")
    return p


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inception_variables(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Flax variables of :class:`FIDInceptionV3` from a PyTorch state dict with torchvision's Inception3 keys.

    Raises:
      ValueError: keys missing, unexpected or of the wrong shape (all listed); AuxLogits keys are ignored.
    """
    from gendl_jax.models.weights import from_state_dict

    net = FIDInceptionV3(outputs=INCEPTION_OUTPUTS)
    like = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE, 3)))
    kept = {k: v for k, v in state_dict.items() if not k.startswith("AuxLogits.")}
    variables = from_state_dict(kept, like)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)


@functools.partial(jax.jit, static_argnames=("outputs",))
def _network(variables, x: jax.Array, outputs: tuple[str, ...]) -> dict[str, jax.Array]:
    # One image at a time (a loop inside the compiled function): the early 147 x 147 activations of a whole batch
    # overflow the caches, and XLA:CPU's convolutions then run at half their single-image speed (1.8x faster per
    # image on the 2-core CPU at batch 16; benchmarks/inception.py).
    net = FIDInceptionV3(outputs=outputs)
    return jax.lax.map(lambda image: net.apply(variables, image[None]), x)


def _check_outputs(outputs) -> tuple[str, ...]:
    if isinstance(outputs, str):
        outputs = (outputs,)
    outputs = tuple(outputs)
    if not outputs or any(o not in INCEPTION_OUTPUTS for o in outputs):
        raise ValueError(f"outputs must be a non-empty subset of {INCEPTION_OUTPUTS}, got {outputs!r}")
    return outputs


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


@dataclasses.dataclass(frozen=True, eq=False)
class InceptionExtractor:
    """The FID Inception network with its weights and a preprocessing: uint8 images -> features.

    Attributes:
      variables: Flax variables of :class:`FIDInceptionV3`.
      preprocessing: "pytorch-fid" or "torch-fidelity" (module docstring).
      weights_sha256: SHA-256 of the weights file ("" when built from arrays).
    """

    variables: Mapping
    preprocessing: str = "pytorch-fid"
    weights_sha256: str = ""

    def __post_init__(self):
        _check_preprocessing(self.preprocessing)

    @property
    def published_weights(self) -> bool:
        """Whether the weights file is the published one (its SHA-256 starts with 6726825d)."""
        return self.weights_sha256.startswith(PUBLISHED_SHA256_PREFIX)

    def with_preprocessing(self, preprocessing: str) -> InceptionExtractor:
        return dataclasses.replace(self, preprocessing=_check_preprocessing(preprocessing))

    def features(
        self, images, outputs: Sequence[str] = ("2048",), *, batch_size: int = DEFAULT_BATCH_SIZE, progress=False
    ) -> dict[str, np.ndarray]:
        """Features of uint8 images (N, H, W, C), C in {1, 3}, any H, W; returns name -> float32 (N, dim)."""
        x = check_uint8_images(images)
        batch_size = _check_batch_size(batch_size)
        batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
        return self.features_of_batches(batches, outputs, batch_size=batch_size, total=len(x), progress=progress)

    def features_of_batches(
        self,
        batches: Iterable,
        outputs: Sequence[str] = ("2048",),
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        total: int | None = None,
        progress=False,
    ) -> dict[str, np.ndarray]:
        """Features of a stream of uint8 batches (each (n, H, W, C); sizes may differ between batches).

        The network is compiled once per batch length (``batch_size``, and the last, shorter batch) and once per
        input image size for the small resize; it runs over the images of a batch one at a time.
        """
        outputs = _check_outputs(outputs)
        batch_size = _check_batch_size(batch_size)
        parts: dict[str, list[np.ndarray]] = {o: [] for o in outputs}
        bar = tqdm(total=total, unit="img", desc="Inception features", disable=not progress, file=sys.stderr)
        n_seen = 0
        for batch in batches:
            x = check_uint8_images(batch, f"batch starting at image {n_seen}")
            for start in range(0, len(x), batch_size):
                chunk = preprocess(x[start : start + batch_size], self.preprocessing)
                n = chunk.shape[0]
                out = _network(self.variables, chunk, outputs)
                for o in outputs:
                    parts[o].append(np.asarray(out[o][:, 0]))
                bar.update(n)
            n_seen += len(x)
        bar.close()
        if n_seen == 0:
            raise ValueError("no images: the batches were empty")
        return {o: np.concatenate(parts[o]) for o in outputs}


def load_inception(weights=None, *, preprocessing: str = "pytorch-fid") -> InceptionExtractor:
    """The FID Inception network with the weights of ``weights`` (or ``$GENDL_INCEPTION_WEIGHTS``).

    Args:
      weights: path to a ``.pth`` (torch zip or legacy format, read without torch), ``.npz`` or ``.safetensors``
        state dict with torchvision Inception3 keys.
      preprocessing: "pytorch-fid" or "torch-fidelity".
    Returns:
      An :class:`InceptionExtractor`. Warns when the file is not the published one (scores would not be
      comparable with papers).
    Raises:
      FileNotFoundError: no weights (the message says which file and where it is published).
      ValueError: unreadable file, or a state dict that is not the FID Inception's.
    """
    from gendl_jax.models.weights import read_state_dict

    path = resolve_weights(weights)
    _check_preprocessing(preprocessing)
    state_dict = read_state_dict(path)
    try:
        variables = inception_variables(state_dict)
    except ValueError as e:
        raise ValueError(f"{path} is not the FID Inception-V3 state dict: {e}") from e
    digest = _sha256(path)
    if not digest.startswith(PUBLISHED_SHA256_PREFIX):
        warnings.warn(
            f"{path} is not the published FID Inception weights (SHA-256 {digest[:8]}..., expected "
            f"{PUBLISHED_SHA256_PREFIX}...): scores will not be comparable with published ones",
            RuntimeWarning,
            stacklevel=2,
        )
    return InceptionExtractor(variables, preprocessing, digest)


def save_statistics(path, mu, sigma) -> pathlib.Path:
    """Writes ``mu`` (d,) and ``sigma`` (d, d) as pytorch-fid does (``np.savez(path, mu=mu, sigma=sigma)``).

    The file is written to a temporary name and renamed, so an interrupted write never leaves half a file.
    """
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"statistics path must end in .npz, got {path.name!r}")
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma)
    os.replace(tmp, path)
    return path


def load_statistics(path) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` from a statistics ``.npz`` (pytorch-fid's, or :func:`save_statistics`'s).

    Raises:
      ValueError: the file lacks ``mu`` or ``sigma`` (keys found are listed), or their shapes disagree.
    """
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("mu", "sigma") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: a statistics file needs arrays 'mu' and 'sigma', found {sorted(f.files)}")
        mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{path}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
    return mu, sigma


def feature_name(dims: int) -> str:
    """The feature name of pytorch-fid's ``--dims`` (64, 192, 768 or 2048)."""
    if dims not in FID_DIMS:
        raise ValueError(f"dims must be one of {FID_DIMS}, got {dims!r}")
    return str(dims)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FEATURE_DIMS",
    "FID_DIMS",
    "PREPROCESSING",
    "PUBLISHED_SHA256_PREFIX",
    "WEIGHTS_ENV",
    "WEIGHTS_FILE",
    "WEIGHTS_URL",
    "InceptionExtractor",
    "check_uint8_images",
    "feature_name",
    "inception_variables",
    "load_inception",
    "load_statistics",
    "preprocess",
    "resize_weights",
    "resolve_weights",
    "save_statistics",
    "to_uint8",
]
