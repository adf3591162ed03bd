"""The MNIST feature network of the evaluation metrics: a LeNet-style classifier the project trains.

Inception-v3 features suit natural images, not digits, so MNIST scores here (IS, FID, KID,
precision/recall, ...) use :class:`gendl_jax.models.LeNet` with :data:`MNIST_CLASSIFIER_CONFIG`,
trained on MNIST train by ``experiments/train_mnist_classifier.py`` and shipped as an orbax
checkpoint in ``gendl_jax/metrics/assets/mnist_lenet``. Its logits feed the Inception Score and
its penultimate activations (128-d) the feature-based measures.

Images are (N, 28, 28) or (N, 28, 28, 1): uint8 in [0, 255], or floats in ``value_range``
(default [-1, 1], the range of the project's generators and of ``BatchIterator``).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.models.lenet import LENET_INPUT_SHAPE, LeNet

ASSET_DIR = pathlib.Path(__file__).parent / "assets" / "mnist_lenet"
"""Where the shipped checkpoint lives (inside the installed package)."""

MNIST_CLASSIFIER_CONFIG = {"num_classes": 10, "channels": (32, 64), "hidden": (128,)}
"""LeNet widths of the shipped classifier (features are 128-d)."""

_RANGE_TOLERANCE = 1e-3


def prepare_images(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Checks images for the classifier and maps them to float32 (N, 28, 28, 1) in [-1, 1].

    Args:
      images: (N, 28, 28) or (N, 28, 28, 1); uint8 in [0, 255], or floating point in ``value_range``.
      value_range: (lo, hi) of floating-point images.
    Raises:
      TypeError: neither uint8 nor floating point.
      ValueError: wrong shape, N = 0, NaN/inf, or values outside ``value_range`` (beyond 1e-3;
        nothing is clipped).
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != LENET_INPUT_SHAPE or x.shape[0] == 0:
        raise ValueError(f"images must have shape (N, 28, 28) or (N, 28, 28, 1) with N >= 1, got {np.shape(images)}")
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images must be uint8 or floating point, got dtype {x.dtype}")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must have lo < hi, got {value_range!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    tol = _RANGE_TOLERANCE * (hi - lo)
    x_min, x_max = float(x.min()), float(x.max())
    if x_min < lo - tol or x_max > hi + tol:
        raise ValueError(
            f"images must lie in value_range={value_range} (uint8 images in [0, 255] are also accepted), "
            f"got values in [{x_min:.4g}, {x_max:.4g}]"
        )
    return ((x.astype(np.float64) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class MnistClassifier:
    """A LeNet and its parameters; computes logits and features in jitted batches.

    Attributes:
      model: the :class:`LeNet` module.
      params: its parameters (``{"params": ...}`` variables).
      precision: ``lax`` precision its convolutions and dense layers compute logits and features with.
        The default, "highest", keeps float32 products in float32 on every backend, so that a sample
        set gets the same scores on a GPU (where float32 products may default to TF32) as on a CPU;
        None: the backend's default.
    """

    model: LeNet
    params: Any
    precision: str | jax.lax.Precision | None = "highest"

    @functools.cached_property
    def _apply(self):
        model = self.model.clone(precision=self.precision)
        return jax.jit(lambda variables, x: model.apply(variables, x))

    def logits_and_features(
        self, images, *, batch_size: int = 500, value_range: tuple[float, float] = (-1.0, 1.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, 28, 28[, 1]) -> (logits (N, num_classes), features (N, hidden[-1])) float32 numpy.

        Batches of ``batch_size`` (the last one padded, so one compiled program serves any N).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        x = prepare_images(images, value_range)
        n = x.shape[0]
        logits, features = [], []
        for start in range(0, n, batch_size):
            chunk = x[start : start + batch_size]
            m = chunk.shape[0]
            if m < batch_size:
                chunk = np.concatenate([chunk, np.zeros((batch_size - m, *chunk.shape[1:]), chunk.dtype)])
            lg, ft = self._apply(self.params, chunk)
            logits.append(np.asarray(lg)[:m])
            features.append(np.asarray(ft)[:m])
        return np.concatenate(logits), np.concatenate(features)

    def logits(self, images, **kwargs) -> np.ndarray:
        """(N, 28, 28[, 1]) -> (N, num_classes) logits."""
        return self.logits_and_features(images, **kwargs)[0]

    def features(self, images, **kwargs) -> np.ndarray:
        """(N, 28, 28[, 1]) -> (N, hidden[-1]) penultimate activations."""
        return self.logits_and_features(images, **kwargs)[1]

    def accuracy(self, images, labels, **kwargs) -> float:
        """Fraction of ``labels`` (N,) predicted correctly."""
        labels = np.asarray(labels)
        logits = self.logits(images, **kwargs)
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
        return float(np.mean(np.argmax(logits, axis=1) == labels))


def init_classifier(key: jax.Array, **config) -> MnistClassifier:
    """A freshly initialised classifier (defaults: :data:`MNIST_CLASSIFIER_CONFIG`)."""
    model = LeNet(**{**MNIST_CLASSIFIER_CONFIG, **config})
    params = model.init(key, jnp.zeros((1, *LENET_INPUT_SHAPE), jnp.float32))
    return MnistClassifier(model, params)


def save_classifier(classifier: MnistClassifier, path: str | pathlib.Path) -> None:
    """Writes the parameters as an orbax checkpoint at ``path`` (must not exist yet)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(pathlib.Path(path).absolute(), classifier.params)


def load_classifier(path: str | pathlib.Path, **config) -> MnistClassifier:
    """Restores a classifier saved by :func:`save_classifier` (same ``config`` as when trained)."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"no classifier checkpoint at {path}")
    like = init_classifier(jax.random.PRNGKey(0), **config)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like.params)
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(path, abstract)
    return MnistClassifier(like.model, params)


@functools.lru_cache(maxsize=1)
def mnist_classifier() -> MnistClassifier:
    """The shipped MNIST LeNet (test accuracy recorded in ``experiments/results/mnist_classifier``)."""
    if not ASSET_DIR.is_dir():
        raise FileNotFoundError(
            f"the shipped classifier checkpoint is missing from {ASSET_DIR}; "
            "retrain it with `python experiments/train_mnist_classifier.py`"
        )
    return load_classifier(ASSET_DIR)


# Training (used by experiments/train_mnist_classifier.py).


def random_shift(key: jax.Array, images: jax.Array, max_shift: int = 2) -> jax.Array:
    """Translates each image (N, H, W, C) by an integer offset in [-max_shift, max_shift]^2, filling with -1 (background)."""
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def cross_entropy_step(model: LeNet, optimizer: optax.GradientTransformation, max_shift: int = 2):
    """A pure ``step((params, opt_state, key), batch) -> (state, metrics)`` for softmax cross-entropy.

    ``batch``: ``{"x": (N, 28, 28, 1) in [-1, 1], "y": (N,) int}``; images are randomly shifted
    by up to ``max_shift`` pixels (0: no augmentation).
    """

    def step(state, batch):
        params, opt_state, key = state
        key, sub = jax.random.split(key)
        x = random_shift(sub, batch["x"], max_shift) if max_shift else batch["x"]

        def loss_fn(p):
            logits, _ = model.apply(p, x)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) == batch["y"])

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), {"loss": loss, "accuracy": acc}

    return step
