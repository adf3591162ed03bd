"""AlexNet (Krizhevsky et al. 2012, torchvision's single-tower variant) and VGG-16 (Simonyan & Zisserman 2015).

Module names mirror torchvision's state-dict keys (``features/0`` is ``features.0``,
``classifier/6`` is ``classifier.6``) so :mod:`gendl_jax.finetune` can import their weights.
Images are NHWC float32; both end with an adaptive average pool (6x6 for AlexNet, 7x7 for VGG),
as torchvision, so any input large enough for the convolutions works. ``__call__(x, train)``
returns logits (N, num_classes); dropout needs a "dropout" rng when ``train`` is True.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
"""Configuration "D" of Simonyan & Zisserman (2015): channels of 3x3 convolutions, "M" = 2x2 max pool."""


def adaptive_avg_pool(x: Array, output_size: tuple[int, int]) -> Array:
    """torch's ``AdaptiveAvgPool2d``: (N, H, W, C) -> (N, oh, ow, C); cell i spans [floor(iH/oh), ceil((i+1)H/oh))."""
    _n, h, w, _c = x.shape
    oh, ow = output_size
    if (h, w) == (oh, ow):
        return x
    rows = []
    for i in range(oh):
        r0, r1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        cols = []
        for j in range(ow):
            c0, c1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
            cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)


def _check(module, x: Array, min_size: int) -> None:
    nc = module.num_classes
    if not isinstance(nc, numbers.Integral) or isinstance(nc, bool) or nc < 1:
        raise ValueError(f"num_classes must be a positive int, got {nc!r}")
    if x.ndim != 4 or x.shape[1] < min_size or x.shape[2] < min_size:
        raise ValueError(f"x must have shape (N, H, W, C) with H, W >= {min_size}, got {tuple(x.shape)}")


def _conv(features: int, kernel: int, stride: int, pad: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)), name=name)


def _max_pool(x: Array, window: int, stride: int) -> Array:
    return nn.max_pool(x, (window, window), strides=(stride, stride))


class _AlexNetFeatures(nn.Module):
    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = _max_pool(nn.relu(_conv(64, 11, 4, 2, "0")(x)), 3, 2)
        x = _max_pool(nn.relu(_conv(192, 5, 1, 2, "3")(x)), 3, 2)
        x = nn.relu(_conv(384, 3, 1, 1, "6")(x))
        x = nn.relu(_conv(256, 3, 1, 1, "8")(x))
        x = nn.relu(_conv(256, 3, 1, 1, "10")(x))
        return _max_pool(x, 3, 2)


class _Classifier(nn.Module):
    """Dropout / Linear / ReLU stack; ``names`` are the torch indices of the three linear layers."""

    widths: tuple[int, int, int]
    names: tuple[str, str, str]
    dropout: float
    dropout_first: bool

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        for k, (width, name) in enumerate(zip(self.widths, self.names)):
            if k < 2 and self.dropout_first:
                x = drop(x)
            x = nn.Dense(width, name=name)(x)
            if k < 2:
                x = nn.relu(x)
                if not self.dropout_first:
                    x = drop(x)
        return x


class AlexNet(nn.Module):
    """AlexNet as in torchvision (64-192-384-256-256 convolutions; 61.1M parameters at 1000 classes).

    (N, H, W, 3) with H, W >= 63 -> (N, num_classes) logits.
    """

    num_classes: int = 1000
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _check(self, x, 63)
        h = adaptive_avg_pool(_AlexNetFeatures(name="features")(x), (6, 6))
        # torch flattens NCHW: channel-major order, so imported Linear weights line up.
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
        return _Classifier((4096, 4096, self.num_classes), ("1", "4", "6"), self.dropout, True, name="classifier")(
            h, train
        )


class _VGGFeatures(nn.Module):
    layout: tuple

    @nn.compact
    def __call__(self, x: Array) -> Array:
        index = 0
        for item in self.layout:
            if item == "M":
                x = _max_pool(x, 2, 2)
                index += 1
            else:
                x = nn.relu(_conv(item, 3, 1, 1, str(index))(x))
                index += 2
        return x


class VGG(nn.Module):
    """VGG without BatchNorm (torchvision naming): (N, H, W, 3) with H, W >= 32 -> (N, num_classes) logits.

    Attributes:
      layout: channels of the 3x3 convolutions and "M" for max pools (default: VGG-16, 138.4M parameters).
    """

    num_classes: int = 1000
    layout: tuple = VGG16_LAYOUT
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _check(self, x, 32)
        h = adaptive_avg_pool(_VGGFeatures(tuple(self.layout), name="features")(x), (7, 7))
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
        return _Classifier((4096, 4096, self.num_classes), ("0", "3", "6"), self.dropout, False, name="classifier")(
            h, train
        )


def vgg16(num_classes: int = 1000, **kw) -> VGG:
    """VGG-16 (configuration D)."""
    return VGG(num_classes, VGG16_LAYOUT, **kw)
