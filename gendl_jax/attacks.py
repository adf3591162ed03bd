"""Adversarial examples: FGSM (Goodfellow et al. 2014) and its iterated, projected version (PGD, Madry et al. 2018).

FGSM moves every input by ``eps`` in the direction that increases the classifier's loss fastest
under an L-infinity budget: ``x_adv = x + eps * sign(grad_x J(x, y))`` (the lecture's panda:
eps = 0.007). PGD repeats signed steps of size ``step_size`` and projects back onto the eps-ball
around ``x`` after each one. Both keep the result a valid image: it is clipped to
``value_range`` (part of the attack's definition; the inputs themselves must already lie there).

``logits_fn`` is a pure function (N, ...) -> (N, num_classes) logits, e.g.
``lambda x: model.apply(variables, x)``; J is the mean softmax cross-entropy. The attacks are
jitted (``logits_fn`` is a static argument: create it once and reuse it) and batched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
LogitsFn = Callable[[Array], Array]


def _check(x, labels, eps, value_range) -> None:
    lo, hi = value_range
    if not lo < hi:
        raise ValueError(f"value_range must have lo < hi, got {value_range!r}")
    if not isinstance(eps, jax.core.Tracer):
        e = np.asarray(eps)
        if e.ndim != 0 or not np.isfinite(e) or e < 0:
            raise ValueError(f"eps must be a finite scalar >= 0, got {eps!r}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a batch (N, ...) with N >= 1, got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    if labels.shape != (x.shape[0],) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
    if not isinstance(x, jax.core.Tracer):
        xn = np.asarray(x)
        if not np.all(np.isfinite(xn)) or xn.min() < lo or xn.max() > hi:
            raise ValueError(f"x must lie in value_range={tuple(value_range)}, got values in [{xn.min()}, {xn.max()}]")


def loss_gradient(logits_fn: LogitsFn, x: Array, labels: Array) -> Array:
    """grad_x of the summed softmax cross-entropy, (N, ...): each example's own loss gradient."""

    def loss(xb):
        return optax.softmax_cross_entropy_with_integer_labels(logits_fn(xb), labels).sum()

    return jax.grad(loss)(x)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("value_range",))
def _fgsm(logits_fn, x, labels, eps, value_range):
    g = loss_gradient(logits_fn, x, labels)
    return jnp.clip(x + eps * jnp.sign(g), *value_range)


def fgsm(logits_fn: LogitsFn, x, labels, eps: float, *, value_range: tuple[float, float] = (0.0, 1.0)) -> Array:
    """Fast gradient sign method: (N, ...) images -> (N, ...) adversarial images.

    Args:
      logits_fn: pure (N, ...) -> (N, K) logits.
      x: images in ``value_range``.
      labels: (N,) int true classes.
      eps: L-infinity budget, >= 0, in the units of ``value_range``.
      value_range: valid pixel range; the result is clipped to it.
    Raises:
      ValueError: eps < 0, x outside ``value_range``, or labels of the wrong shape.
    """
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    _check(x, labels, eps, value_range)
    return _fgsm(logits_fn, x, labels, jnp.asarray(eps, x.dtype), tuple(float(v) for v in value_range))


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("steps", "value_range", "random_start"))
def _pgd(logits_fn, x, labels, eps, step_size, key, steps, value_range, random_start):
    lo, hi = value_range

    def project(z):
        return jnp.clip(jnp.clip(z, x - eps, x + eps), lo, hi)

    start = project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps)) if random_start else x

    def body(_, z):
        return project(z + step_size * jnp.sign(loss_gradient(logits_fn, z, labels)))

    return jax.lax.fori_loop(0, steps, body, start)


def pgd(
    logits_fn: LogitsFn,
    x,
    labels,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    key: jax.Array | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Array:
    """Projected gradient descent (iterated FGSM) in the L-infinity ball: (N, ...) -> (N, ...).

    Args:
      steps: number of signed-gradient steps (>= 1).
      step_size: size of each step (default 2.5 * eps / steps, Madry et al.'s choice).
      key: if given, start from a uniform random point of the eps-ball; else from ``x``.
      Others as in :func:`fgsm`. With ``steps=1``, ``step_size=eps`` and no key, PGD is FGSM.
    """
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    _check(x, labels, eps, value_range)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if step_size is None:
        step_size = 2.5 * float(eps) / steps
    if not np.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size must be a finite number >= 0, got {step_size!r}")
    random_start = key is not None
    key = key if random_start else jax.random.PRNGKey(0)  # unused without a random start
    return _pgd(
        logits_fn,
        x,
        labels,
        jnp.asarray(eps, x.dtype),
        jnp.asarray(step_size, x.dtype),
        key,
        steps=steps,
        value_range=tuple(float(v) for v in value_range),
        random_start=random_start,
    )


def predictions_and_confidence(logits) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) logits -> (predicted class (N,), its softmax probability (N,))."""
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))
    return probs.argmax(-1), probs.max(-1)
