"""AC-GAN, the auxiliary classifier GAN (Odena, Olah & Shlens 2017, "Conditional image synthesis with auxiliary
classifier GANs", eq. 1-2).

The generator is class-conditional: ``x_fake = G(z, c)`` with ``z ~ N(0, I)`` and ``c`` uniform over the
``num_classes`` classes (it reads ``[z, one_hot(c)]``, as the library's conditional GANs). The discriminator has
two heads on the same last features ``h``: the source logit ``l(x) = Dense(1)(h)`` (real vs fake,
``P(S=real | x) = sigmoid(l(x))``) and the class logits ``Dense(K)(h)`` (``P(C | x)`` by a softmax); no projection
term. With ``L_S = E log P(S=real | x_real) + E log P(S=fake | x_fake)`` and
``L_C = E log P(C=y | x_real) + E log P(C=c | x_fake)`` (the paper's eq. 1 and 2), D maximises ``L_S + L_C`` and G
maximises ``L_C - L_S``. What is minimised here, means over the minibatch of ``m`` real examples with labels ``y``
and ``m`` fakes with labels ``c``, ``CE`` the softmax cross-entropy of the class logits, ``w`` = ``class_weight``:

* discriminator: ``-mean log sigmoid(l(x_real)) - mean log sigmoid(-l(x_fake))
  + w * [mean CE(x_real, y) + mean CE(x_fake, c)]``  (= ``-L_S - w L_C``)
* generator, ``"non-saturating"`` (the default, as in practice and in the paper's code):
  ``-mean log sigmoid(l(G(z, c))) + w * mean CE(G(z, c), c)``
* generator, ``"saturating"`` (eq. 1-2 as written, ``-(L_C - L_S)`` up to terms without G):
  ``mean log sigmoid(-l(G(z, c))) + w * mean CE(G(z, c), c)``

``w = 1`` is the paper's objective. Each discriminator update draws its own latents and uniform labels for its
fakes; the generator update draws fresh ones. Metrics report D's class accuracy on the real minibatch
(``d_class_acc_real``) and on the fakes (``d_class_acc_fake``).

The networks are the library's MLP or DCGAN discriminator with ``aux_classes=K`` (models.MLPDiscriminator,
models.DCGANDiscriminator) and the conditional generator of ``adversarial.build_networks``. The state is an
:class:`~gendl_jax.objectives.adversarial.AdversarialState`; ``sample(state, key, n, labels=...)`` draws class
``labels`` (uniform labels by default). Needs labelled data (``batch["y"]``).

Usage::

    state = acgan.init(key, acgan.ACGANConfig(num_classes=10), batch)  # batch["x"]: (d_steps, m, ...), "y": (d_steps, m)
    state, metrics = jax.jit(acgan.step)(state, batch)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.objectives import adversarial, augment, penalties
from gendl_jax.objectives.distributed import global_draw, mean_over_devices, on_global_batch

Array = jax.Array

GENERATOR_LOSSES = ("non-saturating", "saturating")

PENALTY_KEY = 4
"""``fold_in(update key, PENALTY_KEY)`` draws the interpolation weights the penalty hook receives (R1, R2 and DRAGAN
do not use them; DRAGAN's perturbation comes from ``fold_in(update key, penalties.DRAGAN_KEY)``)."""

SHARED_OPTIONS = frozenset(
    (
        "model",
        "latent_dim",
        "hidden",
        "g_activation",
        "d_activation",
        "g_batch_norm",
        "layer_norm",
        "spectral_norm",
        "base_features",
        "g_extra_layers",
        "d_extra_layers",
        "optimizer",
        "g_learning_rate",
        "d_learning_rate",
        "beta1",
        "beta2",
        "lr_decay_steps",
        "ema_decay",
        "top_k_fraction",
        "top_k_decay",
        "top_k_period",
        "num_classes",
        "r1_weight",
        "r2_weight",
        "dragan_weight",
        "penalty_every",
        "augment",
        "precision",
    )
)
"""The fields of :class:`~gendl_jax.objectives.adversarial.NetworkConfig` that AC-GAN's step implements; an option
added to it later must keep its default here until the step implements it, so that no flag is silently ignored."""


@dataclasses.dataclass(frozen=True)
class ACGANConfig(adversarial.NetworkConfig):
    """AC-GAN hyper-parameters. Defaults: Adam(2e-4, 0.5) as in DCGAN and the paper, one D step per G step, 10
    classes (MNIST, CIFAR-10); the run checks that the data's labels are 0..num_classes-1."""

    num_classes: int = 10
    """K, the classes of the data (labels 0..K-1): the generator's conditioning and the classifier head's width."""
    class_weight: float = 1.0
    """w, the weight of the class log-likelihood L_C in both losses (1: the paper's eq. 1-2)."""
    generator_loss: Literal["non-saturating", "saturating"] = "non-saturating"
    """The generator's source term: ``-mean log D(G(z, c))`` (non-saturating, as in practice) or
    ``mean log(1 - D(G(z, c)))`` (saturating, eq. 1-2 as written)."""
    d_steps: int = 1
    """Discriminator updates per generator update."""

    @property
    def inner_steps(self) -> int:
        return self.d_steps

    def validate(self) -> None:
        super().validate()
        if self.num_classes < 2:
            raise ValueError(
                f"num_classes must be >= 2 for acgan (the classes of the labelled data), got {self.num_classes}"
            )
        if not (math.isfinite(self.class_weight) and self.class_weight >= 0):
            raise ValueError(f"class_weight must be a finite number >= 0, got {self.class_weight}")
        if self.generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {list(GENERATOR_LOSSES)}, got {self.generator_loss!r}")
        for field in dataclasses.fields(adversarial.NetworkConfig):
            default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            if field.name not in SHARED_OPTIONS and getattr(self, field.name) != default:
                flag = "--" + field.name.replace("_", "-")
                raise ValueError(
                    f"{field.name} ({flag}) is not implemented for acgan; leave it at its default {default!r} "
                    f"(got {getattr(self, field.name)!r})"
                )


def build_networks(
    config: ACGANConfig, data_shape: tuple[int, ...], *, bn_axis_name: str | None = None
) -> tuple[nn.Module, nn.Module]:
    """(conditional generator, discriminator with a ``num_classes``-way classifier head and no projection).

    The discriminator returns ``(logits (n,), class_logits (n, K))``; BatchNorm in it as in the GAN (none under
    ``spectral_norm``)."""
    gen, disc = adversarial.build_networks(config, data_shape, batch_norm_in_d=True, bn_axis_name=bn_axis_name)
    if "aux_classes" not in {f.name for f in dataclasses.fields(disc)}:
        raise ValueError(
            f"acgan needs a discriminator with an auxiliary classifier head; {type(disc).__name__} "
            f"(model={config.model!r}) has none: use --model mlp or --model dcgan"
        )
    return gen, disc.clone(num_classes=0, aux_classes=config.num_classes)


def class_cross_entropy(class_logits: Array, labels: Array) -> Array:
    """Per-example softmax cross-entropy ``-log P(C=label | x)``: (m, K), (m,) ints -> (m,)."""
    return optax.softmax_cross_entropy_with_integer_labels(class_logits, labels)


def class_accuracy(class_logits: Array, labels: Array) -> Array:
    """Share of the examples whose arg-max class is their label: (m, K), (m,) -> scalar."""
    return jnp.mean((jnp.argmax(class_logits, axis=-1) == labels).astype(jnp.float32))


def discriminator_loss(
    logits_real: Array,
    logits_fake: Array,
    class_logits_real: Array,
    class_logits_fake: Array,
    labels_real: Array,
    labels_fake: Array,
    class_weight: float | Array = 1.0,
) -> tuple[Array, dict]:
    """``-L_S - w L_C`` (see the module docstring): logits (m,), class logits (m, K), labels (m,) for the real
    and the fake minibatch -> (scalar loss, metrics).

    Metrics: ``d_source_loss`` (``-L_S``), ``d_class_loss`` (``-L_C``, the sum of the two mean cross-entropies),
    ``d_real`` / ``d_fake`` (mean ``P(S=real)`` of each), ``d_class_acc_real`` / ``d_class_acc_fake``."""
    source = -jnp.mean(jax.nn.log_sigmoid(logits_real)) - jnp.mean(jax.nn.log_sigmoid(-logits_fake))
    ce_real = jnp.mean(class_cross_entropy(class_logits_real, labels_real))
    ce_fake = jnp.mean(class_cross_entropy(class_logits_fake, labels_fake))
    loss = source + class_weight * (ce_real + ce_fake)
    metrics = {
        "d_source_loss": source,
        "d_class_loss": ce_real + ce_fake,
        "d_real": jnp.mean(jax.nn.sigmoid(logits_real)),
        "d_fake": jnp.mean(jax.nn.sigmoid(logits_fake)),
        "d_class_acc_real": class_accuracy(class_logits_real, labels_real),
        "d_class_acc_fake": class_accuracy(class_logits_fake, labels_fake),
    }
    return loss, metrics


def generator_loss(
    logits_fake: Array,
    class_logits_fake: Array,
    labels_fake: Array,
    class_weight: float | Array = 1.0,
    kind: str = "non-saturating",
    weights: Array | None = None,
) -> tuple[Array, dict]:
    """What G minimises (module docstring): ``-mean log sigmoid(l)`` (``"non-saturating"``) or
    ``mean log sigmoid(-l)`` (``"saturating"``), plus ``w * mean CE``: (m,), (m, K), (m,) -> (loss, metrics
    ``g_source_loss``, ``g_class_loss``). ``weights`` (m,): both means weighted (:func:`adversarial.weighted_mean`;
    top-k training keeps the fakes D finds most real, for both terms)."""
    if kind == "non-saturating":
        source = -adversarial.weighted_mean(jax.nn.log_sigmoid(logits_fake), weights)
    elif kind == "saturating":
        source = adversarial.weighted_mean(jax.nn.log_sigmoid(-logits_fake), weights)
    else:
        raise ValueError(f"kind must be one of {list(GENERATOR_LOSSES)}, got {kind!r}")
    ce = adversarial.weighted_mean(class_cross_entropy(class_logits_fake, labels_fake), weights)
    return source + class_weight * ce, {"g_source_loss": source, "g_class_loss": ce}


def init(key: Array, config: ACGANConfig, example_batch: dict) -> adversarial.AdversarialState:
    """Initial state; ``example_batch["x"]`` is (d_steps, m, *data_shape) or (m, *data_shape) (labels not needed).

    The generator, optimisers, hyper-parameters and moving average are the adversarial objectives'
    (:func:`adversarial.init_adversarial`); the discriminator is the AC-GAN one (:func:`build_networks`),
    initialised from ``fold_in(key, 1)``."""
    state = adversarial.init_adversarial(key, config, example_batch, batch_norm_in_d=True)
    _, disc = build_networks(config, state.data_shape)
    _, d_tx = adversarial.make_optimizers(config)
    d_vars = disc.init(jax.random.fold_in(key, 1), jnp.zeros((2, *state.data_shape), jnp.float32), train=False)
    params = d_vars["params"]
    discriminator = adversarial.NetState(params, d_vars.get("batch_stats", {}), d_tx.init(params))
    return state.replace(discriminator=discriminator)


def _uniform_labels(num_classes: int):
    return lambda key, shape: jax.random.randint(key, shape, 0, num_classes, jnp.int32)


def _update(tx: optax.GradientTransformation, grads, net: adversarial.NetState, learning_rate: Array):
    """One update of ``tx`` (learning rate 1) scaled by ``learning_rate``, as the adversarial objectives do."""
    updates, opt_state = tx.update(grads, net.opt_state, net.params)
    updates = jax.tree_util.tree_map(lambda u: (learning_rate * u).astype(u.dtype), updates)
    return adversarial.NetState(optax.apply_updates(net.params, updates), net.batch_stats, opt_state)


def step(state: adversarial.AdversarialState, batch: dict, *, axis_name: str | None = None):
    """``d_steps`` discriminator updates then one generator update.

    Args:
      state: from :func:`init`.
      batch: ``{"x": (d_steps, m, *data_shape), "y": (d_steps, m)}``: real minibatches and their int labels in
        ``[0, num_classes)``, one per discriminator update.
      axis_name: the mapped axis under ``pmap`` / ``shard_map`` (gradients, BatchNorm statistics and metrics are
        averaged over it; latents and fake labels are drawn for the global batch).

    Returns:
      ``(new_state, metrics)``: ``d_loss``, ``d_source_loss``, ``d_class_loss``, ``d_real``, ``d_fake``,
      ``d_class_acc_real``, ``d_class_acc_fake``, ``d_grad_norm`` (means over the discriminator updates),
      ``g_loss``, ``g_source_loss``, ``g_class_loss``, ``g_grad_norm``.

    Random stream: ``state.key`` splits into (next key, discriminator key, generator key); the discriminator key
    into one key per update, each into (latent key, label key); the generator key into (latent key, label key).
    The options draw from keys folded in, as in :func:`adversarial.adversarial_step`: DiffAugment from
    ``fold_in(update key, 1)`` (reals), ``fold_in(update key, 2)`` (fakes) and ``fold_in(generator key, 1)``; DRAGAN
    from ``fold_in(update key, 3)``.

    Options of the shared config: the penalties (``r1_weight``, ``r2_weight``, ``dragan_weight``, lazy by
    ``penalty_every``) act on the source logit ``l(x)``, DiffAugment on every image D sees, ``precision`` on both
    networks, top-k training on both terms of the generator's loss (the kept fakes are those with the highest
    ``l``).
    """
    config = state.config
    real_batches = adversarial.checked_real_batches(state, batch)
    k = config.inner_steps
    m = real_batches.shape[1]
    labels = adversarial.batch_labels(batch, config)
    policy = augment.parse_policy(config.augment)
    if policy:
        augment.check_images(state.data_shape)
    augmented = adversarial.augmenter(policy, state.data_shape, axis_name)
    dtype = adversarial.COMPUTE_DTYPES[config.precision]
    gen, disc = build_networks(config, state.data_shape, bn_axis_name=axis_name)
    g_tx, d_tx = adversarial.make_optimizers(config)
    z_dim = adversarial.latent_dim(config, state.data_shape)
    draw_labels = _uniform_labels(config.num_classes)
    w = config.class_weight
    key, d_key, g_key = jax.random.split(state.key, 3)
    g_net = state.generator

    def d_update(d_net: adversarial.NetState, inputs):
        real, y, step_key, update = inputs
        z_key, c_key = jax.random.split(step_key)
        z = global_draw(jax.random.normal, z_key, (m, z_dim), axis_name)
        c = global_draw(draw_labels, c_key, (m,), axis_name)
        fake, _ = adversarial.apply_net(gen, g_net.params, g_net.batch_stats, z, train=True, labels=c, dtype=dtype)
        fake = jax.lax.stop_gradient(fake)
        real = augmented(real, jax.random.fold_in(step_key, 1))
        fake = augmented(fake, jax.random.fold_in(step_key, 2))
        terms = penalties.configured(config, step_key, axis_name)

        def loss_fn(params):
            (s_real, c_real), stats = adversarial.apply_net(
                disc, params, d_net.batch_stats, real, train=True, dtype=dtype
            )
            (s_fake, c_fake), stats = adversarial.apply_net(disc, params, stats, fake, train=True, dtype=dtype)
            loss, metrics = discriminator_loss(s_real, s_fake, c_real, c_fake, y, c, w)
            if terms:  # on the source head, the "D(x)" of the penalties' papers; the classifier head is free
                critic = lambda x: adversarial.apply_net(disc, params, stats, x, train=False, dtype=dtype)[0][0]
                p_key = jax.random.fold_in(step_key, PENALTY_KEY)
                value, p_metrics = adversarial.penalty_value(
                    config, terms, critic, real, fake, p_key, state.step * k + update, axis_name=axis_name
                )
                loss = loss + value
                metrics = {**metrics, **p_metrics}
            return loss, (metrics, stats)

        (loss, (metrics, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_net.params)
        grads, stats = mean_over_devices((grads, stats), axis_name)
        new = _update(d_tx, grads, d_net.replace(batch_stats=stats), state.hparams["d_learning_rate"])
        metrics = {"d_loss": loss, **metrics, "d_grad_norm": optax.tree.norm(grads)}
        return new, mean_over_devices(metrics, axis_name)

    d_keys = jax.random.split(d_key, k)
    if k == 1:
        d_net, d_metrics = d_update(state.discriminator, (real_batches[0], labels[0], d_keys[0], 0))
    else:
        # Unrolled, as in adversarial_step (a convolution's gradient inside a scan's while loop is slow on XLA:CPU).
        d_net, d_metrics = jax.lax.scan(
            d_update, state.discriminator, (real_batches, labels, d_keys, jnp.arange(k)), unroll=True
        )
        d_metrics = jax.tree_util.tree_map(jnp.mean, d_metrics)

    z_key, c_key = jax.random.split(g_key)
    z = global_draw(jax.random.normal, z_key, (m, z_dim), axis_name)
    c = global_draw(draw_labels, c_key, (m,), axis_name)
    top_k = config.top_k_fraction < 1.0
    kept = adversarial.top_k_kept_fraction(state.step, config) if top_k else None

    def g_loss_fn(params):
        fake, stats = adversarial.apply_net(gen, params, g_net.batch_stats, z, train=True, labels=c, dtype=dtype)
        fake = augmented(fake, jax.random.fold_in(g_key, 1))
        (s_fake, c_fake), _ = adversarial.apply_net(
            disc, d_net.params, d_net.batch_stats, fake, train=True, dtype=dtype
        )
        weights = None
        if top_k:
            weights = on_global_batch(
                lambda s: adversarial.top_k_weights(s, kept), jax.lax.stop_gradient(s_fake), axis_name
            )
        loss, metrics = generator_loss(s_fake, c_fake, c, w, config.generator_loss, weights)
        return loss, (metrics, stats)

    (g_loss, (g_metrics, g_stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_net.params)
    g_grads, g_stats, g_loss, g_metrics = mean_over_devices((g_grads, g_stats, g_loss, g_metrics), axis_name)
    new_g = _update(g_tx, g_grads, g_net.replace(batch_stats=g_stats), state.hparams["g_learning_rate"])

    generator_ema = state.generator_ema
    if config.ema_decay > 0:
        generator_ema = adversarial.update_generator_ema(
            generator_ema,
            new_g.params,
            state.step + 1,
            config.ema_decay,
            lambda ema: adversarial.apply_net(
                gen, ema["params"], ema["batch_stats"], z, train=True, labels=c, dtype=dtype
            )[1],
        )
    metrics = {**d_metrics, "g_loss": g_loss, **g_metrics, "g_grad_norm": optax.tree.norm(g_grads)}
    if top_k:
        metrics["g_top_k_fraction"] = kept
    new_state = state.replace(
        step=state.step + 1, generator=new_g, discriminator=d_net, key=key, generator_ema=generator_ema
    )
    return new_state, metrics


def discriminate(state: adversarial.AdversarialState, x: Array, *, batch_statistics: bool = False):
    """The discriminator's two heads: (n, *data_shape) -> (source logits (n,), class logits (n, K)); in inference
    mode unless ``batch_statistics`` (as :func:`adversarial.discriminate`)."""
    _, disc = build_networks(state.config, state.data_shape)
    d = state.discriminator
    return adversarial.apply_net(disc, d.params, d.batch_stats, x, train=batch_statistics)[0]


def prepare_dataset(dataset, config: ACGANConfig):
    """Checks that the training data is labelled with classes 0..num_classes-1 (one-line errors otherwise)."""
    name = getattr(dataset, "name", dataset)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(
            f"acgan needs labelled data (a class per example, for its auxiliary classifier); {name!r} has no "
            "labels: use e.g. --data mnist, digits, cifar10 or a folder of images in one sub-folder per class"
        )
    labels = np.asarray(labels)
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, -1)
    if lo < 0 or hi + 1 != config.num_classes:
        raise ValueError(
            f"acgan: num_classes={config.num_classes}, but {name!r} has labels {lo}..{hi} "
            f"({hi + 1} classes); pass --num-classes {hi + 1}"
        )
    return dataset


sample = adversarial.sample
generate = adversarial.generate

OBJECTIVE = adversarial.declare("acgan", ACGANConfig, init, step, prepare_dataset=prepare_dataset)
