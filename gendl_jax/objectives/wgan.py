"""WGAN with weight clipping (Arjovsky et al. 2017, Algorithm 2), and the critic losses every WGAN shares.

The critic ``f`` maximises ``mean f(x) - mean f(G(z))``, an estimate of ``K * W1`` between the data
and the generator when ``f`` is K-Lipschitz; the generator minimises ``-mean f(G(z))``. Here the
Lipschitz constraint is kept by clipping: after every critic update all critic parameters are clipped
to ``[-clip, clip]``; RMSProp(5e-5), n_critic = 5, clip = 0.01 as in Arjovsky et al. The other two
ways to keep it are :mod:`gendl_jax.objectives.wgan_gp` (gradient penalty) and
:mod:`gendl_jax.objectives.wgan_sn` (spectral normalisation).

The critics have no BatchNorm (the penalty is per sample; LayerNorm is available instead).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from gendl_jax.objectives import adversarial

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class WGANConfig(adversarial.NetworkConfig):
    """WGAN with weight clipping; defaults from Arjovsky et al. 2017."""

    n_critic: int = 5
    clip: float = 0.01
    optimizer: Literal["adam", "rmsprop"] = "rmsprop"
    g_learning_rate: float = 5e-5
    d_learning_rate: float = 5e-5

    @property
    def inner_steps(self) -> int:
        return self.n_critic

    def validate(self) -> None:
        super().validate()
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")


@dataclasses.dataclass(frozen=True)
class AdamCriticConfig(adversarial.NetworkConfig):
    """What WGAN-GP and WGAN-SN share: Adam(1e-4, 0.5, 0.9) and n_critic = 5 (Gulrajani et al. 2017,
    Algorithm 1)."""

    n_critic: int = 5
    g_learning_rate: float = 1e-4
    d_learning_rate: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9

    @property
    def inner_steps(self) -> int:
        return self.n_critic


def critic_loss(scores_real: Array, scores_fake: Array) -> tuple[Array, dict]:
    """``mean f(G(z)) - mean f(x)``: (m,), (m,) -> scalar; ``w1_estimate`` is its negation."""
    w1 = jnp.mean(scores_real) - jnp.mean(scores_fake)
    return -w1, {"w1_estimate": w1, "d_real": jnp.mean(scores_real), "d_fake": jnp.mean(scores_fake)}


def generator_loss(scores_fake: Array, weights: Array | None = None) -> Array:
    """``-mean f(G(z))``; ``weights`` (m,): a weighted mean (:func:`adversarial.weighted_mean`; top-k training)."""
    return -adversarial.weighted_mean(scores_fake, weights)


def clip_params(params, clip: float | Array):
    """Every parameter clipped to ``[-clip, clip]`` (Algorithm 2, line 8)."""
    return jax.tree_util.tree_map(lambda p: jnp.clip(p, -clip, clip), params)


def init(key: Array, config: WGANConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial WGAN (clipping) state; the critic starts inside the clipping box.

    ``state.hparams``: ``g_learning_rate``, ``d_learning_rate`` and ``clip`` (set by
    :func:`adversarial.with_hparams`; the critic is re-clipped at every update with the state's value).
    """
    state = adversarial.init_adversarial(
        key, config, example_batch, batch_norm_in_d=False, extra_hparams={"clip": config.clip}
    )
    d = state.discriminator
    return state.replace(discriminator=d.replace(params=clip_params(d.params, state.hparams["clip"])))


def step(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``n_critic`` clipped critic updates then one generator update; batch["x"]: (n_critic, m, *shape).

    The clipping bound is ``state.hparams["clip"]``. Metrics: ``d_loss``, ``w1_estimate``, ``d_real``,
    ``d_fake``, ``d_grad_norm`` (critic means), ``g_loss``, ``g_grad_norm``.
    """
    clip = state.hparams["clip"]
    return adversarial.adversarial_step(
        state,
        batch,
        discriminator_loss=critic_loss,
        generator_loss=generator_loss,
        batch_norm_in_d=False,
        projection=lambda params: clip_params(params, clip),
        axis_name=axis_name,
    )


sample = adversarial.sample
generate = adversarial.generate
discriminate = adversarial.discriminate
discriminator_features = adversarial.discriminator_features


OBJECTIVE = adversarial.declare("wgan", WGANConfig, init, step)
