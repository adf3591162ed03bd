"""Deterministic autoencoders, lecture eq. (13)-(14) and the regularised variants.

An encoder ``h`` maps x to a code z = h(x), a decoder ``g`` maps z back; every objective minimises
a per-example loss averaged over the minibatch:

* ``ae`` (undercomplete, eq. 14): ``L(x, g(h(x)))``;
* ``sparse-ae``: ``L(x, g(h(x))) + Omega(z)``, with ``Omega = w * sum_j |z_j|`` (``"l1"``) or
  ``Omega = w * sum_j KL(rho || rho_hat_j)`` (``"kl"``), ``rho_hat_j`` the minibatch mean of the
  sigmoid unit j (the KL penalty is a property of the batch, added once per example's share);
* ``denoising-ae``: ``L(x, g(h(x_tilde)))`` with x_tilde a corrupted copy: Gaussian noise,
  masking noise (pixels set to 0) or salt-and-pepper noise (pixels set to 0 or 1);
* ``contractive-ae``: ``L(x, g(h(x))) + lambda * ||J_h(x)||_F^2``, the squared Frobenius norm of the
  encoder's Jacobian with respect to its input, computed exactly per example (``jax.jacrev`` when
  the code is smaller than the input, ``jax.jacfwd`` otherwise, under ``vmap``).

``L`` is the Bernoulli cross-entropy ``sum_p -[x log x_hat + (1 - x) log(1 - x_hat)]`` on logits
(data in [0, 1]) or the squared error ``sum_p (x - x_hat)^2``, summed over pixels. Images are in
[0, 1] (``value_range`` of :data:`gendl_jax.objectives.OBJECTIVES`).

Usage::

    state = autoencoders.init(key, autoencoders.DenoisingAEConfig(), batch)  # batch["x"]: (m, H, W, C) in [0, 1]
    state, metrics = jax.jit(autoencoders.step)(state, batch)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gendl_jax import models
from gendl_jax.data import map_in_batches
from gendl_jax.objectives.distributed import gather_rows, mean_over_devices, on_global_batch

Array = jax.Array
PyTree = Any

CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper")
SPARSITY_PENALTIES = ("l1", "kl")


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def check_architecture(latent_dim, hidden, model) -> None:
    """The encoder / decoder settings shared by the autoencoder and VAE configs (ValueError if bad)."""
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be an int >= 1, got {latent_dim!r}")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
        raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
    if model not in ("mlp", "conv"):
        raise ValueError(f"model must be 'mlp' or 'conv', got {model!r}")
    if model == "conv" and not hidden:
        raise ValueError("model='conv' needs hidden=(width, ...) for its dense layer, got ()")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Undercomplete autoencoder (eq. 14): architecture, reconstruction loss and optimiser.

    ``model="mlp"``: encoder widths ``hidden`` then ``latent_dim``; the decoder mirrors them.
    ``model="conv"``: :class:`~gendl_jax.models.ConvEncoder` / ``ConvDecoder`` (image sides
    multiple of 4) with ``base_features`` channels and a dense layer of ``hidden[0]`` units.
    """

    model: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256)
    activation: Literal["relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "relu"
    code_activation: Literal["linear", "relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "linear"
    base_features: int = 32
    reconstruction: Literal["bernoulli", "mse"] = "bernoulli"
    """``bernoulli``: cross-entropy on logits (data in [0, 1]); ``mse``: summed squared error."""
    decoder_output: Literal["sigmoid", "linear"] = "sigmoid"
    """Output map of the reconstruction for ``mse`` (Bernoulli always uses the sigmoid)."""
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_schedule_steps: int = 0
    """``cosine``: the learning rate decays to 0 over this many steps."""

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def inner_steps(self) -> int:
        return 1

    def validate(self) -> None:
        check_architecture(self.latent_dim, self.hidden, self.model)
        if self.reconstruction not in ("bernoulli", "mse"):
            raise ValueError(f"reconstruction must be 'bernoulli' or 'mse', got {self.reconstruction!r}")
        if self.decoder_output not in ("sigmoid", "linear"):
            raise ValueError(f"decoder_output must be 'sigmoid' or 'linear', got {self.decoder_output!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and self.lr_schedule_steps < 1:
            raise ValueError(f"lr_schedule='cosine' needs lr_schedule_steps >= 1, got {self.lr_schedule_steps}")
        if self.base_features < 1:
            raise ValueError(f"base_features must be >= 1, got {self.base_features}")


@dataclasses.dataclass(frozen=True)
class SparseAEConfig(AutoencoderConfig):
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


@dataclasses.dataclass(frozen=True)
class DenoisingAEConfig(AutoencoderConfig):
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


@dataclasses.dataclass(frozen=True)
class ContractiveAEConfig(AutoencoderConfig):
    """Contractive autoencoder: reconstruction + ``contractive_weight * ||J_h(x)||_F^2``."""

    code_activation: Literal["linear", "relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "sigmoid"
    contractive_weight: float = 0.1
    penalty_examples: int = 0
    """If > 0, the penalty is averaged over the first this-many examples of each (shuffled) batch
    only: an unbiased estimate of the batch mean at a fraction of the cost (each Jacobian is
    latent_dim backward passes). 0: every example."""

    def validate(self) -> None:
        super().validate()
        if not self.contractive_weight >= 0:
            raise ValueError(f"contractive_weight must be >= 0, got {self.contractive_weight}")
        if self.penalty_examples < 0:
            raise ValueError(f"penalty_examples must be >= 0 (0: all), got {self.penalty_examples}")


# ----------------------------------------------------------------------------------------------
# State and networks
# ----------------------------------------------------------------------------------------------


@struct.dataclass
class AutoencoderState:
    """Train state of an autoencoder or VAE; config and data shape are static.

    ``params = {"encoder": ..., "decoder": ...}``; one Adam state over both.
    """

    step: Array
    params: PyTree
    opt_state: PyTree
    key: Array
    config: Any = struct.field(pytree_node=False)
    data_shape: tuple[int, ...] = struct.field(pytree_node=False)


def build_networks(config, data_shape: tuple[int, ...], encoder_features: int) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for ``config`` (an :class:`AutoencoderConfig` or a VAE config)."""
    if config.model == "conv":
        if len(data_shape) != 3:
            raise ValueError(f"model='conv' needs image data of shape (H, W, C), got data shape {data_shape}")
        enc = models.ConvEncoder(encoder_features, base_features=config.base_features, hidden=config.hidden[0],
                                 activation=config.activation, code_activation=_code_activation(config))
        dec = models.ConvDecoder(tuple(data_shape), base_features=config.base_features, hidden=config.hidden[0],
                                 activation=config.activation)
        return enc, dec
    enc = models.MLPEncoder(encoder_features, hidden=config.hidden, activation=config.activation,
                            code_activation=_code_activation(config))
    dec = models.MLPDecoder(tuple(data_shape), hidden=tuple(reversed(config.hidden)), activation=config.activation)
    return enc, dec


def _code_activation(config) -> str:
    return getattr(config, "code_activation", "linear")


def data_shape_of(example_batch: dict) -> tuple[int, ...]:
    """Example shape from ``example_batch["x"]``: (m, *shape) or (1, m, *shape) (the fit loop's layout).

    Vector data (m, D) has ndim 2 and (1, m, D) ndim 3; images (m, H, W, C) ndim 4 and (1, m, H, W, C) ndim 5.
    """
    x = example_batch["x"]
    if np.ndim(x) < 2:
        raise ValueError(f"batch['x'] must have shape (m, *data_shape) or (1, m, *data_shape), got {np.shape(x)}")
    return tuple(np.shape(x)[2:]) if np.ndim(x) in (3, 5) else tuple(np.shape(x)[1:])


def images_of(batch: dict, data_shape: tuple[int, ...]) -> Array:
    """``batch["x"]`` as (m, *data_shape), accepting the fit loop's (1, m, *data_shape) layout."""
    x = batch["x"]
    shape = tuple(np.shape(x))
    if shape[1:] == tuple(data_shape) and len(shape) == len(data_shape) + 1:
        return jnp.asarray(x)
    if len(shape) == len(data_shape) + 2 and shape[0] == 1 and shape[2:] == tuple(data_shape):
        return jnp.asarray(x)[0]
    raise ValueError(f"batch['x'] must have shape (m, *{data_shape}) or (1, m, *{data_shape}), got {shape}")


def check_data_range(x, reconstruction: str, *, name: str = "batch['x']") -> None:
    """Raises if concrete data ``x`` cannot be modelled: float dtype, and values in [0, 1] for Bernoulli.

    Traced arrays (inside ``jit``) are not inspected.
    """
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array in [0, 1], got dtype {jnp.result_type(x)}")
    if isinstance(x, jax.core.Tracer):
        return
    if reconstruction == "bernoulli":
        lo, hi = float(np.min(x)), float(np.max(x))
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in [{lo:.4g}, {hi:.4g}] "
                "(scale images with value_range=(0, 1))"
            )
    elif not bool(np.all(np.isfinite(x))):
        raise ValueError(f"{name} contains non-finite values")


def make_optimizer(config: AutoencoderConfig) -> optax.GradientTransformation:
    """Adam at ``learning_rate``, constant or with a cosine decay to 0 over ``lr_schedule_steps``."""
    if config.lr_schedule == "cosine":
        return optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.lr_schedule_steps))
    return optax.adam(config.learning_rate)


def init(key: Array, config: AutoencoderConfig, example_batch: dict) -> AutoencoderState:
    """Initial state for data shaped like ``example_batch["x"]``: (m, *data_shape) or (1, m, *data_shape)."""
    config.validate()
    return init_state(key, config, example_batch, encoder_features=config.latent_dim, optimizer=make_optimizer(config))


def init_state(key: Array, config, example_batch: dict, *, encoder_features: int,
               optimizer: optax.GradientTransformation) -> AutoencoderState:
    """Shared by :func:`init` and the VAE: encoder with ``encoder_features`` outputs, decoder from ``latent_dim``."""
    config.validate()
    data_shape = data_shape_of(example_batch)
    check_data_range(np.asarray(example_batch["x"]), config.reconstruction, name="example_batch['x']")
    enc, dec = build_networks(config, data_shape, encoder_features)
    key, enc_key, dec_key = jax.random.split(key, 3)
    params = {
        "encoder": enc.init(enc_key, jnp.zeros((1, *data_shape), jnp.float32))["params"],
        "decoder": dec.init(dec_key, jnp.zeros((1, config.latent_dim), jnp.float32))["params"],
    }
    return AutoencoderState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                            key=key, config=config, data_shape=data_shape)


# ----------------------------------------------------------------------------------------------
# Losses, penalties and corruptions (pure functions of arrays)
# ----------------------------------------------------------------------------------------------


def _per_example_sum(values: Array) -> Array:
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
    """``sum_p x log sigmoid(l) + (1 - x) log sigmoid(-l)``: (m, ...) -> (m,)."""
    return _per_example_sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits))


def squared_error(x: Array, x_hat: Array) -> Array:
    """``||x - x_hat||^2`` per example: (m, ...) -> (m,)."""
    return _per_example_sum(jnp.square(x - x_hat))


def l1_sparsity(codes: Array) -> Array:
    """``sum_j |z_j|`` per example: (m, d) -> (m,)."""
    return jnp.sum(jnp.abs(codes), axis=-1)


def kl_sparsity(codes: Array, target: float) -> Array:
    """``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))``, rho_hat = mean over the batch: (m, d) -> scalar."""
    rho_hat = jnp.mean(codes, axis=0)
    return jnp.sum(target * (jnp.log(target) - jnp.log(rho_hat))
                   + (1 - target) * (jnp.log1p(-target) - jnp.log1p(-rho_hat)))


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


def jacobian_frobenius_sq(fn, x: Array) -> Array:
    """``||d fn(x_i) / d x_i||_F^2`` for each example: fn maps (m, *shape) -> (m, d) row by row; x: (m, *shape) -> (m,).

    Exact: the per-example Jacobian (d, *shape) by reverse mode when d is smaller than the input
    size (d backward passes), by forward mode otherwise, under ``vmap``.
    """
    single = lambda xi: fn(xi[None])[0]  # noqa: E731
    d = jax.eval_shape(single, x[0]).shape[0]
    jac = jax.jacrev(single) if d < math.prod(x.shape[1:]) else jax.jacfwd(single)
    jacobians = jax.vmap(jac)(x)
    return _per_example_sum(jnp.square(jacobians))


def sigmoid_layer_jacobian_frobenius_sq(kernel: Array, bias: Array, x: Array) -> Array:
    """Closed form of :func:`jacobian_frobenius_sq` for ``h(x) = sigmoid(x W + b)``.

    ``||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2``; kernel (D, d), bias (d,), x (m, D) -> (m,).
    """
    h = jax.nn.sigmoid(x @ kernel + bias)
    return jnp.square(h * (1 - h)) @ jnp.sum(jnp.square(kernel), axis=0)


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------


def _encoder_fn(state: AutoencoderState, params):
    enc, _ = build_networks(state.config, state.data_shape, state.config.latent_dim)
    return lambda x: enc.apply({"params": params["encoder"]}, x)


def _decoder_fn(state: AutoencoderState, params):
    _, dec = build_networks(state.config, state.data_shape, state.config.latent_dim)
    return lambda z: dec.apply({"params": params["decoder"]}, z)


def output_map(config) -> Any:
    """Decoder outputs -> reconstructions in data space (sigmoid of logits, or identity)."""
    if config.reconstruction == "bernoulli" or config.decoder_output == "sigmoid":
        return jax.nn.sigmoid
    return lambda h: h


def reconstruction_loss(config, x: Array, outputs: Array) -> Array:
    """Per-example ``L(x, g(z))`` from decoder outputs: (m, ...) -> (m,)."""
    if config.reconstruction == "bernoulli":
        return -bernoulli_log_likelihood(x, outputs)
    return squared_error(x, output_map(config)(outputs))


def loss_and_metrics(state: AutoencoderState, params, x: Array, key: Array,
                     axis_name: str | None = None) -> tuple[Array, dict]:
    """The objective's minibatch loss (mean over examples) and its parts; x: (m, *data_shape).

    With ``axis_name`` (x: this device's rows): the corruption is drawn for the global batch, the
    KL sparsity's mean activation and the contractive penalty's first ``penalty_examples`` examples
    are those of the global batch, so that the ``pmean`` of the losses and gradients equals one device's.
    """
    config = state.config
    encode, decode = _encoder_fn(state, params), _decoder_fn(state, params)
    inputs = x
    if isinstance(config, DenoisingAEConfig):
        inputs = on_global_batch(lambda g: corrupt(key, g, config.corruption, config.noise_level), x, axis_name)
    z = encode(inputs)
    outputs = decode(z)
    recon = jnp.mean(reconstruction_loss(config, x, outputs))
    metrics = {"reconstruction": recon, "mse": jnp.mean(jnp.square(x - output_map(config)(outputs)))}
    penalty = jnp.zeros(())
    if isinstance(config, SparseAEConfig):
        if config.sparsity == "l1":
            raw = jnp.mean(l1_sparsity(z))
        else:
            raw = kl_sparsity(gather_rows(z, axis_name), config.sparsity_target)
        penalty = config.sparsity_weight * raw
        metrics["sparsity_penalty"] = raw
        metrics["mean_code"] = jnp.mean(z)
    elif isinstance(config, ContractiveAEConfig):
        if config.penalty_examples:  # the first examples of the global batch, the same on every device
            raw = jnp.mean(jacobian_frobenius_sq(encode, gather_rows(x, axis_name)[: config.penalty_examples]))
        else:
            raw = jnp.mean(jacobian_frobenius_sq(encode, x))
        penalty = config.contractive_weight * raw
        metrics["jacobian_frobenius_sq"] = raw
    loss = recon + penalty
    return loss, {"loss": loss, **metrics}


def step(state: AutoencoderState, batch: dict, *, axis_name: str | None = None) -> tuple[AutoencoderState, dict]:
    """One Adam update on ``batch["x"]``: (m, *data_shape) or (1, m, *data_shape), values in [0, 1].

    ``axis_name``: the mapped axis under ``pmap`` / ``shard_map`` (gradients and metrics are averaged
    over it; random draws and whole-batch terms are global, see :func:`loss_and_metrics`).

    Metrics: ``loss``, ``reconstruction`` (mean per-example L), ``mse`` (per pixel), and
    ``sparsity_penalty`` / ``mean_code`` or ``jacobian_frobenius_sq`` for the regularised variants
    (unweighted). Random stream: ``state.key`` splits into (next key, corruption key).
    """
    x = images_of(batch, state.data_shape)
    check_data_range(x, state.config.reconstruction)
    key, noise_key = jax.random.split(state.key)
    (_, metrics), grads = jax.value_and_grad(loss_and_metrics, argnums=1, has_aux=True)(
        state, state.params, x, noise_key, axis_name)
    grads, metrics = mean_over_devices((grads, metrics), axis_name)
    updates, opt_state = make_optimizer(state.config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, key=key), metrics


# ----------------------------------------------------------------------------------------------
# Using a trained autoencoder
# ----------------------------------------------------------------------------------------------


def encode(state: AutoencoderState, x: Array) -> Array:
    """Codes h(x): (n, *data_shape) -> (n, latent_dim)."""
    return _encoder_fn(state, state.params)(x)


def decode(state: AutoencoderState, z: Array) -> Array:
    """Reconstructions in data space g(z): (n, latent_dim) -> (n, *data_shape)."""
    return output_map(state.config)(_decoder_fn(state, state.params)(z))


def reconstruct(state: AutoencoderState, x: Array) -> Array:
    """g(h(x)): (n, *data_shape) -> (n, *data_shape)."""
    return decode(state, encode(state, x))


def contraction(state: AutoencoderState, x: Array) -> Array:
    """``||J_h(x_i)||_F`` per example: (n, *data_shape) -> (n,)."""
    return jnp.sqrt(jacobian_frobenius_sq(_encoder_fn(state, state.params), x))


def interpolate_codes(z_start: Array, z_end: Array, n_steps: int) -> Array:
    """Straight lines in code space: (p, d), (p, d) -> (p, n_steps, d), endpoints included."""
    t = jnp.linspace(0.0, 1.0, n_steps)[None, :, None]
    return (1 - t) * z_start[:, None] + t * z_end[:, None]


# ----------------------------------------------------------------------------------------------
# Run-folder outputs (called by the fit loop at the end of `gendl train`)
# ----------------------------------------------------------------------------------------------


def test_images(train, dataset, *, binarization: str = "none", binarization_seed: int = 0, limit: int | None = None):
    """Held-out examples in [0, 1] for the run report: the dataset's test split (binarised once
    with ``binarization_seed`` unless ``binarization="none"``), or fresh draws for toy data.
    Returns (x (n, *shape) float32, description)."""
    from gendl_jax import data as gdata
    from gendl_jax.objectives import vae

    if isinstance(dataset, gdata.ToyDataset):
        n = limit or 2000
        x = dataset.distribution.sample(np.random.default_rng([train.seed, 7]), n).astype(np.float32)
        return x, f"{n} fresh samples of {dataset.name}"
    test = gdata.load_dataset(train.data, split="test", data_dir=train.data_dir)
    described = f"{train.data} test split"
    if binarization != "none":
        test = vae.binarize_dataset(test, binarization_seed)
        described += f", binarised once (seed {binarization_seed}, {binarization} binarisation protocol)"
    images = test.images[:limit] if limit else test.images
    return (images.astype(np.float32) / test.max_value), described


def write_image_outputs(out, x: np.ndarray, reconstructions: np.ndarray, z: np.ndarray, decode_fn, latent_dim: int,
                        *, prior_manifold: bool) -> list[str]:
    """Writes ``reconstructions.png`` (rows alternate test images and their reconstructions),
    ``interpolations.png`` (8 straight lines in code space between test codes, 8 steps each) and,
    for a 2-D latent, ``manifold.png`` (decodes of a 20 x 20 grid: at the N(0, 1) quantiles when
    ``prior_manifold``, else spanning the test codes). Returns the file names written."""
    from gendl_jax.train import plots

    written = []
    cols = 8
    pairs = np.stack([x[:32].reshape(4, cols, *x.shape[1:]), reconstructions[:32].reshape(4, cols, *x.shape[1:])], 1)
    plots.image_grid(pairs.reshape(64, *x.shape[1:]), out / "reconstructions.png", value_range=(0.0, 1.0),
                     title="test images (odd rows) and reconstructions (even rows)")
    written.append("reconstructions.png")
    lines = interpolate_codes(jnp.asarray(z[0:16:2]), jnp.asarray(z[1:16:2]), cols)
    strip = np.asarray(decode_fn(lines.reshape(-1, latent_dim)))
    plots.image_grid(strip, out / "interpolations.png", value_range=(0.0, 1.0),
                     title="decodes along straight lines between test codes")
    written.append("interpolations.png")
    if latent_dim == 2:
        if prior_manifold:
            axis = np.asarray(jax.scipy.special.ndtri(jnp.linspace(0.025, 0.975, 20)))
            xs, ys = axis, axis
        else:
            lo, hi = np.percentile(z, [2, 98], axis=0)
            xs, ys = np.linspace(lo[0], hi[0], 20), np.linspace(lo[1], hi[1], 20)
        grid = np.stack(np.meshgrid(xs, ys[::-1]), -1).reshape(-1, 2).astype(np.float32)
        plots.image_grid(np.asarray(decode_fn(jnp.asarray(grid))), out / "manifold.png", value_range=(0.0, 1.0),
                         title="decodes of a 20 x 20 grid of the 2-D latent space")
        written.append("manifold.png")
    return written


def report(state: AutoencoderState, out, train, dataset) -> dict:
    """End-of-run outputs of an autoencoder: pictures (images only) and test metrics for summary.json."""
    x, described = test_images(train, dataset)
    recon_fn, codes_fn = jax.jit(reconstruct), jax.jit(encode)
    rec = map_in_batches(lambda xb: recon_fn(state, xb), x, 500)
    z = map_in_batches(lambda xb: codes_fn(state, xb), x, 500)
    summary = {
        "test_data": described,
        "test_reconstruction_mse": float(np.mean(np.square(rec.astype(np.float64) - x))),
        "test_mean_abs_code": float(np.mean(np.abs(z))),
    }
    if len(state.data_shape) == 3:
        summary["pictures"] = write_image_outputs(out, x, rec, z, jax.jit(lambda c: decode(state, c)),
                                                  state.config.latent_dim, prior_manifold=False)
    return summary
