"""Encoders and decoders of the autoencoders and the VAE (lecture "Autoencoder", "Variational autoencoder").

An encoder maps inputs (N, *in_shape) to (N, features): the code ``h(x)`` of an autoencoder, or the
concatenated ``(mean, log_variance)`` of a VAE's Gaussian ``q(z|x)`` (``features = 2 * latent``).
A decoder maps codes (N, latent) to (N, *out_shape) *pre-activation* outputs: Bernoulli logits,
or Gaussian means / MSE reconstructions once the objective applies its output map.

* :class:`MLPEncoder` / :class:`MLPDecoder`: dense layers (the PCA experiment uses them with no
  hidden layer and a linear output: a linear autoencoder).
* :class:`ConvEncoder` / :class:`ConvDecoder`: two stride-2 convolutions (k=4, s=2, p=1) and their
  mirror of transposed convolutions (:class:`~gendl_jax.models.layers.ConvTranspose`, whose
  backward pass is a forward convolution), for images whose side is a multiple of 4
  (28 -> 14 -> 7 for MNIST).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax

from gendl_jax.models.layers import ConvTranspose, fan_in_uniform_bias
from gendl_jax.models.mlp import ACTIVATIONS, check_choice, check_float_input, check_widths

Array = jax.Array

CODE_ACTIVATIONS = {"linear": lambda h: h, **ACTIVATIONS}
"""Maps applied to an encoder's output: ``sigmoid`` codes in (0, 1) for the KL sparsity penalty,
``linear`` for the VAE's (mean, log-variance) and the linear autoencoder."""


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
    return nn.Dense(features, bias_init=fan_in_uniform_bias(fan_in), name=name)


class MLPEncoder(nn.Module):
    """x (N, *in_shape) -> code (N, features): flatten, ``Dense -> activation`` per hidden width,
    then ``Dense(features)`` and ``code_activation``.

    Attributes:
      features: output width (the latent size, or twice it for a Gaussian encoder).
      hidden: hidden widths; ``()`` gives a one-layer encoder ``code_activation(W x + b)``.
      activation: hidden activation, one of ``ACTIVATIONS``.
      code_activation: ``"linear"`` or one of ``ACTIVATIONS``.
    """

    features: int
    hidden: tuple[int, ...] = (512, 256)
    activation: str = "relu"
    code_activation: str = "linear"

    def __post_init__(self):
        check_widths("features", (self.features,))
        check_widths("hidden", self.hidden)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("code_activation", self.code_activation, CODE_ACTIVATIONS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        """(N, *in_shape) -> (N, features); ``train`` is accepted for uniformity and unused."""
        del train
        check_float_input("x", x, "(N, *in_shape)", 2)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = ACTIVATIONS[self.activation](_dense(width, h.shape[-1], f"dense{i}")(h))
        return CODE_ACTIVATIONS[self.code_activation](_dense(self.features, h.shape[-1], "code")(h))


class MLPDecoder(nn.Module):
    """z (N, latent) -> (N, *out_shape) pre-activation outputs: ``Dense -> activation`` per hidden
    width, then ``Dense(prod(out_shape))`` reshaped.

    Attributes:
      out_shape: shape of one example, e.g. (28, 28, 1).
      hidden: hidden widths (``()``: a linear decoder ``W z + b``).
      activation: hidden activation, one of ``ACTIVATIONS``.
    """

    out_shape: tuple[int, ...]
    hidden: tuple[int, ...] = (256, 512)
    activation: str = "relu"

    def __post_init__(self):
        check_widths("out_shape", self.out_shape)
        if not self.out_shape:
            raise ValueError("out_shape must be a non-empty tuple of positive ints, got ()")
        check_widths("hidden", self.hidden)
        check_choice("activation", self.activation, ACTIVATIONS)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: Array, train: bool = True) -> Array:
        """(N, latent) -> (N, *out_shape)."""
        del train
        check_float_input("z", z, "(N, latent)", 2, 2)
        h = z
        for i, width in enumerate(self.hidden):
            h = ACTIVATIONS[self.activation](_dense(width, h.shape[-1], f"dense{i}")(h))
        h = _dense(math.prod(self.out_shape), h.shape[-1], "output")(h)
        return h.reshape(z.shape[0], *self.out_shape)


def _check_conv_image(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or shape[0] % 4 or shape[1] % 4 or min(shape) < 1:
        raise ValueError(
            f"{name}: the conv encoder/decoder need images (H, W, C) with H and W multiples of 4, got {shape}"
        )


class ConvEncoder(nn.Module):
    """Images (N, H, W, C) -> (N, features): ``Conv(base, 4, s2) -> act -> Conv(2 base, 4, s2) -> act``,
    flatten, ``Dense(hidden) -> act``, ``Dense(features)`` and ``code_activation``.
    28x28: 28 -> 14 (base) -> 7 (2 base) -> hidden -> features.
    """

    features: int
    base_features: int = 32
    hidden: int = 256
    activation: str = "relu"
    code_activation: str = "linear"

    def __post_init__(self):
        check_widths("features, base_features, hidden", (self.features, self.base_features, self.hidden))
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("code_activation", self.code_activation, CODE_ACTIVATIONS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        """(N, H, W, C) -> (N, features)."""
        del train
        check_float_input("x", x, "(N, H, W, C)", 4, 4)
        _check_conv_image("x", tuple(x.shape[1:]))
        act = ACTIVATIONS[self.activation]
        h = x
        for i in range(2):
            h = act(nn.Conv(self.base_features * 2**i, (4, 4), (2, 2), ((1, 1), (1, 1)), name=f"conv{i}")(h))
        h = h.reshape(h.shape[0], -1)
        h = act(_dense(self.hidden, h.shape[-1], "dense")(h))
        return CODE_ACTIVATIONS[self.code_activation](_dense(self.features, h.shape[-1], "code")(h))


class ConvDecoder(nn.Module):
    """z (N, latent) -> (N, H, W, C) pre-activation outputs, the mirror of :class:`ConvEncoder`:
    ``Dense(hidden) -> act -> Dense(H/4 * W/4 * 2 base) -> act``, then two stride-2 transposed
    convolutions (k=4, p=1): ``-> base -> act -> C``.
    """

    out_shape: tuple[int, int, int] = (28, 28, 1)
    base_features: int = 32
    hidden: int = 256
    activation: str = "relu"

    def __post_init__(self):
        check_widths("out_shape", self.out_shape)
        _check_conv_image("out_shape", self.out_shape)
        check_widths("base_features, hidden", (self.base_features, self.hidden))
        check_choice("activation", self.activation, ACTIVATIONS)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: Array, train: bool = True) -> Array:
        """(N, latent) -> (N, H, W, C)."""
        del train
        check_float_input("z", z, "(N, latent)", 2, 2)
        act = ACTIVATIONS[self.activation]
        height, width, channels = self.out_shape
        small = (height // 4, width // 4, 2 * self.base_features)
        h = act(_dense(self.hidden, z.shape[-1], "dense")(z))
        h = act(_dense(math.prod(small), h.shape[-1], "project")(h)).reshape(z.shape[0], *small)
        kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
        h = act(ConvTranspose(self.base_features, kernel_init=kernel_init, name="deconv0")(h))
        return ConvTranspose(channels, kernel_init=kernel_init, name="output")(h)
