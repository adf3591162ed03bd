"""Objectives of the lecture, each an ``init(key, config, example_batch) -> state`` and a pure
``step(state, batch) -> (state, metrics)``.

``OBJECTIVES`` maps the CLI names to an :class:`Objective` bundling those functions with the
config class and a sampler, so that the fit loop and the CLI stay generic.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from gendl_jax.objectives import adversarial, gan, wgan


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the fit loop needs to train and sample an objective."""

    name: str
    config_cls: type
    init: Callable[..., Any]
    step: Callable[..., Any]
    sample: Callable[..., Any]
    """``sample(state, key, n) -> (n, *data_shape)``."""


OBJECTIVES: dict[str, Objective] = {
    "gan": Objective("gan", gan.GANConfig, gan.init, gan.step, gan.sample),
    "wgan": Objective("wgan", wgan.WGANConfig, wgan.init_wgan, wgan.step_wgan, wgan.sample),
    "wgan-gp": Objective("wgan-gp", wgan.WGANGPConfig, wgan.init_wgan_gp, wgan.step_wgan_gp, wgan.sample),
}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None


__all__ = ["Objective", "OBJECTIVES", "get_objective", "adversarial", "gan", "wgan"]
