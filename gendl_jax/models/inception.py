"""Inception-V3 as the FID graph has it (TF ``inception-2015-12-05``), in Flax linen.

This is the network every published FID, IS and KID is measured with: the TensorFlow Inception graph of
2015-12-05 that TTUR's ``fid.py`` and TF-GAN read, ported to PyTorch by pytorch-fid (its ``fid_inception_v3``)
and by torch-fidelity. It is torchvision's Inception-V3 (Szegedy et al. 2016) with four differences that
change every number:

* the average pooling of the A, C and E blocks does not count the zero padding (TF's ``AVG`` pooling);
* the last E block (``Mixed_7c``) pools with a 3x3 *max* pool where the paper uses an average;
* 1008 logits (1000 ImageNet classes and 8 unused), no auxiliary head;
* BatchNorm with epsilon 1e-3.

Module names mirror the PyTorch state-dict keys of ``pt_inception-2015-12-05-6726825d.pth``
(``Mixed_6b/branch7x7_2/conv`` for ``Mixed_6b.branch7x7_2.conv.weight``), so the weights load by
renaming only (see :func:`gendl_jax.metrics.inception_features.load_inception`).

The input is (N, 299, 299, 3) float32 already scaled to [-1, 1] (resizing and scaling are the job of
:mod:`gendl_jax.metrics.inception_features`, which does them as pytorch-fid or torch-fidelity does). The
output is a dict of features, computed only as far as the deepest one asked for:

==================  ===========  =================================================================
key                 shape        what
==================  ===========  =================================================================
``"64"``            (N, 64)      spatial mean after the first max pool
``"192"``           (N, 192)     spatial mean after the second max pool
``"768"``           (N, 768)     spatial mean of ``Mixed_6e`` (the input of the auxiliary head)
``"2048"``          (N, 2048)    pool3: global average pool of ``Mixed_7c`` (FID and KID)
``"logits_unbiased"`` (N, 1008)  pool3 @ fc.weight, without the bias (torch-fidelity's IS input)
``"logits"``        (N, 1008)    pool3 @ fc.weight + fc.bias
==================  ===========  =================================================================

Example:
  >>> import jax, jax.numpy as jnp
  >>> net = FIDInceptionV3(outputs=("64",))
  >>> x = jnp.zeros((1, 299, 299, 3))
  >>> variables = net.init(jax.random.key(0), x)
  >>> net.apply(variables, x)["64"].shape
  (1, 64)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

INCEPTION_INPUT_SIZE = 299
"""Height and width the network is run at (the FID protocol resizes every image to it)."""

INCEPTION_OUTPUTS: tuple[str, ...] = ("64", "192", "768", "2048", "logits_unbiased", "logits")
"""Feature names in the order the network computes them."""

FEATURE_DIMS: dict[str, int] = {"64": 64, "192": 192, "768": 768, "2048": 2048, "logits_unbiased": 1008, "logits": 1008}

BN_EPSILON = 1e-3
NUM_LOGITS = 1008

_HIGHEST = jax.lax.Precision.HIGHEST


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (running statistics, epsilon 1e-3), ReLU: torch's ``BasicConv2d``.

    Attributes:
      features: output channels.
      kernel: kernel size, an int or (kh, kw).
      stride: stride.
      padding: zero padding, an int or (ph, pw), on both sides of each axis (torch's convention).
      precision: ``lax`` precision of the convolution; HIGHEST keeps float32 products on every backend.
    """

    features: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        ph, pw = _pair(self.padding)
        x = Conv2d(self.features, _pair(self.kernel), self.stride, ((ph, ph), (pw, pw)), self.precision, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


class Conv2d(nn.Module):
    """A convolution without bias (kernel HWIO, named ``kernel`` as ``nn.Conv``'s); 1x1 stride-1 convolutions run
    as a matrix product, which XLA:CPU computes 2-3x faster than its convolution (measured in
    benchmarks/inception.py)."""

    features: int
    kernel: tuple[int, int]
    stride: int
    padding: tuple[tuple[int, int], tuple[int, int]]
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel, x.shape[-1], self.features))
        if self.kernel == (1, 1) and self.stride == 1:
            return jnp.einsum("nhwc,cd->nhwd", x, w[0, 0], precision=self.precision)
        return jax.lax.conv_general_dilated(
            x,
            w,
            (self.stride, self.stride),
            self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )


def avg_pool_exclude_padding(x: Array) -> Array:
    """3x3 average pooling, stride 1, padding 1, dividing each window by its number of in-image pixels
    (TF's ``AVG`` pooling; torch's ``count_include_pad=False``)."""
    window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
    return sums / counts


def max_pool(x: Array, size: int = 3, stride: int = 2, padding: int = 0) -> Array:
    """Max pooling over (size x size) windows; padding (if any) never wins, as in torch."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), pad)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled 1x1 branches (64 + 64 + 96 + pool_features channels)."""

    pool_features: int
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = lambda f, k, p, name: BasicConv2d(f, k, padding=p, precision=self.precision, name=name)
        b1 = c(64, 1, 0, "branch1x1")(x)
        b5 = c(64, 5, 2, "branch5x5_2")(c(48, 1, 0, "branch5x5_1")(x))
        b3 = c(64, 1, 0, "branch3x3dbl_1")(x)
        b3 = c(96, 3, 1, "branch3x3dbl_3")(c(96, 3, 1, "branch3x3dbl_2")(b3))
        bp = c(self.pool_features, 1, 0, "branch_pool")(avg_pool_exclude_padding(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: strided 3x3, strided double 3x3 and a 3x3 max pool."""

    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = lambda f, k, s, p, name: BasicConv2d(f, k, s, p, precision=self.precision, name=name)
        b3 = c(384, 3, 2, 0, "branch3x3")(x)
        bd = c(96, 3, 1, 1, "branch3x3dbl_2")(c(64, 1, 1, 0, "branch3x3dbl_1")(x))
        bd = c(96, 3, 2, 0, "branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1), 4 x 192 channels."""

    channels_7x7: int
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = lambda f, k, p, name: BasicConv2d(f, k, padding=p, precision=self.precision, name=name)
        c7 = self.channels_7x7
        b1 = c(192, 1, 0, "branch1x1")(x)
        b7 = c(c7, 1, 0, "branch7x7_1")(x)
        b7 = c(c7, (1, 7), (0, 3), "branch7x7_2")(b7)
        b7 = c(192, (7, 1), (3, 0), "branch7x7_3")(b7)
        bd = c(c7, 1, 0, "branch7x7dbl_1")(x)
        bd = c(c7, (7, 1), (3, 0), "branch7x7dbl_2")(bd)
        bd = c(c7, (1, 7), (0, 3), "branch7x7dbl_3")(bd)
        bd = c(c7, (7, 1), (3, 0), "branch7x7dbl_4")(bd)
        bd = c(192, (1, 7), (0, 3), "branch7x7dbl_5")(bd)
        bp = c(192, 1, 0, "branch_pool")(avg_pool_exclude_padding(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: strided 3x3 after 1x1, strided 3x3 after 1x7 / 7x1, and a max pool."""

    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = lambda f, k, s, p, name: BasicConv2d(f, k, s, p, precision=self.precision, name=name)
        b3 = c(320, 3, 2, 0, "branch3x3_2")(c(192, 1, 1, 0, "branch3x3_1")(x))
        b7 = c(192, 1, 1, 0, "branch7x7x3_1")(x)
        b7 = c(192, (1, 7), 1, (0, 3), "branch7x7x3_2")(b7)
        b7 = c(192, (7, 1), 1, (3, 0), "branch7x7x3_3")(b7)
        b7 = c(192, 3, 2, 0, "branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches (320 + 768 + 768 + 192 = 2048 channels).

    Attributes:
      pool: "avg" (padding not counted; ``Mixed_7b``) or "max" (``Mixed_7c`` of the FID graph).
    """

    pool: str = "avg"
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        c = lambda f, k, p, name: BasicConv2d(f, k, padding=p, precision=self.precision, name=name)
        b1 = c(320, 1, 0, "branch1x1")(x)
        b3 = c(384, 1, 0, "branch3x3_1")(x)
        b3 = jnp.concatenate(
            [c(384, (1, 3), (0, 1), "branch3x3_2a")(b3), c(384, (3, 1), (1, 0), "branch3x3_2b")(b3)], -1
        )
        bd = c(384, 3, 1, "branch3x3dbl_2")(c(448, 1, 0, "branch3x3dbl_1")(x))
        bd = jnp.concatenate(
            [c(384, (1, 3), (0, 1), "branch3x3dbl_3a")(bd), c(384, (3, 1), (1, 0), "branch3x3dbl_3b")(bd)], -1
        )
        pooled = avg_pool_exclude_padding(x) if self.pool == "avg" else max_pool(x, 3, 1, 1)
        bp = c(192, 1, 0, "branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def _check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    outputs = tuple(outputs)
    unknown = [o for o in outputs if o not in INCEPTION_OUTPUTS]
    if not outputs or unknown:
        raise ValueError(f"outputs must be a non-empty subset of {INCEPTION_OUTPUTS}, got {outputs!r}")
    return outputs


class FIDInceptionV3(nn.Module):
    """The FID Inception-V3: (N, 299, 299, 3) in [-1, 1] -> dict of the ``outputs`` features (float32).

    Attributes:
      outputs: feature names to return (see the module docstring); the network stops at the deepest one.
      precision: ``lax`` precision of every convolution and of the logits (HIGHEST: float32 products on
        every backend, as the reference implementations compute; TF32 on a GPU moves FID in the 3rd digit).
    """

    outputs: tuple[str, ...] = ("2048",)
    precision: jax.lax.Precision | str | None = _HIGHEST

    @nn.compact
    def __call__(self, x: Array) -> dict[str, Array]:
        outputs = _check_outputs(self.outputs)
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < 75:
            raise ValueError(f"x must have shape (N, H, W, 3) with H, W >= 75 (299 for FID), got {tuple(x.shape)}")
        deepest = max(INCEPTION_OUTPUTS.index(o) for o in outputs)
        p = self.precision
        out: dict[str, Array] = {}

        def done(name: str, value: Array) -> bool:
            if name in outputs:
                out[name] = value
            return INCEPTION_OUTPUTS.index(name) >= deepest

        x = BasicConv2d(32, 3, 2, precision=p, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, 3, precision=p, name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, 3, padding=1, precision=p, name="Conv2d_2b_3x3")(x)
        x = max_pool(x)
        if done("64", jnp.mean(x, axis=(1, 2))):
            return out
        x = BasicConv2d(80, 1, precision=p, name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, 3, precision=p, name="Conv2d_4a_3x3")(x)
        x = max_pool(x)
        if done("192", jnp.mean(x, axis=(1, 2))):
            return out
        x = InceptionA(32, precision=p, name="Mixed_5b")(x)
        x = InceptionA(64, precision=p, name="Mixed_5c")(x)
        x = InceptionA(64, precision=p, name="Mixed_5d")(x)
        x = InceptionB(precision=p, name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c7, precision=p, name=name)(x)
        if done("768", jnp.mean(x, axis=(1, 2))):
            return out
        x = InceptionD(precision=p, name="Mixed_7a")(x)
        x = InceptionE("avg", precision=p, name="Mixed_7b")(x)
        x = InceptionE("max", precision=p, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        if done("2048", pool3):
            return out
        fc = nn.Dense(NUM_LOGITS, precision=p, name="fc")
        logits = fc(pool3)
        if "logits_unbiased" in outputs:  # fc's kernel exists once fc has been called
            out["logits_unbiased"] = jnp.dot(pool3, fc.variables["params"]["kernel"], precision=p)
        done("logits", logits)
        return out
