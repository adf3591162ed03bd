"""Fully connected generator and discriminator / critic of the original GAN (Goodfellow et al. 2014).

The lecture ("How to build the discriminator and generator?"): the original GAN uses only dense
layers, with ReLU / sigmoid / maxout activations and batch normalisation. The same
:class:`MLPDiscriminator` serves as the WGAN / WGAN-GP critic (it has no BatchNorm, so the
per-sample gradient penalty stays per-sample; ``layer_norm=True`` is WGAN-GP's substitute).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gendl_jax.models.layers import (
    Maxout,
    append_one_hot,
    check_class_labels,
    class_projection,
    fan_in_uniform_bias,
    spectral_normalized,
)

Array = jax.Array

LEAKY_RELU_SLOPE = 0.2

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "leaky_relu": lambda h: nn.leaky_relu(h, negative_slope=LEAKY_RELU_SLOPE),
    "elu": nn.elu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
}
"""Hidden activations of the MLPs; ``leaky_relu`` has slope 0.2 (DCGAN's)."""

GENERATOR_OUTPUTS: dict[str, Callable[[Array], Array]] = {
    "linear": lambda h: h,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
}
"""Output maps of :class:`MLPGenerator`: ``tanh`` for data in [-1, 1], ``sigmoid`` for [0, 1]."""

DISCRIMINATOR_ACTIVATIONS = ("maxout", *ACTIVATIONS)


def check_widths(name: str, widths) -> None:
    def positive_int(w) -> bool:
        return isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1

    if not (isinstance(widths, tuple) and all(positive_int(w) for w in widths)):
        raise ValueError(f"{name} must be a tuple of positive ints, got {widths!r}")


def check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {sorted(valid)}, got {value!r}")


def _check_num_classes(value) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"num_classes must be an int >= 0 (0: unconditional), got {value!r}")


def check_float_input(name: str, x: Array, shape_doc: str, min_ndim: int, max_ndim: int | None = None) -> None:
    ndim = jnp.ndim(x)
    if ndim < min_ndim or (max_ndim is not None and ndim > max_ndim):
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {jnp.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


class MLPGenerator(nn.Module):
    """Dense generator: z (N, latent_dim) -> samples (N, *out_shape).

    ``Dense -> [BatchNorm] -> activation`` for each hidden width, then ``Dense(prod(out_shape))``,
    the ``output`` map and a reshape. Hidden Dense layers drop their bias when BatchNorm follows.

    Attributes:
      out_shape: shape of one sample, e.g. ``(2,)`` for the toy mixtures or ``(28, 28, 1)``.
      hidden: hidden widths.
      activation: hidden activation, one of ``ACTIVATIONS``.
      batch_norm: BatchNorm after each hidden Dense (never after the output).
      output: ``"linear"``, ``"tanh"`` (data in [-1, 1]) or ``"sigmoid"`` (data in [0, 1]).
      bn_axis_name: mapped axis over which BatchNorm averages its batch statistics under
        ``pmap`` / ``shard_map``; ``None`` on one device.
      num_classes: 0 (unconditional), or the number of classes of a class-conditional generator, whose first
        layer reads ``[z, one_hot(labels)]`` (``__call__(z, train, labels=...)``, labels (N,) ints).

    ``__call__(z, train)``: ``train=True`` normalises with the batch statistics and updates
    ``batch_stats`` (apply with ``mutable=["batch_stats"]``); ``train=False`` uses the running averages.
    """

    out_shape: tuple[int, ...]
    hidden: tuple[int, ...] = (512, 512, 512)
    activation: str = "relu"
    batch_norm: bool = False
    output: str = "linear"
    bn_axis_name: str | None = None
    num_classes: int = 0

    def __post_init__(self):
        check_widths("out_shape", self.out_shape)
        if not self.out_shape:
            raise ValueError("out_shape must be a non-empty tuple of positive ints, got ()")
        check_widths("hidden", self.hidden)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("output", self.output, GENERATOR_OUTPUTS)
        _check_num_classes(self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: Array, train: bool = True, *, labels: Array | None = None) -> Array:
        """(N, latent_dim) [and labels (N,) for a conditional generator] -> (N, *out_shape)."""
        check_float_input("z", z, "(N, latent_dim)", 2, 2)
        check_class_labels(labels, self.num_classes, z.shape[0], owner="this MLPGenerator")
        act = ACTIVATIONS[self.activation]
        h = append_one_hot(z, labels, self.num_classes)
        for i, width in enumerate(self.hidden):
            h = nn.Dense(
                width, use_bias=not self.batch_norm, bias_init=fan_in_uniform_bias(h.shape[-1]), name=f"dense{i}"
            )(h)
            if self.batch_norm:
                h = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    axis_name=self.bn_axis_name,
                    name=f"bn{i}",
                )(h)
            h = act(h)
        h = nn.Dense(math.prod(self.out_shape), bias_init=fan_in_uniform_bias(h.shape[-1]), name="output")(h)
        h = GENERATOR_OUTPUTS[self.output](h)
        return h.reshape(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """Dense discriminator / critic: x (N, *in_shape) -> logits or scores (N,).

    The input is flattened; each hidden layer is ``Dense -> [LayerNorm] -> activation ->
    [Dropout]`` (for ``"maxout"``: ``Maxout -> [LayerNorm] -> [Dropout]``); the last layer is
    ``Dense(1)``, squeezed. No sigmoid: the GAN losses use ``log_sigmoid`` of the logit, and the
    WGAN critic's score is unbounded. No BatchNorm, so each output depends on its own sample only.

    Attributes:
      hidden: hidden widths.
      activation: ``"maxout"`` (Goodfellow et al. 2014) or one of ``ACTIVATIONS``.
      maxout_pieces: pieces per maxout unit.
      layer_norm: LayerNorm on each hidden layer (WGAN-GP's critic normalisation).
      dropout: dropout rate in [0, 1) after each hidden layer; when > 0 and ``train=True``,
        ``apply`` needs ``rngs={"dropout": key}``.
      spectral_norm: every Dense / Maxout kernel divided by its spectral norm
        (:func:`~gendl_jax.models.layers.spectral_normalized`; the power-iteration vectors are
        ``batch_stats`` under ``sn{i}`` / ``sn_logit``). The activations are all 1-Lipschitz (sigmoid
        1/4), so without LayerNorm and dropout the network is then 1-Lipschitz up to the power
        iteration's estimate.
      num_classes: 0 (unconditional), or the number of classes of a projection discriminator (Miyato & Koyama
        2018): the output adds ``<V[y], h>``, ``h`` the last hidden layer
        (:func:`~gendl_jax.models.layers.class_projection`); ``__call__(x, train, labels=...)``.
      aux_classes: 0 (no auxiliary classifier), or ``K`` for AC-GAN's discriminator (Odena et al. 2017): a second
        head ``classifier``, a ``Dense(K)`` on the same last hidden layer ``h`` as ``logit`` (spectrally normalised
        under ``spectral_norm``, vector ``sn_classifier``), and ``__call__`` returns
        ``(logits (N,), class_logits (N, K))``.
    """

    hidden: tuple[int, ...] = (512, 512, 512)
    activation: str = "maxout"
    maxout_pieces: int = 5
    layer_norm: bool = False
    dropout: float = 0.0
    spectral_norm: bool = False
    num_classes: int = 0
    aux_classes: int = 0

    def __post_init__(self):
        check_widths("hidden", self.hidden)
        check_choice("activation", self.activation, DISCRIMINATOR_ACTIVATIONS)
        if not (isinstance(self.maxout_pieces, numbers.Integral) and self.maxout_pieces >= 1):
            raise ValueError(f"maxout_pieces must be a positive int, got {self.maxout_pieces!r}")
        if not (isinstance(self.dropout, numbers.Real) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be a rate in [0, 1), got {self.dropout!r}")
        _check_num_classes(self.num_classes)
        aux = self.aux_classes
        if not (isinstance(aux, numbers.Integral) and not isinstance(aux, bool) and aux >= 0):
            raise ValueError(f"aux_classes must be an int >= 0 (0: no auxiliary classifier), got {self.aux_classes!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True, *, labels: Array | None = None) -> Array | tuple[Array, Array]:
        """(N, *in_shape) [and labels (N,) for a projection discriminator] -> (N,); with ``aux_classes=K``,
        ``((N,), (N, K))``: the logits and the class logits."""
        check_float_input("x", x, "(N, *in_shape)", 2)
        check_class_labels(labels, self.num_classes, x.shape[0], owner="this MLPDiscriminator")
        h = x.reshape(x.shape[0], -1)
        sn = dict(enabled=self.spectral_norm, train=train)
        for i, width in enumerate(self.hidden):
            if self.activation == "maxout":
                layer = Maxout(width, pieces=self.maxout_pieces, name=f"maxout{i}")
            else:
                layer = nn.Dense(width, bias_init=fan_in_uniform_bias(h.shape[-1]), name=f"dense{i}")
            h = spectral_normalized(layer, h, name=f"sn{i}", **sn)
            if self.layer_norm:
                h = nn.LayerNorm(name=f"ln{i}")(h)
            if self.activation != "maxout":
                h = ACTIVATIONS[self.activation](h)
            if self.dropout > 0:
                h = nn.Dropout(rate=self.dropout, deterministic=not train, name=f"dropout{i}")(h)
        self.sow("intermediates", "features", h)  # the logit layer's input, for linear probes
        logit = nn.Dense(1, bias_init=fan_in_uniform_bias(h.shape[-1]), name="logit")
        logit = spectral_normalized(logit, h, name="sn_logit", **sn)[:, 0]
        logit = logit + class_projection(h, labels, self.num_classes, spectral_norm=self.spectral_norm, train=train)
        if not self.aux_classes:
            return logit
        classifier = nn.Dense(self.aux_classes, bias_init=fan_in_uniform_bias(h.shape[-1]), name="classifier")
        return logit, spectral_normalized(classifier, h, name="sn_classifier", **sn)
