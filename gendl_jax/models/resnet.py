"""ResNets (He et al. 2016) and Wide ResNets (Zagoruyko & Komodakis 2016) in Flax linen.

Two families:

* :class:`ResNet`: the ImageNet networks (7x7 stride-2 stem, 3x3 max pool, four stages, global
  average pool, linear head). Module names mirror torchvision's state-dict keys (``conv1``,
  ``bn1``, ``layer1/0/conv1``, ``layer1/0/downsample/0``, ``fc``) so that
  :mod:`gendl_jax.finetune` imports torchvision weights by renaming only; strides sit on the 3x3
  convolution of a bottleneck and the padding is explicit, as in torchvision, so the same weights
  give the same logits. Constructors: :func:`resnet18` ... :func:`resnet152`, :func:`wide_resnet50_2`.
* :class:`CifarResNet` (He et al. 2016, Sec. 4.2: 6n+2 layers, widths 16/32/64, parameter-free
  "option A" shortcuts) and :class:`WideResNet` (pre-activation, widths 16k/32k/64k, depth 6n+4),
  for 32x32 images.

All take NHWC float32 images and ``train`` (BatchNorm uses batch statistics and updates
``batch_stats`` when True), and return logits (N, num_classes).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu").
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

BLOCKS = ("basic", "bottleneck")


def _positive_int(name: str, value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_images(x: Array, min_size: int = 1) -> None:
    if x.ndim != 4 or x.shape[1] < min_size or x.shape[2] < min_size:
        raise ValueError(f"x must have shape (N, H, W, C) with H, W >= {min_size}, got {tuple(x.shape)}")


def _conv(features: int, kernel: int, stride: int = 1, name: str | None = None) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=CONV_INIT,
        name=name,
    )


def _bn(train: bool, frozen: bool, name: str) -> nn.BatchNorm:
    # torch momentum 0.1 is flax momentum 0.9; eps 1e-5 as in torch.
    return nn.BatchNorm(use_running_average=not train or frozen, momentum=0.9, epsilon=1e-5, name=name)


class Downsample(nn.Module):
    """1x1 strided convolution + BatchNorm on the shortcut (torchvision's ``downsample.0`` / ``.1``)."""

    features: int
    stride: int
    frozen: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        x = _conv(self.features, 1, self.stride, name="0")(x)
        return _bn(train, self.frozen, "1")(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; output ``features`` channels."""

    features: int
    stride: int = 1
    width: int = 64  # unused: basic blocks have no inner width
    frozen: bool = False
    expansion = 1

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        h = nn.relu(_bn(train, self.frozen, "bn1")(_conv(self.features, 3, self.stride, "conv1")(x)))
        h = _bn(train, self.frozen, "bn2")(_conv(self.features, 3, 1, "conv2")(h))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = Downsample(self.features, self.stride, self.frozen, name="downsample")(x, train)
        return nn.relu(h + x)


class Bottleneck(nn.Module):
    """1x1 (to ``width``), 3x3 (stride here, as torchvision "ResNet v1.5"), 1x1 (to 4 * ``features``)."""

    features: int
    stride: int = 1
    width: int = 64
    frozen: bool = False
    expansion = 4

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        out = self.features * self.expansion
        h = nn.relu(_bn(train, self.frozen, "bn1")(_conv(self.width, 1, 1, "conv1")(x)))
        h = nn.relu(_bn(train, self.frozen, "bn2")(_conv(self.width, 3, self.stride, "conv2")(h)))
        h = _bn(train, self.frozen, "bn3")(_conv(out, 1, 1, "conv3")(h))
        if self.stride != 1 or x.shape[-1] != out:
            x = Downsample(out, self.stride, self.frozen, name="downsample")(x, train)
        return nn.relu(h + x)


class Stage(nn.Module):
    """``num_blocks`` residual blocks named "0", "1", ...; the first one carries the stride."""

    block: str
    num_blocks: int
    features: int
    stride: int
    width: int
    frozen: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        cls = BasicBlock if self.block == "basic" else Bottleneck
        for i in range(self.num_blocks):
            x = cls(self.features, self.stride if i == 0 else 1, self.width, self.frozen, name=str(i))(x, train)
        return x


class ResNet(nn.Module):
    """ImageNet-style ResNet: (N, H, W, 3) -> (N, num_classes) logits (any H, W >= 32).

    Attributes:
      stage_sizes: blocks per stage (four stages: 64, 128, 256, 512 base features).
      block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50 and deeper; outputs 4x the base).
      num_classes: outputs of the linear head ``fc``.
      width_per_group: inner width of a bottleneck's 3x3 convolution at stage 1 (64; 128 for WRN-50-2).
      frozen_bn: top-level names (``"bn1"``, ``"layer1"`` ... ``"layer4"``) whose BatchNorm layers
        always use and never update their running statistics (for fine-tuning with frozen parts).
    """

    stage_sizes: Sequence[int]
    block: str = "basic"
    num_classes: int = 1000
    width_per_group: int = 64
    frozen_bn: tuple[str, ...] = ()

    STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")

    def _backbone(self, x: Array, train: bool) -> Array:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if len(self.stage_sizes) != 4:
            raise ValueError(f"stage_sizes must have 4 entries, got {tuple(self.stage_sizes)!r}")
        for n in self.stage_sizes:
            _positive_int("stage_sizes entries", n)
        valid = ("bn1", *self.STAGE_NAMES)
        unknown = [n for n in self.frozen_bn if n not in valid]
        if unknown:
            raise ValueError(f"frozen_bn has unknown names {unknown}; valid names: {list(valid)}")
        _check_images(x)
        h = nn.Conv(
            64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False, kernel_init=CONV_INIT, name="conv1"
        )(x)
        h = nn.relu(_bn(train, "bn1" in self.frozen_bn, "bn1")(h))
        h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, (name, n) in enumerate(zip(self.STAGE_NAMES, self.stage_sizes)):
            base = 64 * 2**i
            width = base * self.width_per_group // 64
            h = Stage(self.block, n, base, 1 if i == 0 else 2, width, name in self.frozen_bn, name=name)(h, train)
        return jnp.mean(h, axis=(1, 2))

    @nn.compact
    def __call__(self, x: Array, train: bool = False, return_features: bool = False):
        """(N, H, W, C) -> logits (N, num_classes); with ``return_features`` also the pooled
        features (N, 512 * expansion) the head reads."""
        _positive_int("num_classes", self.num_classes)
        features = self._backbone(x, train)
        logits = nn.Dense(self.num_classes, name="fc")(features)
        return (logits, features) if return_features else logits


def resnet18(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-18 (11.7M parameters at 1000 classes)."""
    return ResNet((2, 2, 2, 2), "basic", num_classes, **kw)


def resnet34(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-34 (21.8M parameters)."""
    return ResNet((3, 4, 6, 3), "basic", num_classes, **kw)


def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-50 (25.6M parameters)."""
    return ResNet((3, 4, 6, 3), "bottleneck", num_classes, **kw)


def resnet101(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-101 (44.5M parameters)."""
    return ResNet((3, 4, 23, 3), "bottleneck", num_classes, **kw)


def resnet152(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-152 (60.2M parameters)."""
    return ResNet((3, 8, 36, 3), "bottleneck", num_classes, **kw)


def wide_resnet50_2(num_classes: int = 1000, **kw) -> ResNet:
    """WRN-50-2: ResNet-50 with bottleneck inner widths doubled (68.9M parameters)."""
    return ResNet((3, 4, 6, 3), "bottleneck", num_classes, width_per_group=128, **kw)


# CIFAR-style networks (32x32 inputs).


class CifarBlock(nn.Module):
    """He et al.'s CIFAR basic block with the parameter-free "option A" shortcut (stride-2 subsampling, zero channels)."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        h = nn.relu(_bn(train, False, "bn1")(_conv(self.features, 3, self.stride, "conv1")(x)))
        h = _bn(train, False, "bn2")(_conv(self.features, 3, 1, "conv2")(h))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = x[:, :: self.stride, :: self.stride, :]
            extra = self.features - x.shape[-1]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(h + x)


class CifarResNet(nn.Module):
    """He et al. (2016) CIFAR ResNet of depth 6n+2: (N, 32, 32, C) -> (N, num_classes) logits.

    Attributes:
      depth: 20, 32, 44, 56, 110, ... (depth - 2 divisible by 6).
      num_classes: outputs of the head ``fc``.
    """

    depth: int = 20
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _positive_int("depth", self.depth)
        _positive_int("num_classes", self.num_classes)
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {self.depth}")
        _check_images(x)
        n = (self.depth - 2) // 6
        h = nn.relu(_bn(train, False, "bn1")(_conv(16, 3, 1, "conv1")(x)))
        for i, features in enumerate((16, 32, 64)):
            for j in range(n):
                h = CifarBlock(features, 2 if (i > 0 and j == 0) else 1, name=f"layer{i + 1}_{j}")(h, train)
        return nn.Dense(self.num_classes, name="fc")(jnp.mean(h, axis=(1, 2)))


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3, 1x1 conv shortcut when the shape changes."""

    features: int
    stride: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        pre = nn.relu(_bn(train, False, "bn1")(x))
        h = _conv(self.features, 3, self.stride, "conv1")(pre)
        h = nn.relu(_bn(train, False, "bn2")(h))
        if self.dropout:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.features, 3, 1, "conv2")(h)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _conv(self.features, 1, self.stride, "shortcut")(pre)
        return h + x


class WideResNet(nn.Module):
    """WRN-d-k (Zagoruyko & Komodakis 2016) for 32x32 images: (N, 32, 32, C) -> (N, num_classes) logits.

    Attributes:
      depth: 6n + 4 (e.g. 28 -> n = 4 blocks per group).
      widen_factor: k; group widths 16k, 32k, 64k.
      dropout: dropout rate between the convolutions of a block (needs a "dropout" rng when training).
    """

    depth: int = 28
    widen_factor: int = 10
    num_classes: int = 10
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _positive_int("depth", self.depth)
        _positive_int("widen_factor", self.widen_factor)
        _positive_int("num_classes", self.num_classes)
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (e.g. 16, 22, 28, 40), got {self.depth}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        _check_images(x)
        n = (self.depth - 4) // 6
        h = _conv(16, 3, 1, "conv1")(x)
        for i, base in enumerate((16, 32, 64)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                h = WideBlock(base * self.widen_factor, stride, self.dropout, name=f"layer{i + 1}_{j}")(h, train)
        h = nn.relu(_bn(train, False, "bn_final")(h))
        return nn.Dense(self.num_classes, name="fc")(jnp.mean(h, axis=(1, 2)))


wrn_28_10 = functools.partial(WideResNet, depth=28, widen_factor=10)
