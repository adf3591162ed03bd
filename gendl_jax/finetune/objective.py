"""Fine-tuning as an objective of the generic fit loop (:func:`gendl_jax.train.train_and_evaluate`).

``FINETUNE`` bundles :class:`FinetuneConfig` with

* ``init(key, config, example_batch)``: a LeNet of ``config.model``'s widths with a fresh
  ``config.head``-class head (initialised from ``key``), every other variable loaded from
  ``config.backbone`` (an orbax variables folder, a run folder of an earlier fine-tune, or a
  torch-style ``.npz`` / ``.safetensors`` / ``.pth`` (``torch.save``, read without torch) state dict), and the masked optimizer's state;
* ``step(state, batch)``: the pure cross-entropy step of :func:`gendl_jax.finetune.make_step`; the
  model and the optimizer are rebuilt from the static ``state.config`` while tracing;
* ``prepare_dataset``: labelled 28x28x1 images as they are; scikit-learn's 8x8 digits resized to
  20x20 in a 28x28 frame (stored as uint8 with max_value 255; the fit loop scales them to [-1, 1]);
* ``report``: train and test accuracy (and train loss) for ``summary.json``.

It is not in :data:`gendl_jax.objectives.OBJECTIVES` (``gendl train`` trains from scratch); the
``gendl finetune`` command passes it to the fit loop directly.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax.finetune.backbone import load_backbone
from gendl_jax.finetune.config import (
    HEAD,
    NAME,
    STATE_DICT_SUFFIXES,
    TRAIN_DEFAULTS,
    FinetuneConfig,
    build_model,
    build_optimizer,
    finetune_state,
    fresh_variables,
    frozen_names,
)
from gendl_jax.finetune.state_dict import load_state_dict
from gendl_jax.finetune.step import FinetuneState, make_step, predict
from gendl_jax.models.lenet import LENET_INPUT_SHAPE
from gendl_jax.objectives.base import Objective


def _images_of(batch: dict) -> tuple[jax.Array, jax.Array]:
    """``batch["x"]`` (1, m, 28, 28, 1) or (m, 28, 28, 1) and ``batch["y"]`` as (m, ...) arrays."""
    x, y = batch["x"], batch["y"]
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise ValueError(f"batch['x'] must have inner_steps 1, got shape {x.shape}")
        x, y = x[0], y[0]
    return x, y


def init(key: jax.Array, config: FinetuneConfig, example_batch: dict) -> FinetuneState:
    """The fine-tuning state: backbone variables, a fresh head from ``key``, the masked optimizer's state."""
    x = np.shape(example_batch["x"])
    data_shape = tuple(x[2:] if len(x) == 5 else x[1:])
    _, variables = fresh_variables(key, config, data_shape)
    backbone = pathlib.Path(config.backbone)
    if backbone.suffix in STATE_DICT_SUFFIXES:
        variables = load_state_dict(backbone, variables, skip=(HEAD,))
        variables = jax.tree_util.tree_map(jnp.asarray, variables)
    else:
        variables = load_backbone(backbone, variables, exclude=(HEAD,))
    return finetune_state(config, variables, data_shape)


def step(state: FinetuneState, batch: dict) -> tuple[FinetuneState, dict]:
    """One cross-entropy update on ``{"x": (1, m, 28, 28, 1), "y": (1, m) int}``; metrics loss, accuracy."""
    x, y = _images_of(batch)
    model = build_model(state.config)
    return make_step(model, build_optimizer(state.config, state.params))(state, {"x": x, "y": y})


def digits_unit(images: np.ndarray, max_value: int) -> np.ndarray:
    """sklearn 8x8 digits (N, 8, 8, 1) -> (N, 28, 28, 1) float32 in [0, 1]: bilinear 20x20, centred."""
    x = images.astype(np.float32) / max_value
    x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], 20, 20, 1), "bilinear"))
    return np.pad(np.clip(x, 0.0, 1.0), ((0, 0), (4, 4), (4, 4), (0, 0)))  # bilinear overshoots by rounding only


def digits_as_mnist(images: np.ndarray, max_value: int) -> np.ndarray:
    """sklearn 8x8 digits (N, 8, 8, 1) uint8 -> (N, 28, 28, 1) in [-1, 1]: bilinear 20x20, centred."""
    return digits_unit(images, max_value) * 2.0 - 1.0


def prepare_dataset(dataset, config: FinetuneConfig):
    """Labelled (N, 28, 28, 1) images as they are; (N, 8, 8, 1) digits as 28x28 uint8 (max_value 255).

    Raises:
      ValueError: no labels, another image shape, or a label >= ``config.head``.
    """
    from gendl_jax.data import ArrayDataset

    if not isinstance(dataset, ArrayDataset) or dataset.labels is None:
        raise ValueError(f"fine-tuning needs a labelled image dataset, got {dataset!r}")
    if dataset.shape == (8, 8, 1):
        images = np.round(digits_unit(dataset.images, dataset.max_value) * 255.0).astype(np.uint8)
        dataset = ArrayDataset(dataset.name, images, dataset.labels, 255)
    elif dataset.shape != LENET_INPUT_SHAPE:
        raise ValueError(f"fine-tuning a LeNet needs (N, 28, 28, 1) images (or 8x8 digits), got {dataset!r}")
    top = int(dataset.labels.max())
    if top >= config.head:
        raise ValueError(f"head must be > the largest label {top} of {dataset.name}, got {config.head}")
    return dataset


def scaled_images(dataset, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """A prepared dataset's images as float32 in ``value_range``, exactly as the fit loop's batches."""
    lo, hi = value_range
    levels = np.arange(dataset.max_value + 1, dtype=np.float64)
    return (lo + (hi - lo) * levels / dataset.max_value).astype(np.float32)[dataset.images]


def report(state: FinetuneState, out, train, dataset) -> dict:
    """Train/test accuracy, train loss and the frozen sub-trees, for summary.json."""
    from gendl_jax.data import load_dataset

    config = state.config
    model = build_model(config)
    test = load_dataset(train.data, split="test", data_dir=train.data_dir, image_size=train.image_size)
    test = prepare_dataset(test, config)
    x_train, y_train = scaled_images(dataset), np.asarray(dataset.labels)
    logits = predict(model, state, x_train)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    test_logits = predict(model, state, scaled_images(test))
    return {
        "test_accuracy": float(np.mean(np.argmax(test_logits, -1) == test.labels)),
        "train_accuracy": float(np.mean(np.argmax(logits, -1) == y_train)),
        "train_loss": float(-np.mean(log_probs[np.arange(len(y_train)), y_train])),
        "frozen": list(frozen_names(config, state.params)),
        "backbone": config.backbone,
        "train_size": len(dataset),
        "test_size": len(test),
    }


FINETUNE = Objective(
    name=NAME,
    family="classifier",
    config_cls=FinetuneConfig,
    init=init,
    step=step,
    value_range=(-1.0, 1.0),
    train_defaults=TRAIN_DEFAULTS,
    prepare_dataset=prepare_dataset,
    report=report,
)
"""The fine-tuning objective for :func:`gendl_jax.train.train_and_evaluate`."""
