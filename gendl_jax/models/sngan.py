"""SNGAN ResNet generator and discriminator (Miyato et al. 2018, Appendix B).

The CIFAR-10 / STL-10 ResNets of "Spectral normalization for generative adversarial networks", as in the
authors' Chainer code (pfnet-research/sngan_projection) and in Mimicry's / StudioGAN's SNGAN:

* generator: ``z`` (128) -> ``Dense`` to (s0, s0, C0) -> residual up-blocks -> BatchNorm -> ReLU -> 3x3 conv to
  the image channels -> tanh. An up-block is BN -> ReLU -> nearest 2x upsampling -> 3x3 conv -> BN -> ReLU ->
  3x3 conv, plus a shortcut: nearest 2x upsampling -> 1x1 conv;
* discriminator: an optimised first block (3x3 conv -> ReLU -> 3x3 conv -> 2x2 average pool, plus the shortcut
  average pool -> 1x1 conv), residual blocks (ReLU -> 3x3 conv -> ReLU -> 3x3 conv [-> average pool], plus a
  shortcut 1x1 conv [-> average pool] when the block downsamples or changes the width, else the identity; the
  first conv keeps the input width), then ReLU -> global *sum* pooling -> ``Dense(1)``. No BatchNorm; with
  ``spectral_norm`` every kernel (shortcuts, ``logit`` and the projection included) is spectrally normalised
  (:func:`~gendl_jax.models.layers.spectral_normalized`).

Widths, with ``b = base_features`` (64 by default, which gives the published widths at every size):

* 32 px (the paper's CIFAR-10 ResNet: G ch 256, D ch 128): G 4x4 x 4b -> three up-blocks of 4b; D optimised block 2b (32 -> 16),
  2b down (8), 2b, 2b;
* 48 px (the paper's STL-10 ResNet; Mimicry's ngf 512, ndf 1024): G 6x6 x 8b -> 4b -> 2b -> b; D b (24), 2b (12), 4b (6), 8b (3)
  down, then 16b at 3x3;
* 64 px (Mimicry and the authors' 64 px code: ngf = ndf = 1024): G 4x4 x 16b -> 8b -> 4b -> 2b -> b; D b (32), 2b,
  4b, 8b, 16b (2), every block down;
* 28 px (this library's adaptation, for MNIST): the 32 px networks with a 7x7 first map and two up-blocks;
  D 28 -> 14 -> 7 -> 7 -> 7.

Class-conditional networks (``num_classes > 0``): the generator's block BatchNorms are conditional (a per-class gain
and bias, embeddings initialised to 1 and 0, on a BatchNorm without its own affine parameters; the final BatchNorm
stays unconditional, as in the authors' code); the discriminator is a projection discriminator (Miyato & Koyama 2018):
``Dense(1)(h) + <V[y], h>`` on the pooled features ``h``
(:func:`~gendl_jax.models.layers.class_projection`).

Initialisation: Xavier-uniform kernels (gain sqrt(2) for the residual 3x3 convolutions, 1 elsewhere, as in the
authors' code), zero biases, BatchNorm scales 1. Upsampling is nearest-neighbour (the paper; Mimicry uses bilinear).
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp

from gendl_jax.models.layers import Conv, check_class_labels, class_projection, spectral_normalized

Array = jax.Array

SNGAN_IMAGE_SIZES: dict[int, int] = {28: 7, 32: 4, 48: 6, 64: 4}
"""Image side -> side of the generator's first feature map."""

SNGAN_LATENT_DIM = 128
"""The paper's latent size."""

# Image side -> the generator's widths in units of base_features: the first map's, then each up-block's output.
GENERATOR_WIDTHS: dict[int, tuple[int, ...]] = {28: (4, 4, 4), 32: (4, 4, 4, 4), 48: (8, 4, 2, 1), 64: (16, 8, 4, 2, 1)}
# Image side -> the discriminator's blocks: (width in units of base_features, downsamples); the first is optimised.
_D32 = ((2, True), (2, True), (2, False), (2, False))
DISCRIMINATOR_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    28: _D32,
    32: _D32,
    48: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, True)),
}


def _xavier(gain: float = 1.0) -> nn.initializers.Initializer:
    """PyTorch's ``xavier_uniform_(w, gain)``: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


RESIDUAL_INIT = _xavier(math.sqrt(2.0))
XAVIER_INIT = _xavier(1.0)


def _supported() -> str:
    return ", ".join(f"{s}x{s}" for s in SNGAN_IMAGE_SIZES)


def _check_int(name: str, value, minimum: int) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_image_hw(name: str, h: int, w: int) -> int:
    if h != w or h not in SNGAN_IMAGE_SIZES:
        raise ValueError(f"{name}: the SNGAN ResNets support square images of size {_supported()}, got {h}x{w}")
    return h


def _upsample(h: Array) -> Array:
    """Nearest-neighbour 2x upsampling, (N, H, W, C) -> (N, 2H, 2W, C)."""
    return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


def _avg_pool(h: Array) -> Array:
    """2x2 average pooling with stride 2, (N, H, W, C) -> (N, H/2, W/2, C) (H, W even)."""
    n, height, width, c = h.shape
    return h.reshape(n, height // 2, 2, width // 2, 2, c).mean(axis=(2, 4))


def _conv(features: int, kernel: int, init, name: str) -> Conv:
    """A stride-1 ``kernel`` x ``kernel`` convolution with 'same' padding and a bias."""
    return Conv(features, kernel_size=kernel, strides=1, padding=kernel // 2, kernel_init=init, name=name)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then a per-class gain and bias: (N, H, W, C), (N,) -> (N, H, W, C).

    Parameters ``gain/embedding`` (num_classes, C), initialised to 1, and ``bias/embedding`` (num_classes, C),
    initialised to 0; the batch statistics under ``bn``.
    """

    num_classes: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, labels: Array, train: bool) -> Array:
        h = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            use_scale=False,
            use_bias=False,
            axis_name=self.bn_axis_name,
            name="bn",
        )(x)
        c = x.shape[-1]
        gain = nn.Embed(self.num_classes, c, embedding_init=nn.initializers.ones, name="gain")(labels)
        bias = nn.Embed(self.num_classes, c, embedding_init=nn.initializers.zeros, name="bias")(labels)
        return h * gain[:, None, None, :] + bias[:, None, None, :]


def _batch_norm(train: bool, axis_name: str | None, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name, name=name)


class GeneratorBlock(nn.Module):
    """Residual up-block: (N, H, W, C_in) -> (N, 2H, 2W, features).

    Residual: BN ``bn1`` -> ReLU -> upsample -> 3x3 ``conv1`` -> BN ``bn2`` -> ReLU -> 3x3 ``conv2``;
    shortcut: upsample -> 1x1 ``shortcut``. The BatchNorms are :class:`ConditionalBatchNorm` when ``num_classes``.
    """

    features: int
    num_classes: int = 0
    bn_axis_name: str | None = None

    def _norm(self, h: Array, labels: Array | None, train: bool, name: str) -> Array:
        if self.num_classes:
            return ConditionalBatchNorm(self.num_classes, self.bn_axis_name, name=name)(h, labels, train)
        return _batch_norm(train, self.bn_axis_name, name)(h)

    @nn.compact
    def __call__(self, x: Array, train: bool, labels: Array | None = None) -> Array:
        h = nn.relu(self._norm(x, labels, train, "bn1"))
        h = _conv(self.features, 3, RESIDUAL_INIT, "conv1")(_upsample(h))
        h = nn.relu(self._norm(h, labels, train, "bn2"))
        h = _conv(self.features, 3, RESIDUAL_INIT, "conv2")(h)
        return h + _conv(self.features, 1, XAVIER_INIT, "shortcut")(_upsample(x))


class DiscriminatorBlock(nn.Module):
    """Residual block: (N, H, W, C_in) -> (N, H', W', features), H' = H / 2 when ``downsample`` else H.

    ``optimized`` (the first block, on the image): 3x3 ``conv1`` (to ``features``) -> ReLU -> 3x3 ``conv2`` ->
    average pool, shortcut average pool -> 1x1 ``shortcut``. Otherwise: ReLU -> 3x3 ``conv1`` (C_in -> C_in) ->
    ReLU -> 3x3 ``conv2`` [-> average pool], shortcut 1x1 ``shortcut`` [-> average pool] when the block
    downsamples or changes the width, else the identity. Every kernel spectrally normalised with ``spectral_norm``.
    """

    features: int
    downsample: bool = True
    optimized: bool = False
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        def weighted(layer: nn.Module, h: Array) -> Array:
            return spectral_normalized(layer, h, enabled=self.spectral_norm, train=train, name=f"sn_{layer.name}")

        c_in = x.shape[-1]
        if self.optimized:
            h = weighted(_conv(self.features, 3, RESIDUAL_INIT, "conv1"), x)
            h = weighted(_conv(self.features, 3, RESIDUAL_INIT, "conv2"), nn.relu(h))
            return _avg_pool(h) + weighted(_conv(self.features, 1, XAVIER_INIT, "shortcut"), _avg_pool(x))
        h = weighted(_conv(c_in, 3, RESIDUAL_INIT, "conv1"), nn.relu(x))
        h = weighted(_conv(self.features, 3, RESIDUAL_INIT, "conv2"), nn.relu(h))
        shortcut = x
        if self.downsample or c_in != self.features:
            shortcut = weighted(_conv(self.features, 1, XAVIER_INIT, "shortcut"), x)
        if self.downsample:
            h, shortcut = _avg_pool(h), _avg_pool(shortcut)
        return h + shortcut


class SNGANGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, H, W, C) in [-1, 1]: the SNGAN ResNet generator (module docstring).

    Attributes:
      image_shape: (H, W, C) with H = W in {28, 32, 48, 64}.
      base_features: width unit ``b`` (64: the paper's widths, e.g. 256 channels at 32 px).
      bn_axis_name: mapped axis of BatchNorm's batch statistics under ``pmap`` / ``shard_map``.
      num_classes: 0, or the classes of a generator with conditional BatchNorm in its blocks
        (``__call__(z, train, labels=...)``, labels (N,) ints in [0, num_classes)).

    Submodules: ``project`` (Dense, with bias), ``block{i}`` (:class:`GeneratorBlock`) for i = 1..n, ``bn``, ``output``.
    """

    image_shape: tuple[int, int, int] = (32, 32, 3)
    base_features: int = 64
    bn_axis_name: str | None = None
    num_classes: int = 0

    def __post_init__(self):
        shape = self.image_shape
        if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(s, numbers.Integral) for s in shape)):
            raise ValueError(f"image_shape must be a tuple (H, W, C) of ints, got {shape!r}")
        _check_image_hw("image_shape", shape[0], shape[1])
        _check_int("image_shape[2] (channels)", shape[2], 1)
        _check_int("base_features", self.base_features, 1)
        _check_int("num_classes", self.num_classes, 0)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: Array, train: bool = True, *, labels: Array | None = None) -> Array:
        """(N, latent_dim) [and labels (N,) for a conditional generator] -> (N, H, W, C)."""
        if jnp.ndim(z) != 2:
            raise ValueError(f"z must have shape (N, latent_dim), got shape {jnp.shape(z)}")
        if not jnp.issubdtype(jnp.result_type(z), jnp.floating):
            raise ValueError(f"z must be a floating-point array, got dtype {jnp.result_type(z)}")
        check_class_labels(labels, self.num_classes, z.shape[0], owner="this SNGANGenerator")
        size, _, channels = self.image_shape
        s0 = SNGAN_IMAGE_SIZES[size]
        widths = [w * self.base_features for w in GENERATOR_WIDTHS[size]]
        h = nn.Dense(s0 * s0 * widths[0], kernel_init=XAVIER_INIT, name="project")(z)
        h = h.reshape(z.shape[0], s0, s0, widths[0])
        for i, features in enumerate(widths[1:], start=1):
            h = GeneratorBlock(features, self.num_classes, self.bn_axis_name, name=f"block{i}")(h, train, labels)
        h = nn.relu(_batch_norm(train, self.bn_axis_name, "bn")(h))
        return jnp.tanh(_conv(channels, 3, XAVIER_INIT, "output")(h))


class SNGANDiscriminator(nn.Module):
    """Images (N, H, W, C) -> logits / critic scores (N,): the SNGAN ResNet discriminator (module docstring).

    Attributes:
      base_features: width unit ``b`` (64: the paper's widths, e.g. 128 channels at 32 px).
      spectral_norm: every kernel divided by its spectral norm (the power-iteration vectors are ``batch_stats``).
      num_classes: 0, or the classes of a projection discriminator (``__call__(x, train, labels=...)``).
      aux_classes: 0, or ``K`` for AC-GAN's discriminator (Odena et al. 2017): a second head ``classifier``, a
        ``Dense(K)`` on the same pooled features as ``logit`` (spectrally normalised under ``spectral_norm``), and
        ``__call__`` returns ``(logits (N,), class_logits (N, K))``, as the DCGAN and MLP discriminators do.

    Submodules: ``block{i}`` (:class:`DiscriminatorBlock`) for i = 1..n, ``logit``, ``projection`` when
    conditional, ``classifier`` with ``aux_classes``. The pooled features, the input of ``logit``, are sown as ``intermediates/features``.
    """

    base_features: int = 64
    spectral_norm: bool = False
    num_classes: int = 0
    aux_classes: int = 0

    def __post_init__(self):
        _check_int("base_features", self.base_features, 1)
        _check_int("num_classes", self.num_classes, 0)
        _check_int("aux_classes", self.aux_classes, 0)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True, *, labels: Array | None = None) -> Array | tuple[Array, Array]:
        """(N, H, W, C) [and labels (N,) for a projection discriminator] -> (N,); with ``aux_classes=K``,
        ``((N,), (N, K))``: the logits and the class logits."""
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must be images of shape (N, H, W, C), got shape {jnp.shape(x)}")
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"x must be a floating-point array (images in [-1, 1]), got dtype {jnp.result_type(x)}")
        check_class_labels(labels, self.num_classes, x.shape[0], owner="this SNGANDiscriminator")
        size = _check_image_hw("x", x.shape[1], x.shape[2])
        h = x
        for i, (width, downsample) in enumerate(DISCRIMINATOR_BLOCKS[size], start=1):
            block = DiscriminatorBlock(
                width * self.base_features, downsample, i == 1, self.spectral_norm, name=f"block{i}"
            )
            h = block(h, train)
        h = jnp.sum(nn.relu(h), axis=(1, 2))
        self.sow("intermediates", "features", h)

        def weighted(layer: nn.Module) -> Array:
            return spectral_normalized(layer, h, enabled=self.spectral_norm, train=train, name=f"sn_{layer.name}")

        logit = weighted(nn.Dense(1, kernel_init=XAVIER_INIT, name="logit"))[:, 0]
        logit = logit + class_projection(h, labels, self.num_classes, spectral_norm=self.spectral_norm, train=train)
        if not self.aux_classes:
            return logit
        return logit, weighted(nn.Dense(self.aux_classes, kernel_init=XAVIER_INIT, name="classifier"))
