"""Wasserstein GANs: weight clipping (Arjovsky et al. 2017, Algorithm 2), gradient penalty
(Gulrajani et al. 2017), lecture eq. (12), and spectral normalisation (Miyato et al. 2018).

The critic ``f`` maximises ``mean f(x) - mean f(G(z))``, an estimate of ``K * W1`` between the data
and the generator when ``f`` is K-Lipschitz; the generator minimises ``-mean f(G(z))``.

* ``wgan``: after every critic update all critic parameters are clipped to ``[-clip, clip]``;
  RMSProp(5e-5), n_critic = 5, clip = 0.01 as in Arjovsky et al.
* ``wgan-gp``: the critic loss adds ``lambda * mean_i (||grad_x f(x_hat_i)||_2 - 1)^2`` at random
  interpolates ``x_hat_i = eps_i x_i + (1 - eps_i) G(z_i)``; the gradient is taken per sample with
  ``vmap(grad)`` and its norm over all non-batch axes (some implementations take the norm over one
  image axis only, which is a bug). Adam(1e-4, 0.5, 0.9), n_critic = 5, lambda = 10 for images
  (0.1 by default for vector data, see :class:`WGANGPConfig`).
* ``wgan-sn``: every critic kernel is divided by its spectral norm (``NetworkConfig.spectral_norm``),
  which bounds the critic's Lipschitz constant by 1 (for the MLP critic with 1-Lipschitz activations;
  for convolutions it bounds the reshaped kernels, Miyato et al.'s convention) with no penalty to
  compute; Adam(1e-4, 0.5, 0.9), n_critic = 5 as for WGAN-GP.

The critics have no BatchNorm (the penalty is per sample; LayerNorm is available instead).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

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
class _AdamCriticConfig(adversarial.NetworkConfig):
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


@dataclasses.dataclass(frozen=True)
class WGANGPConfig(_AdamCriticConfig):
    """WGAN-GP; defaults from Gulrajani et al. 2017 (Algorithm 1)."""

    gp_weight: float | None = None
    """lambda; None: 10 for images (the paper's value) and 0.1 for vector data such as the 2-D toy
    mixtures (the value in Gulrajani et al.'s own toy experiments; 10 learns them very slowly)."""

    def validate(self) -> None:
        super().validate()
        if self.gp_weight is not None and self.gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0 or None, got {self.gp_weight}")


@dataclasses.dataclass(frozen=True)
class WGANSNConfig(_AdamCriticConfig):
    """WGAN with a spectrally normalised critic; optimiser and n_critic as :class:`WGANGPConfig`."""

    spectral_norm: bool = True

    def validate(self) -> None:
        super().validate()
        if not self.spectral_norm:
            raise ValueError("wgan-sn keeps its critic Lipschitz by spectral normalisation: spectral_norm must be "
                             "True (use 'wgan' or 'wgan-gp' for the other constraints)")


def resolved_gp_weight(config: WGANGPConfig, data_shape: tuple[int, ...]) -> float:
    """``config.gp_weight``, or its data-dependent default when None (see :class:`WGANGPConfig`)."""
    if config.gp_weight is not None:
        return config.gp_weight
    return 0.1 if len(data_shape) == 1 else 10.0


def critic_loss(scores_real: Array, scores_fake: Array) -> tuple[Array, dict]:
    """``mean f(G(z)) - mean f(x)``: (m,), (m,) -> scalar; ``w1_estimate`` is its negation."""
    w1 = jnp.mean(scores_real) - jnp.mean(scores_fake)
    return -w1, {"w1_estimate": w1, "d_real": jnp.mean(scores_real), "d_fake": jnp.mean(scores_fake)}


def generator_loss(scores_fake: Array, weights: Array | None = None) -> Array:
    """``-mean f(G(z))``; ``weights`` (m,): a weighted mean (:func:`adversarial.weighted_mean`; top-k training)."""
    return -adversarial.weighted_mean(scores_fake, weights)


def per_sample_gradient_norms(critic: Callable[..., Array], x: Array, labels: Array | None = None) -> Array:
    """``||grad_x f(x_i)||_2`` for each sample: critic maps (n, *shape) -> (n,); x: (n, *shape) -> (n,).

    Each gradient is taken on its own sample with ``vmap(grad)``, and its norm runs over all
    non-batch axes. For a class-conditional critic, ``labels`` (n,) are passed on as ``critic(x, labels=...)``,
    each sample's with it.
    """
    if labels is None:
        grads = jax.vmap(jax.grad(lambda xi: critic(xi[None])[0]))(x)
    else:
        grads = jax.vmap(jax.grad(lambda xi, yi: critic(xi[None], labels=yi[None])[0]))(x, labels)
    return jnp.sqrt(jnp.sum(jnp.square(grads).reshape(x.shape[0], -1), axis=1))


def gradient_penalty(critic: Callable[..., Array], real: Array, fake: Array, eps: Array,
                     labels: Array | None = None) -> tuple[Array, dict]:
    """``mean_i (||grad f(eps_i x_i + (1 - eps_i) y_i)|| - 1)^2``; real, fake: (m, *shape), eps: (m,); ``labels``
    (m,): the pairs' classes for a class-conditional critic, ``critic(x, labels=...)``."""
    eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
    interpolates = eps * real + (1.0 - eps) * fake
    norms = per_sample_gradient_norms(critic, interpolates, labels)
    penalty = jnp.mean(jnp.square(norms - 1.0))
    return penalty, {"gp": penalty, "grad_norm_interp": jnp.mean(norms)}


def clip_params(params, clip: float | Array):
    """Every parameter clipped to ``[-clip, clip]`` (Algorithm 2, line 8)."""
    return jax.tree_util.tree_map(lambda p: jnp.clip(p, -clip, clip), params)


def init_wgan(key: Array, config: WGANConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial WGAN (clipping) state; the critic starts inside the clipping box.

    ``state.hparams``: ``g_learning_rate``, ``d_learning_rate`` and ``clip`` (set by
    :func:`adversarial.with_hparams`; the critic is re-clipped at every update with the state's value).
    """
    state = adversarial.init_adversarial(key, config, example_batch, batch_norm_in_d=False,
                                         extra_hparams={"clip": config.clip})
    d = state.discriminator
    return state.replace(discriminator=d.replace(params=clip_params(d.params, state.hparams["clip"])))


def init_wgan_gp(key: Array, config: WGANGPConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial WGAN-GP state; ``state.hparams``: ``g_learning_rate``, ``d_learning_rate`` and
    ``gp_weight`` (the resolved lambda, see :func:`resolved_gp_weight`)."""
    return adversarial.init_adversarial(
        key, config, example_batch, batch_norm_in_d=False,
        extra_hparams=lambda data_shape: {"gp_weight": resolved_gp_weight(config, data_shape)},
    )


def step_wgan(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
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


def step_wgan_gp(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``n_critic`` gradient-penalised critic updates then one generator update.

    The penalty weight is ``state.hparams["gp_weight"]``. Metrics as :func:`step_wgan` plus ``gp``
    (the penalty before weighting) and ``grad_norm_interp``.
    """
    return adversarial.adversarial_step(
        state,
        batch,
        discriminator_loss=critic_loss,
        generator_loss=generator_loss,
        batch_norm_in_d=False,
        penalty=gradient_penalty,
        penalty_weight=state.hparams["gp_weight"],
        axis_name=axis_name,
    )


def init_wgan_sn(key: Array, config: WGANSNConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial WGAN-SN state; the critic's ``batch_stats`` hold its power-iteration vectors."""
    return adversarial.init_adversarial(key, config, example_batch, batch_norm_in_d=False)


def step_wgan_sn(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``n_critic`` critic updates of the spectrally normalised critic then one generator update.

    No clipping, no penalty: the constraint is in the critic's weights. Each critic forward pass in
    training mode (one on the real, one on the fake minibatch) runs one power iteration and stores it.
    Metrics as :func:`step_wgan`.
    """
    return adversarial.adversarial_step(
        state,
        batch,
        discriminator_loss=critic_loss,
        generator_loss=generator_loss,
        batch_norm_in_d=False,
        axis_name=axis_name,
    )


sample = adversarial.sample
generate = adversarial.generate
discriminate = adversarial.discriminate
discriminator_features = adversarial.discriminator_features
