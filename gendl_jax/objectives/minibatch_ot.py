"""A generator trained on the primal Wasserstein distance between minibatches: lecture eq. (11),
``min_theta W(P_r, P_theta)``, with no critic.

Each step draws ``m`` latents, computes ``x_fake = G(z)`` and minimises a transport distance between the real
minibatch and the fakes, computed by :mod:`gendl_jax.transport` (the OT itself is not written here):

* ``distance="exact"``: the minibatch transport cost ``W_p^p = min_sigma (1/m) sum_i ||x_fake_i - x_sigma(i)||^p``
  (the linear program; for two uniform sets of ``m`` points an assignment), ``transport.wasserstein(method="exact")``.
  Its gradient holds the optimal plan fixed (envelope theorem): for ``p = 2`` each fake is pulled towards the real
  point it is matched with, ``dL/dx_fake_i = (2 / m) (x_fake_i - x_sigma(i))``. This is the minibatch OT loss of
  Genevay et al. 2018 (at epsilon = 0) and Fatras et al. 2020 ("Learning with minibatch Wasserstein").
* ``distance="sinkhorn"``: the entropic transport cost ``<P_eps, C>`` (ott-jax Sinkhorn, absolute ``epsilon``,
  ``transport.wasserstein(method="sinkhorn")``); biased: it is not 0 between a set and itself, and pulls the fakes
  together (Genevay et al. 2018).
* ``distance="sinkhorn-divergence"``: the debiased Sinkhorn divergence
  ``S_eps = OT_eps(fake, real) - (OT_eps(fake, fake) + OT_eps(real, real)) / 2`` with
  ``OT_eps = <P, C> + eps KL(P || a b^T)`` (``transport.sinkhorn_divergence``): between W_p^p (eps -> 0) and an MMD
  (eps -> inf) (Genevay et al. 2018; Feydy et al. 2019).
* ``distance="sliced"``: the sliced ``SW_p^p``, the mean over ``n_projections`` random directions of the 1-D
  ``W_p^p`` of the projections (sorting), fresh directions every step (Deshpande et al. 2018,
  ``transport.wasserstein(method="sliced")``).

**The loss is the p-th power** (``W_p^p``, ``S_eps`` on the cost ``||x - y||^p``, ``SW_p^p``), not ``W_p``: (1) the
four losses are then in the same units, the cost ``||x - y||^p`` summed against a plan (the Sinkhorn divergence has
no p-th root); (2) for ``p = 2`` its gradient is the displacement to the matched points, whatever the distance,
whereas ``grad W_2 = grad W_2^2 / (2 W_2)`` grows as ``1 / W_2`` when the fakes approach the data (and is 0/0 at
W = 0), which couples the step size to the distance left; (3) the expectation over minibatches of ``W_p^p`` is the
minibatch OT loss whose stochastic gradients the step follows without bias (the mean of ``W_p`` over minibatches is
not ``W_p`` of anything simpler). For ``p = 1``, the lecture's eq. (11), the two coincide.

A minibatch is not the distribution: ``E W_p^p(real batch, fake batch) > 0`` even when ``P_theta = P_r`` (two samples
of the same law are not equal), and its minimiser over ``theta`` is not exactly ``P_r`` (Fatras et al. 2020; Bellemare
et al. 2017 on the biased gradients of sample Wasserstein distances); larger batches shrink the gap.

Random stream: ``state.key`` splits into (next key, latent key, distance key); the latents are N(0, I) of shape
``(m, latent_dim)`` from the latent key, the sliced directions come from the distance key. The networks, optimiser,
learning-rate decay, moving average (``ema_decay``) and compute precision are those of the GANs
(:class:`gendl_jax.objectives.adversarial.NetworkConfig`, the generator's half); the discriminator's options are
refused (there is none). Samples: :func:`gendl_jax.objectives.adversarial.sample` (``G(z)``, the average when kept).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gendl_jax import transport
from gendl_jax.objectives import adversarial
from gendl_jax.objectives.base import Objective

Array = jax.Array
PyTree = Any

DISTANCES = ("exact", "sinkhorn", "sinkhorn-divergence", "sliced")
"""The values of ``MinibatchOTConfig.distance``."""
SINKHORN_DISTANCES = ("sinkhorn", "sinkhorn-divergence")

DISCRIMINATOR_FIELDS = (
    "d_learning_rate",
    "d_activation",
    "layer_norm",
    "spectral_norm",
    "d_extra_layers",
    "top_k_fraction",
    "top_k_decay",
    "top_k_period",
    "r1_weight",
    "r2_weight",
    "dragan_weight",
    "penalty_every",
    "augment",
)
"""Fields of :class:`~gendl_jax.objectives.adversarial.NetworkConfig` that act on a discriminator; they must keep
their defaults here (a value would be silently ignored otherwise)."""


@dataclasses.dataclass(frozen=True)
class MinibatchOTConfig(adversarial.NetworkConfig):
    """A generator trained on a transport distance between minibatches (see the module docstring).

    The network and optimiser flags are the GANs' (``model``, ``hidden``, ``latent_dim``, ``optimizer``,
    ``g_learning_rate``, ``beta1``, ``beta2``, ``lr_decay_steps``, ``ema_decay``, ``precision``); the generator's
    default optimiser is Adam(1e-3, 0.5, 0.999).
    """

    distance: Literal["exact", "sinkhorn", "sinkhorn-divergence", "sliced"] = "exact"
    """The loss between the real minibatch and the fakes (module docstring)."""
    p: float = 2.0
    """The ground cost ``||x - y||^p``; the loss is the cost summed against the plan, ``W_p^p`` (not ``W_p``)."""
    epsilon: float | None = None
    """Absolute entropic regularisation, in units of the cost ``||x - y||^p``; required by (and only used by) the
    two Sinkhorn distances. ott-jax's relative default (0.05 x std of the cost) would change between minibatches."""
    n_projections: int = 100
    """Random directions per step of ``distance="sliced"``."""
    sinkhorn_threshold: float = 1e-3
    """Sinkhorn stops when the L1 marginal error falls under this (the ``converged`` metric says whether it did)."""
    sinkhorn_max_iterations: int = 2000
    """Sinkhorn's iteration cap (per solve; the divergence makes three)."""
    g_learning_rate: float = 1e-3

    def validate(self) -> None:
        super().validate()
        defaults = {f.name: f.default for f in dataclasses.fields(adversarial.NetworkConfig)}
        for name in DISCRIMINATOR_FIELDS:
            if getattr(self, name) != defaults[name]:
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"{name} ({flag}) is a discriminator option; minibatch-ot has no discriminator "
                    f"(got {getattr(self, name)!r}, leave it at {defaults[name]!r})"
                )
        if self.num_classes != 0:
            raise ValueError(
                f"num_classes (--num-classes) must be 0: minibatch-ot is unconditional, got {self.num_classes}"
            )
        if self.distance not in DISTANCES:
            raise ValueError(f"distance (--distance) must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if isinstance(self.p, bool) or not (np.isfinite(self.p) and self.p >= 1):
            raise ValueError(f"p (--p) must be a finite number >= 1 (W_p is a distance for p >= 1), got {self.p!r}")
        if self.distance in SINKHORN_DISTANCES:
            if self.epsilon is None or not (np.isfinite(self.epsilon) and self.epsilon > 0):
                raise ValueError(
                    f"epsilon (--epsilon) must be a finite number > 0 for distance={self.distance!r} (an absolute "
                    f"regularisation in units of ||x - y||^p), got {self.epsilon!r}"
                )
        elif self.epsilon is not None:
            raise ValueError(
                f"epsilon (--epsilon) is used by the Sinkhorn distances only; distance={self.distance!r} takes none, "
                f"got {self.epsilon!r}"
            )
        if isinstance(self.n_projections, bool) or self.n_projections < 1:
            raise ValueError(f"n_projections (--n-projections) must be an int >= 1, got {self.n_projections!r}")
        if not (np.isfinite(self.sinkhorn_threshold) and self.sinkhorn_threshold > 0):
            raise ValueError(f"sinkhorn_threshold (--sinkhorn-threshold) must be > 0, got {self.sinkhorn_threshold!r}")
        if isinstance(self.sinkhorn_max_iterations, bool) or self.sinkhorn_max_iterations < 1:
            raise ValueError(
                f"sinkhorn_max_iterations (--sinkhorn-max-iterations) must be an int >= 1, "
                f"got {self.sinkhorn_max_iterations!r}"
            )


@struct.dataclass
class GeneratorState:
    """Train state of a generator trained alone: step, the generator's parameters, BatchNorm statistics and optimiser
    state (an :class:`~gendl_jax.objectives.adversarial.NetState`), the PRNG key and the moving average
    (``{"params", "batch_stats"}`` when ``config.ema_decay > 0``, else ``{}``). The field names are those of
    :class:`~gendl_jax.objectives.adversarial.AdversarialState`, so that :func:`adversarial.generate` /
    :func:`adversarial.sample` (and ``gendl sample --truncation``) draw from it; there is no discriminator."""

    step: Array
    generator: adversarial.NetState
    key: Array
    generator_ema: dict[str, PyTree]
    config: Any = struct.field(pytree_node=False)
    data_shape: tuple[int, ...] = struct.field(pytree_node=False)


def minibatch_distance(fake: Array, real: Array, config: MinibatchOTConfig, key: Array) -> tuple[Array, dict]:
    """The step's loss between the fakes and the real minibatch, both (m, *data_shape) (flattened to (m, D)):
    ``W_p^p``, the entropic cost, the Sinkhorn divergence or ``SW_p^p`` by ``config.distance``, all on the cost
    ``||x - y||^p`` with uniform weights. ``key`` draws the sliced directions. Returns ``(loss, metrics)``; the
    Sinkhorn distances report ``converged`` (1.0 or 0.0)."""
    fake = fake.reshape(fake.shape[0], -1)
    real = real.reshape(real.shape[0], -1).astype(fake.dtype)
    p = float(config.p)
    if config.distance == "exact":
        return transport.wasserstein(fake, real, p=p, method="exact") ** p, {}
    if config.distance == "sliced":
        value = transport.wasserstein(fake, real, p=p, method="sliced", key=key, n_projections=config.n_projections)
        return value**p, {}
    solve = {
        "epsilon": config.epsilon,
        "p": p,
        "threshold": config.sinkhorn_threshold,
        "max_iterations": config.sinkhorn_max_iterations,
    }
    if config.distance == "sinkhorn":
        value, converged = transport.wasserstein(fake, real, method="sinkhorn", **solve)
        value = value**p
    else:
        value, converged = transport.sinkhorn_divergence(fake, real, **solve)
    return value, {"converged": jnp.asarray(converged, jnp.float32)}


def _data_shape(example_batch: dict) -> tuple[int, ...]:
    x = jnp.asarray(example_batch["x"])
    if x.ndim < 2:
        raise ValueError(f"example_batch['x'] must have shape (m, *data_shape) or (1, m, *data_shape), got {x.shape}")
    # (1, m, d) for vector data has ndim 3; images (m, H, W, C) ndim 4 and (1, m, H, W, C) ndim 5.
    return tuple(x.shape[2:]) if x.ndim in (3, 5) else tuple(x.shape[1:])


def init(key: Array, config: MinibatchOTConfig, example_batch: dict) -> GeneratorState:
    """Initial state for data shaped like ``example_batch["x"]``: ``(1, m, *data_shape)`` or ``(m, *data_shape)``.
    The generator is the GANs' (:func:`adversarial.build_networks`) and is initialised from the same key split."""
    config.validate()
    data_shape = _data_shape(example_batch)
    gen, _ = adversarial.build_networks(config, data_shape, batch_norm_in_d=False)
    g_tx, _ = adversarial.make_optimizers(config)
    key, g_key, _ = jax.random.split(key, 3)
    variables = gen.init(g_key, jnp.zeros((2, adversarial.latent_dim(config, data_shape)), jnp.float32), train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    return GeneratorState(
        step=jnp.zeros((), jnp.int32),
        generator=adversarial.NetState(params=params, batch_stats=stats, opt_state=g_tx.init(params)),
        key=key,
        # copies: a donating step must not get the generator's buffers twice
        generator_ema=(
            jax.tree_util.tree_map(jnp.copy, {"params": params, "batch_stats": stats}) if config.ema_decay > 0 else {}
        ),
        config=config,
        data_shape=data_shape,
    )


def generator_loss(state: GeneratorState, params: PyTree, real: Array, z: Array, key: Array) -> tuple[Array, tuple]:
    """The step's loss as a function of the generator's ``params``: :func:`minibatch_distance` between
    ``G_params(z)`` (train mode: BatchNorm on the batch's statistics) and ``real`` (m, *data_shape); ``z``:
    (m, latent_dim); ``key``: the distance key. Returns ``(loss, (metrics, new batch_stats))``."""
    config = state.config
    gen, _ = adversarial.build_networks(config, state.data_shape, batch_norm_in_d=False)
    dtype = adversarial.COMPUTE_DTYPES[config.precision]
    fake, stats = adversarial.apply_net(gen, params, state.generator.batch_stats, z, train=True, dtype=dtype)
    loss, metrics = minibatch_distance(fake, real, config, key)
    return loss, (metrics, stats)


def step(state: GeneratorState, batch: dict, *, axis_name: str | None = None) -> tuple[GeneratorState, dict]:
    """One generator update on ``batch["x"]``, (1, m, *data_shape): ``m`` fakes from fresh latents, the loss
    :func:`minibatch_distance` to the real minibatch, one optimiser update (learning rate ``config.g_learning_rate``,
    decayed linearly to 0 over ``lr_decay_steps`` if > 0), the moving average if kept.

    Metrics: ``g_loss`` (the loss before the update), ``g_grad_norm`` (global norm of its gradient), and
    ``converged`` for the Sinkhorn distances (1.0 when every Sinkhorn solve of the step reached the threshold).

    The transport couples all samples of the minibatch, so the step is for one device or ``jax.jit`` over a Mesh (the
    compiler gathers the batch); ``axis_name`` (pmap / shard_map, per-device batches) is refused.
    """
    if axis_name is not None:
        raise ValueError(
            "minibatch-ot transports the whole minibatch at once; run it on one device or jit over a Mesh "
            f"(--devices), not under pmap / shard_map (axis_name={axis_name!r})"
        )
    config = state.config
    real = adversarial.checked_real_batches(state, batch)[0]
    m = real.shape[0]
    gen, _ = adversarial.build_networks(config, state.data_shape, batch_norm_in_d=False)
    g_tx, _ = adversarial.make_optimizers(config)
    dtype = adversarial.COMPUTE_DTYPES[config.precision]
    key, z_key, d_key = jax.random.split(state.key, 3)
    z = jax.random.normal(z_key, (m, adversarial.latent_dim(config, state.data_shape)))
    g_net = state.generator
    (loss, (metrics, stats)), grads = jax.value_and_grad(generator_loss, argnums=1, has_aux=True)(
        state, g_net.params, real, z, d_key
    )
    updates, opt_state = g_tx.update(grads, g_net.opt_state, g_net.params)
    lr = jnp.float32(config.g_learning_rate)
    params = optax.apply_updates(g_net.params, jax.tree_util.tree_map(lambda u: (lr * u).astype(u.dtype), updates))
    generator_ema = state.generator_ema
    if config.ema_decay > 0:
        generator_ema = adversarial.update_generator_ema(
            generator_ema,
            params,
            state.step + 1,
            config.ema_decay,
            lambda ema: adversarial.apply_net(gen, ema["params"], ema["batch_stats"], z, train=True, dtype=dtype)[1],
        )
    new_state = state.replace(
        step=state.step + 1,
        generator=adversarial.NetState(params, stats, opt_state),
        key=key,
        generator_ema=generator_ema,
    )
    return new_state, {"g_loss": loss, **metrics, "g_grad_norm": optax.tree.norm(grads)}


sample = adversarial.sample
generate = adversarial.generate


TOY_STEPS = 5_000
TOY_CONFIG = {"hidden": (128, 128, 128), "g_learning_rate": 1e-3, "lr_decay_steps": TOY_STEPS}
"""On the 2-D toy mixtures (what ``gendl train minibatch-ot --data ring8`` starts from): MLP 3 x 128, latent 2,
Adam(1e-3, 0.5, 0.999) decayed linearly to 0 over 5,000 updates, batch 256 (the fit loop's toy default)."""

OBJECTIVE = Objective(
    name="minibatch-ot",
    family="generator",
    config_cls=MinibatchOTConfig,
    init=init,
    step=step,
    sample=sample,
    latent_sampling=True,
    toy_config_defaults=TOY_CONFIG,
    toy_train_defaults={"steps": TOY_STEPS},
)
"""A generator alone (family ``"generator"``): no discriminator, so no density ratio (no DRS / DDLS), unconditional,
no hyper-parameters in the state (the learning rate is the config's); samples are ``G(z)`` of a Gaussian latent
(plain and truncated sampling)."""
