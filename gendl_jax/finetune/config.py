"""The fine-tuning configuration and the model and optimizer it builds (no I/O)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from gendl_jax.finetune.step import FinetuneState, init_finetune
from gendl_jax.finetune.surgery import MODES, finetune_optimizer, frozen_for_mode, init_variables
from gendl_jax.models.lenet import LENET_INPUT_SHAPE, LeNet
from gendl_jax.models.weights import STATE_DICT_SUFFIXES

NAME = "finetune"
HEAD = "classifier"
MODEL_WIDTHS = {
    "lenet": {"channels": (6, 16), "hidden": (120, 84)},  # LeNet-5
    "mnist-lenet": {"channels": (32, 64), "hidden": (128,)},  # the shipped MNIST classifier
}
TRAIN_DEFAULTS = {
    "data": "digits",
    "steps": 500,
    "batch_size": 64,
    "log_every": 25,
    "checkpoint_every": 100,
    "sample_every": 0,
}
"""Defaults of :class:`gendl_jax.train.TrainConfig` fields for ``gendl finetune``."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of a fine-tuning run (the data, steps, batch size and seed are train settings)."""

    backbone: str
    """orbax variables folder, a `gendl finetune` run folder (its latest checkpoint) or RUN/checkpoints/STEP,
    or a .npz / .safetensors / .pth state dict; everything but the head is loaded."""
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
    return finetune_optimizer(
        params,
        config.lr,
        frozen=frozen_names(config, params),
        stage_learning_rates=config.stage_learning_rates() or None,
    )


def fresh_variables(key: jax.Array, config: FinetuneConfig, data_shape: tuple[int, ...]):
    """(model, variables) of ``config`` initialised from ``key``, before any backbone is loaded."""
    if tuple(data_shape) != LENET_INPUT_SHAPE:
        raise ValueError(f"fine-tuning a LeNet needs images of shape {LENET_INPUT_SHAPE}, got {tuple(data_shape)}")
    model = build_model(config)
    variables = dict(init_variables(model, key, jnp.zeros((1, *LENET_INPUT_SHAPE), jnp.float32)))
    return model, variables


def finetune_state(config: FinetuneConfig, variables: dict, data_shape) -> FinetuneState:
    """The fine-tuning state of ``variables``: the masked optimizer's state, ``config`` and the data shape."""
    optimizer = build_optimizer(config, variables["params"])
    return init_finetune(variables, optimizer).replace(config=config, data_shape=tuple(data_shape))
