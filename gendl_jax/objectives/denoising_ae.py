"""Denoising autoencoder (``denoising-ae``): ``L(x, g(h(x_tilde)))`` with ``x_tilde`` a corrupted copy of x.

Gaussian noise, masking noise (pixels set to 0) or salt-and-pepper noise (pixels set to 0 or 1). The step
is the shared one of :mod:`gendl_jax.objectives.autoencoders`; this module gives its config and corruption.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from gendl_jax.objectives import autoencoders
from gendl_jax.objectives.distributed import on_global_batch

Array = jax.Array

CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper")


@dataclasses.dataclass(frozen=True)
class DenoisingAEConfig(autoencoders.AutoencoderConfig):
    """Denoising autoencoder: reconstruct x from ``corrupt(x)``.

    ``noise_level``: the standard deviation of the Gaussian noise, or the probability that a
    pixel is masked (set to 0) / replaced by salt or pepper (0 or 1 with equal probability).
    """

    corruption: Literal["gaussian", "masking", "salt_and_pepper"] = "masking"
    noise_level: float = 0.3

    def validate(self) -> None:
        super().validate()
        if self.corruption not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {self.corruption!r}")
        if self.corruption == "gaussian" and not self.noise_level >= 0:
            raise ValueError(f"noise_level (a standard deviation) must be >= 0, got {self.noise_level}")
        if self.corruption != "gaussian" and not 0 <= self.noise_level <= 1:
            raise ValueError(f"noise_level (a probability) must be in [0, 1], got {self.noise_level}")

    def encoder_inputs(self, key: Array, x: Array, axis_name: str | None = None) -> Array:
        """``corrupt(x)``, drawn for the global batch under ``axis_name``."""
        return on_global_batch(lambda g: corrupt(key, g, self.corruption, self.noise_level), x, axis_name)


def corrupt(key: Array, x: Array, kind: str, level: float, value_range: tuple[float, float] = (0.0, 1.0)) -> Array:
    """A corrupted copy of ``x`` (same shape), independently per element.

    * ``gaussian``: ``x + level * N(0, 1)`` (not clipped);
    * ``masking``: each element set to ``value_range[0]`` with probability ``level``;
    * ``salt_and_pepper``: each element replaced with probability ``level`` by ``value_range[0]``
      or ``value_range[1]``, each with probability 1/2.
    """
    lo, hi = value_range
    if kind == "gaussian":
        return x + level * jax.random.normal(key, x.shape, x.dtype)
    hit_key, salt_key = jax.random.split(key)
    hit = jax.random.bernoulli(hit_key, level, x.shape)
    if kind == "masking":
        return jnp.where(hit, jnp.asarray(lo, x.dtype), x)
    if kind == "salt_and_pepper":
        salt = jax.random.bernoulli(salt_key, 0.5, x.shape)
        return jnp.where(hit, jnp.where(salt, jnp.asarray(hi, x.dtype), jnp.asarray(lo, x.dtype)), x)
    raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")


init = autoencoders.init
step = autoencoders.step
report = autoencoders.report


OBJECTIVE = autoencoders.declare("denoising-ae", DenoisingAEConfig)
