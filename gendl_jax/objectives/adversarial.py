"""The alternating generator / discriminator (critic) update shared by GAN, WGAN and WGAN-GP.

An adversarial objective is four small pure functions:

* ``discriminator_loss(scores_real, scores_fake) -> (loss, metrics)``: what D (or the critic) minimises;
* ``generator_loss(scores_fake, weights=None) -> loss``: what G minimises, a mean over the samples,
  weighted by ``weights`` (m,) (mean 1 when uniform; :func:`top_k_weights` for top-k training);
* optionally ``penalty(critic_fn, real, fake, eps[, labels=]) -> (value, metrics)``, added to the D loss
  with a weight (the WGAN-GP gradient penalty); ``critic_fn(x[, labels=])`` scores (n, *data_shape) -> (n,),
  and a class-conditional GAN passes the pairs' labels;
* optionally ``projection(params) -> params``, applied after every D update (WGAN weight clipping).

:func:`adversarial_step` turns them into one pure train step: ``k`` discriminator updates inside
``lax.scan`` (Algorithm 1 of the lecture; ``n_critic`` in Algorithm 2), then one generator update.
The real batch carries the ``k`` minibatches on its leading axis: ``batch["x"]`` has shape
``(k, m, *data_shape)``.

Class-conditional GANs (``num_classes > 0``; Mirza & Osindero 2014 for the generator, Miyato & Koyama 2018's
projection discriminator): the batch also carries the labels, ``batch["y"]`` of shape ``(k, m)``, ints in
``[0, num_classes)``. Each discriminator update compares its real minibatch with fakes generated for the same
labels, and the generator update uses the labels of the last minibatch, so fakes follow the data's class
frequencies; a gradient penalty scores its interpolates with the labels of the pair.

Hyper-parameters that may differ between models trained together (learning rates, the WGAN-GP
weight, the WGAN clipping bound) are float32 leaves of ``state.hparams``, initialised from the config
and read by the step from the state, so that ``vmap`` over a leading axis of states trains models
with different values in one compiled step (:mod:`gendl_jax.train.sweep`); :func:`with_hparams`
sets them. The config's values are only the initial ones.

Multi-device: pass ``axis_name`` when the step runs under ``pmap`` / ``shard_map``. Gradients and
BatchNorm statistics are then averaged over that axis, and the latents / interpolation weights are
drawn for the global batch and sliced per device, so that N devices reproduce one device on the
same global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gendl_jax import models
from gendl_jax.objectives import augment, penalties
from gendl_jax.objectives.base import Objective
from gendl_jax.objectives.distributed import global_draw, mean_over_devices, on_global_batch

Array = jax.Array
PyTree = Any

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
"""``NetworkConfig.precision`` -> the dtype :func:`apply_net` computes in (None: the parameters' own, float32)."""


MODELS = ("auto", "mlp", "dcgan", "resnet")
"""The values of ``NetworkConfig.model``."""


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture and optimiser settings shared by the adversarial objectives.

    ``model="auto"`` picks DCGAN networks for square images of a size they support (28, 32, 64)
    and MLPs otherwise (the toy mixtures, point clouds, 8x8 digits, images of other sizes).
    ``model="resnet"`` gives the SNGAN ResNets (:mod:`gendl_jax.models.sngan`; images of 28, 32, 48 or 64 px,
    widths from ``base_features``, latent 128 by default).
    """

    model: Literal["auto", "mlp", "dcgan", "resnet"] = "auto"
    latent_dim: int | None = None
    """Latent size; ``None`` gives max(2, d) for vector data of dimension d (2 on the toy mixtures, as in the PacGAN
    protocol) and 100 for images."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the MLP generator and discriminator."""
    g_activation: Literal["relu", "leaky_relu"] = "relu"
    d_activation: Literal["relu", "leaky_relu", "maxout"] = "relu"
    g_batch_norm: bool = False
    """BatchNorm in the MLP generator (the DCGAN generator always has it)."""
    layer_norm: bool = False
    """LayerNorm in the critic (WGAN-GP's suggestion in place of BatchNorm)."""
    spectral_norm: bool = False
    """Spectral normalisation of every weight of the discriminator / critic (Miyato et al. 2018,
    "Spectral normalization for generative adversarial networks"): each kernel is divided by its largest
    singular value, estimated by one power iteration per forward pass whose vector lives in the
    discriminator's ``batch_stats``. The discriminator then has no BatchNorm (as in Miyato et al.), so
    a GAN's D scores each sample on its own. The ``wgan-sn`` objective is a WGAN whose critic is kept
    Lipschitz this way instead of by clipping or a gradient penalty."""
    base_features: int = 64
    """Width of the DCGAN networks (channels of the widest discriminator block / 2^(n-1))."""
    g_extra_layers: int = 0
    """Stride-1 3x3 conv blocks in the DCGAN generator before its output layer (``n_extra_layers`` of the
    DCGAN / WGAN reference code)."""
    d_extra_layers: int = 0
    """Stride-1 3x3 conv blocks in the DCGAN discriminator / critic after its first convolution."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_steps: int = 0
    """If > 0, both learning rates decay linearly to 0 over this many train steps."""
    ema_decay: float = 0.0
    """If > 0, also keep an exponential moving average of the generator's weights (Yazici et al. 2019,
    "The unusual effectiveness of averaging in GAN training"); :func:`sample` and :func:`generate` then
    use it. After the ``t``-th generator update the average moves by ``1 - min(ema_decay, (1 + t) / (10 + t))``
    (the warm-up of TensorFlow's ``ExponentialMovingAverage``). The averaged generator's BatchNorm
    statistics are running averages of its own batch statistics on each step's latents."""
    top_k_fraction: float = 1.0
    """Top-k generator training (Sinha et al. 2020, "Top-k training of GANs: improving GAN performance by
    throwing away bad samples"): the generator's loss is the mean over the ``k`` fakes of its batch that the
    discriminator scores highest, the others get no gradient. ``k`` starts at the whole batch and falls by
    ``top_k_decay`` every ``top_k_period`` generator updates down to this fraction (``nu`` in the paper;
    1 turns top-k off). Under ``axis_name`` the ``k`` are taken over the global batch."""
    top_k_decay: float = 0.99
    """``gamma`` in Sinha et al.: the fraction kept after ``t`` updates is
    ``max(top_k_fraction, top_k_decay ** floor(t / top_k_period))``."""
    top_k_period: int = 1000
    """Generator updates per decay of the kept fraction (the paper decays once an epoch; an MNIST epoch is
    938 updates at batch 64)."""
    num_classes: int = 0
    """0: unconditional. ``C > 0``: a class-conditional GAN on labelled data (``batch["y"]``, see the module
    docstring): the generator reads ``[z, one_hot(y)]`` and the discriminator / critic is a projection
    discriminator, ``Dense(1)(h) + <V[y], h>`` on its last features ``h`` (Miyato & Koyama 2018, "cGANs with
    projection discriminator"). :func:`sample` draws the labels uniformly unless given."""
    r1_weight: float = 0.0
    """gamma of R1 (Mescheder et al. 2018): ``(gamma / 2) E ||grad_x D(x)||^2`` at the real minibatch, added to the
    discriminator's loss (:mod:`gendl_jax.objectives.penalties`); 0 turns it off."""
    r2_weight: float = 0.0
    """gamma of R2: the same penalty at the fakes; 0 turns it off."""
    dragan_weight: float = 0.0
    """lambda of DRAGAN (Kodali et al. 2017): ``lambda E (||grad D(x_hat)|| - 1)^2`` at perturbed real points
    ``x_hat = x + alpha * 0.5 * std(x) * u`` (:func:`gendl_jax.objectives.penalties.dragan_points`); 0 turns it off."""
    penalty_every: int = 1
    """Lazy regularisation (Karras et al. 2020): every penalty of the discriminator's loss (these three and the
    objective's own, e.g. WGAN-GP's) is computed only on every k-th discriminator update, and multiplied by k there."""
    augment: str = ""
    """DiffAugment (Zhao et al. 2020): comma-separated policies among ``translation``, ``cutout``, ``color``
    (:mod:`gendl_jax.objectives.augment`), applied with fresh draws to the real and the fake images before the
    discriminator in every discriminator and generator update; images only. ``""`` turns it off."""
    precision: Literal["float32", "bfloat16"] = "float32"
    """Compute dtype of the networks in the train step: ``"bfloat16"`` casts the parameters and inputs of both
    networks to bfloat16 inside :func:`apply_net` (convolutions and matrix products in bfloat16) and their outputs
    back to float32 before the losses; parameters, optimiser states and BatchNorm statistics stay float32.
    Sampling and :func:`discriminate` run in float32."""

    def __post_init__(self):
        # Accept any sequence of widths (e.g. a list from JSON) and store the hashable tuple.
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def inner_steps(self) -> int:
        return 1

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model (--model) must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("g_learning_rate", "d_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 or None, got {self.latent_dim}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")
        for name in ("g_extra_layers", "d_extra_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be >= 0, got {self.lr_decay_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the generator average off), got {self.ema_decay}")
        if self.inner_steps < 1:
            raise ValueError(
                f"the number of discriminator steps per generator step must be >= 1, got {self.inner_steps}"
            )
        if not 0.0 < self.top_k_fraction <= 1.0:
            raise ValueError(
                f"top_k_fraction must be in (0, 1] (1 turns top-k training off), got {self.top_k_fraction}"
            )
        if not 0.0 < self.top_k_decay <= 1.0:
            raise ValueError(f"top_k_decay must be in (0, 1], got {self.top_k_decay}")
        if self.top_k_period < 1:
            raise ValueError(f"top_k_period must be >= 1 generator update, got {self.top_k_period}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: unconditional), got {self.num_classes}")
        for name in ("r1_weight", "r2_weight", "dragan_weight"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{name} ({flag}) must be >= 0 (0 turns the penalty off), got {value}")
        if isinstance(self.penalty_every, bool) or self.penalty_every < 1:
            raise ValueError(
                f"penalty_every (--penalty-every) must be an int >= 1 (1: every update), got {self.penalty_every}"
            )
        augment.parse_policy(self.augment)
        if self.precision not in COMPUTE_DTYPES:
            raise ValueError(
                f"precision (--precision) must be one of {', '.join(COMPUTE_DTYPES)}, got {self.precision!r}"
            )


@struct.dataclass
class NetState:
    """One network's trainable parameters, BatchNorm statistics (``{}`` if none) and optimiser state."""

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree


@struct.dataclass
class AdversarialState:
    """Train state of a GAN-like objective; a pytree whose static part is the config and data shape.

    ``hparams`` maps names to float32 scalars (leading axes when states are stacked): always
    ``g_learning_rate`` and ``d_learning_rate``; ``gp_weight`` for WGAN-GP, ``clip`` for WGAN.
    ``generator_ema`` is ``{"params": ..., "batch_stats": ...}``, the averaged generator, when
    ``config.ema_decay > 0``, else ``{}``.
    """

    step: Array
    generator: NetState
    discriminator: NetState
    key: Array
    hparams: dict[str, Array]
    generator_ema: dict[str, PyTree]
    config: Any = struct.field(pytree_node=False)
    data_shape: tuple[int, ...] = struct.field(pytree_node=False)


def latent_dim(config: NetworkConfig, data_shape: tuple[int, ...]) -> int:
    """``config.latent_dim``, or by default: for vector data (d,) the larger of 2 and d (2 on the 2-D toy mixtures,
    as in the PacGAN protocol; a d-dimensional point cloud needs at least d), 100 for images (128, the paper's,
    for the SNGAN ResNets)."""
    if config.latent_dim is not None:
        return config.latent_dim
    if config.model == "resnet" and len(data_shape) == 3:
        return models.SNGAN_LATENT_DIM
    return max(2, int(data_shape[0])) if len(data_shape) == 1 else 100


def _architecture(config: NetworkConfig, data_shape: tuple[int, ...]) -> str:
    if config.model == "resnet":
        if not (len(data_shape) == 3 and data_shape[0] == data_shape[1] in models.SNGAN_IMAGE_SIZES):
            *first, last = (str(s) for s in models.SNGAN_IMAGE_SIZES)
            sizes = f"{', '.join(first)} or {last}"
            if len(data_shape) == 3:
                got = f"{data_shape[0]}x{data_shape[1]} images (for a folder of images pass --image-size {sizes})"
            else:
                got = f"data of shape {tuple(data_shape)} (points, not images)"
            raise ValueError(f"--model resnet (the SNGAN ResNets) supports square images of side {sizes}, got {got}")
        return "resnet"
    is_dcgan_image = len(data_shape) == 3 and data_shape[0] == data_shape[1] in models.SUPPORTED_IMAGE_SIZES
    if config.model == "dcgan" and len(data_shape) == 3 and not is_dcgan_image:
        *first, last = (str(s) for s in models.SUPPORTED_IMAGE_SIZES)
        sizes = f"{', '.join(first)} or {last}"
        raise ValueError(
            f"model='dcgan' supports square images of side {sizes}, got {data_shape[0]}x{data_shape[1]} "
            f"(for a folder of images pass --image-size {sizes}; model='auto' uses MLPs instead)"
        )
    if config.model != "auto":
        return config.model
    return "dcgan" if is_dcgan_image else "mlp"


def build_networks(
    config: NetworkConfig, data_shape: tuple[int, ...], *, batch_norm_in_d: bool, bn_axis_name: str | None = None
) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) modules the config describes for data of ``data_shape``.

    The SNGAN ResNet discriminator (``model="resnet"``) never has BatchNorm, whatever ``batch_norm_in_d``."""
    architecture = _architecture(config, data_shape)
    if architecture == "mlp":
        if config.g_extra_layers or config.d_extra_layers:
            raise ValueError(
                "g_extra_layers / d_extra_layers are DCGAN options; these networks are MLPs "
                f"(model={config.model!r}, data shape {tuple(data_shape)})"
            )
        output = "linear" if len(data_shape) == 1 else "tanh"
        gen = models.MLPGenerator(
            out_shape=tuple(data_shape),
            hidden=config.hidden,
            activation=config.g_activation,
            batch_norm=config.g_batch_norm,
            output=output,
            bn_axis_name=bn_axis_name,
            num_classes=config.num_classes,
        )
        disc = models.MLPDiscriminator(
            hidden=config.hidden,
            activation=config.d_activation,
            layer_norm=config.layer_norm,
            spectral_norm=config.spectral_norm,
            num_classes=config.num_classes,
        )
        return gen, disc
    if architecture == "resnet":
        for name in ("g_extra_layers", "d_extra_layers", "layer_norm"):
            if getattr(config, name):
                raise ValueError(f"{name} is a DCGAN / MLP option; --model resnet (the SNGAN ResNets) has none")
        gen = models.SNGANGenerator(
            image_shape=tuple(data_shape),
            base_features=config.base_features,
            bn_axis_name=bn_axis_name,
            num_classes=config.num_classes,
        )
        disc = models.SNGANDiscriminator(
            base_features=config.base_features, spectral_norm=config.spectral_norm, num_classes=config.num_classes
        )
        return gen, disc
    if len(data_shape) != 3:
        raise ValueError(f"model='dcgan' needs image data of shape (H, W, C), got data shape {data_shape}")
    gen = models.DCGANGenerator(
        image_shape=tuple(data_shape),
        base_features=config.base_features,
        extra_layers=config.g_extra_layers,
        bn_axis_name=bn_axis_name,
        num_classes=config.num_classes,
    )
    disc = models.DCGANDiscriminator(
        base_features=config.base_features,
        extra_layers=config.d_extra_layers,
        batch_norm=batch_norm_in_d and not config.spectral_norm,
        layer_norm=config.layer_norm,
        bn_axis_name=bn_axis_name,
        spectral_norm=config.spectral_norm,
        num_classes=config.num_classes,
    )
    return gen, disc


def _schedule(decay_updates: int):
    """The learning-rate factor: 1, or a linear decay from 1 to 0 over ``decay_updates`` updates."""
    return optax.linear_schedule(1.0, 0.0, decay_updates) if decay_updates else 1.0


def make_optimizers(config: NetworkConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator, discriminator) optimisers with learning rate 1; rebuilt from the (hashable) config
    inside each trace.

    The step multiplies their updates by the state's learning rates (``state.hparams``), which gives
    ``optax.adam(lr * schedule)`` / ``optax.rmsprop(lr * schedule)`` up to float32 rounding while
    letting stacked states carry different rates. ``lr_decay_steps`` counts train steps: the
    discriminator makes ``inner_steps`` updates per train step, so its schedule is that many times
    longer and both reach 0 together.
    """
    g_decay = config.lr_decay_steps
    d_decay = config.lr_decay_steps * config.inner_steps
    if config.optimizer == "adam":
        make = lambda n: optax.adam(_schedule(n), b1=config.beta1, b2=config.beta2)
    elif config.optimizer == "rmsprop":
        # PyTorch's RMSprop (used by Arjovsky et al.'s reference code): alpha 0.99, eps 1e-8 outside the sqrt.
        make = lambda n: optax.rmsprop(_schedule(n), decay=0.99, eps=1e-8)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {config.optimizer!r}")
    return make(g_decay), make(d_decay)


def _scaled_update(tx: optax.GradientTransformation, grads: PyTree, net: NetState, learning_rate: Array):
    """(new params, new optimiser state) of one update of ``tx`` (learning rate 1) scaled by ``learning_rate``."""
    updates, opt_state = tx.update(grads, net.opt_state, net.params)
    updates = jax.tree_util.tree_map(lambda u: (learning_rate * u).astype(u.dtype), updates)
    return optax.apply_updates(net.params, updates), opt_state


# name -> (must be > 0 (else >= 0)); the hyper-parameters a state may carry.
HPARAM_POSITIVE = {"g_learning_rate": True, "d_learning_rate": True, "gp_weight": False, "clip": True}


def initial_hparams(config: NetworkConfig, **extra: float) -> dict[str, Array]:
    """``state.hparams`` at init: the config's learning rates plus ``extra``, as float32 scalars."""
    values = {"g_learning_rate": config.g_learning_rate, "d_learning_rate": config.d_learning_rate, **extra}
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def hparams_of(state: AdversarialState) -> dict[str, Array]:
    """The hyper-parameters kept as state leaves (learning rates, and ``gp_weight`` or ``clip``)."""
    return dict(state.hparams)


def num_classes_of(config: NetworkConfig) -> int:
    """``config.num_classes``: 0 for an unconditional GAN."""
    return config.num_classes


def with_hparams(state: AdversarialState, **values) -> AdversarialState:
    """``state`` with some of its ``hparams`` leaves replaced (e.g. ``d_learning_rate=1e-3``).

    Each value is a number or an array of the leaf's shape (for stacked states, one value per
    model: shape ``(K,)``); numbers are broadcast. Values are checked on the host: finite, and > 0
    (learning rates, ``clip``) or >= 0 (``gp_weight``). Unknown names raise a ``ValueError`` listing
    the state's names.
    """
    unknown = sorted(set(values) - set(state.hparams))
    if unknown:
        raise ValueError(f"unknown hyper-parameters {unknown} for this state; valid: {sorted(state.hparams)}")
    new = dict(state.hparams)
    for name, value in values.items():
        try:
            host = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"hyper-parameter {name} must be a number or an array of numbers, got {value!r}") from None
        if not np.all(np.isfinite(host)):
            raise ValueError(f"hyper-parameter {name} must be finite, got {value!r}")
        positive = HPARAM_POSITIVE.get(name, True)
        if np.any(host <= 0) if positive else np.any(host < 0):
            raise ValueError(f"hyper-parameter {name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
        shape = np.shape(state.hparams[name])
        if host.shape not in ((), shape):
            raise ValueError(
                f"hyper-parameter {name} must be a number or an array of shape {shape}, got shape {host.shape}"
            )
        new[name] = jnp.broadcast_to(jnp.asarray(host, jnp.float32), shape)
    return state.replace(hparams=new)


def _cast_floats(tree: PyTree, dtype) -> PyTree:
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def apply_net(
    module: nn.Module,
    params: PyTree,
    batch_stats: PyTree,
    x: Array,
    *,
    train: bool,
    labels: Array | None = None,
    dtype: Any = None,
) -> tuple[Array, PyTree]:
    """``module(x)`` (``module(x, labels=labels)`` for a class-conditional network) with explicit BatchNorm
    statistics; returns (output, updated statistics).

    ``dtype`` (e.g. ``jnp.bfloat16``; None: as given): the compute dtype. The floating parameters and ``x`` are cast
    to it (so the network's convolutions and matrix products run in it), the output (or each floating array of a
    tuple of outputs) is cast back to ``x``'s dtype
    and the BatchNorm statistics keep theirs; gradients reach the (float32) parameters and ``x`` through the casts."""
    out_dtype = x.dtype
    if dtype is not None:
        params, x = _cast_floats(params, dtype), x.astype(dtype)
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    kwargs = {} if labels is None else {"labels": labels}
    if train and batch_stats:
        out, mutated = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
        new_stats = mutated["batch_stats"]
        if dtype is not None:
            new_stats = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), new_stats, batch_stats)
            out = _cast_floats(out, out_dtype)
        return out, new_stats
    out = module.apply(variables, x, train=train, **kwargs)
    return (out if dtype is None else _cast_floats(out, out_dtype)), batch_stats


def init_adversarial(
    key: Array,
    config: NetworkConfig,
    example_batch: dict,
    *,
    batch_norm_in_d: bool,
    extra_hparams: dict[str, float] | Callable[[tuple[int, ...]], dict[str, float]] | None = None,
) -> AdversarialState:
    """Initial state for data shaped like ``example_batch["x"]``: ``(k, m, *data_shape)`` or ``(m, *data_shape)``.

    ``extra_hparams`` (or a function of the data shape giving them) adds objective-specific entries
    to ``state.hparams`` next to the two learning rates.
    """
    config.validate()
    x = jnp.asarray(example_batch["x"])
    if x.ndim < 2:
        raise ValueError(f"example_batch['x'] must have shape (m, *data_shape) or (k, m, *data_shape), got {x.shape}")
    # A (k, m, ...) batch for vector data has ndim 3; images (m, H, W, C) have ndim 4 and (k, m, H, W, C) ndim 5.
    data_shape = tuple(x.shape[2:]) if x.ndim in (3, 5) else tuple(x.shape[1:])
    if augment.parse_policy(config.augment):
        augment.check_images(data_shape)
    gen, disc = build_networks(config, data_shape, batch_norm_in_d=batch_norm_in_d)
    g_tx, d_tx = make_optimizers(config)
    key, g_key, d_key = jax.random.split(key, 3)
    z = jnp.zeros((2, latent_dim(config, data_shape)), jnp.float32)
    kwargs = {"labels": jnp.zeros((2,), jnp.int32)} if config.num_classes else {}
    g_vars = gen.init(g_key, z, train=False, **kwargs)
    d_vars = disc.init(d_key, jnp.zeros((2, *data_shape), jnp.float32), train=False, **kwargs)

    def net_state(variables, tx):
        params = variables["params"]
        return NetState(params=params, batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

    return AdversarialState(
        step=jnp.zeros((), jnp.int32),
        generator=net_state(g_vars, g_tx),
        discriminator=net_state(d_vars, d_tx),
        key=key,
        hparams=initial_hparams(
            config, **(extra_hparams(data_shape) if callable(extra_hparams) else extra_hparams or {})
        ),
        # Copies: a donating step must not get the generator's buffers twice.
        generator_ema=(
            jax.tree_util.tree_map(jnp.copy, {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})})
            if config.ema_decay > 0
            else {}
        ),
        config=config,
        data_shape=data_shape,
    )


def checked_real_batches(state: AdversarialState, batch: dict) -> Array:
    """``batch["x"]``, checked to be (inner_steps, m, *data_shape) for ``state``."""
    real_batches = batch["x"]
    k = state.config.inner_steps
    if real_batches.ndim != len(state.data_shape) + 2 or real_batches.shape[0] != k:
        raise ValueError(
            f"batch['x'] must have shape (inner_steps={k}, m, *{state.data_shape}), got {real_batches.shape}"
        )
    if tuple(real_batches.shape[2:]) != state.data_shape:
        raise ValueError(
            f"batch['x'] examples have shape {real_batches.shape[2:]}, the state expects {state.data_shape}"
        )
    return real_batches


def adversarial_step(
    state: AdversarialState,
    batch: dict,
    *,
    discriminator_loss: Callable[[Array, Array], tuple[Array, dict]],
    generator_loss: Callable[[Array], Array],
    batch_norm_in_d: bool,
    penalty: Callable[..., tuple[Array, dict]] | Sequence[tuple[Callable[..., tuple[Array, dict]], Any]] | None = None,
    penalty_weight: Array | float = 0.0,
    projection: Callable[[PyTree], PyTree] | None = None,
    axis_name: str | None = None,
) -> tuple[AdversarialState, dict]:
    """One generator update preceded by ``k`` discriminator updates; see the module docstring.

    The learning rates are ``state.hparams["g_learning_rate"]`` and ``["d_learning_rate"]``;
    objectives pass ``penalty_weight`` and ``projection`` built from their own ``state.hparams``.
    ``penalty`` is one penalty (weighted by ``penalty_weight``) or a sequence of ``(penalty, weight)`` pairs; the
    config's own penalties (``r1_weight``, ``r2_weight``, ``dragan_weight``: :func:`penalties.configured`) follow
    them, and ``config.penalty_every`` makes them all lazy (:func:`penalties.lazy`).
    Metrics: the discriminator's (means over the ``k`` updates), ``d_grad_norm`` (global norm of the
    discriminator's loss gradient, device-averaged, mean over the ``k`` updates), ``g_loss`` and
    ``g_grad_norm`` (global norm of the generator's gradient), and each penalty's (0 on the updates a lazy
    penalty skips).

    Random stream (fixed, so that runs are reproducible and testable): ``state.key`` splits into
    (next key, discriminator key, generator key); the discriminator key splits into one key per
    update, each into (latent key, penalty key). Latents are N(0, I), interpolation weights U(0, 1).
    Options draw from keys folded in, which leaves these draws unchanged: DiffAugment from
    ``fold_in(update key, 1)`` (reals) and ``fold_in(update key, 2)`` (fakes) and ``fold_in(generator key, 1)``;
    DRAGAN from ``fold_in(update key, 3)``.
    """
    config = state.config
    real_batches = checked_real_batches(state, batch)
    k = config.inner_steps
    m = real_batches.shape[1]
    labels = batch_labels(batch, config)
    policy = augment.parse_policy(config.augment)
    if policy:
        augment.check_images(state.data_shape)
    dtype = COMPUTE_DTYPES[config.precision]
    gen, disc = build_networks(config, state.data_shape, batch_norm_in_d=batch_norm_in_d, bn_axis_name=axis_name)
    g_tx, d_tx = make_optimizers(config)
    z_dim = latent_dim(config, state.data_shape)
    key, d_key, g_key = jax.random.split(state.key, 3)
    g_net = state.generator
    if penalty is None:
        objective_penalties = []
    elif callable(penalty):
        objective_penalties = [(penalty, penalty_weight)]
    else:
        objective_penalties = list(penalty)

    augmented = augmenter(policy, state.data_shape, axis_name)

    def d_update(d_net: NetState, inputs):
        real, y, step_key, update = inputs
        z_key, p_key = jax.random.split(step_key)
        z = global_draw(jax.random.normal, z_key, (m, z_dim), axis_name)
        fake, _ = apply_net(gen, g_net.params, g_net.batch_stats, z, train=True, labels=y, dtype=dtype)
        fake = jax.lax.stop_gradient(fake)
        real = augmented(real, jax.random.fold_in(step_key, 1))
        fake = augmented(fake, jax.random.fold_in(step_key, 2))
        terms = objective_penalties + penalties.configured(config, step_key, axis_name)

        def loss_fn(params):
            s_real, stats = apply_net(disc, params, d_net.batch_stats, real, train=True, labels=y, dtype=dtype)
            s_fake, stats = apply_net(disc, params, stats, fake, train=True, labels=y, dtype=dtype)
            loss, metrics = discriminator_loss(s_real, s_fake)
            if terms:
                critic = lambda x, labels=None: apply_net(
                    disc, params, stats, x, train=False, labels=labels, dtype=dtype
                )[0]
                value, p_metrics = penalty_value(
                    config, terms, critic, real, fake, p_key, state.step * k + update, y, axis_name
                )
                loss = loss + value
                metrics = {**metrics, **p_metrics}
            return loss, (metrics, stats)

        (loss, (metrics, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_net.params)
        grads, stats = mean_over_devices((grads, stats), axis_name)
        params, opt_state = _scaled_update(d_tx, grads, d_net, state.hparams["d_learning_rate"])
        if projection is not None:
            params = projection(params)
        metrics = {"d_loss": loss, **metrics, "d_grad_norm": optax.tree.norm(grads)}
        return NetState(params, stats, opt_state), mean_over_devices(metrics, axis_name)

    d_keys = jax.random.split(d_key, k)
    if k == 1:
        d_net, d_metrics = d_update(
            state.discriminator, (real_batches[0], None if labels is None else labels[0], d_keys[0], 0)
        )
    else:
        # Unrolled: on XLA:CPU a convolution's gradient inside a scan's while loop ran 30x slower
        # (DCGAN critic, batch 64: 1.1 s vs 33 ms per update; benchmarks/train_steps.py).
        d_net, d_metrics = jax.lax.scan(
            d_update, state.discriminator, (real_batches, labels, d_keys, jnp.arange(k)), unroll=True
        )
        d_metrics = jax.tree_util.tree_map(jnp.mean, d_metrics)

    z = global_draw(jax.random.normal, g_key, (m, z_dim), axis_name)
    g_labels = None if labels is None else labels[-1]
    top_k = config.top_k_fraction < 1.0
    kept = top_k_kept_fraction(state.step, config) if top_k else None

    def g_loss_fn(params):
        fake, stats = apply_net(gen, params, g_net.batch_stats, z, train=True, labels=g_labels, dtype=dtype)
        fake = augmented(fake, jax.random.fold_in(g_key, 1))
        s_fake, _ = apply_net(disc, d_net.params, d_net.batch_stats, fake, train=True, labels=g_labels, dtype=dtype)
        if not top_k:
            return generator_loss(s_fake), stats
        weights = on_global_batch(lambda s: top_k_weights(s, kept), jax.lax.stop_gradient(s_fake), axis_name)
        return generator_loss(s_fake, weights), stats

    (g_loss, g_stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_net.params)
    g_grads, g_stats, g_loss = mean_over_devices((g_grads, g_stats, g_loss), axis_name)
    g_params, g_opt = _scaled_update(g_tx, g_grads, g_net, state.hparams["g_learning_rate"])

    metrics = {**d_metrics, "g_loss": g_loss, "g_grad_norm": optax.tree.norm(g_grads)}
    if top_k:
        metrics["g_top_k_fraction"] = kept
    generator_ema = state.generator_ema
    if config.ema_decay > 0:
        generator_ema = update_generator_ema(
            generator_ema,
            g_params,
            state.step + 1,
            config.ema_decay,
            lambda ema: apply_net(gen, ema["params"], ema["batch_stats"], z, train=True, labels=g_labels, dtype=dtype)[
                1
            ],
        )
    new_state = state.replace(
        step=state.step + 1,
        generator=NetState(g_params, g_stats, g_opt),
        discriminator=d_net,
        key=key,
        generator_ema=generator_ema,
    )
    return new_state, metrics


def penalty_value(
    config: NetworkConfig,
    terms: Sequence[tuple[Callable[..., tuple[Array, dict]], Any]],
    critic: Callable[..., Array],
    real: Array,
    fake: Array,
    key: Array,
    update: Array | int,
    labels: Array | None = None,
    axis_name: str | None = None,
) -> tuple[Array, dict]:
    """``sum_i w_i P_i(critic, real, fake, eps)`` over the ``(penalty, weight)`` ``terms`` of one discriminator update
    (:func:`penalties.weighted_sum`), lazy by ``config.penalty_every`` (:func:`penalties.lazy`: computed, times k, on
    the run's discriminator updates ``update`` with ``update % k == 0``, else 0); ``eps`` (m,) are U(0, 1) draws
    from ``key`` for the global batch. ``labels`` (m,) go to a conditional critic. Returns (value, metrics)."""
    eps = global_draw(jax.random.uniform, key, (real.shape[0],), axis_name)
    kw = {} if labels is None else {"labels": labels}
    return penalties.lazy(
        config.penalty_every, update, lambda: penalties.weighted_sum(terms, critic, real, fake, eps, **kw)
    )


def augmenter(policy, data_shape: tuple[int, ...], axis_name: str | None = None) -> Callable[[Array, Array], Array]:
    """``augmented(x, key)``: DiffAugment's ``policy`` (:func:`augment.parse_policy`) applied to the (m, *data_shape)
    images ``x`` with draws from ``key`` (each device's rows of the global batch's draws under ``axis_name``); the
    identity for an empty policy. The step functions use it on every image the discriminator sees."""

    def augmented(x: Array, key: Array) -> Array:
        if not policy:
            return x
        return augment.apply(x, _global_augment_draws(key, x.shape[0], data_shape, policy, axis_name), policy)

    return augmented


def _global_augment_draws(key: Array, m: int, data_shape: tuple[int, ...], policy, axis_name: str | None) -> dict:
    """:func:`augment.draw` for this device's ``m`` rows of the global batch (identical to one device's draws)."""
    if axis_name is None:
        return augment.draw(key, m, data_shape, policy)
    n_dev = jax.lax.psum(1, axis_name)
    full = augment.draw(key, m * n_dev, data_shape, policy)
    start = jax.lax.axis_index(axis_name) * m
    return jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, m), full)


def batch_labels(batch: dict, config: NetworkConfig) -> Array | None:
    """``batch["y"]`` as (k, m) int32 for a class-conditional config (shape and dtype checked), else None.

    An unconditional step ignores ``batch["y"]`` (the fit loop's batches of labelled data carry it)."""
    if not config.num_classes:
        return None
    x = batch["x"]
    if "y" not in batch:
        raise ValueError(
            f"a class-conditional GAN (num_classes={config.num_classes}) needs batch['y'], the labels "
            f"of batch['x'], of shape {tuple(x.shape[:2])}; the batch has {sorted(batch)}"
        )
    y = batch["y"]
    if tuple(y.shape) != tuple(x.shape[:2]) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(
            f"batch['y'] must be ints of shape {tuple(x.shape[:2])} (one label per example of "
            f"batch['x']), got shape {tuple(y.shape)} and dtype {y.dtype}"
        )
    return y.astype(jnp.int32)


def weighted_mean(values: Array, weights: Array | None) -> Array:
    """``mean(weights * values)`` over a batch, (m,), (m,) -> scalar; ``weights=None`` is the plain mean."""
    return jnp.mean(values) if weights is None else jnp.mean(weights * values)


def top_k_kept_fraction(updates: Array, config: NetworkConfig) -> Array:
    """Share of the generator's batch kept by top-k training after ``updates`` generator updates:
    ``max(top_k_fraction, top_k_decay ** floor(updates / top_k_period))``, float32 scalar."""
    decays = jnp.floor_divide(jnp.asarray(updates, jnp.int32), config.top_k_period).astype(jnp.float32)
    return jnp.maximum(jnp.float32(config.top_k_fraction), jnp.float32(config.top_k_decay) ** decays)


def top_k_weights(scores: Array, fraction: Array | float) -> Array:
    """Weights of top-k training: (m,) scores -> (m,) weights, ``m / k`` on the ``k`` highest scores and 0
    elsewhere, so that :func:`weighted_mean` is the mean over those ``k``.

    ``k = max(1, floor(fraction * m))``, the floor taken with a 1e-6 allowance for float32 rounding of the
    product; ties go to the earlier sample. ``fraction``, in (0, 1], may be traced (a schedule).
    """
    m = scores.shape[0]
    k = jnp.maximum(1, jnp.floor(jnp.asarray(fraction, jnp.float32) * m + 1e-6).astype(jnp.int32))
    rank = jnp.argsort(jnp.argsort(-scores, stable=True), stable=True)
    return jnp.where(rank < k, m / k.astype(scores.dtype), jnp.zeros((), scores.dtype)).astype(scores.dtype)


def ema_rate(updates: Array, decay: float) -> Array:
    """The averaging decay after ``updates`` generator updates: ``min(decay, (1 + t) / (10 + t))``."""
    t = jnp.asarray(updates, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def update_generator_ema(
    ema: dict, params: PyTree, updates: Array, decay: float, batch_stats_of: Callable[[dict], PyTree]
) -> dict:
    """``{"params", "batch_stats"}`` of the averaged generator after the ``updates``-th update.

    ``params`` are the generator's new weights; ``batch_stats_of(averaged)`` runs the averaged generator
    in train mode on the step's latents and returns its updated BatchNorm running averages.
    """
    rate = ema_rate(updates, decay)
    averaged = jax.tree_util.tree_map(lambda e, p: (rate * e + (1.0 - rate) * p).astype(e.dtype), ema["params"], params)
    new = {"params": averaged, "batch_stats": ema["batch_stats"]}
    if ema["batch_stats"]:
        new["batch_stats"] = batch_stats_of(new)
    return new


def generate(state: AdversarialState, z: Array, *, ema: bool = True, labels: Array | None = None) -> Array:
    """Samples ``G(z)`` in inference mode (BatchNorm running averages): (n, latent_dim) -> (n, *data_shape).

    Uses the averaged generator when the state keeps one (``config.ema_decay > 0``) and ``ema`` is true,
    else the trained weights. A class-conditional generator needs ``labels``, (n,) ints in [0, num_classes).
    """
    gen, _ = build_networks(state.config, state.data_shape, batch_norm_in_d=False)
    if ema and state.generator_ema:
        g = state.generator_ema
        return apply_net(gen, g["params"], g["batch_stats"], z, train=False, labels=labels)[0]
    return apply_net(gen, state.generator.params, state.generator.batch_stats, z, train=False, labels=labels)[0]


def sample_labels(state: AdversarialState, key: Array, n: int) -> Array | None:
    """The labels :func:`sample` draws for ``key``: (n,) int32, uniform over the classes (from
    ``fold_in(key, 1)``, so the latents are those of an unconditional model); None when unconditional."""
    if not state.config.num_classes:
        return None
    return jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, state.config.num_classes, jnp.int32)


def sample(state: AdversarialState, key: Array, n: int, *, ema: bool = True, labels: Array | None = None) -> Array:
    """``n`` samples of the generator from fresh latents drawn with ``key``: (n, *data_shape).

    ``ema`` as in :func:`generate`. A class-conditional generator draws the sample of each label in ``labels``
    ((n,) ints), by default labels uniform over the classes (:func:`sample_labels`)."""
    z = jax.random.normal(key, (n, latent_dim(state.config, state.data_shape)))
    if labels is None:
        labels = sample_labels(state, key, n)
    return generate(state, z, ema=ema, labels=labels)


def discriminate(
    state: AdversarialState, x: Array, *, batch_statistics: bool = False, labels: Array | None = None
) -> Array:
    """Discriminator logits / critic scores: (n, *data_shape) -> (n,); a projection discriminator (a
    class-conditional GAN) scores each sample with its label in ``labels``, (n,) ints.

    By default in inference mode (BatchNorm's running averages). With ``batch_statistics=True``, a
    discriminator with BatchNorm normalises with the statistics of ``x`` itself, as in training, where
    it only ever saw all-real or all-fake minibatches (its running averages blend the two); ``x``
    should then be a large batch of one kind. Networks without BatchNorm ignore the flag, except that a
    spectrally normalised one then runs its power iteration one step further (not stored), as in training.
    """
    _, disc = build_networks(state.config, state.data_shape, batch_norm_in_d=bool(state.discriminator.batch_stats))
    d = state.discriminator
    return apply_net(disc, d.params, d.batch_stats, x, train=batch_statistics, labels=labels)[0]


def discriminator_features(
    state: AdversarialState, x: Array, *, batch_statistics: bool = False, labels: Array | None = None
) -> Array:
    """The discriminator's last hidden layer, the input of its ``logit`` layer: (n, *data_shape) -> (n, F).

    F is the flattened last feature map of a DCGAN discriminator (e.g. 7 x 7 x 2 ``base_features`` for 28 x 28
    images) or the last hidden width of an MLP one. Radford et al. (2016) judge a GAN's representation by a linear
    classifier on such features (:func:`gendl_jax.learned_metrics.linear_probe`). ``batch_statistics`` and ``labels`` as in
    :func:`discriminate` (the projection term of a class-conditional discriminator comes after these features).
    """
    _, disc = build_networks(state.config, state.data_shape, batch_norm_in_d=bool(state.discriminator.batch_stats))
    d = state.discriminator
    variables = {"params": d.params}
    if d.batch_stats:
        variables["batch_stats"] = d.batch_stats
    kwargs = {} if labels is None else {"labels": labels}
    _, mutated = disc.apply(
        variables,
        x,
        train=batch_statistics,
        mutable=["intermediates", "batch_stats"] if batch_statistics else ["intermediates"],
        **kwargs,
    )
    return mutated["intermediates"]["features"][0]


def declare(name: str, config_cls: type, init: Callable, step: Callable, **declared: Any) -> Objective:
    """The declaration of an adversarial objective: what every GAN and WGAN of this module's state shares
    (samples ``G(z)`` of a Gaussian latent, class conditioning by ``config.num_classes``, hyper-parameters in
    ``state.hparams``), plus what ``declared`` adds (e.g. ``density_ratio_of`` for a cross-entropy
    discriminator, toy defaults). Each objective module ends with ``OBJECTIVE = adversarial.declare(...)``."""
    return Objective(
        name=name,
        family="adversarial",
        config_cls=config_cls,
        init=init,
        step=step,
        sample=sample,
        num_classes_of=num_classes_of,
        latent_sampling=True,
        hparams=hparams_of,
        with_hparams=with_hparams,
        **declared,
    )
