"""WGAN-SN: a WGAN whose critic is kept Lipschitz by spectral normalisation (Miyato et al. 2018).

Every critic kernel is divided by its spectral norm (``NetworkConfig.spectral_norm``), which bounds the
critic's Lipschitz constant by 1 (for the MLP critic with 1-Lipschitz activations; for convolutions it
bounds the reshaped kernels, Miyato et al.'s convention) with no penalty to compute; Adam(1e-4, 0.5, 0.9),
n_critic = 5 as for WGAN-GP.
"""

from __future__ import annotations

import dataclasses

import jax

from gendl_jax.objectives import adversarial, wgan

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class WGANSNConfig(wgan.AdamCriticConfig):
    """WGAN with a spectrally normalised critic; optimiser and n_critic as :class:`WGANGPConfig`."""

    spectral_norm: bool = True

    def validate(self) -> None:
        super().validate()
        if not self.spectral_norm:
            raise ValueError(
                "wgan-sn keeps its critic Lipschitz by spectral normalisation: spectral_norm must be "
                "True (use 'wgan' or 'wgan-gp' for the other constraints)"
            )


def init(key: Array, config: WGANSNConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial WGAN-SN state; the critic's ``batch_stats`` hold its power-iteration vectors."""
    return adversarial.init_adversarial(key, config, example_batch, batch_norm_in_d=False)


def step(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``n_critic`` critic updates of the spectrally normalised critic then one generator update.

    No clipping, no penalty: the constraint is in the critic's weights. Each critic forward pass in
    training mode (one on the real, one on the fake minibatch) runs one power iteration and stores it.
    Metrics as :func:`gendl_jax.objectives.wgan.step`.
    """
    return adversarial.adversarial_step(
        state,
        batch,
        discriminator_loss=wgan.critic_loss,
        generator_loss=wgan.generator_loss,
        batch_norm_in_d=False,
        axis_name=axis_name,
    )


sample = adversarial.sample
generate = adversarial.generate
discriminate = adversarial.discriminate
discriminator_features = adversarial.discriminator_features


OBJECTIVE = adversarial.declare("wgan-sn", WGANSNConfig, init, step)
