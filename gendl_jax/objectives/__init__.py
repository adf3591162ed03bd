"""Objectives of the lecture, each an ``init(key, config, example_batch) -> state`` and a pure
``step(state, batch) -> (state, metrics)``.

``OBJECTIVES`` maps the CLI names to an :class:`Objective` bundling those functions with the
config class and a sampler, so that the fit loop and the CLI stay generic.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from gendl_jax.objectives import adversarial, autoencoders, gan, vae, wgan


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the fit loop needs to train and sample an objective."""

    name: str
    config_cls: type
    init: Callable[..., Any]
    step: Callable[..., Any]
    sample: Callable[..., Any] | None
    """``sample(state, key, n) -> (n, *data_shape)``; None for models without a prior (autoencoders)."""
    value_range: tuple[float, float] = (-1.0, 1.0)
    """Range the images are scaled to for training (``(0, 1)`` for Bernoulli likelihoods)."""
    train_defaults: dict = dataclasses.field(default_factory=dict, compare=False)
    """Defaults of :class:`gendl_jax.train.TrainConfig` fields for this objective (e.g. the dataset)."""
    prepare_dataset: Callable[..., Any] | None = None
    """``prepare_dataset(dataset, config) -> dataset`` applied to the training data (e.g. fixed binarisation)."""
    report: Callable[..., dict] | None = None
    """``report(state, run_dir, train_config, dataset) -> dict``: end-of-run pictures and test metrics,
    merged into summary.json."""


_AE_TRAIN_DEFAULTS = {"data": "mnist", "batch_size": 100, "steps": 10000, "sample_every": 2000}

OBJECTIVES: dict[str, Objective] = {
    "gan": Objective("gan", gan.GANConfig, gan.init, gan.step, gan.sample),
    "wgan": Objective("wgan", wgan.WGANConfig, wgan.init_wgan, wgan.step_wgan, wgan.sample),
    "wgan-gp": Objective("wgan-gp", wgan.WGANGPConfig, wgan.init_wgan_gp, wgan.step_wgan_gp, wgan.sample),
    "wgan-sn": Objective("wgan-sn", wgan.WGANSNConfig, wgan.init_wgan_sn, wgan.step_wgan_sn, wgan.sample),
    **{
        name: Objective(name, config_cls, autoencoders.init, autoencoders.step, None, value_range=(0.0, 1.0),
                        train_defaults=_AE_TRAIN_DEFAULTS, report=autoencoders.report)
        for name, config_cls in (
            ("ae", autoencoders.AutoencoderConfig),
            ("sparse-ae", autoencoders.SparseAEConfig),
            ("denoising-ae", autoencoders.DenoisingAEConfig),
            ("contractive-ae", autoencoders.ContractiveAEConfig),
        )
    },
    "vae": Objective("vae", vae.VAEConfig, vae.init, vae.step, vae.sample, value_range=(0.0, 1.0),
                     train_defaults=_AE_TRAIN_DEFAULTS, prepare_dataset=vae.prepare_dataset, report=vae.report),
}


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None


__all__ = ["Objective", "OBJECTIVES", "get_objective", "adversarial", "autoencoders", "gan", "vae", "wgan"]
