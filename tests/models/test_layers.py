"""conv_transpose, ConvTranspose, conv, Conv and Maxout against independent references.

References: a float64 numpy scatter-add transposed convolution, ``lax.conv_transpose`` with
``transpose_kernel=True``, plain JAX autodiff of the same map, central finite differences in
float64, and (when installed) PyTorch's ``conv_transpose2d``.
"""

import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gendl_jax.models import Conv, ConvTranspose, Maxout, conv, conv_transpose, conv_transpose_reference

DN = ("NHWC", "HWIO", "NHWC")


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def numpy_conv_transpose(x, w, strides, padding, output_hw):
    """float64 scatter-add: every input pixel adds ``x[n, i, j, :] @ w[a, b].T`` at (i*s + a, j*s + b)
    of the padded output, which is then cropped by the forward convolution's padding."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    kh, kw, c_out, _ = w.shape
    (sh, sw), ((top, bottom), (left, right)) = strides, padding
    full = np.zeros((n, output_hw[0] + top + bottom, output_hw[1] + left + right, c_out))
    for a in range(kh):
        for b in range(kw):
            contribution = np.einsum("nijc,oc->nijo", x, w[a, b])
            full[:, a : a + sh * (h - 1) + 1 : sh, b : b + sw * (wd - 1) + 1 : sw, :] += contribution
    return full[:, top : top + output_hw[0], left : left + output_hw[1], :]


# (input hw, kernel hw, strides, padding, extra output rows/cols (PyTorch's output_padding), C_in, C_out)
CASES = [
    ((7, 7), (4, 4), (2, 2), ((1, 1), (1, 1)), (0, 0), 8, 4),  # DCGAN block: 7 -> 14
    ((5, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (0, 0), 3, 5),  # "same" stride-1 convolution
    ((5, 4), (3, 4), (2, 3), ((1, 0), (2, 1)), (0, 0), 4, 2),  # asymmetric everything
    ((4, 4), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 2, 3),  # output_padding=1: 4 -> 8
    ((3, 5), (5, 2), (3, 1), ((0, 0), (0, 1)), (2, 0), 3, 3),  # stride > kernel / no padding
]


def _case(rng, case, n=3, dtype=np.float32):
    in_hw, k, s, p, extra, c_in, c_out = case
    out_hw = tuple((i - 1) * st - lo - hi + kk + e for i, st, (lo, hi), kk, e in zip(in_hw, s, p, k, extra))
    x = rng.normal(size=(n, *in_hw, c_in)).astype(dtype)
    w = rng.normal(size=(*k, c_out, c_in)).astype(dtype)
    return x, w, s, p, out_hw


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_numpy_scatter_add_and_lax(rng, case):
    x, w, s, p, out_hw = _case(rng, case)
    y = jax.jit(conv_transpose, static_argnums=(2, 3, 4))(x, w, s, p, out_hw)
    expected = numpy_conv_transpose(x, w, s, p, out_hw)
    assert y.shape == expected.shape == (x.shape[0], *out_hw, w.shape[2])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    # lax.conv_transpose pads the dilated input: k - 1 - p on each side (+ output_padding at the end).
    extra = case[4]
    lax_padding = [(k - 1 - lo, k - 1 - hi + e) for k, (lo, hi), e in zip(w.shape[:2], p, extra)]
    y_lax = jax.jit(lambda x, w: lax.conv_transpose(x, w, s, lax_padding, dimension_numbers=DN, transpose_kernel=True))(
        x, w
    )
    np.testing.assert_allclose(y, y_lax, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def _loss(fn, s, p, out_hw, g):
    # A nonlinear function of the output so that second-order terms are not trivial.
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w, s, p, out_hw)) * g)


def _assert_close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_autodiff_of_plain_formulation(rng, case):
    x, w, s, p, out_hw = _case(rng, case)
    g = rng.normal(size=(x.shape[0], *out_hw, w.shape[2])).astype(np.float32)
    ours = jax.jit(jax.value_and_grad(_loss(conv_transpose, s, p, out_hw, g), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.value_and_grad(_loss(conv_transpose_reference, s, p, out_hw, g), argnums=(0, 1)))(x, w)
    _assert_close(ours[0], ref[0])
    _assert_close(ours[1][0], ref[1][0])
    _assert_close(ours[1][1], ref[1][1])
    # and against autodiff of lax.conv_transpose
    extra = case[4]
    lax_padding = [(k - 1 - lo, k - 1 - hi + e) for k, (lo, hi), e in zip(w.shape[:2], p, extra)]
    lax_fn = lambda x, w, *_: lax.conv_transpose(x, w, s, lax_padding, dimension_numbers=DN, transpose_kernel=True)
    lax_grads = jax.jit(jax.grad(_loss(lax_fn, s, p, out_hw, g), argnums=(0, 1)))(x, w)
    _assert_close(ours[1][0], lax_grads[0])
    _assert_close(ours[1][1], lax_grads[1])


def test_gradients_match_finite_differences_float64(rng):
    case = ((3, 4), (4, 3), (2, 2), ((1, 2), (1, 0)), (1, 0), 3, 2)
    with jax.enable_x64(True):
        x, w, s, p, out_hw = _case(rng, case, n=2, dtype=np.float64)
        g = rng.normal(size=(x.shape[0], *out_hw, w.shape[2]))
        f = jax.jit(_loss(conv_transpose, s, p, out_hw, g))
        gx, gw = jax.jit(jax.grad(_loss(conv_transpose, s, p, out_hw, g), argnums=(0, 1)))(x, w)
        assert gx.dtype == gw.dtype == jnp.float64
        eps = 1e-6
        for _ in range(3):
            vx, vw = rng.normal(size=x.shape), rng.normal(size=w.shape)
            fd_x = (f(x + eps * vx, w) - f(x - eps * vx, w)) / (2 * eps)
            fd_w = (f(x, w + eps * vw) - f(x, w - eps * vw)) / (2 * eps)
            np.testing.assert_allclose(np.vdot(gx, vx), fd_x, rtol=1e-7)
            np.testing.assert_allclose(np.vdot(gw, vw), fd_w, rtol=1e-7)


def _conv_eqns(jaxpr):
    """All conv_general_dilated equations of a (closed) jaxpr, sub-jaxprs included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    yield from _conv_eqns(sub)


def test_kernel_gradient_avoids_input_dilated_convolution(rng):
    """The speed-up of DESIGN.md: the kernel gradient is the strided conv's own kernel gradient
    (window-dilated), never a convolution of the zero-inserted (input-dilated) x."""
    x, w, s, p, out_hw = _case(rng, CASES[0], n=4)
    g = rng.normal(size=(x.shape[0], *out_hw, w.shape[2])).astype(np.float32)

    def kernel_grad_dilations(fn):
        jaxpr = jax.make_jaxpr(jax.grad(_loss(fn, s, p, out_hw, g), argnums=(0, 1)))(x, w)
        return [tuple(e.params["lhs_dilation"]) for e in _conv_eqns(jaxpr) if e.outvars[0].aval.shape == w.shape]

    ours = kernel_grad_dilations(conv_transpose)
    assert ours and all(d == (1, 1) for d in ours), ours
    # the plain formulation does use the slow input-dilated form (what this test guards against)
    assert (2, 2) in kernel_grad_dilations(conv_transpose_reference)


def test_second_order_jvp_and_vmap_match_reference(rng):
    x, w, s, p, out_hw = _case(rng, CASES[2], n=2)
    g = rng.normal(size=(x.shape[0], *out_hw, w.shape[2])).astype(np.float32)
    f_ours, f_ref = _loss(conv_transpose, s, p, out_hw, g), _loss(conv_transpose_reference, s, p, out_hw, g)

    # reverse-over-reverse: gradient w.r.t. the kernel of a gradient norm w.r.t. the input
    def grad_penalty(f):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(jax.grad(f)(x, w) ** 2), argnums=(0, 1)))(x, w)

    for a, b in zip(grad_penalty(f_ours), grad_penalty(f_ref)):
        _assert_close(a, b, rtol=1e-4)
    # forward mode and forward-over-reverse
    vx, vw = rng.normal(size=x.shape).astype(np.float32), rng.normal(size=w.shape).astype(np.float32)
    _assert_close(jax.jit(lambda: jax.jvp(f_ours, (x, w), (vx, vw))[1])(), jax.jvp(f_ref, (x, w), (vx, vw))[1])
    hvp = lambda f: jax.jvp(jax.grad(f, argnums=1), (x, w), (vx, vw))[1]
    _assert_close(jax.jit(hvp, static_argnums=0)(f_ours), hvp(f_ref), rtol=1e-4)
    # vmap over a batch of kernels, with gradients
    ws = np.stack([w, 2 * w, -w])
    vg = jax.jit(jax.vmap(jax.grad(f_ours, argnums=(0, 1)), in_axes=(None, 0)))(x, ws)
    vg_ref = jax.vmap(jax.grad(f_ref, argnums=(0, 1)), in_axes=(None, 0))(x, ws)
    for a, b in zip(vg, vg_ref):
        _assert_close(a, b)


# (input hw, kernel hw, strides, padding, extra output rows/cols, C_in, C_out): kernels whose size is a multiple of
# the stride, the sub-pixel form's domain; outputs of 16x16 and more with 16 channels, where CPU takes it.
SUBPIXEL_CASES = [
    ((8, 8), (4, 4), (2, 2), ((1, 1), (1, 1)), (0, 0), 8, 16),  # DCGAN block: 8 -> 16
    ((6, 7), (6, 4), (3, 2), ((2, 1), (0, 3)), (2, 1), 5, 16),  # asymmetric, output_padding up to s - 1
    ((1, 127), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), 3, 16),  # one input row, output rows past every window
    ((17, 16), (3, 2), (3, 1), ((4, 0), (1, 1)), (0, 0), 2, 17),  # stride 1 in one axis, padding > stride
]


@pytest.mark.parametrize("case", SUBPIXEL_CASES)
def test_subpixel_form_matches_numpy_scatter_add(rng, case):
    """The sub-pixel value (one stride-1 convolution and a depth-to-space reshape) equals the float64 scatter-add
    definition, and the reverse-mode derivatives still match the plain formulation's (it changes the value only)."""
    from gendl_jax.models.layers import _transposed_subpixel

    x, w, s, p, out_hw = _case(rng, case, n=2)
    expected = numpy_conv_transpose(x, w, s, p, out_hw)
    y = jax.jit(_transposed_subpixel, static_argnums=(2, 3, 4))(x, w, s, p, out_hw)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # conv_transpose takes this form on CPU here: no input-dilated convolution in the compiled forward pass
    hlo = jax.jit(conv_transpose, static_argnums=(2, 3, 4)).lower(x, w, s, p, out_hw).compile().as_text()
    assert "lhs_dilate" not in hlo
    np.testing.assert_allclose(
        jax.jit(conv_transpose, static_argnums=(2, 3, 4))(x, w, s, p, out_hw), y, rtol=1e-6, atol=1e-6
    )
    g = rng.normal(size=expected.shape).astype(np.float32)
    ours = jax.jit(jax.value_and_grad(_loss(conv_transpose, s, p, out_hw, g), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.value_and_grad(_loss(conv_transpose_reference, s, p, out_hw, g), argnums=(0, 1)))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        _assert_close(a, b)


def test_subpixel_form_under_vmap_jvp_and_second_order(rng):
    x, w, s, p, out_hw = _case(rng, SUBPIXEL_CASES[0], n=2)
    g = rng.normal(size=(x.shape[0], *out_hw, w.shape[2])).astype(np.float32)
    f_ours, f_ref = _loss(conv_transpose, s, p, out_hw, g), _loss(conv_transpose_reference, s, p, out_hw, g)
    penalty = lambda f: jax.grad(lambda x, w: jnp.sum(jax.grad(f)(x, w) ** 2), argnums=(0, 1))
    for a, b in zip(jax.jit(penalty(f_ours))(x, w), penalty(f_ref)(x, w)):
        _assert_close(a, b, rtol=1e-4)
    vx, vw = rng.normal(size=x.shape).astype(np.float32), rng.normal(size=w.shape).astype(np.float32)
    _assert_close(jax.jit(lambda: jax.jvp(f_ours, (x, w), (vx, vw))[1])(), jax.jvp(f_ref, (x, w), (vx, vw))[1])
    ws = np.stack([w, -2 * w])
    batched = jax.jit(jax.vmap(lambda w: conv_transpose(x, w, s, p, out_hw)))(ws)
    for y, wk in zip(batched, ws):
        expected = numpy_conv_transpose(x, wk, s, p, out_hw)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_small_outputs_keep_the_input_dilated_form(rng):
    """Below the measured threshold (7x7x128 -> 14x14x64: a wash, 0.93-1.07x in sub-pixel form) the forward pass stays one
    input-dilated convolution."""
    x, w, s, p, out_hw = _case(rng, CASES[0], n=2)
    hlo = jax.jit(conv_transpose, static_argnums=(2, 3, 4)).lower(x, w, s, p, out_hw).compile().as_text()
    assert "lhs_dilate=2x2" in hlo


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=np.zeros((2, 7, 7)), output_hw=(14, 14)), "x must have shape"),
        (dict(kernel=np.zeros((4, 4, 3))), "kernel must have shape"),
        (dict(kernel=np.zeros((4, 4, 3, 5), np.float32)), "C_in = x.shape"),
        (dict(output_hw=(16, 14)), r"output_hw\[0\]"),
        (dict(output_hw=(14, 12)), r"output_hw\[1\]"),
        (dict(padding=((1, 1), (-1, 1))), "padding"),
        (dict(padding=(1, 1)), "padding"),
        (dict(strides=(2, 0)), "strides"),
        (dict(x=np.zeros((2, 7, 7, 8), np.int32)), "floating dtype"),
    ],
)
def test_conv_transpose_rejects_bad_input(kwargs, match):
    args = dict(
        x=np.zeros((2, 7, 7, 8), np.float32),
        kernel=np.zeros((4, 4, 3, 8), np.float32),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
        output_hw=(14, 14),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv_transpose(**args)


@pytest.mark.parametrize(
    "hw,kernel_size,strides,padding",
    [((7, 7), 4, 2, 1), ((4, 5), (3, 5), (1, 2), 0), ((6, 6), 5, 3, 2)],
)
def test_conv_transpose_module_output_size_and_value(rng, hw, kernel_size, strides, padding):
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    layer = ConvTranspose(5, kernel_size=kernel_size, strides=strides, padding=padding)
    variables = layer.init(jax.random.key(0), x)
    bias = rng.normal(size=5).astype(np.float32)
    variables = {"params": {**variables["params"], "bias": bias}}
    y = jax.jit(layer.apply)(variables, x)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    out_hw = ((hw[0] - 1) * sh - 2 * padding + kh, (hw[1] - 1) * sw - 2 * padding + kw)
    assert y.shape == (2, *out_hw, 5)
    kernel = variables["params"]["kernel"]
    assert kernel.shape == (kh, kw, 5, 3)
    expected = numpy_conv_transpose(x, kernel, (sh, sw), ((padding, padding), (padding, padding)), out_hw) + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_conv_transpose_module_init_and_bad_config():
    # DCGAN initialisation: N(0, 0.02^2), zero bias
    params = jax.jit(ConvTranspose(64).init)(jax.random.key(1), np.zeros((1, 2, 2, 64), np.float32))["params"]
    assert abs(float(jnp.std(params["kernel"])) - 0.02) < 0.002 and not np.any(params["bias"])
    assert "bias" not in ConvTranspose(3, use_bias=False).init(jax.random.key(0), np.zeros((1, 2, 2, 1)))["params"]
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose(4, padding=-1)
    with pytest.raises(ValueError, match="features"):
        ConvTranspose(0)
    with pytest.raises(ValueError, match="x must have shape"):
        ConvTranspose(4).init(jax.random.key(0), np.zeros((7, 7, 3), np.float32))


def test_conv_transpose_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, 7, 7, 6)).astype(np.float32)
    w_torch = rng.normal(size=(6, 3, 4, 4)).astype(np.float32)  # (C_in, C_out, kh, kw)
    g = rng.normal(size=(4, 14, 14, 3)).astype(np.float32)
    kernel = np.transpose(w_torch, (2, 3, 1, 0))
    f = _loss(conv_transpose, (2, 2), ((1, 1), (1, 1)), (14, 14), g)
    value, (gx, gw) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(x, kernel)

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True, dtype=torch.float64)
    wt = torch.tensor(w_torch, requires_grad=True, dtype=torch.float64)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, stride=2, padding=1)
    loss = (torch.sin(yt) * torch.tensor(g.transpose(0, 3, 1, 2), dtype=torch.float64)).sum()
    loss.backward()
    _assert_close(value, loss.item())
    _assert_close(gx, xt.grad.numpy().transpose(0, 2, 3, 1))
    _assert_close(gw, wt.grad.numpy().transpose(2, 3, 1, 0))


# ----------------------------------------------------------------------------------------------
# conv / Conv: the strided convolution with a fast second-order reverse mode
# ----------------------------------------------------------------------------------------------

# (input hw, kernel hw, strides, padding, C_in, C_out)
CONV_CASES = [
    ((14, 14), (4, 4), (2, 2), ((1, 1), (1, 1)), 4, 6),  # DCGAN critic block: 14 -> 7
    ((5, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), 3, 2),  # "same" stride-1 convolution
    ((7, 6), (3, 4), (2, 3), ((1, 0), (2, 1)), 2, 3),  # asymmetric everything
    ((8, 7), (2, 3), (3, 2), ((0, 0), (0, 1)), 3, 2),  # stride > kernel / no padding
]


def _plain_conv(x, w, s, p):
    return lax.conv_general_dilated(x, w, s, p, dimension_numbers=DN)


def _conv_case(rng, case, n=3, dtype=np.float32):
    in_hw, k, s, p, c_in, c_out = case
    x = rng.normal(size=(n, *in_hw, c_in)).astype(dtype)
    w = rng.normal(size=(*k, c_in, c_out)).astype(dtype)
    return x, w, s, p


def _conv_loss(fn, s, p):
    # nonlinear in the output, so that second derivatives are not trivial
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w, s, p)))


def _conv_penalty(fn, s, p):
    """A gradient penalty: the squared norm of the input gradient (the WGAN-GP pattern)."""
    return lambda x, w: jnp.sum(jax.grad(_conv_loss(fn, s, p))(x, w) ** 2)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_first_and_second_derivatives_match_lax(rng, case):
    x, w, s, p = _conv_case(rng, case)
    y = jax.jit(conv, static_argnums=(2, 3))(x, w, s, p)
    _assert_close(y, _plain_conv(x, w, s, p))
    # first order
    ours = jax.jit(jax.value_and_grad(_conv_loss(conv, s, p), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.value_and_grad(_conv_loss(_plain_conv, s, p), argnums=(0, 1)))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        _assert_close(a, b)
    # reverse-over-reverse: the gradient penalty's value and gradients w.r.t. the input and the kernel
    ours = jax.jit(jax.value_and_grad(_conv_penalty(conv, s, p), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.value_and_grad(_conv_penalty(_plain_conv, s, p), argnums=(0, 1)))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        _assert_close(a, b, rtol=1e-4)


def test_conv_second_order_matches_finite_differences_float64(rng):
    with jax.enable_x64(True):
        x, w, s, p = _conv_case(rng, CONV_CASES[2], n=2, dtype=np.float64)
        f = jax.jit(_conv_penalty(conv, s, p))
        gx, gw = jax.jit(jax.grad(_conv_penalty(conv, s, p), argnums=(0, 1)))(x, w)
        assert gx.dtype == gw.dtype == jnp.float64
        eps = 1e-6
        for _ in range(2):
            vx, vw = rng.normal(size=x.shape), rng.normal(size=w.shape)
            fd_x = (f(x + eps * vx, w) - f(x - eps * vx, w)) / (2 * eps)
            fd_w = (f(x, w + eps * vw) - f(x, w - eps * vw)) / (2 * eps)
            np.testing.assert_allclose(np.vdot(gx, vx), fd_x, rtol=1e-6)
            np.testing.assert_allclose(np.vdot(gw, vw), fd_w, rtol=1e-6)


def test_conv_forward_over_reverse_and_vmap_match_lax_and_jvp_is_unsupported(rng):
    x, w, s, p = _conv_case(rng, CONV_CASES[0], n=2)
    vx, vw = rng.normal(size=x.shape).astype(np.float32), rng.normal(size=w.shape).astype(np.float32)
    hvp = lambda fn: jax.jvp(jax.grad(_conv_loss(fn, s, p), argnums=(0, 1)), (x, w), (vx, vw))[1]
    for a, b in zip(jax.jit(hvp, static_argnums=0)(conv), hvp(_plain_conv)):
        _assert_close(a, b, rtol=1e-4)

    # per-sample gradient penalty with vmap(grad), as wgan_gp.per_sample_gradient_norms computes it
    def per_sample(fn):
        single = lambda xi, w: jnp.sum(jnp.sin(fn(xi[None], w, s, p)))
        return lambda x, w: jnp.sum(jax.vmap(jax.grad(single), in_axes=(0, None))(x, w) ** 2)

    ours = jax.jit(jax.value_and_grad(per_sample(conv), argnums=(0, 1)))(x, w)
    ref = jax.value_and_grad(per_sample(_plain_conv), argnums=(0, 1))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        _assert_close(a, b, rtol=1e-4)
    # forward mode on conv itself: the documented custom_vjp limitation
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: conv(x, w, s, p), (x,), (vx,))


def test_conv_penalty_gradient_avoids_kernel_gradient_of_input_dilated_convolution(rng):
    """The speed-up of DESIGN.md: differentiating the input gradient w.r.t. the kernel runs the strided
    conv's own kernel gradient, never the kernel gradient of the input-dilated (zero-inserted) convolution,
    which XLA:CPU runs ~50x slower."""
    x, w, s, p = _conv_case(rng, CONV_CASES[0], n=2)

    def kernel_shaped_lhs_dilations(fn):
        jaxpr = jax.make_jaxpr(jax.grad(_conv_penalty(fn, s, p), argnums=1))(x, w)
        return [tuple(e.params["lhs_dilation"]) for e in _conv_eqns(jaxpr) if e.outvars[0].aval.shape == w.shape]

    ours = kernel_shaped_lhs_dilations(conv)
    assert ours and all(d == (1, 1) for d in ours), ours
    assert (2, 2) in kernel_shaped_lhs_dilations(_plain_conv)  # what this test guards against


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=np.zeros((2, 8, 8))), "x must have shape"),
        (dict(kernel=np.zeros((4, 4, 3, 5), np.float32)), "C_in = x.shape"),
        (dict(kernel=np.zeros((4, 4, 3), np.float32)), "kernel must have shape"),
        (dict(x=np.zeros((2, 8, 8, 2), np.int32)), "floating dtype"),
        (dict(strides=(0, 2)), "strides"),
        (dict(padding=((1, 1), (1, -1))), "padding"),
        (dict(x=np.zeros((2, 1, 8, 2), np.float32)), "smaller than the kernel"),
    ],
)
def test_conv_rejects_bad_input(kwargs, match):
    args = dict(
        x=np.zeros((2, 8, 8, 2), np.float32),
        kernel=np.zeros((4, 4, 2, 5), np.float32),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv(**args)


def test_conv_module_is_a_drop_in_for_nn_conv(rng):
    """Same parameter names, shapes and initial values as ``nn.Conv`` and the same output."""
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    for kwargs in (dict(), dict(kernel_size=3, strides=1, padding=0, use_bias=False)):
        ours = Conv(5, **kwargs)
        k = ours.kernel_size if isinstance(ours.kernel_size, tuple) else (ours.kernel_size,) * 2
        ref = nn.Conv(
            5,
            kernel_size=k,
            strides=ours.strides,
            padding=((ours.padding,) * 2,) * 2,
            use_bias=ours.use_bias,
            kernel_init=ours.kernel_init,
        )
        v_ours, v_ref = ours.init(jax.random.key(3), x), ref.init(jax.random.key(3), x)
        assert jax.tree_util.tree_structure(v_ours) == jax.tree_util.tree_structure(v_ref)
        for a, b in zip(jax.tree_util.tree_leaves(v_ours), jax.tree_util.tree_leaves(v_ref)):
            np.testing.assert_array_equal(a, b)
        v = jax.tree_util.tree_map(lambda a: a + rng.normal(size=a.shape).astype(np.float32), v_ref)
        _assert_close(jax.jit(ours.apply)(v, x), ref.apply(v, x))
    with pytest.raises(ValueError, match="padding"):
        Conv(4, padding=-1)
    with pytest.raises(ValueError, match="features"):
        Conv(0)


def test_maxout_matches_numpy(rng):
    x = rng.normal(size=(6, 10)).astype(np.float32)
    layer = Maxout(4, pieces=3)
    variables = layer.init(jax.random.key(0), x)
    params = variables["params"]["dense"]
    params = {"kernel": params["kernel"], "bias": rng.normal(size=12).astype(np.float32)}
    y = jax.jit(layer.apply)({"params": {"dense": params}}, x)
    pre = x.astype(np.float64) @ np.asarray(params["kernel"], np.float64) + params["bias"]
    expected = pre.reshape(6, 4, 3).max(axis=-1)
    assert y.shape == (6, 4)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pieces"):
        Maxout(4, pieces=0)


def test_maxout_gradient_flows_to_the_max_piece_only(rng):
    x = rng.normal(size=(1, 3)).astype(np.float32)
    layer = Maxout(1, pieces=4, use_bias=False)
    params = layer.init(jax.random.key(0), x)["params"]
    grad = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x)))(params)["dense"]["kernel"]
    pre = x @ np.asarray(params["dense"]["kernel"])
    winner = int(np.argmax(pre[0]))
    expected = np.zeros((3, 4), np.float32)
    expected[:, winner] = x[0]
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    assert isinstance(layer, nn.Module)
