"""Fine-tuning as an objective of the generic fit loop (:func:`gendl_jax.train.train_and_evaluate`).

``FINETUNE`` bundles :class:`FinetuneConfig` with

* ``init(key, config, example_batch)``: a LeNet of ``config.model``'s widths with a fresh
  ``config.head``-class head (initialised from ``key``), every other variable loaded from
  ``config.backbone`` (an orbax variables folder, a run folder of an earlier fine-tune, or a
  torch-style ``.npz`` / ``.safetensors`` state dict), and the masked optimizer's state;
* ``step(state, batch)``: the pure cross-entropy step of :func:`gendl_jax.finetune.make_step`; the
  model and the optimizer are rebuilt from the static ``state.config`` while tracing;
* ``prepare_dataset``: labelled 28x28x1 images as they are; scikit-learn's 8x8 digits resized to
  20x20 in a 28x28 frame (stored as uint8 with max_value 255; the fit loop scales them to [-1, 1]);
* ``report``: train and test accuracy (and train loss) for ``summary.json``.

It is not in :data:`gendl_jax.objectives.OBJECTIVES` (``gendl train`` trains from scratch); the
``gendl finetune`` command passes it to the fit loop directly.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.finetune.step import FinetuneState, init_finetune, make_step, predict
from gendl_jax.finetune.surgery import MODES, _init, finetune_optimizer, frozen_for_mode
from gendl_jax.models.lenet import LENET_INPUT_SHAPE, LeNet
from gendl_jax.objectives import Objective

NAME = "finetune"
HEAD = "classifier"
MODEL_WIDTHS = {
    "lenet": {"channels": (6, 16), "hidden": (120, 84)},  # LeNet-5
    "mnist-lenet": {"channels": (32, 64), "hidden": (128,)},  # the shipped MNIST classifier
}
STATE_DICT_SUFFIXES = (".npz", ".safetensors")
TRAIN_DEFAULTS = {"data": "digits", "steps": 500, "batch_size": 64, "log_every": 25, "checkpoint_every": 100,
                  "sample_every": 0}
"""Defaults of :class:`gendl_jax.train.TrainConfig` fields for ``gendl finetune``."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of a fine-tuning run (the data, steps, batch size and seed are train settings)."""

    backbone: str
    """orbax variables folder, a `gendl finetune` run folder (its latest checkpoint) or RUN/checkpoints/STEP,
    or a .npz / .safetensors state dict; everything but the head is loaded."""
    head: int = 10
    """classes of the new head."""
    model: Literal["lenet", "mnist-lenet"] = "mnist-lenet"
    freeze: tuple[str, ...] = ()
    """sub-tree names to freeze (e.g. conv1 conv2); with --mode linear_probe everything but the head."""
    mode: Literal["full", "linear_probe"] = "full"
    lr: float = 1e-3
    stage_lrs: tuple[str, ...] = ()
    """discriminative learning rates as NAME=LR (e.g. conv1=1e-4 conv2=3e-4); others use --lr."""

    @property
    def inner_steps(self) -> int:
        return 1

    def stage_learning_rates(self) -> dict[str, float]:
        """``stage_lrs`` as sub-tree name -> learning rate."""
        out = {}
        for item in self.stage_lrs:
            name, sep, value = str(item).partition("=")
            try:
                lr = float(value)
            except ValueError:
                lr = None
            if not sep or not name or lr is None:
                raise ValueError(f"stage_lrs entries must look like NAME=LR (e.g. conv1=1e-4), got {item!r}")
            out[name] = lr
        return out

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.model not in MODEL_WIDTHS:
            raise ValueError(f"model must be one of {list(MODEL_WIDTHS)}, got {self.model!r}")
        if not isinstance(self.head, int) or isinstance(self.head, bool) or self.head < 1:
            raise ValueError(f"head must be a positive int, got {self.head!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.freeze, str):
            raise TypeError(f"freeze must be a sequence of sub-tree names, got the string {self.freeze!r}")
        for name, lr in self.stage_learning_rates().items():
            if not lr > 0:
                raise ValueError(f"stage_lrs[{name!r}] must be positive, got {lr}")
        path = pathlib.Path(self.backbone)
        if path.suffix in STATE_DICT_SUFFIXES:
            if not path.is_file():
                raise FileNotFoundError(f"backbone: no state-dict file at {path}")
        elif not path.is_dir():
            raise FileNotFoundError(
                f"backbone: nothing at {path}; expected an orbax variables folder, a `gendl finetune` run folder "
                f"(or RUN/checkpoints/STEP), or a file ending in {' / '.join(STATE_DICT_SUFFIXES)}"
            )


def build_model(config: FinetuneConfig) -> LeNet:
    return LeNet(num_classes=config.head, **MODEL_WIDTHS[config.model])


def frozen_names(config: FinetuneConfig, params) -> tuple[str, ...]:
    """The sub-trees the optimizer freezes: ``config.freeze``, or all but the head for a linear probe."""
    if config.mode == "linear_probe":
        return tuple(frozen_for_mode(params, config.mode, head=HEAD))
    return tuple(config.freeze)


def build_optimizer(config: FinetuneConfig, params) -> optax.GradientTransformation:
    """Adam at ``config.lr`` (and the stage rates), zero updates for the frozen sub-trees."""
    return finetune_optimizer(params, config.lr, frozen=frozen_names(config, params),
                              stage_learning_rates=config.stage_learning_rates() or None)


def _images_of(batch: dict) -> tuple[jax.Array, jax.Array]:
    """``batch["x"]`` (1, m, 28, 28, 1) or (m, 28, 28, 1) and ``batch["y"]`` as (m, ...) arrays."""
    x, y = batch["x"], batch["y"]
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise ValueError(f"batch['x'] must have inner_steps 1, got shape {x.shape}")
        x, y = x[0], y[0]
    return x, y


def _fresh_state(key: jax.Array, config: FinetuneConfig, data_shape: tuple[int, ...]):
    """(model, variables, state) before any backbone is loaded."""
    if tuple(data_shape) != LENET_INPUT_SHAPE:
        raise ValueError(f"fine-tuning a LeNet needs images of shape {LENET_INPUT_SHAPE}, got {tuple(data_shape)}")
    model = build_model(config)
    variables = dict(_init(model, key, jnp.zeros((1, *LENET_INPUT_SHAPE), jnp.float32)))
    return model, variables


def _state(config: FinetuneConfig, variables: dict, data_shape) -> FinetuneState:
    optimizer = build_optimizer(config, variables["params"])
    return init_finetune(variables, optimizer).replace(config=config, data_shape=tuple(data_shape))


def init(key: jax.Array, config: FinetuneConfig, example_batch: dict) -> FinetuneState:
    """The fine-tuning state: backbone variables, a fresh head from ``key``, the masked optimizer's state."""
    from gendl_jax.finetune.state_dict import load_state_dict
    from gendl_jax.finetune.surgery import load_backbone

    x = np.shape(example_batch["x"])
    data_shape = tuple(x[2:] if len(x) == 5 else x[1:])
    _, variables = _fresh_state(key, config, data_shape)
    backbone = pathlib.Path(config.backbone)
    if backbone.suffix in STATE_DICT_SUFFIXES:
        variables = load_state_dict(backbone, variables, skip=(HEAD,))
        variables = jax.tree_util.tree_map(jnp.asarray, variables)
    else:
        variables = load_backbone(backbone, variables, exclude=(HEAD,))
    return _state(config, variables, data_shape)


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
    test = prepare_dataset(load_dataset(train.data, split="test", data_dir=train.data_dir), config)
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


FINETUNE = Objective(NAME, FinetuneConfig, init, step, None, value_range=(-1.0, 1.0), train_defaults=TRAIN_DEFAULTS,
                     prepare_dataset=prepare_dataset, report=report)
"""The fine-tuning objective for :func:`gendl_jax.train.train_and_evaluate`."""


def run_variables(run: str | pathlib.Path, step: int | None = None) -> dict:
    """``{"params": ..., ["batch_stats": ...]}`` of checkpoint ``step`` (None: the latest intact one)
    of a run folder written by ``gendl finetune``; the digest is verified (see
    :func:`gendl_jax.train.checkpoints.restore`). The run's own backbone is not needed.
    """
    from gendl_jax.train import checkpoints
    from gendl_jax.train.fit import config_from_json

    run = pathlib.Path(run)
    record = json.loads((run / "config.json").read_text())
    if record.get("objective") != NAME:
        raise ValueError(f"{run} is a run of {record.get('objective')!r}, not of `gendl finetune`; "
                         "pass an orbax variables folder or a state dict as the backbone")
    config = config_from_json(FinetuneConfig, record["config"])
    _, variables = _fresh_state(jax.random.PRNGKey(0), config, tuple(record["data_shape"]))
    like = _state(config, variables, record["data_shape"])
    manager = checkpoints.checkpoint_manager(run / "checkpoints")
    try:
        state = checkpoints.restore(manager, like, step)
    finally:
        manager.close()
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out
