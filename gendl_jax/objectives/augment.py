"""DiffAugment (Zhao et al. 2020, "Differentiable augmentation for data-efficient GAN training"): random image
transformations that are differentiable in the images, applied to the real and the fake images before the
discriminator, in every discriminator and generator update.

Policies (as in the authors' reference code, github.com/mit-han-lab/data-efficient-gans, ``DiffAugment_pytorch.py``),
for images (n, H, W, C) in [-1, 1], each with its own draw per image:

* ``"translation"``: a shift by integers ``t_h, t_w`` uniform in ``[-s_h, s_h]``, ``s_h = int(H / 8 + 0.5)``
  (likewise for the width): output pixel ``(i, j)`` is input pixel ``(i + t_h, j + t_w)``, 0 outside the image.
* ``"cutout"``: a square of side ``c_h = int(H / 2 + 0.5)`` by ``c_w = int(W / 2 + 0.5)`` set to 0 in every channel;
  its centre ``o_h`` is uniform in ``[0, H - 1 + (1 - c_h mod 2)]`` (likewise ``o_w``) and it covers rows
  ``o_h - c_h // 2 .. o_h - c_h // 2 + c_h - 1``, cut by the image's border.
* ``"color"``: brightness ``x + (b - 0.5)``, then saturation ``(x - mean_c x) * 2 s + mean_c x`` (``mean_c``: the
  mean over the channels of each pixel), then contrast ``(x - mean x) * (c + 0.5) + mean x`` (the mean over all
  pixels and channels of the image), with ``b, s, c ~ U(0, 1)`` per image.

Policies apply in the order given. :func:`draw` makes the random draws and :func:`apply` the transformation, so that
a test can drive an independent implementation with the same draws; :func:`augment` is both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

POLICIES = ("translation", "cutout", "color")


def parse_policy(policy: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"translation,cutout,color"`` (or a sequence of names) -> the tuple of names; ``""`` -> ``()``.

    Unknown names raise a one-line ValueError naming ``--augment``."""
    names = tuple(p.strip() for p in policy.split(",")) if isinstance(policy, str) else tuple(policy)
    names = tuple(n for n in names if n)
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(
            f"augment (--augment) takes a comma-separated list of {', '.join(POLICIES)}; "
            f"got unknown {', '.join(map(repr, unknown))} in {policy!r}"
        )
    return names


def check_images(data_shape: tuple[int, ...]) -> None:
    """DiffAugment transforms images (H, W, C); other data shapes raise a ValueError naming ``--augment``."""
    if len(data_shape) != 3:
        raise ValueError(
            f"augment (--augment) transforms images (H, W, C); this data has examples of shape {tuple(data_shape)}"
        )


def _shift_range(size: int) -> int:
    return int(size * 0.125 + 0.5)


def _cutout_size(size: int) -> int:
    return int(size * 0.5 + 0.5)


def draw(key: Array, n: int, image_shape: tuple[int, ...], policy) -> dict[str, Array]:
    """The random draws of :func:`apply` for ``n`` images of ``image_shape`` (H, W, C): a dict with, per policy,
    ``translation`` (n, 2) int32 shifts, ``cutout`` (n, 2) int32 centres, ``color`` (n, 3) float32 U(0, 1)
    (brightness, saturation, contrast). Each policy draws from ``fold_in(key, its index in POLICIES)``, so a
    policy's draws do not depend on the others."""
    names = parse_policy(policy)
    check_images(image_shape)
    h, w = image_shape[:2]
    out = {}
    for name in names:
        k = jax.random.fold_in(key, POLICIES.index(name))
        kh, kw = jax.random.split(k)
        if name == "translation":
            sh, sw = _shift_range(h), _shift_range(w)
            out[name] = jnp.stack(
                [jax.random.randint(kh, (n,), -sh, sh + 1), jax.random.randint(kw, (n,), -sw, sw + 1)], axis=1
            ).astype(jnp.int32)
        elif name == "cutout":
            ch, cw = _cutout_size(h), _cutout_size(w)
            out[name] = jnp.stack(
                [jax.random.randint(kh, (n,), 0, h + 1 - ch % 2), jax.random.randint(kw, (n,), 0, w + 1 - cw % 2)],
                axis=1,
            ).astype(jnp.int32)
        else:
            out[name] = jax.random.uniform(k, (n, 3), jnp.float32)
    return out


def translate(x: Array, shifts: Array) -> Array:
    """Output pixel (i, j) of image n is ``x[n, i + shifts[n, 0], j + shifts[n, 1]]``, 0 outside; x (n, H, W, C),
    shifts (n, 2) ints with ``|shift| <= int(size / 8 + 0.5)``."""
    h, w = x.shape[1:3]
    sh, sw = _shift_range(h), _shift_range(w)
    padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))

    def one(img, t):
        return jax.lax.dynamic_slice(img, (sh + t[0], sw + t[1], 0), (h, w, x.shape[3]))

    return jax.vmap(one)(padded, shifts)


def cutout(x: Array, centres: Array) -> Array:
    """``x`` with a ``int(H/2 + 0.5)`` x ``int(W/2 + 0.5)`` square around ``centres`` (n, 2) set to 0 (see the module)."""
    h, w = x.shape[1:3]
    ch, cw = _cutout_size(h), _cutout_size(w)
    top = (centres[:, 0] - ch // 2)[:, None]
    left = (centres[:, 1] - cw // 2)[:, None]
    rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    in_rows = (rows >= top) & (rows < top + ch)  # (n, H)
    in_cols = (cols >= left) & (cols < left + cw)  # (n, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[..., None].astype(x.dtype)


def color(x: Array, draws: Array) -> Array:
    """Brightness, saturation and contrast with the (n, 3) U(0, 1) ``draws`` (see the module)."""
    b, s, c = (draws[:, i].astype(x.dtype).reshape(-1, 1, 1, 1) for i in range(3))
    x = x + (b - 0.5)
    mean = jnp.mean(x, axis=3, keepdims=True)
    x = (x - mean) * (2.0 * s) + mean
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (c + 0.5) + mean


def apply(x: Array, draws: dict[str, Array], policy) -> Array:
    """The augmentation of images ``x`` (n, H, W, C) with the draws of :func:`draw`, policies in the given order."""
    for name in parse_policy(policy):
        if name == "translation":
            x = translate(x, draws[name])
        elif name == "cutout":
            x = cutout(x, draws[name])
        else:
            x = color(x, draws[name])
    return x


def augment(key: Array, x: Array, policy) -> Array:
    """DiffAugment of images ``x`` (n, H, W, C) under ``policy`` (``"translation,cutout,color"`` or a sequence of
    names), with fresh draws from ``key``; differentiable in ``x``."""
    if not parse_policy(policy):
        return x
    return apply(x, draw(key, x.shape[0], x.shape[1:], policy), policy)
