"""Deterministic autoencoders, lecture eq. (13)-(14) and the regularised variants.

An encoder ``h`` maps x to a code z = h(x), a decoder ``g`` maps z back; every objective minimises
a per-example loss averaged over the minibatch:

* ``ae`` (undercomplete, eq. 14, this module): ``L(x, g(h(x)))``;
* ``sparse-ae`` (:mod:`~gendl_jax.objectives.sparse_ae`): ``L(x, g(h(x))) + Omega(z)``, an L1 or KL sparsity penalty;
* ``denoising-ae`` (:mod:`~gendl_jax.objectives.denoising_ae`): ``L(x, g(h(x_tilde)))`` with x_tilde a corrupted copy;
* ``contractive-ae`` (:mod:`~gendl_jax.objectives.contractive_ae`): ``L(x, g(h(x))) + lambda * ||J_h(x)||_F^2``.

All four share this module's state, networks and :func:`step`; a variant's config overrides two hooks,
:meth:`AutoencoderConfig.encoder_inputs` and :meth:`AutoencoderConfig.penalty`.

``L`` is the Bernoulli cross-entropy ``sum_p -[x log x_hat + (1 - x) log(1 - x_hat)]`` on logits
(data in [0, 1]) or the squared error ``sum_p (x - x_hat)^2``, summed over pixels. Images are in
[0, 1] (``value_range`` of :data:`gendl_jax.objectives.OBJECTIVES`).

Usage::

    state = denoising_ae.init(key, denoising_ae.DenoisingAEConfig(), batch)  # batch["x"]: (m, H, W, C) in [0, 1]
    state, metrics = jax.jit(denoising_ae.step)(state, batch)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gendl_jax import models
from gendl_jax.data import map_in_batches
from gendl_jax.objectives.base import Objective
from gendl_jax.objectives.distributed import mean_over_devices

Array = jax.Array
PyTree = Any


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

    # The two places where the regularised autoencoders differ from this one; each variant's module
    # overrides them (:mod:`~gendl_jax.objectives.sparse_ae`, :mod:`~gendl_jax.objectives.denoising_ae`,
    # :mod:`~gendl_jax.objectives.contractive_ae`), and :func:`loss_and_metrics` composes them.

    def encoder_inputs(self, key: Array, x: Array, axis_name: str | None = None) -> Array:
        """What the encoder reads for the clean minibatch ``x`` (m, *shape): ``x`` itself here."""
        del key, axis_name
        return x

    def penalty(self, encode, x: Array, z: Array, axis_name: str | None = None) -> tuple[Array, dict]:
        """``(weighted penalty, metrics)`` added to the mean reconstruction loss: none here.

        ``encode`` maps (n, *shape) -> (n, latent_dim) with the parameters being differentiated; ``z`` are
        the codes of the encoder inputs; under ``axis_name`` ``x`` and ``z`` are this device's rows.
        """
        del encode, x, z, axis_name
        return jnp.zeros(()), {}


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
        enc = models.ConvEncoder(
            encoder_features,
            base_features=config.base_features,
            hidden=config.hidden[0],
            activation=config.activation,
            code_activation=_code_activation(config),
        )
        dec = models.ConvDecoder(
            tuple(data_shape), base_features=config.base_features, hidden=config.hidden[0], activation=config.activation
        )
        return enc, dec
    enc = models.MLPEncoder(
        encoder_features, hidden=config.hidden, activation=config.activation, code_activation=_code_activation(config)
    )
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


def init_state(
    key: Array, config, example_batch: dict, *, encoder_features: int, optimizer: optax.GradientTransformation
) -> AutoencoderState:
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
    return AutoencoderState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=key,
        config=config,
        data_shape=data_shape,
    )


# ----------------------------------------------------------------------------------------------
# Losses, penalties and corruptions (pure functions of arrays)
# ----------------------------------------------------------------------------------------------


def per_example_sum(values: Array) -> Array:
    """Sum over all non-batch axes: (m, ...) -> (m,)."""
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
    """``sum_p x log sigmoid(l) + (1 - x) log sigmoid(-l)``: (m, ...) -> (m,)."""
    return per_example_sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits))


def squared_error(x: Array, x_hat: Array) -> Array:
    """``||x - x_hat||^2`` per example: (m, ...) -> (m,)."""
    return per_example_sum(jnp.square(x - x_hat))


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------


def encoder_fn(state: AutoencoderState, params):
    """``x -> h(x)`` with the encoder parameters of ``params``: (n, *data_shape) -> (n, latent_dim)."""
    enc, _ = build_networks(state.config, state.data_shape, state.config.latent_dim)
    return lambda x: enc.apply({"params": params["encoder"]}, x)


def decoder_fn(state: AutoencoderState, params):
    """``z -> decoder outputs`` (logits or values, before :func:`output_map`) with ``params``."""
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


def loss_and_metrics(
    state: AutoencoderState, params, x: Array, key: Array, axis_name: str | None = None
) -> tuple[Array, dict]:
    """The objective's minibatch loss (mean over examples) and its parts; x: (m, *data_shape).

    The loss is ``mean_i L(x_i, g(h(config.encoder_inputs(x))_i)) + config.penalty(...)``: the variants
    change only these two hooks of their config. With ``axis_name`` (x: this device's rows) the hooks
    work on the global batch (a corruption drawn for it, a penalty of its rows), so that the ``pmean``
    of the losses and gradients equals one device's.
    """
    config = state.config
    encode, decode = encoder_fn(state, params), decoder_fn(state, params)
    z = encode(config.encoder_inputs(key, x, axis_name))
    outputs = decode(z)
    recon = jnp.mean(reconstruction_loss(config, x, outputs))
    penalty, penalty_metrics = config.penalty(encode, x, z, axis_name)
    metrics = {"reconstruction": recon, "mse": jnp.mean(jnp.square(x - output_map(config)(outputs))), **penalty_metrics}
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
        state, state.params, x, noise_key, axis_name
    )
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
    return encoder_fn(state, state.params)(x)


def decode(state: AutoencoderState, z: Array) -> Array:
    """Reconstructions in data space g(z): (n, latent_dim) -> (n, *data_shape)."""
    return output_map(state.config)(decoder_fn(state, state.params)(z))


def reconstruct(state: AutoencoderState, x: Array) -> Array:
    """g(h(x)): (n, *data_shape) -> (n, *data_shape)."""
    return decode(state, encode(state, x))


def interpolate_codes(z_start: Array, z_end: Array, n_steps: int) -> Array:
    """Straight lines in code space: (p, d), (p, d) -> (p, n_steps, d), endpoints included."""
    t = jnp.linspace(0.0, 1.0, n_steps)[None, :, None]
    return (1 - t) * z_start[:, None] + t * z_end[:, None]


# ----------------------------------------------------------------------------------------------
# Run-folder outputs (called by the fit loop at the end of `gendl train`)
# ----------------------------------------------------------------------------------------------


def test_images(train, dataset, *, binarization: str = "none", binarization_seed: int = 0, limit: int | None = None):
    """Held-out examples for the run report: the dataset's test split (images in [0, 1], binarised once
    with ``binarization_seed`` unless ``binarization="none"``; a point cloud's held-out points as they are), or
    fresh draws for toy data. Returns (x (n, *shape) float32, description)."""
    from gendl_jax import data as gdata

    if isinstance(dataset, gdata.ToyDataset):
        n = limit or 2000
        x = dataset.distribution.sample(np.random.default_rng([train.seed, 7]), n).astype(np.float32)
        return x, f"{n} fresh samples of {dataset.name}"
    test = gdata.load_dataset(train.data, split="test", data_dir=train.data_dir, image_size=train.image_size)
    described = f"{train.data} test split"
    if isinstance(test, gdata.PointCloudDataset):
        if binarization != "none":
            raise ValueError(f"{train.data} is a point cloud: binarization={binarization!r} applies to images only")
        return (test.points[:limit] if limit else test.points), described
    if binarization != "none":
        test = gdata.binarize_dataset(test, binarization_seed)
        described += f", binarised once (seed {binarization_seed}, {binarization} binarisation protocol)"
    images = test.images[:limit] if limit else test.images
    return (images.astype(np.float32) / test.max_value), described


def write_image_outputs(
    out, x: np.ndarray, reconstructions: np.ndarray, z: np.ndarray, decode_fn, latent_dim: int, *, prior_manifold: bool
) -> list[str]:
    """Writes ``reconstructions.png`` (rows alternate test images and their reconstructions: up to 4 pairs of rows
    of up to 8), ``interpolations.png`` (up to 8 straight lines in code space between pairs of test codes, 8 steps
    each; none with a single test image) and,
    for a 2-D latent, ``manifold.png`` (decodes of a 20 x 20 grid: at the N(0, 1) quantiles when
    ``prior_manifold``, else spanning the test codes). Returns the file names written."""
    from gendl_jax import plots

    written = []
    cols = min(8, len(x))
    rows = min(4, len(x) // cols)
    k = rows * cols
    shape = x.shape[1:]
    pairs = np.stack([x[:k].reshape(rows, cols, *shape), reconstructions[:k].reshape(rows, cols, *shape)], 1)
    plots.image_grid(
        pairs.reshape(2 * k, *shape),
        out / "reconstructions.png",
        value_range=(0.0, 1.0),
        title="test images (odd rows) and reconstructions (even rows)",
        ncols=cols,
    )
    written.append("reconstructions.png")
    n_lines = min(8, len(z) // 2)
    if n_lines:
        steps = 8
        lines = interpolate_codes(jnp.asarray(z[0 : 2 * n_lines : 2]), jnp.asarray(z[1 : 2 * n_lines : 2]), steps)
        strip = np.asarray(decode_fn(lines.reshape(-1, latent_dim)))
        plots.image_grid(
            strip,
            out / "interpolations.png",
            value_range=(0.0, 1.0),
            title="decodes along straight lines between test codes",
            ncols=steps,
        )
        written.append("interpolations.png")
    if latent_dim == 2:
        if prior_manifold:
            axis = np.asarray(jax.scipy.special.ndtri(jnp.linspace(0.025, 0.975, 20)))
            xs, ys = axis, axis
        else:
            lo, hi = np.percentile(z, [2, 98], axis=0)
            xs, ys = np.linspace(lo[0], hi[0], 20), np.linspace(lo[1], hi[1], 20)
        grid = np.stack(np.meshgrid(xs, ys[::-1]), -1).reshape(-1, 2).astype(np.float32)
        plots.image_grid(
            np.asarray(decode_fn(jnp.asarray(grid))),
            out / "manifold.png",
            value_range=(0.0, 1.0),
            title="decodes of a 20 x 20 grid of the 2-D latent space",
        )
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
        summary["pictures"] = write_image_outputs(
            out, x, rec, z, jax.jit(lambda c: decode(state, c)), state.config.latent_dim, prior_manifold=False
        )
    return summary


TRAIN_DEFAULTS = {"data": "mnist", "batch_size": 100, "steps": 10000, "sample_every": 2000}
"""Run settings of the autoencoders and the VAE: MNIST, batch 100, 10,000 updates."""


def declare(name: str, config_cls: type) -> Objective:
    """The declaration of an autoencoder objective whose config is ``config_cls`` (this module's step, state and
    report; images in [0, 1]); each variant's module ends with ``OBJECTIVE = autoencoders.declare(...)``."""
    return Objective(
        name=name,
        family="autoencoder",
        config_cls=config_cls,
        init=init,
        step=step,
        value_range=(0.0, 1.0),
        train_defaults=TRAIN_DEFAULTS,
        report=report,
    )


OBJECTIVE = declare("ae", AutoencoderConfig)
