"""DCGAN generator and discriminator / critic (Radford et al. 2015).

The architecture rules stated in the lecture ("How to build the discriminator and generator?"):

* no pooling: the generator upsamples with stride-2 transposed convolutions, the discriminator
  downsamples with stride-2 convolutions (k=4, s=2, p=1 doubles / halves the spatial size);
* BatchNorm in the generator except at its output layer, and in the discriminator except at
  its input layer;
* no fully connected hidden layers (only the generator's projection of ``z`` and the
  discriminator's final ``Dense(1)``);
* ReLU in the generator with a tanh output (images scaled to [-1, 1]); LeakyReLU(0.2) in the
  discriminator.

Weights are initialised from N(0, 0.02^2) as in the paper (BatchNorm scales start at 1).
Layers followed by a normalisation have no bias (it would be cancelled by the normalisation).

Supported image sizes (H = W): 28 (7 -> 14 -> 28, MNIST), 32 (4 -> 8 -> 16 -> 32) and
64 (4 -> 8 -> 16 -> 32 -> 64); any number of channels.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp

from gendl_jax.models.layers import (
    DCGAN_INIT,
    Conv,
    ConvTranspose,
    append_one_hot,
    check_class_labels,
    class_projection,
    spectral_normalized,
)

Array = jax.Array

SUPPORTED_IMAGE_SIZES: dict[int, int] = {28: 7, 32: 4, 64: 4}
"""Image side -> the smallest feature map (the generator's first, the discriminator's last)."""

LEAKY_RELU_SLOPE = 0.2


def num_blocks(image_size: int) -> int:
    """Number of stride-2 (transposed) convolutions between the smallest map and the image."""
    return int(math.log2(image_size // SUPPORTED_IMAGE_SIZES[image_size]))


def _supported() -> str:
    return ", ".join(f"{s}x{s}" for s in SUPPORTED_IMAGE_SIZES)


def _check_positive_int(name: str, value) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_image_hw(name: str, h: int, w: int) -> int:
    if h != w or h not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(f"{name}: DCGAN supports square images of size {_supported()}, got {h}x{w}")
    return h


def _check_non_negative_int(name: str, value) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _extra_conv(features: int, name: str, use_bias: bool) -> Conv:
    """A size-preserving 3x3 stride-1 convolution (one of the "extra layers")."""
    return Conv(
        features, kernel_size=(3, 3), strides=(1, 1), padding=1, use_bias=use_bias, kernel_init=DCGAN_INIT, name=name
    )


def _batch_norm(train: bool, axis_name: str | None, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name, name=name)


class DCGANGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, H, W, C) in [-1, 1].

    ``Dense`` projection of ``z`` to (s0, s0, C0) -> BatchNorm -> ReLU, then stride-2
    :class:`~gendl_jax.models.layers.ConvTranspose` blocks (k=4, s=2, p=1) -> BatchNorm -> ReLU
    that halve the channels, the last one mapping to C channels with a tanh and no BatchNorm.
    With ``n`` blocks (2 for 28x28, 3 for 32x32, 4 for 64x64), ``C0 = base_features * 2^(n-1)``:
    28x28: (7, 7, 128) -> (14, 14, 64) -> (28, 28, C) for ``base_features=64``;
    64x64: (4, 4, 512) -> 256 -> 128 -> 64 -> (64, 64, C).
    ``extra_layers`` stride-1 3x3 convolutions -> BatchNorm -> ReLU, at the last hidden map's size and
    width, come before the output layer (the "extra layers" of the DCGAN / WGAN reference code).

    Attributes:
      image_shape: (H, W, C) with H = W in {28, 32, 64}.
      base_features: channels of the last hidden feature map.
      extra_layers: number of stride-1 3x3 conv blocks before the output layer (0: plain DCGAN).
      bn_axis_name: mapped axis over which BatchNorm averages batch statistics under
        ``pmap`` / ``shard_map``; ``None`` on one device.
      num_classes: 0 (unconditional), or the number of classes of a class-conditional generator, whose
        ``project`` layer reads ``[z, one_hot(labels)]`` (:func:`~gendl_jax.models.layers.append_one_hot`;
        ``__call__(z, train, labels=...)`` with labels (N,) ints in [0, num_classes)).

    Submodules: ``project``/``bn0``, then ``deconv{i}``/``bn{i}`` for i = 1..n-1, then
    ``extra{j}``/``extra_bn{j}`` for j = 0..extra_layers-1, then ``output``.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    base_features: int = 64
    extra_layers: int = 0
    bn_axis_name: str | None = None
    num_classes: int = 0

    def __post_init__(self):
        shape = self.image_shape
        if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(s, numbers.Integral) for s in shape)):
            raise ValueError(f"image_shape must be a tuple (H, W, C) of ints, got {shape!r}")
        _check_image_hw("image_shape", shape[0], shape[1])
        _check_positive_int("image_shape[2] (channels)", shape[2])
        _check_positive_int("base_features", self.base_features)
        _check_non_negative_int("extra_layers", self.extra_layers)
        _check_non_negative_int("num_classes", self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: Array, train: bool = True, *, labels: Array | None = None) -> Array:
        """(N, latent_dim) [and labels (N,) for a conditional generator] -> (N, H, W, C)."""
        if jnp.ndim(z) != 2:
            raise ValueError(f"z must have shape (N, latent_dim), got shape {jnp.shape(z)}")
        if not jnp.issubdtype(jnp.result_type(z), jnp.floating):
            raise ValueError(f"z must be a floating-point array, got dtype {jnp.result_type(z)}")
        check_class_labels(labels, self.num_classes, z.shape[0], owner="this DCGANGenerator")
        size, _, channels = self.image_shape
        s0, n = SUPPORTED_IMAGE_SIZES[size], num_blocks(size)
        features = self.base_features * 2 ** (n - 1)
        h = append_one_hot(z, labels, self.num_classes)
        h = nn.Dense(s0 * s0 * features, use_bias=False, kernel_init=DCGAN_INIT, name="project")(h)
        h = h.reshape(z.shape[0], s0, s0, features)
        h = nn.relu(_batch_norm(train, self.bn_axis_name, "bn0")(h))
        for i in range(1, n):
            features //= 2
            h = ConvTranspose(features, use_bias=False, name=f"deconv{i}")(h)
            h = nn.relu(_batch_norm(train, self.bn_axis_name, f"bn{i}")(h))
        for j in range(self.extra_layers):
            h = _extra_conv(features, f"extra{j}", use_bias=False)(h)
            h = nn.relu(_batch_norm(train, self.bn_axis_name, f"extra_bn{j}")(h))
        h = ConvTranspose(channels, use_bias=True, name="output")(h)
        return jnp.tanh(h)


class DCGANDiscriminator(nn.Module):
    """Images (N, H, W, C) -> logits / critic scores (N,).

    Stride-2 convolutions (k=4, s=2, p=1; :class:`~gendl_jax.models.layers.Conv`, whose input gradient
    is fast to differentiate again, as a gradient penalty does; reverse mode of any order and
    ``jvp`` of a ``grad`` work, ``jax.jvp`` of the discriminator itself does not) with LeakyReLU(0.2),
    doubling the channels from ``base_features``: the first (input) layer has no normalisation, the others LayerNorm
    (``layer_norm=True``; per sample over (H, W, C), with a per-channel scale and bias),
    else BatchNorm (``batch_norm=True``), else nothing. They go down to 7x7 (28x28 input) or 4x4 (32x32,
    64x64), then flatten -> ``Dense(1)``, squeezed. 28x28: 28 -> 14 (64) -> 7 (128) for
    ``base_features=64``; 64x64: 64 -> 32 (64) -> 16 (128) -> 8 (256) -> 4 (512).

    Attributes:
      base_features: channels of the first convolution.
      batch_norm: BatchNorm on every layer but the first (DCGAN's discriminator). Must be off
        for a WGAN-GP critic, whose gradient penalty is per sample (see :func:`conv_critic`).
      layer_norm: LayerNorm *instead of* BatchNorm on every layer but the first (when True,
        ``batch_norm`` is ignored and the module has no ``batch_stats``).
      bn_axis_name: mapped axis of BatchNorm's batch statistics under ``pmap`` / ``shard_map``.
      spectral_norm: every convolution kernel and the ``logit`` kernel divided by its spectral norm
        (:func:`~gendl_jax.models.layers.spectral_normalized`, SN-GAN's discriminator; the
        power-iteration vectors are ``batch_stats`` under ``sn_<layer name>``). Usually with
        ``batch_norm=False``, as in Miyato et al.
      num_classes: 0 (unconditional), or the number of classes of a projection discriminator (Miyato &
        Koyama 2018, "cGANs with projection discriminator"): the output adds ``<V[y], h>`` to ``Dense(1)(h)``,
        ``h`` the flattened last feature map, ``V`` the kernel of a bias-free ``projection`` layer
        (:func:`~gendl_jax.models.layers.class_projection`); ``__call__(x, train, labels=...)``.
      aux_classes: 0 (no auxiliary classifier), or ``K`` for AC-GAN's discriminator (Odena et al. 2017): a second
        head ``classifier``, a ``Dense(K)`` on the same flattened features ``h`` as ``logit`` (spectrally normalised
        under ``spectral_norm``), and ``__call__`` returns ``(logits (N,), class_logits (N, K))``.

    Submodules: ``conv0``, then ``extra{j}`` with ``extra_bn{j}`` or ``extra_ln{j}`` for
    j = 0..extra_layers-1, then ``conv{i}`` with ``bn{i}`` or ``ln{i}`` for i = 1..n-1, then ``logit``. The
    flattened last feature map, the input of ``logit``, is sown as ``intermediates/features`` (kept when
    ``apply`` is given ``mutable=["intermediates"]``).
    """

    base_features: int = 64
    extra_layers: int = 0
    batch_norm: bool = True
    layer_norm: bool = False
    bn_axis_name: str | None = None
    spectral_norm: bool = False
    num_classes: int = 0
    aux_classes: int = 0

    def __post_init__(self):
        _check_positive_int("base_features", self.base_features)
        _check_non_negative_int("extra_layers", self.extra_layers)
        _check_non_negative_int("num_classes", self.num_classes)
        _check_non_negative_int("aux_classes", self.aux_classes)
        super().__post_init__()

    def _normalise(self, h: Array, train: bool, bn_name: str, ln_name: str) -> Array:
        if self.layer_norm:
            return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1, name=ln_name)(h)
        if self.batch_norm:
            return _batch_norm(train, self.bn_axis_name, bn_name)(h)
        return h

    @nn.compact
    def __call__(self, x: Array, train: bool = True, *, labels: Array | None = None) -> Array | tuple[Array, Array]:
        """(N, H, W, C) [and labels (N,) for a projection discriminator] -> (N,); with ``aux_classes=K``,
        ``((N,), (N, K))``: the logits and the class logits."""
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must be images of shape (N, H, W, C), got shape {jnp.shape(x)}")
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"x must be a floating-point array (images in [-1, 1]), got dtype {jnp.result_type(x)}")
        check_class_labels(labels, self.num_classes, x.shape[0], owner="this DCGANDiscriminator")
        n = num_blocks(_check_image_hw("x", x.shape[1], x.shape[2]))
        normalised = self.batch_norm or self.layer_norm

        def weighted(layer: nn.Module, h: Array) -> Array:
            return spectral_normalized(layer, h, enabled=self.spectral_norm, train=train, name=f"sn_{layer.name}")

        h = x
        for i in range(n):
            h = weighted(
                Conv(
                    self.base_features * 2**i,
                    kernel_size=(4, 4),
                    strides=(2, 2),
                    padding=1,
                    use_bias=i == 0 or not normalised,
                    kernel_init=DCGAN_INIT,
                    name=f"conv{i}",
                ),
                h,
            )
            if i > 0:
                h = self._normalise(h, train, f"bn{i}", f"ln{i}")
            h = nn.leaky_relu(h, negative_slope=LEAKY_RELU_SLOPE)
            if i == 0:
                for j in range(self.extra_layers):
                    h = weighted(_extra_conv(self.base_features, f"extra{j}", use_bias=not normalised), h)
                    h = self._normalise(h, train, f"extra_bn{j}", f"extra_ln{j}")
                    h = nn.leaky_relu(h, negative_slope=LEAKY_RELU_SLOPE)
        h = h.reshape(h.shape[0], -1)
        self.sow("intermediates", "features", h)  # the logit layer's input, for linear probes
        logit = weighted(nn.Dense(1, kernel_init=DCGAN_INIT, name="logit"), h)[:, 0]
        logit = logit + class_projection(h, labels, self.num_classes, spectral_norm=self.spectral_norm, train=train)
        if not self.aux_classes:
            return logit
        return logit, weighted(nn.Dense(self.aux_classes, kernel_init=DCGAN_INIT, name="classifier"), h)


def conv_critic(
    base_features: int = 64,
    layer_norm: bool = False,
    extra_layers: int = 0,
    spectral_norm: bool = False,
    num_classes: int = 0,
) -> DCGANDiscriminator:
    """The DCGAN-shaped WGAN / WGAN-GP / WGAN-SN critic: (N, H, W, C) -> scores (N,).

    A :class:`DCGANDiscriminator` without BatchNorm (the gradient penalty is per sample, and
    BatchNorm would couple the samples of a batch); ``layer_norm=True`` is WGAN-GP's substitute,
    ``spectral_norm=True`` WGAN-SN's constraint.
    """
    return DCGANDiscriminator(
        base_features=base_features,
        batch_norm=False,
        layer_norm=layer_norm,
        extra_layers=extra_layers,
        spectral_norm=spectral_norm,
        num_classes=num_classes,
    )
