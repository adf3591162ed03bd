"""The original GAN (Goodfellow et al. 2014), lecture eq. (5) and (7), Algorithm 1.

The discriminator outputs a logit ``l``; ``D(x) = sigmoid(l)``. Losses are written with
``log sigmoid`` so that they stay finite when D saturates:

* discriminator (ascends eq. 5):  ``-mean[log D(x)] - mean[log(1 - D(G(z)))]``
* generator, ``"saturating"`` (descends eq. 5):  ``mean[log(1 - D(G(z)))]``
* generator, ``"non-saturating"`` (eq. 7):  ``-mean[log D(G(z))]``

and, beyond the lecture, the hinge loss of SN-GAN (Lim & Ye 2017; Miyato et al. 2018), where ``l`` is a
score rather than a logit:

* discriminator, ``discriminator_loss="hinge"``:  ``mean[relu(1 - l(x))] + mean[relu(1 + l(G(z)))]``
* generator, ``generator_loss="hinge"``:  ``-mean[l(G(z))]``

and the least-squares GAN (Mao et al. 2017, "Least squares generative adversarial networks", eq. 2 with the
0-1 coding of section 3.2.2: a = 0, b = c = 1), where ``l`` is again a score:

* discriminator, ``discriminator_loss="least-squares"``:  ``1/2 mean[(l(x) - 1)^2] + 1/2 mean[l(G(z))^2]``
* generator, ``generator_loss="least-squares"``:  ``1/2 mean[(l(G(z)) - 1)^2]``

Usage::

    state = gan.init(key, gan.GANConfig(), batch)     # batch["x"]: (d_steps, m, *data_shape)
    state, metrics = jax.jit(gan.step)(state, batch)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from gendl_jax.objectives import adversarial

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GANConfig(adversarial.NetworkConfig):
    """GAN hyper-parameters. Defaults: Adam(2e-4, 0.5) as in DCGAN, one D step per G step."""

    generator_loss: Literal["saturating", "non-saturating", "hinge", "least-squares"] = "non-saturating"
    discriminator_loss: Literal["cross-entropy", "hinge", "least-squares"] = "cross-entropy"
    """``"cross-entropy"``: eq. (5); ``"hinge"``: SN-GAN's hinge loss (usually with ``generator_loss="hinge"``
    and ``spectral_norm=True``); ``"least-squares"``: LSGAN's (Mao et al. 2017, a = 0, b = c = 1; usually with
    ``generator_loss="least-squares"``)."""
    d_steps: int = 1
    """k in Algorithm 1: discriminator updates per generator update."""

    @property
    def inner_steps(self) -> int:
        return self.d_steps

    def validate(self) -> None:
        super().validate()
        if self.generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"generator_loss must be one of {', '.join(GENERATOR_LOSSES)} (--generator-loss), "
                f"got {self.generator_loss!r}"
            )
        if self.discriminator_loss not in DISCRIMINATOR_LOSSES:
            raise ValueError(
                f"discriminator_loss must be one of {', '.join(DISCRIMINATOR_LOSSES)} (--discriminator-loss), "
                f"got {self.discriminator_loss!r}"
            )


def discriminator_loss(logits_real: Array, logits_fake: Array) -> tuple[Array, dict]:
    """Negated eq. (5) for D: (m,), (m,) logits -> scalar loss, with mean D(x) and D(G(z))."""
    loss = -jnp.mean(jax.nn.log_sigmoid(logits_real)) - jnp.mean(jax.nn.log_sigmoid(-logits_fake))
    metrics = {"d_real": jnp.mean(jax.nn.sigmoid(logits_real)), "d_fake": jnp.mean(jax.nn.sigmoid(logits_fake))}
    return loss, metrics


def saturating_generator_loss(logits_fake: Array, weights: Array | None = None) -> Array:
    """``mean log(1 - D(G(z)))`` (eq. 5): its gradient vanishes as D rejects the samples.

    ``weights`` (m,): a weighted mean (:func:`adversarial.weighted_mean`; top-k training)."""
    return adversarial.weighted_mean(jax.nn.log_sigmoid(-logits_fake), weights)


def non_saturating_generator_loss(logits_fake: Array, weights: Array | None = None) -> Array:
    """``-mean log D(G(z))`` (eq. 7); ``weights`` as in :func:`saturating_generator_loss`."""
    return -adversarial.weighted_mean(jax.nn.log_sigmoid(logits_fake), weights)


def hinge_discriminator_loss(scores_real: Array, scores_fake: Array) -> tuple[Array, dict]:
    """``mean relu(1 - l(x)) + mean relu(1 + l(G(z)))``: (m,), (m,) scores -> scalar loss, with the mean scores
    as ``d_real`` / ``d_fake`` (scores, not probabilities, as for a WGAN critic)."""
    loss = jnp.mean(jax.nn.relu(1.0 - scores_real)) + jnp.mean(jax.nn.relu(1.0 + scores_fake))
    return loss, {"d_real": jnp.mean(scores_real), "d_fake": jnp.mean(scores_fake)}


def hinge_generator_loss(scores_fake: Array, weights: Array | None = None) -> Array:
    """``-mean l(G(z))``, the hinge GAN's generator loss; ``weights`` as in :func:`saturating_generator_loss`."""
    return -adversarial.weighted_mean(scores_fake, weights)


LSGAN_A, LSGAN_B, LSGAN_C = 0.0, 1.0, 1.0
"""The targets of the least-squares GAN: D pulls fakes to a and reals to b, G pulls fakes to c (Mao et al. 2017,
section 3.2.2, the 0-1 coding b - c = 0 rather than the a = -1, b = 1, c = 0 that minimises the Pearson chi^2)."""


def least_squares_discriminator_loss(scores_real: Array, scores_fake: Array) -> tuple[Array, dict]:
    """``1/2 mean (l(x) - b)^2 + 1/2 mean (l(G(z)) - a)^2`` with a = 0, b = 1: (m,), (m,) scores -> scalar, with the
    mean scores as ``d_real`` / ``d_fake``."""
    loss = 0.5 * jnp.mean(jnp.square(scores_real - LSGAN_B)) + 0.5 * jnp.mean(jnp.square(scores_fake - LSGAN_A))
    return loss, {"d_real": jnp.mean(scores_real), "d_fake": jnp.mean(scores_fake)}


def least_squares_generator_loss(scores_fake: Array, weights: Array | None = None) -> Array:
    """``1/2 mean (l(G(z)) - c)^2`` with c = 1; ``weights`` as in :func:`saturating_generator_loss`."""
    return 0.5 * adversarial.weighted_mean(jnp.square(scores_fake - LSGAN_C), weights)


GENERATOR_LOSSES = {
    "saturating": saturating_generator_loss,
    "non-saturating": non_saturating_generator_loss,
    "hinge": hinge_generator_loss,
    "least-squares": least_squares_generator_loss,
}
DISCRIMINATOR_LOSSES = {
    "cross-entropy": discriminator_loss,
    "hinge": hinge_discriminator_loss,
    "least-squares": least_squares_discriminator_loss,
}


def init(key: Array, config: GANConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial state; ``example_batch["x"]`` is (d_steps, m, *data_shape) or (m, *data_shape)."""
    return adversarial.init_adversarial(key, config, example_batch, batch_norm_in_d=True)


def step(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``d_steps`` discriminator updates then one generator update.

    Args:
      state: from :func:`init`.
      batch: ``{"x": (d_steps, m, *data_shape)}`` real minibatches, one per discriminator update, and for a
        class-conditional GAN (``num_classes > 0``) ``"y": (d_steps, m)`` their int labels.
      axis_name: the mapped axis when run under ``pmap`` / ``shard_map`` (gradients and BatchNorm
        statistics are averaged over it).

    Returns:
      ``(new_state, metrics)``; metrics: ``d_loss``, ``d_real``, ``d_fake`` (mean D(x) and D(G(z)); the
      mean scores with the hinge loss), ``d_grad_norm`` (means over the discriminator updates), ``g_loss``,
      ``g_grad_norm``. The learning rates are read from
      ``state.hparams`` (see :func:`adversarial.with_hparams`).
    """
    return adversarial.adversarial_step(
        state,
        batch,
        discriminator_loss=DISCRIMINATOR_LOSSES[state.config.discriminator_loss],
        generator_loss=GENERATOR_LOSSES[state.config.generator_loss],
        batch_norm_in_d=True,
        axis_name=axis_name,
    )


sample = adversarial.sample
generate = adversarial.generate
discriminate = adversarial.discriminate
discriminator_features = adversarial.discriminator_features


def refit_discriminator_step(
    state: adversarial.AdversarialState,
    opt_state: optax.OptState,
    real: Array,
    key: Array,
    *,
    tx: optax.GradientTransformation,
    ema: bool = True,
    labels: Array | None = None,
):
    """One discriminator update of eq. (5) against a *fixed* generator; the generator is not touched.

    After training, this fits D to the sampler that will actually be used (the generator's average when
    ``ema`` and the state keeps one, in inference mode), so that its logit estimates
    ``log p_data / p_g`` of that sampler: what discriminator rejection sampling needs
    (:mod:`gendl_jax.sampling`; Azadi et al. 2019 also keep training D with G fixed).

    Args:
      state: a trained GAN state.
      opt_state: ``tx.init(state.discriminator.params)`` at the first call; a fresh optimiser, since the
        training one's learning rate may have decayed to 0.
      real: (m, *data_shape) real minibatch in the objective's value range.
      key: PRNG key of the m latents.
      tx: the optimiser, e.g. ``optax.adam(1e-4, b1=0.5)``.
      labels: (m,) int labels of ``real`` for a class-conditional GAN; the fakes are generated for the same labels.

    Returns ``(state, opt_state, metrics)`` with the new discriminator (parameters and BatchNorm
    running averages) and ``d_loss``, ``d_real``, ``d_fake`` as in :func:`step`.
    """
    _, disc = adversarial.build_networks(state.config, state.data_shape, batch_norm_in_d=True)
    z = jax.random.normal(key, (real.shape[0], adversarial.latent_dim(state.config, state.data_shape)))
    fake = jax.lax.stop_gradient(adversarial.generate(state, z, ema=ema, labels=labels))
    d = state.discriminator

    def loss_fn(params):
        s_real, stats = adversarial.apply_net(disc, params, d.batch_stats, real, train=True, labels=labels)
        s_fake, stats = adversarial.apply_net(disc, params, stats, fake, train=True, labels=labels)
        loss, metrics = discriminator_loss(s_real, s_fake)
        return loss, (metrics, stats)

    (loss, (metrics, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
    updates, opt_state = tx.update(grads, opt_state, d.params)
    new_d = d.replace(params=optax.apply_updates(d.params, updates), batch_stats=stats)
    return state.replace(discriminator=new_d), opt_state, {"d_loss": loss, **metrics}


def generator_gradient_norms(
    state: adversarial.AdversarialState, z: Array, labels: Array | None = None
) -> dict[str, Array]:
    """Norms of the generator's gradient under both losses at the current discriminator.

    Both networks run in inference mode; z: (m, latent_dim); labels: (m,) ints for a class-conditional GAN.
    Returns ``{"saturating": ||grad of
    eq. 5||, "non_saturating": ||grad of eq. 7||}`` (Arjovsky & Bottou 2017, Fig. 2).
    """
    gen, disc = adversarial.build_networks(state.config, state.data_shape, batch_norm_in_d=True)
    g, d = state.generator, state.discriminator

    def logits(params):
        fake = adversarial.apply_net(gen, params, g.batch_stats, z, train=False, labels=labels)[0]
        return adversarial.apply_net(disc, d.params, d.batch_stats, fake, train=False, labels=labels)[0]

    return {
        name: optax.tree.norm(jax.grad(lambda p: loss(logits(p)))(g.params))
        for name, loss in (("saturating", saturating_generator_loss), ("non_saturating", non_saturating_generator_loss))
    }


def density_ratio_of(config: GANConfig) -> bool:
    """A cross-entropy discriminator's logit estimates ``log p_data / p_g`` (its optimum is
    ``p_data / (p_data + p_g)``); a hinge discriminator's output is a score, not that ratio."""
    return config.discriminator_loss == "cross-entropy"


OBJECTIVE = adversarial.declare("gan", GANConfig, init, step, density_ratio_of=density_ratio_of)
