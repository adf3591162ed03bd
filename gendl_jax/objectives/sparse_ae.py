"""Sparse autoencoder (``sparse-ae``): reconstruction + ``sparsity_weight * Omega(z)``.

``Omega = sum_j |z_j|`` per example (``"l1"``), or ``Omega = sum_j KL(rho || rho_hat_j)`` (``"kl"``) with
``rho_hat_j`` the minibatch mean of the sigmoid code unit j (a property of the batch). The step is the
shared one of :mod:`gendl_jax.objectives.autoencoders`; this module gives its config and penalty.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from gendl_jax.objectives import autoencoders
from gendl_jax.objectives.distributed import gather_rows

Array = jax.Array

SPARSITY_PENALTIES = ("l1", "kl")


@dataclasses.dataclass(frozen=True)
class SparseAEConfig(autoencoders.AutoencoderConfig):
    """Sparse autoencoder: reconstruction + ``sparsity_weight * Omega(z)``.

    ``kl`` needs codes in (0, 1): ``code_activation="sigmoid"`` (the default here).
    """

    latent_dim: int = 256
    code_activation: Literal["linear", "relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "sigmoid"
    sparsity: Literal["l1", "kl"] = "kl"
    sparsity_weight: float = 1.0
    sparsity_target: float = 0.05
    """rho, the target mean activation of the KL penalty."""

    def validate(self) -> None:
        super().validate()
        if self.sparsity not in SPARSITY_PENALTIES:
            raise ValueError(f"sparsity must be one of {SPARSITY_PENALTIES}, got {self.sparsity!r}")
        if not self.sparsity_weight >= 0:
            raise ValueError(f"sparsity_weight must be >= 0, got {self.sparsity_weight}")
        if not 0 < self.sparsity_target < 1:
            raise ValueError(f"sparsity_target must be in (0, 1), got {self.sparsity_target}")
        if self.sparsity == "kl" and self.code_activation != "sigmoid":
            raise ValueError(
                f"sparsity='kl' needs codes in (0, 1): code_activation must be 'sigmoid', got {self.code_activation!r}"
            )

    def penalty(self, encode, x: Array, z: Array, axis_name: str | None = None) -> tuple[Array, dict]:
        """``sparsity_weight * Omega(z)``; the KL penalty's mean activation is that of the global batch."""
        del encode, x
        if self.sparsity == "l1":
            raw = jnp.mean(l1_sparsity(z))
        else:
            raw = kl_sparsity(gather_rows(z, axis_name), self.sparsity_target)
        return self.sparsity_weight * raw, {"sparsity_penalty": raw, "mean_code": jnp.mean(z)}


def l1_sparsity(codes: Array) -> Array:
    """``sum_j |z_j|`` per example: (m, d) -> (m,)."""
    return jnp.sum(jnp.abs(codes), axis=-1)


def kl_sparsity(codes: Array, target: float) -> Array:
    """``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))``, rho_hat = mean over the batch: (m, d) -> scalar."""
    rho_hat = jnp.mean(codes, axis=0)
    return jnp.sum(
        target * (jnp.log(target) - jnp.log(rho_hat)) + (1 - target) * (jnp.log1p(-target) - jnp.log1p(-rho_hat))
    )


init = autoencoders.init
step = autoencoders.step
report = autoencoders.report


OBJECTIVE = autoencoders.declare("sparse-ae", SparseAEConfig)
