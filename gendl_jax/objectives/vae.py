"""The variational autoencoder (Kingma & Welling 2014), lecture eq. (15).

Encoder ``q(z|x) = N(mu(x), diag(exp(log_var(x))))``, prior ``p(z) = N(0, I)``, decoder
``p(x|z)``: Bernoulli with logits ``g(z)`` (binary data) or Gaussian ``N(g(z), decoder_std^2 I)``.
The train step minimises the negative ELBO per example, averaged over the minibatch::

    -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z))

with one reparameterised sample ``z = mu + exp(log_var / 2) * eps`` and the KL in closed form.

Evaluation (:func:`evaluate`): the test ELBO and the importance-weighted estimate of log p(x)
(Burda et al. 2016)::

    log p(x) ~ log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)

which is a lower bound in expectation, increases with k and tends to log p(x); k up to several
thousand, drawn in jitted chunks.

Binarisation of MNIST for the Bernoulli likelihood (``binarization``):

* ``"dynamic"``: every training batch is a fresh draw ``x_bin ~ Bernoulli(x)``; the test set is
  binarised once with ``binarization_seed`` (the protocol of Burda et al.'s dynamically binarised
  MNIST results).
* ``"fixed"``: the training and test sets are binarised once with ``binarization_seed``
  (:func:`gendl_jax.data.binarize_dataset`), and the step sees the same binary images every epoch.
  Likelihoods under the two protocols are not comparable; the run summary states which was used.
* ``"none"``: grey levels in [0, 1] under the Bernoulli cross-entropy (not a likelihood of the data).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.data import binarize_dataset
from gendl_jax.objectives import autoencoders as ae
from gendl_jax.objectives.base import Objective
from gendl_jax.objectives.distributed import global_draw, mean_over_devices, on_global_batch

Array = jax.Array
AutoencoderState = ae.AutoencoderState

BINARIZATIONS = ("dynamic", "fixed", "none")
LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """VAE hyper-parameters. Defaults: the MLP VAE of Burda et al. 2016 (784-200-200-50, tanh), Adam(1e-3)."""

    model: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = 50
    hidden: tuple[int, ...] = (200, 200)
    """Encoder widths (the decoder mirrors them); for ``conv``, ``hidden[0]`` is the dense layer."""
    activation: Literal["relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "tanh"
    base_features: int = 32
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    decoder_std: float = 0.1
    """Standard deviation of the Gaussian decoder."""
    binarization: Literal["dynamic", "fixed", "none"] = "dynamic"
    binarization_seed: int = 0
    beta: float = 1.0
    """Weight of the KL term (1: the ELBO)."""
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine", "burda"] = "constant"
    """``cosine``: decay to 0 over ``lr_schedule_steps``; ``burda``: Burda et al.'s stages, stage
    i = 0, 1, ... lasting ``3^i * lr_schedule_steps`` steps at ``learning_rate * 10^(-i/7)`` (their
    paper: 8 stages, 3,280 epochs in all, with ``lr_schedule_steps`` = one epoch)."""
    lr_schedule_steps: int = 0
    eval_importance_samples: int = 1000
    """k of the importance-weighted log p(x) written to the run summary."""
    eval_examples: int = 10000
    """Test examples scored in the run summary (the first ones of the test split)."""

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def inner_steps(self) -> int:
        return 1

    @property
    def reconstruction(self) -> str:
        return self.likelihood

    @property
    def code_activation(self) -> str:
        return "linear"

    def validate(self) -> None:
        ae.check_architecture(self.latent_dim, self.hidden, self.model)
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        if self.binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}, got {self.binarization!r}")
        if self.likelihood == "gaussian" and self.binarization != "none":
            raise ValueError(
                "binarization must be 'none' for the Gaussian likelihood "
                f"(binarising is for the Bernoulli likelihood), got {self.binarization!r}"
            )
        for name in ("decoder_std", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.eval_importance_samples < 1:
            raise ValueError(f"eval_importance_samples must be >= 1, got {self.eval_importance_samples}")
        if self.eval_examples < 32:
            raise ValueError(
                f"eval_examples must be >= 32 (the end-of-run pictures show 32 test digits), got {self.eval_examples}"
            )
        if self.lr_schedule not in ("constant", "cosine", "burda"):
            raise ValueError(f"lr_schedule must be 'constant', 'cosine' or 'burda', got {self.lr_schedule!r}")
        if self.lr_schedule != "constant" and self.lr_schedule_steps < 1:
            raise ValueError(
                f"lr_schedule={self.lr_schedule!r} needs lr_schedule_steps >= 1, got {self.lr_schedule_steps}"
            )


def learning_rate_schedule(config: VAEConfig):
    """The learning rate as a function of the step (an optax schedule) or a constant."""
    lr, n = config.learning_rate, config.lr_schedule_steps
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(lr, n)
    if config.lr_schedule == "burda":
        stages = 8
        boundaries = np.cumsum([n * 3**i for i in range(stages - 1)])
        return optax.piecewise_constant_schedule(lr, {int(b): 10 ** (-1 / 7) for b in boundaries})
    return lr


def make_optimizer(config: VAEConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-4 as in Burda et al.) with :func:`learning_rate_schedule`."""
    return optax.adam(learning_rate_schedule(config), eps=1e-4)


def init(key: Array, config: VAEConfig, example_batch: dict) -> AutoencoderState:
    """Initial state; ``example_batch["x"]``: (m, *data_shape) or (1, m, *data_shape) in [0, 1] for Bernoulli."""
    config.validate()
    return ae.init_state(
        key, config, example_batch, encoder_features=2 * config.latent_dim, optimizer=make_optimizer(config)
    )


# ----------------------------------------------------------------------------------------------
# Densities and bounds (pure functions of arrays)
# ----------------------------------------------------------------------------------------------


def gaussian_kl_to_standard(mean: Array, log_var: Array) -> Array:
    """``KL(N(mean, diag(exp(log_var))) || N(0, I))`` in closed form: (..., d) -> (...)."""
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def diagonal_gaussian_log_density(z: Array, mean: Array, log_var: Array) -> Array:
    """``log N(z; mean, diag(exp(log_var)))``, summed over the last axis: (..., d) -> (...)."""
    return -0.5 * jnp.sum(LOG_2PI + log_var + jnp.square(z - mean) * jnp.exp(-log_var), axis=-1)


def log_likelihood(config: VAEConfig, x: Array, outputs: Array) -> Array:
    """``log p(x|z)`` per example from decoder outputs (logits or means): (m, *shape) -> (m,)."""
    if config.likelihood == "bernoulli":
        return ae.bernoulli_log_likelihood(x, outputs)
    n = math.prod(x.shape[1:])
    var = config.decoder_std**2
    return -0.5 * (ae.squared_error(x, outputs) / var + n * (LOG_2PI + math.log(var)))


def _networks(state: AutoencoderState):
    return ae.build_networks(state.config, state.data_shape, 2 * state.config.latent_dim)


def encode(state: AutoencoderState, x: Array, params=None) -> tuple[Array, Array]:
    """``(mean, log_var)`` of q(z|x): (n, *data_shape) -> 2 x (n, latent_dim)."""
    enc, _ = _networks(state)
    params = state.params if params is None else params
    h = enc.apply({"params": params["encoder"]}, x)
    return jnp.split(h, 2, axis=-1)


def decoder_outputs(state: AutoencoderState, z: Array, params=None) -> Array:
    """Logits (Bernoulli) or means (Gaussian) of p(x|z): (..., latent_dim) -> (..., *data_shape)."""
    _, dec = _networks(state)
    params = state.params if params is None else params
    lead = z.shape[:-1]
    out = dec.apply({"params": params["decoder"]}, z.reshape(-1, z.shape[-1]))
    return out.reshape(*lead, *state.data_shape)


def decode(state: AutoencoderState, z: Array) -> Array:
    """Mean of p(x|z) in data space: (n, latent_dim) -> (n, *data_shape)."""
    out = decoder_outputs(state, z)
    return jax.nn.sigmoid(out) if state.config.likelihood == "bernoulli" else out


def reconstruct(state: AutoencoderState, x: Array) -> Array:
    """Mean of p(x|z) at the posterior mean z = mu(x): (n, *data_shape) -> (n, *data_shape)."""
    return decode(state, encode(state, x)[0])


def sample(state: AutoencoderState, key: Array, n: int) -> Array:
    """``n`` decoder means at fresh prior draws z ~ N(0, I): (n, *data_shape)."""
    return decode(state, jax.random.normal(key, (n, state.config.latent_dim)))


def latent_noise(key: Array, shape: tuple[int, ...], dtype, axis_name: str | None = None) -> Array:
    """Standard-normal draws eps of the reparameterisation z = mean + exp(log_var / 2) * eps: ``shape``, whose
    first axis is the batch; with ``axis_name``, drawn for the global batch and this device's rows kept."""
    return global_draw(lambda k, s: jax.random.normal(k, s, dtype), key, shape, axis_name)


def log_weight_terms(state: AutoencoderState, params, x: Array, mean: Array, log_var: Array, eps: Array):
    """``(log p(x|z), log p(z), log q(z|x))`` at ``z = mean + exp(log_var / 2) * eps``, each (s, n).

    x: (n, *data_shape); mean, log_var: (n, d) from :func:`encode`; eps: (s, n, d), s draws per example.
    The log importance weight of each draw is their sum ``log p(x|z) + log p(z) - log q(z|x)``.
    """
    z = mean + jnp.exp(0.5 * log_var) * eps
    outputs = decoder_outputs(state, z, params)  # (s, n, *shape)
    log_px = jax.vmap(lambda o: log_likelihood(state.config, x, o))(outputs)
    log_pz = diagonal_gaussian_log_density(z, 0.0, jnp.zeros_like(z))
    log_qz = diagonal_gaussian_log_density(z, mean, log_var)
    return log_px, log_pz, log_qz


def elbo_terms(state: AutoencoderState, params, x: Array, key: Array, axis_name: str | None = None) -> dict:
    """Per-example ``log p(x|z)`` at one reparameterised z ~ q(z|x), and the analytic KL: each (m,).

    With ``axis_name`` the noise is drawn for the global batch and this device's rows are used.
    """
    mean, log_var = encode(state, x, params)
    eps = latent_noise(key, mean.shape, mean.dtype, axis_name)
    z = mean + jnp.exp(0.5 * log_var) * eps
    return {
        "log_px_given_z": log_likelihood(state.config, x, decoder_outputs(state, z, params)),
        "kl": gaussian_kl_to_standard(mean, log_var),
    }


def binarize(key: Array, x: Array) -> Array:
    """A draw x_bin ~ Bernoulli(x) elementwise, as float: x in [0, 1]."""
    return jax.random.bernoulli(key, x).astype(x.dtype)


def step(state: AutoencoderState, batch: dict, *, axis_name: str | None = None) -> tuple[AutoencoderState, dict]:
    """One Adam update of the negative ELBO (beta-weighted KL) on ``batch["x"]``.

    ``axis_name``: the mapped axis under ``pmap`` / ``shard_map``; the binarisation and the latent
    noise are drawn for the global batch, gradients and metrics averaged, as on one device.

    ``batch["x"]``: (m, *data_shape) or (1, m, *data_shape); in [0, 1] for the Bernoulli
    likelihood (binarised here when ``binarization="dynamic"``). Metrics (means over the batch):
    ``loss``, ``elbo`` (with beta = 1), ``log_px_given_z``, ``kl``, ``grad_norm``.
    Random stream: ``state.key`` splits into (next key, binarisation key, latent key).
    """
    config = state.config

    def loss_fn(params, x, z_key):
        terms = elbo_terms(state, params, x, z_key, axis_name)
        rec, kl = jnp.mean(terms["log_px_given_z"]), jnp.mean(terms["kl"])
        loss = -rec + config.beta * kl
        return loss, {"loss": loss, "elbo": rec - kl, "log_px_given_z": rec, "kl": kl}

    return update(state, batch, loss_fn, axis_name=axis_name)


def update(state: AutoencoderState, batch: dict, loss_fn, *, axis_name: str | None = None):
    """The body of :func:`step` (and of :func:`gendl_jax.objectives.iwae.step`): one Adam update of
    ``loss_fn(params, x, z_key) -> (loss, metrics)``, with ``x`` the (binarised) batch and ``z_key`` the key
    of the latent draws; adds ``grad_norm`` to the metrics. Random stream: ``state.key`` splits into
    (next key, binarisation key, latent key)."""
    config = state.config
    x = ae.images_of(batch, state.data_shape)
    ae.check_data_range(x, config.likelihood)
    key, bin_key, z_key = jax.random.split(state.key, 3)
    if config.likelihood == "bernoulli" and config.binarization == "dynamic":
        x = on_global_batch(lambda g: binarize(bin_key, g), x, axis_name)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, z_key)
    grads, metrics = mean_over_devices((grads, metrics), axis_name)
    updates, opt_state = make_optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, key=key), metrics


def log_importance_weights(state: AutoencoderState, x: Array, key: Array, k: int, chunk: int = 500) -> Array:
    """``log p(x|z_i) + log p(z_i) - log q(z_i|x)`` for k draws z_i ~ q(z|x): x (n, *shape) -> (n, k).

    The draws are made ``chunk`` at a time inside ``lax.map`` (memory n * chunk * prod(shape));
    ``k`` and ``chunk`` must be static under ``jit``.
    """
    mean, log_var = encode(state, x)
    chunk = min(chunk, k)
    n_chunks = -(-k // chunk)

    def one_chunk(chunk_key):
        eps = jax.random.normal(chunk_key, (chunk, *mean.shape), mean.dtype)  # (c, n, d)
        log_px, log_pz, log_qz = log_weight_terms(state, state.params, x, mean, log_var, eps)
        return log_px + log_pz - log_qz  # (c, n)

    weights = jax.lax.map(one_chunk, jax.random.split(key, n_chunks))  # (n_chunks, c, n)
    return weights.reshape(n_chunks * chunk, -1)[:k].T


def iwae_bound(state: AutoencoderState, x: Array, key: Array, k: int, chunk: int = 500) -> Array:
    """Importance-weighted estimate of log p(x) with k samples (Burda et al. 2016): (n, *shape) -> (n,)."""
    return jax.nn.logsumexp(log_importance_weights(state, x, key, k, chunk), axis=1) - math.log(k)


def _check_eval_inputs(state: AutoencoderState, x, k: int, batch_size: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (importance samples) must be an int >= 1, got {k!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tuple(np.shape(x)[1:]) != state.data_shape or np.shape(x)[0] < 1:
        raise ValueError(f"x must have shape (n >= 1, *{state.data_shape}), got {np.shape(x)}")
    ae.check_data_range(np.asarray(x), state.config.likelihood, name="x")


def evaluate(state: AutoencoderState, x, key: Array, *, k: int = 5000, batch_size: int = 100, chunk: int = 500) -> dict:
    """Test metrics of a trained VAE on data ``x`` (n, *data_shape), already binarised if need be.

    Returns means over the n examples (nats per example): ``elbo`` (one z sample per example,
    analytic KL), ``log_px_given_z``, ``kl``, ``iwae`` (log p(x) estimated with ``k`` importance
    samples), ``nll`` = -iwae, ``reconstruction_mse`` (per pixel, at the posterior mean), ``k``, ``n``.
    """
    _check_eval_inputs(state, x, k, batch_size)
    x = np.asarray(x, np.float32)

    @jax.jit
    def batch_metrics(state, xb, key):
        elbo_key, iw_key = jax.random.split(key)
        terms = elbo_terms(state, state.params, xb, elbo_key)
        iw = iwae_bound(state, xb, iw_key, k, chunk)
        mse = jnp.mean(jnp.square(reconstruct(state, xb) - xb).reshape(xb.shape[0], -1), axis=1)
        return {"log_px_given_z": terms["log_px_given_z"], "kl": terms["kl"], "iwae": iw, "mse": mse}

    n = x.shape[0]
    sums: dict[str, float] = {}
    for i, start in enumerate(range(0, n, batch_size)):
        xb = x[start : start + batch_size]
        if xb.shape[0] < batch_size:  # pad the last batch to keep one compiled shape
            xb_full = np.concatenate([xb, np.zeros((batch_size - xb.shape[0], *xb.shape[1:]), xb.dtype)])
        else:
            xb_full = xb
        values = jax.device_get(batch_metrics(state, xb_full, jax.random.fold_in(key, i)))
        for name, v in values.items():
            sums[name] = sums.get(name, 0.0) + float(np.sum(np.asarray(v, np.float64)[: xb.shape[0]]))
    means = {name: total / n for name, total in sums.items()}
    return {
        "elbo": means["log_px_given_z"] - means["kl"],
        "log_px_given_z": means["log_px_given_z"],
        "kl": means["kl"],
        "iwae": means["iwae"],
        "nll": -means["iwae"],
        "reconstruction_mse": means["mse"],
        "k": k,
        "n": n,
    }


def report(state: AutoencoderState, out, train, dataset) -> dict:
    """End-of-run outputs of a VAE: pictures (images only) and test ELBO / importance-weighted log p(x)
    on ``config.eval_examples`` held-out examples with ``config.eval_importance_samples`` samples."""
    config = state.config
    binarization = config.binarization if config.likelihood == "bernoulli" else "none"
    x, described = ae.test_images(
        train,
        dataset,
        binarization=binarization,
        binarization_seed=config.binarization_seed,
        limit=config.eval_examples,
    )
    metrics = evaluate(state, x, jax.random.PRNGKey(train.seed + 3), k=config.eval_importance_samples)
    summary = {
        "test_data": described,
        "binarization": binarization,
        **{f"test_{name}": value for name, value in metrics.items()},
    }
    if len(state.data_shape) == 3:
        head = jnp.asarray(x[:64])
        rec = np.asarray(jax.jit(reconstruct)(state, head))
        z = np.asarray(jax.jit(encode)(state, head)[0])
        summary["pictures"] = ae.write_image_outputs(
            out, x[:64], rec, z, jax.jit(lambda c: decode(state, c)), config.latent_dim, prior_manifold=True
        )
    return summary


def prepare_dataset(dataset, config: VAEConfig):
    """The training set the step sees: binarised once for ``binarization="fixed"``, else unchanged."""
    if config.likelihood == "bernoulli" and config.binarization == "fixed":
        return binarize_dataset(dataset, config.binarization_seed)
    return dataset


OBJECTIVE = Objective(
    name="vae",
    family="vae",
    config_cls=VAEConfig,
    init=init,
    step=step,
    sample=sample,
    value_range=(0.0, 1.0),
    train_defaults=ae.TRAIN_DEFAULTS,
    prepare_dataset=prepare_dataset,
    report=report,
)
