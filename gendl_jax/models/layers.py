"""Building blocks: a fast transposed convolution, a strided convolution with a fast second-order
reverse mode (the WGAN-GP critic's), and the maxout unit.

Transposed convolution
----------------------
:func:`conv_transpose` is the adjoint (transpose) of the strided forward convolution

    C_W : u -> lax.conv_general_dilated(u, W, strides, padding, ("NHWC", "HWIO", "NHWC")),

that is, ``y = C_W^T x``, which is what PyTorch's ``ConvTranspose2d`` computes (output size
``(in - 1) * s - p_lo - p_hi + k``). Writing it as such makes the three bilinear maps involved
explicit::

    T(x, W) = C_W^T x                     (forward: the transposed convolution)
    C(g, W) = conv(g, W)                  (input gradient: the strided forward convolution)
    K(g, x) = d/dW <x, conv(g, W)>        (kernel gradient: the forward conv's own kernel gradient)

Autodiff through ``lax.conv_transpose`` / ``nn.ConvTranspose`` computes the kernel gradient with
an *input-dilated* convolution (zeros inserted between the pixels of ``x``), which XLA:CPU runs
about 10x slower than PyTorch (see ``DESIGN.md``, "Performance notes", and
``benchmarks/conv_transpose.py``). Here the reverse-mode derivative is ``(C(g, W), K(g, x))``:
a strided convolution and a window-dilated kernel gradient, the two fast kernels.

Implementation note: the rule is a ``jax.custom_jvp`` (not ``custom_vjp``) whose tangent
``T(dx, W) + T(x, dW)`` is written so that JAX's transposition of it is exactly ``C(g, W)``
(for ``dx``) and ``K(g, x)`` (for ``dW``; ``T(x, .)`` is written as the transpose of ``K(., x)``).
Reverse mode thus runs the same operations a hand-written ``custom_vjp`` backward would, while
forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), higher-order reverse mode and ``vmap``
keep working (a forward-mode tangent w.r.t. the kernel is the one slower piece: it is computed
through the transpose of ``K``); ``tests/models/test_layers.py`` checks the gradient's operations
and values.

The value ``T(x, W)`` itself (the generator's forward pass, and the input gradient of :func:`conv`
below) is, on CPU and for large outputs, computed in sub-pixel form: for a kernel size that is a
multiple of the stride, one stride-1 convolution with ``sh * sw`` times the output channels (one
group per output phase) followed by a depth-to-space reshape, instead of XLA's input-dilated
convolution, whose inserted zeros XLA:CPU multiplies (2.6-4.1x slower at 32x32x64 and 28x28x64
outputs). Only the value takes this form; the derivatives above are unchanged.

Strided convolution (second-order reverse mode)
-----------------------------------------------
:func:`conv` is ``C(x, W)`` itself. Its first derivatives under plain autodiff are fast, but a
gradient penalty (WGAN-GP) differentiates the critic's *input gradient* ``T(g, W) = C_W^T g``
(an input-dilated convolution) once more w.r.t. ``W``, and JAX's rule for that is a
kernel-reversed, window-dilated convolution that XLA:CPU ran 47x slower than the equivalent
``K(g, d)`` (174 ms vs 3.7 ms for 14x14x64 -> 7x7x128, batch 64, on the 2-core CPU of
``DESIGN.md``'s performance notes; the DCGAN critic's penalty gradient ran 8x faster with
:func:`conv`, the whole WGAN-GP train step 3.3x). :func:`conv` is a
``jax.custom_vjp`` whose backward is ``(T(g, W), K(x, g))`` with ``T`` the :func:`conv_transpose`
above, so differentiating the backward again runs ``C`` and ``K``, the fast kernels. The backward
is built from differentiable operations, so reverse-over-reverse (``grad`` of a function of a
``grad``), forward-over-reverse (``jvp`` of ``grad``, ``jacfwd(jacrev(.))``) and ``vmap`` work;
forward mode applied to :func:`conv` directly (``jax.jvp``, ``jax.jacfwd`` of the critic) does not
(a ``custom_vjp`` limitation) -- use ``lax.conv_general_dilated`` where that is needed.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax
from jax.custom_derivatives import SymbolicZero

Array = jax.Array
Initializer = Callable[..., Any]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

DCGAN_INIT = nn.initializers.normal(stddev=0.02)
"""Weight init of Radford et al. (2015): N(0, 0.02^2)."""


# ----------------------------------------------------------------------------------------------
# conv_transpose
# ----------------------------------------------------------------------------------------------


def _conv(u: Array, kernel: Array, strides, padding) -> Array:
    """C(u, W): the strided forward convolution, (N, H_out, W_out, C_out) -> (N, H_in, W_in, C_in)."""
    return lax.conv_general_dilated(u, kernel, strides, padding, dimension_numbers=_DIMENSION_NUMBERS)


def _image_aval(x: Array, kernel: Array, output_hw) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((x.shape[0], *output_hw, kernel.shape[2]), x.dtype)


def _transposed(x: Array, kernel: Array, strides, padding, output_hw) -> Array:
    """T(x, W) = C_W^T x."""
    (y,) = jax.linear_transpose(lambda u: _conv(u, kernel, strides, padding), _image_aval(x, kernel, output_hw))(x)
    return y


def _transposed_subpixel(x: Array, kernel: Array, strides, padding, output_hw) -> Array:
    """T(x, W) as one stride-1 convolution and a depth-to-space shuffle (sub-pixel form), for kernels whose size
    is a multiple of the stride; the same map as :func:`_transposed` up to float rounding.

    With ``kh = th * sh``, the output row ``p`` of phase ``r = (p + top) mod sh`` sums ``th`` rows of ``x``
    against the kernel rows ``r, r + sh, ...``: a stride-1 ``th x tw`` convolution of ``x`` (padded by
    ``th - 1`` rows) whose ``sh * sw * C_out`` output channels are the phases, interleaved by a reshape. XLA:CPU
    runs the input-dilated convolution of :func:`_transposed` with the ``s - 1`` zeros between pixels it
    multiplies (4.1x slower for 14x14x64 -> 28x28x64 at batch 64: ``benchmarks/conv_transpose.py --shapes``).
    The stride-1 convolution has ``(m1 - m0) * (n1 - n0)`` output pixels per phase, up to ``th - 1`` rows and
    columns more than the output needs (computed and cropped).
    """
    kh, kw, c_out, c_in = kernel.shape
    (sh, sw), ((top, _), (left, _)) = strides, padding
    th, tw = kh // sh, kw // sw
    n, h_in, w_in, _ = x.shape
    h_out, w_out = output_hw
    # Only the phase rows m in [m0, m1) reach the output rows [top, top + h_out) (q = s * m + r = p + top).
    (m0, m1), (n0, n1) = ((o // s, -(-(o + size) // s)) for o, size, s in ((top, h_out, sh), (left, w_out, sw)))
    m1, n1 = min(m1, h_in + th - 1), min(n1, w_in + tw - 1)
    xp = jnp.pad(x, ((0, 0), (th - 1, th - 1), (tw - 1, tw - 1), (0, 0)))[:, m0 : m1 + th - 1, n0 : n1 + tw - 1]
    # V[t1, t2, :, (r1, r2, :)] = W[r1 + sh (th - 1 - t1), r2 + sw (tw - 1 - t2)]^T
    v = kernel.reshape(th, sh, tw, sw, c_out, c_in)[::-1, :, ::-1]
    v = v.transpose(0, 2, 5, 1, 3, 4).reshape(th, tw, c_in, sh * sw * c_out)
    q = lax.conv_general_dilated(xp, v, (1, 1), "VALID", dimension_numbers=_DIMENSION_NUMBERS)
    q = q.reshape(n, m1 - m0, n1 - n0, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
    q = q.reshape(n, (m1 - m0) * sh, (n1 - n0) * sw, c_out)
    r0, c0 = top - m0 * sh, left - n0 * sw
    # Output rows past every window (a larger output_hw) get no contribution: zeros.
    q = jnp.pad(q, ((0, 0), (0, max(0, r0 + h_out - q.shape[1])), (0, max(0, c0 + w_out - q.shape[2])), (0, 0)))
    return q[:, r0 : r0 + h_out, c0 : c0 + w_out]


# Where the sub-pixel form pays on XLA:CPU (forward value, batch 64, k=4, s=2, calls back to back;
# ``python benchmarks/conv_transpose.py --shapes``, benchmarks/results/conv_transpose_forms.json): outputs of 16x16
# pixels or more with 16 channels or more (8x8x128 -> 16x16x64: 1.16x faster, 16x16x128 -> 32x32x64: 2.6x,
# 14x14x64 -> 28x28x64: 4.1x). Smaller maps and few channels are a wash or slower (7x7x128 -> 14x14x64: 0.93-1.07x
# over runs, 4x4x256 -> 8x8x128: 0.85x, 14x14x64 -> 28x28x1: 0.85x, 32x32x64 -> 64x64x3: 0.92x).
_SUBPIXEL_MIN_PIXELS = 256
_SUBPIXEL_MIN_CHANNELS = 16


def _transposed_fast(x: Array, kernel: Array, strides, padding, output_hw) -> Array:
    """T(x, W) in the faster form for the platform: on CPU, :func:`_transposed_subpixel` where it pays (a kernel
    size that is a multiple of the stride, an output of at least ``_SUBPIXEL_MIN_PIXELS`` pixels and
    ``_SUBPIXEL_MIN_CHANNELS`` channels); elsewhere, and on other platforms (not measured), :func:`_transposed`."""
    kh, kw, c_out, _ = kernel.shape
    subpixel = (
        max(strides) > 1
        and kh % strides[0] == 0
        and kw % strides[1] == 0
        and output_hw[0] * output_hw[1] >= _SUBPIXEL_MIN_PIXELS
        and c_out >= _SUBPIXEL_MIN_CHANNELS
    )
    if not subpixel:
        return _transposed(x, kernel, strides, padding, output_hw)
    return lax.platform_dependent(
        x,
        kernel,
        cpu=lambda x, kernel: _transposed_subpixel(x, kernel, strides, padding, output_hw),
        default=lambda x, kernel: _transposed(x, kernel, strides, padding, output_hw),
    )


def _kernel_grad(g: Array, x: Array, kernel_shape, strides, padding) -> Array:
    """K(g, x) = d/dW <x, conv(g, W)>: the strided convolution's kernel gradient, shape ``kernel_shape``."""
    aval = jax.ShapeDtypeStruct(kernel_shape, x.dtype)
    (dw,) = jax.linear_transpose(lambda w: _conv(g, w, strides, padding), aval)(x)
    return dw


def _transposed_kernel_tangent(x: Array, dkernel: Array, strides, padding, output_hw) -> Array:
    """T(x, dW), written as K(., x)^T dW so that its transpose (w.r.t. dW) is K(g, x)."""
    aval = _image_aval(x, dkernel, output_hw)
    (y,) = jax.linear_transpose(lambda g: _kernel_grad(g, x, dkernel.shape, strides, padding), aval)(dkernel)
    return y


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv_transpose(x, kernel, strides, padding, output_hw):
    return _transposed_fast(x, kernel, strides, padding, output_hw)


def _conv_transpose_jvp(strides, padding, output_hw, primals, tangents):
    x, kernel = primals
    dx, dkernel = tangents
    y = _transposed_fast(x, kernel, strides, padding, output_hw)
    dy = None
    if not isinstance(dx, SymbolicZero):
        dy = _transposed(dx, kernel, strides, padding, output_hw)
    if not isinstance(dkernel, SymbolicZero):
        dk = _transposed_kernel_tangent(x, dkernel, strides, padding, output_hw)
        dy = dk if dy is None else dy + dk
    if dy is None:
        dy = jnp.zeros_like(y)
    return y, dy


_conv_transpose.defjvp(_conv_transpose_jvp, symbolic_zeros=True)


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> a pair of Python ints."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _padding_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        pairs = tuple(_pair(tuple(p), "padding") for p in padding)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != 2 or min(min(p) for p in pairs) < 0:
        raise ValueError(f"padding must be ((top, bottom), (left, right)) with non-negative ints, got {padding!r}")
    return pairs


def _check_conv_args(x, kernel, strides, padding, *, layout: str, in_axis: int):
    """(x, kernel, strides pair, padding pairs) after checking shapes and dtypes; ``kernel.shape[in_axis]``
    must be C_in = ``x.shape[-1]`` (``layout`` names the kernel's axes in the error)."""
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, H, W, C_in), got shape {x.shape}")
    if kernel.ndim != 4 or kernel.shape[in_axis] != x.shape[3]:
        raise ValueError(
            f"kernel must have shape {layout} with C_in = x.shape[-1] = {x.shape[3]}, got kernel shape {kernel.shape}"
        )
    if not (jnp.issubdtype(x.dtype, jnp.floating) and x.dtype == kernel.dtype):
        raise ValueError(f"x and kernel must have the same floating dtype, got {x.dtype} and {kernel.dtype}")
    strides = _pair(strides, "strides")
    if min(strides) < 1:
        raise ValueError(f"strides must be positive, got {strides}")
    return x, kernel, strides, _padding_pairs(padding)


def conv_transpose(
    x: Array,
    kernel: Array,
    strides: Sequence[int],
    padding: Sequence[Sequence[int]],
    output_hw: Sequence[int],
) -> Array:
    """Transposed convolution (PyTorch ``ConvTranspose2d`` semantics) with fast derivatives.

    The adjoint of ``u -> lax.conv_general_dilated(u, kernel, strides, padding,
    ("NHWC", "HWIO", "NHWC"))`` for ``u`` of spatial size ``output_hw``, applied to ``x``.
    Equal to ``lax.conv_transpose(x, kernel, strides, [(k - 1 - lo, k - 1 - hi), ...],
    transpose_kernel=True)`` and to PyTorch's ``conv_transpose2d(x, w, stride, padding)`` with
    ``kernel = w.permute(2, 3, 1, 0)``.

    Args:
      x: (N, H_in, W_in, C_in) float array.
      kernel: (kh, kw, C_out, C_in): the HWIO kernel of the *forward* convolution, which maps
        C_out channels to C_in.
      strides: (sh, sw) of the forward convolution.
      padding: ((top, bottom), (left, right)) padding of the forward convolution, ints >= 0.
      output_hw: (H_out, W_out); a stride-s convolution of a (H_out, W_out) image must give
        (H_in, W_in). ``H_out = (H_in - 1) * sh - top - bottom + kh`` is the usual choice; up to
        ``sh - 1`` more (PyTorch's ``output_padding``) is also accepted.

    Returns:
      (N, H_out, W_out, C_out) array.

    Derivatives: reverse mode uses the strided convolution for the input gradient and its
    kernel gradient for the kernel gradient (see the module docstring); ``jax.jvp``,
    higher-order derivatives and ``jax.vmap`` are supported.
    """
    x, kernel, strides, padding = _check_conv_args(
        x, kernel, strides, padding, layout="(kh, kw, C_out, C_in)", in_axis=3
    )
    output_hw = _pair(output_hw, "output_hw")
    for axis, name in ((0, "height"), (1, "width")):
        k, s, (lo, hi) = kernel.shape[axis], strides[axis], padding[axis]
        n_in, n_out = x.shape[1 + axis], output_hw[axis]
        smallest = (n_in - 1) * s - lo - hi + k
        if not (n_in >= 1 and smallest <= n_out < smallest + s and smallest >= 1):
            raise ValueError(
                f"output_hw[{axis}] (output {name}) = {n_out} is inconsistent with input {name} {n_in}, "
                f"kernel {k}, stride {s} and padding {(lo, hi)}: expected a value in "
                f"[{smallest}, {smallest + s - 1}] (a positive (in - 1) * s - p_lo - p_hi + k, plus at most s - 1)"
            )
    return _conv_transpose(x, kernel, strides, padding, output_hw)


def conv_transpose_reference(x: Array, kernel: Array, strides, padding, output_hw) -> Array:
    """The same map as :func:`conv_transpose`, differentiated by plain JAX autodiff (slow backward on CPU).

    Kept as the reference the tests and benchmarks compare against.
    """
    return _transposed(x, kernel, tuple(strides), tuple(map(tuple, padding)), tuple(output_hw))


# ----------------------------------------------------------------------------------------------
# conv
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding)


def _conv_fast_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv_fast_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    # T(g, W) through the custom-jvp transposed convolution: its own derivatives are C and K.
    dx = _conv_transpose(g, kernel, strides, padding, x.shape[1:3])
    dkernel = _kernel_grad(x, g, kernel.shape, strides, padding)
    return dx, dkernel


_conv_fast.defvjp(_conv_fast_fwd, _conv_fast_bwd)


def conv(x: Array, kernel: Array, strides: Sequence[int], padding: Sequence[Sequence[int]]) -> Array:
    """Strided convolution ``lax.conv_general_dilated(x, kernel, strides, padding, ("NHWC", "HWIO", "NHWC"))``
    whose second-order reverse-mode derivatives are fast on XLA:CPU (see the module docstring).

    Args:
      x: (N, H, W, C_in) float array.
      kernel: (kh, kw, C_in, C_out) HWIO kernel, same dtype as ``x``.
      strides: (sh, sw) or an int.
      padding: ((top, bottom), (left, right)), ints >= 0.

    Returns:
      (N, H_out, W_out, C_out) with ``H_out = (H + top + bottom - kh) // sh + 1``.

    Derivatives: reverse mode of any order, forward-over-reverse and ``vmap``; not forward mode
    applied to this function directly (``jax.jvp`` / ``jax.jacfwd`` raise).
    """
    x, kernel, strides, padding = _check_conv_args(
        x, kernel, strides, padding, layout="(kh, kw, C_in, C_out)", in_axis=2
    )
    for axis in (0, 1):
        if x.shape[1 + axis] + sum(padding[axis]) < kernel.shape[axis]:
            raise ValueError(
                f"the padded input {x.shape[1:3]} + padding {padding} is smaller than the kernel {kernel.shape[:2]}"
            )
    return _conv_fast(x, kernel, strides, padding)


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class _StridedConvFields(nn.Module):
    """Fields and checks shared by :class:`ConvTranspose` and :class:`Conv` (see their docstrings)."""

    features: int
    kernel_size: int | tuple[int, int] = (4, 4)
    strides: int | tuple[int, int] = (2, 2)
    padding: int = 1
    use_bias: bool = True
    kernel_init: Initializer = DCGAN_INIT
    bias_init: Initializer = nn.initializers.zeros

    def __post_init__(self):
        if not (isinstance(self.features, numbers.Integral) and self.features >= 1):
            raise ValueError(f"features must be a positive int, got {self.features!r}")
        if min(_pair(self.kernel_size, "kernel_size")) < 1 or min(_pair(self.strides, "strides")) < 1:
            raise ValueError(f"kernel_size and strides must be positive, got {self.kernel_size!r}, {self.strides!r}")
        if not (isinstance(self.padding, numbers.Integral) and self.padding >= 0):
            raise ValueError(f"padding must be an int >= 0 (PyTorch-style symmetric padding), got {self.padding!r}")
        super().__post_init__()

    def _kernel_hw(self, x) -> tuple[int, int]:
        """(kh, kw) after checking that ``x`` is (N, H, W, C)."""
        if jnp.ndim(x) != 4:
            raise ValueError(f"x must have shape (N, H, W, C), got shape {jnp.shape(x)}")
        return _pair(self.kernel_size, "kernel_size")


class ConvTranspose(_StridedConvFields):
    """Transposed convolution layer (PyTorch ``ConvTranspose2d`` semantics) built on :func:`conv_transpose`.

    (N, H, W, C_in) -> (N, (H - 1) * sh - 2 p + kh, (W - 1) * sw - 2 p + kw, features).
    With the defaults (k=4, s=2, p=1) it doubles the spatial size, as in DCGAN.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw) or an int.
      strides: (sh, sw) or an int.
      padding: PyTorch-style symmetric padding ``p`` (int >= 0) of the forward convolution.
      use_bias: add a learned per-channel bias (turn off when a normalisation layer follows).
      kernel_init: initialiser of the (kh, kw, features, C_in) kernel. Default N(0, 0.02^2), the
        DCGAN initialisation (this layer's main user); fan-based initialisers would need the
        kernel's unusual (features, C_in) channel layout taken into account.
      bias_init: initialiser of the (features,) bias; zeros.

    Parameters: ``kernel`` (kh, kw, features, C_in), the forward convolution's HWIO kernel
    (PyTorch weight ``w`` of shape (C_in, features, kh, kw) maps to ``w.permute(2, 3, 1, 0)``),
    and ``bias`` (features,).
    """

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        """(N, H, W, C_in) -> (N, H_out, W_out, features); ``train`` is accepted for uniformity and unused."""
        del train
        kh, kw = self._kernel_hw(x)
        sh, sw = _pair(self.strides, "strides")
        p = self.padding
        out_hw = ((x.shape[1] - 1) * sh - 2 * p + kh, (x.shape[2] - 1) * sw - 2 * p + kw)
        if min(out_hw) < 1:
            raise ValueError(
                f"input of spatial size {x.shape[1:3]} gives an empty output {out_hw} with kernel {(kh, kw)}, "
                f"strides {(sh, sw)} and padding {p}"
            )
        kernel = self.param("kernel", self.kernel_init, (kh, kw, self.features, x.shape[-1]), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        x, kernel, bias = promote_dtype(x, kernel, bias)
        y = conv_transpose(x, kernel, (sh, sw), ((p, p), (p, p)), out_hw)
        if bias is not None:
            y = y + bias
        return y


class Conv(_StridedConvFields):
    """Strided convolution layer on :func:`conv`: ``nn.Conv`` with explicit padding, made for critics
    whose input gradient is differentiated again (WGAN-GP), where it is much faster on CPU.

    (N, H, W, C_in) -> (N, (H + 2 p - kh) // sh + 1, (W + 2 p - kw) // sw + 1, features). Parameters
    ``kernel`` (kh, kw, C_in, features) and ``bias`` (features,) have the names, shapes and
    initialisation of ``nn.Conv``'s, so a module can swap one for the other. Not differentiable in
    forward mode directly (see :func:`conv`).

    Attributes:
      features: output channels.
      kernel_size: (kh, kw) or an int.
      strides: (sh, sw) or an int.
      padding: symmetric padding ``p`` (int >= 0).
      use_bias: add a learned per-channel bias.
      kernel_init: initialiser of the kernel; N(0, 0.02^2) (DCGAN).
      bias_init: initialiser of the bias; zeros.
    """

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        """(N, H, W, C_in) -> (N, H_out, W_out, features); ``train`` is accepted for uniformity and unused."""
        del train
        kh, kw = self._kernel_hw(x)
        p = self.padding
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        x, kernel, bias = promote_dtype(x, kernel, bias)
        y = conv(x, kernel, self.strides, ((p, p), (p, p)))
        if bias is not None:
            y = y + bias
        return y


def fan_in_uniform_bias(fan_in: int) -> Initializer:
    """Bias initialiser U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch's ``nn.Linear``.

    Flax's default zero bias makes a ReLU MLP positively homogeneous at initialisation
    (G(a z) = a G(z)), so a generator with a low-dimensional latent starts, and on the toy
    mixtures long stays, spraying its samples along rays through the origin. Random biases
    break that symmetry.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013), used by the original GAN discriminator.

    (..., D) -> (..., features): ``Dense(features * pieces)`` then, for unit ``j``, the max of
    the ``pieces`` consecutive pre-activations ``j * pieces : (j + 1) * pieces``.
    """

    features: int
    pieces: int = 5
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()

    def __post_init__(self):
        if not (isinstance(self.features, numbers.Integral) and self.features >= 1):
            raise ValueError(f"features must be a positive int, got {self.features!r}")
        if not (isinstance(self.pieces, numbers.Integral) and self.pieces >= 1):
            raise ValueError(f"pieces must be a positive int, got {self.pieces!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        """(..., D) -> (..., features); ``train`` is accepted for uniformity and unused."""
        del train
        h = nn.Dense(
            self.features * self.pieces,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=fan_in_uniform_bias(x.shape[-1]),
            name="dense",
        )(x)
        return jnp.max(h.reshape(*h.shape[:-1], self.features, self.pieces), axis=-1)


def spectral_normalized(layer: nn.Module, x: Array, *, enabled: bool, train: bool, name: str) -> Array:
    """``layer(x)``; with ``enabled``, every weight matrix of ``layer`` divided by its largest singular value
    (spectral normalisation, Miyato et al. 2018) before it is used.

    A kernel of any rank is read as the matrix (prod(shape[:-1]), shape[-1]), as in Miyato et al. (for a
    convolution this bounds the reshaped kernel, not the convolution's operator norm); biases and other
    vectors are left as they are. The largest singular value is estimated by one power iteration per
    call from a vector ``u`` kept in ``batch_stats`` under ``name`` (with ``train=True`` the iterated
    ``u`` is stored: apply with ``mutable=["batch_stats"]``), so the estimate sharpens as training goes,
    and its gradient is that of ``sigma = v^T W u`` at fixed ``u, v``. Parameter names do not change.
    """
    if not enabled:
        return layer(x)
    return nn.SpectralNorm(layer, n_steps=1, name=name)(x, update_stats=train)


# ----------------------------------------------------------------------------------------------
# Class conditioning (conditional GANs)
# ----------------------------------------------------------------------------------------------


def check_class_labels(labels, num_classes: int, n: int, *, owner: str) -> None:
    """Shape and dtype checks of the ``labels`` a module of ``num_classes`` classes receives for ``n`` samples.

    An unconditional module (``num_classes == 0``) must get ``labels=None``; a conditional one (N,) ints.
    Values cannot be checked under ``jit`` (the fit loop checks a dataset's labels on the host).
    """
    if num_classes == 0:
        if labels is not None:
            raise ValueError(
                f"{owner} is unconditional (num_classes=0) and takes no labels; got labels of shape {jnp.shape(labels)}"
            )
        return
    if labels is None:
        raise ValueError(
            f"{owner} is class-conditional (num_classes={num_classes}): pass labels, an (N,) int array "
            "of classes in [0, num_classes)"
        )
    if jnp.shape(labels) != (n,) or not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise ValueError(
            f"labels must be an ({n},) int array of classes in [0, {num_classes}), got shape "
            f"{jnp.shape(labels)} and dtype {jnp.result_type(labels)}"
        )


def append_one_hot(z: Array, labels: Array | None, num_classes: int) -> Array:
    """A conditional generator's input: ``[z, one_hot(labels)]``, (N, d) -> (N, d + num_classes) (Mirza &
    Osindero 2014); ``z`` itself when ``num_classes == 0``. The first Dense layer then adds a learned
    per-class vector to its projection of ``z``."""
    if num_classes == 0:
        return z
    return jnp.concatenate([z, jax.nn.one_hot(labels, num_classes, dtype=z.dtype)], axis=-1)


def class_projection(
    h: Array, labels: Array | None, num_classes: int, *, spectral_norm: bool, train: bool, name: str = "projection"
) -> Array:
    """The class term of a projection discriminator (Miyato & Koyama 2018): ``<V[y_i], h_i>``, (N, F) -> (N,).

    ``V`` is the (F, num_classes) kernel of a bias-free Dense layer named ``name``, initialised from N(0, 0.02^2)
    (spectrally normalised with the rest of the network when ``spectral_norm``, as in the paper); the
    discriminator's output is its
    unconditional ``Dense(1)(h)`` plus this term. 0 when ``num_classes == 0``.
    """
    if num_classes == 0:
        return jnp.zeros(h.shape[:1], h.dtype)
    layer = nn.Dense(num_classes, use_bias=False, kernel_init=DCGAN_INIT, name=name)
    scores = spectral_normalized(layer, h, enabled=spectral_norm, train=train, name=f"sn_{name}")
    return jnp.take_along_axis(scores, labels[:, None].astype(jnp.int32), axis=1)[:, 0]
