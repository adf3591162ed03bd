"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2016, "Importance weighted autoencoders").

The model is the VAE's (:mod:`gendl_jax.objectives.vae`: its networks, state, init, likelihoods, sampling,
evaluation and end-of-run report are used unchanged); only the training bound differs. With ``k``
reparameterised draws ``h_i = mu(x) + exp(log_var(x) / 2) * eps_i``, ``eps_i ~ N(0, I)``, and the log
importance weights ``log w_i = log p(x|h_i) + log p(h_i) - log q(h_i|x)``, the step maximises::

    L_k(x) = E[ log (1/k) sum_{i=1..k} w_i ] = E[ logsumexp_i(log w_i) - log k ]

(minimises ``-L_k`` averaged over the minibatch). ``L_1`` is the ELBO; ``L_k <= L_{k+1} <= log p(x)``,
and ``L_k -> log p(x)`` as ``k -> inf`` when the weights are bounded (Burda et al., Theorem 1). The
gradient is the plain reparameterised one (each draw's gradient weighted by its normalised weight
``w_i / sum_j w_j``), not the doubly reparameterised estimator of Tucker et al. 2019.

Draws: the step splits ``state.key`` exactly as :func:`gendl_jax.objectives.vae.step` does (next key,
binarisation key, latent key). The first draw ``eps_1`` is the VAE's draw from the latent key (same
shape (m, d), same call), and the other ``k - 1`` come from ``fold_in(latent key, 1)`` as one
(m, k - 1, d) array, so ``eps_1`` does not depend on ``k``. At ``k = 1`` the bound is estimated as the
VAE estimates the ELBO, ``log p(x|h_1) - KL(q(h|x) || p(h))`` with the KL in closed form (the same value
in expectation as ``log w_1``, with less variance): ``iwae --k 1`` is ``vae`` (``beta = 1``) draw for
draw. For ``k >= 2`` the KL cannot be taken out of the log-mean-exp and the weights use the sampled
``log p(h_i) - log q(h_i|x)``.

Reference numbers: on dynamically binarised MNIST (this module's default protocol and the VAE's
784-200-200-50 tanh architecture, one stochastic layer), Burda et al. (Table 1; test log p(x) estimated
with k = 5,000) report a test NLL of 86.76 nats for k = 1, where VAE and IWAE coincide; their two-layer
IWAE (not implemented here) reaches 82.90 at k = 50.

Example::

    import jax
    from gendl_jax.data import BatchIterator, load_dataset
    from gendl_jax.objectives import iwae

    data = BatchIterator(load_dataset("digits"), batch_size=32, seed=0, value_range=(0.0, 1.0))
    config = iwae.IWAEConfig(k=5, latent_dim=2, hidden=(64,))
    state = iwae.init(jax.random.PRNGKey(0), config, data.batch_at(0))
    state, metrics = jax.jit(iwae.step)(state, data.batch_at(0))
    print(float(metrics["iwae_bound"]), float(metrics["elbo"]), float(metrics["ess"]))
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gendl_jax.objectives import autoencoders as ae
from gendl_jax.objectives import vae
from gendl_jax.objectives.base import Objective

Array = jax.Array
AutoencoderState = ae.AutoencoderState

init = vae.init
sample = vae.sample
evaluate = vae.evaluate
report = vae.report


@dataclasses.dataclass(frozen=True)
class IWAEConfig(vae.VAEConfig):
    """The VAE's hyper-parameters (:class:`~gendl_jax.objectives.vae.VAEConfig`) and ``k``.

    ``beta`` must stay 1: the importance-weighted bound has no separate KL term to weight.
    """

    k: int = 5
    """Importance samples per example in the training bound L_k (1: the VAE's ELBO)."""

    def validate(self) -> None:
        super().validate()
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (--k, importance samples per example) must be an int >= 1, got {self.k!r}")
        if self.beta != 1.0:
            raise ValueError(f"beta must be 1 for iwae (the bound has no KL weight), got {self.beta}")


def draws(key: Array, m: int, latent_dim: int, k: int, dtype=jnp.float32, axis_name: str | None = None) -> Array:
    """The k standard-normal draws per example of :func:`bound_terms`: (k, m, latent_dim).

    ``[0]`` is :func:`gendl_jax.objectives.vae.elbo_terms`'s draw from ``key``; ``[1:]`` come from
    ``fold_in(key, 1)``. With ``axis_name``, drawn for the global batch and this device's rows kept.
    """
    first = vae.latent_noise(key, (m, latent_dim), dtype, axis_name)[None]
    if k == 1:
        return first
    rest = vae.latent_noise(jax.random.fold_in(key, 1), (m, k - 1, latent_dim), dtype, axis_name)
    return jnp.concatenate([first, jnp.swapaxes(rest, 0, 1)], axis=0)


def bound_from_terms(log_px: Array, log_pz: Array, log_qz: Array, kl: Array) -> Array:
    """Per-example L_k estimate from the (k, m) log densities of k draws and the (m,) closed-form KL.

    ``logsumexp_i(log p(x|h_i) + log p(h_i) - log q(h_i|x)) - log k``; for k = 1, ``log p(x|h_1) - KL``.
    """
    k = log_px.shape[0]
    if k == 1:
        return log_px[0] - kl
    return jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(k)


def effective_sample_size(log_w: Array) -> Array:
    """``1 / sum_i wbar_i^2`` of the normalised weights ``wbar = softmax(log_w)`` over axis 0: (k, m) -> (m,),
    in [1, k] (k when the weights are equal, 1 when one weight dominates)."""
    wbar = jax.nn.softmax(log_w, axis=0)
    return 1.0 / jnp.sum(jnp.square(wbar), axis=0)


def bound_terms(
    state: AutoencoderState, params, x: Array, key: Array, k: int, axis_name: str | None = None
) -> dict[str, Array]:
    """Per-example quantities of the k-sample bound at the draws of :func:`draws`: each (m,).

    ``iwae_bound`` (L_k's estimate), ``elbo`` (``mean_i log p(x|h_i) - KL``, the ELBO from the same draws with
    the KL in closed form), ``log_px_given_z`` (``mean_i log p(x|h_i)``), ``kl`` (closed form) and ``ess``
    (:func:`effective_sample_size` of the weights). ``x``: (m, *data_shape), already binarised.
    """
    mean, log_var = vae.encode(state, x, params)
    eps = draws(key, mean.shape[0], mean.shape[1], k, mean.dtype, axis_name)
    log_px, log_pz, log_qz = vae.log_weight_terms(state, params, x, mean, log_var, eps)
    kl = vae.gaussian_kl_to_standard(mean, log_var)
    rec = jnp.mean(log_px, axis=0)
    return {
        "iwae_bound": bound_from_terms(log_px, log_pz, log_qz, kl),
        "elbo": rec - kl,
        "log_px_given_z": rec,
        "kl": kl,
        "ess": effective_sample_size(jax.lax.stop_gradient(log_px + log_pz - log_qz)),
    }


def step(state: AutoencoderState, batch: dict, *, axis_name: str | None = None) -> tuple[AutoencoderState, dict]:
    """One Adam update of ``-L_k`` (``k = state.config.k``), averaged over ``batch["x"]``.

    Args:
      state: an :class:`~gendl_jax.objectives.autoencoders.AutoencoderState` from :func:`init` with an
        :class:`IWAEConfig`.
      batch: ``{"x": (m, *data_shape) or (1, m, *data_shape)}``, in [0, 1] for the Bernoulli likelihood
        (binarised here when ``binarization="dynamic"``).
      axis_name: the mapped axis under ``pmap`` / ``shard_map``: binarisation and draws are made for the
        global batch, gradients and metrics averaged, as on one device.

    Returns:
      ``(state, metrics)``; metrics are means over the batch, in nats per example: ``loss`` (``-iwae_bound``),
      ``iwae_bound``, ``elbo`` and ``log_px_given_z`` (same draws), ``kl``, ``ess`` (in [1, k]) and ``grad_norm``.
    """
    k = state.config.k

    def loss_fn(params, x, z_key):
        terms = {name: jnp.mean(v) for name, v in bound_terms(state, params, x, z_key, k, axis_name).items()}
        return -terms["iwae_bound"], {"loss": -terms["iwae_bound"], **terms}

    return vae.update(state, batch, loss_fn, axis_name=axis_name)


OBJECTIVE = Objective(
    name="iwae",
    family="vae",
    config_cls=IWAEConfig,
    init=init,
    step=step,
    sample=sample,
    value_range=(0.0, 1.0),
    train_defaults=ae.TRAIN_DEFAULTS,
    prepare_dataset=vae.prepare_dataset,
    report=report,
)
