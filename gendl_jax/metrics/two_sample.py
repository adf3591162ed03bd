"""Learned two-sample measures: a classifier two-sample test and a Wasserstein critic.

* :func:`classifier_two_sample` (C2ST; Lopez-Paz & Oquab 2017): train a small MLP to tell real
  from fake on half of each set, report its accuracy on the other half. 0.5 means the classifier
  cannot tell them apart. The p-value is that of the accuracy under the null (accuracy ~
  N(1/2, 1/(4 n_test))).
* :func:`critic_wasserstein` (Arjovsky et al. 2017; the "Wasserstein critic" row of Borji 2018):
  train a critic with a gradient penalty (Gulrajani et al. 2017) on half of each set, then report
  ``E_real f - E_fake f`` on the held-out halves, an estimate (a lower bound at the optimum) of
  W1(real, fake).

Both train in float32 in one compiled ``lax.scan`` (a learned estimate, not an exact quantity).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.metrics._common import as_samples, positive_int, same_dim
from gendl_jax.models.mlp import MLPDiscriminator


def _split(key, n: int, test_fraction: float):
    n_test = int(round(n * test_fraction))
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_fraction={test_fraction} leaves no training or no test sample out of {n}")
    perm = np.asarray(jax.random.permutation(key, n))
    return perm[n_test:], perm[:n_test]


def _prepare(real, fake, test_fraction):
    real, fake = as_samples(_flat(real, "real"), "real", min_n=2), as_samples(_flat(fake, "fake"), "fake", min_n=2)
    same_dim(real, fake, "real", "fake")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    return real.astype(np.float32), fake.astype(np.float32)


def _flat(x, name):
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with at least 2 axes, got {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("model", "steps", "batch_size", "lr"))
def _train_classifier(key, x_real, x_fake, model, steps, batch_size, lr):
    k_init, k_steps = jax.random.split(key)
    params = model.init(k_init, x_real[:1])
    opt = optax.adam(lr)

    def loss_fn(p, xr, xf):
        return (jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xr), 1.0))
                + jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xf), 0.0))) / 2

    def step(carry, k):
        p, s = carry
        kr, kf = jax.random.split(k)
        xr = x_real[jax.random.randint(kr, (batch_size,), 0, x_real.shape[0])]
        xf = x_fake[jax.random.randint(kf, (batch_size,), 0, x_fake.shape[0])]
        g = jax.grad(loss_fn)(p, xr, xf)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params


def classifier_two_sample(real, fake, key, *, hidden: tuple[int, ...] = (128, 128), steps: int = 1000,
                          batch_size: int = 128, lr: float = 1e-3, test_fraction: float = 0.5) -> dict[str, float]:
    """Classifier two-sample test between ``real`` (n, ...) and ``fake`` (m, ...) (samples are flattened).

    Returns ``{"accuracy": held-out accuracy (balanced over the two sets), "p_value": one-sided
    p-value of accuracy > 0.5, "n_test": held-out samples}``.
    """
    real, fake = _prepare(real, fake, test_fraction)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    k_real, k_fake, k_train = jax.random.split(key, 3)
    r_train, r_test = _split(k_real, len(real), test_fraction)
    f_train, f_test = _split(k_fake, len(fake), test_fraction)
    model = MLPDiscriminator(hidden=tuple(hidden), activation="relu")
    params = _train_classifier(k_train, real[r_train], fake[f_train], model, steps, batch_size, float(lr))
    acc_real = float(jnp.mean(model.apply(params, real[r_test]) > 0))
    acc_fake = float(jnp.mean(model.apply(params, fake[f_test]) <= 0))
    accuracy = (acc_real + acc_fake) / 2
    n_test = len(r_test) + len(f_test)
    z = (accuracy - 0.5) / math.sqrt(0.25 / n_test)
    return {"accuracy": accuracy, "p_value": 0.5 * math.erfc(z / math.sqrt(2)), "n_test": n_test}


@functools.partial(jax.jit, static_argnames=("model", "steps", "batch_size", "lr", "gp_weight"))
def _train_critic(key, x_real, x_fake, model, steps, batch_size, lr, gp_weight):
    k_init, k_steps = jax.random.split(key)
    params = model.init(k_init, x_real[:1])
    opt = optax.adam(lr, b1=0.5, b2=0.9)

    def loss_fn(p, xr, xf, eps):
        xhat = eps[:, None] * xr + (1 - eps[:, None]) * xf
        grads = jax.vmap(jax.grad(lambda x: model.apply(p, x[None])[0]))(xhat)
        penalty = jnp.mean((jnp.linalg.norm(grads, axis=1) - 1.0) ** 2)
        return jnp.mean(model.apply(p, xf)) - jnp.mean(model.apply(p, xr)) + gp_weight * penalty

    def step(carry, k):
        p, s = carry
        kr, kf, ke = jax.random.split(k, 3)
        xr = x_real[jax.random.randint(kr, (batch_size,), 0, x_real.shape[0])]
        xf = x_fake[jax.random.randint(kf, (batch_size,), 0, x_fake.shape[0])]
        g = jax.grad(loss_fn)(p, xr, xf, jax.random.uniform(ke, (batch_size,)))
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params


def critic_wasserstein(real, fake, key, *, hidden: tuple[int, ...] = (128, 128), steps: int = 2000,
                       batch_size: int = 256, lr: float = 1e-3, gp_weight: float = 10.0,
                       test_fraction: float = 0.5) -> dict[str, float]:
    """Held-out Wasserstein-critic estimate of W1 between ``real`` (n, ...) and ``fake`` (m, ...).

    Returns ``{"w1": E_real f - E_fake f on the held-out halves, "n_test_real", "n_test_fake"}``.
    """
    real, fake = _prepare(real, fake, test_fraction)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    if not gp_weight > 0:
        raise ValueError(f"gp_weight must be > 0, got {gp_weight}")
    k_real, k_fake, k_train = jax.random.split(key, 3)
    r_train, r_test = _split(k_real, len(real), test_fraction)
    f_train, f_test = _split(k_fake, len(fake), test_fraction)
    model = MLPDiscriminator(hidden=tuple(hidden), activation="relu")
    params = _train_critic(k_train, real[r_train], fake[f_train], model, steps, batch_size, float(lr), float(gp_weight))
    w1 = float(jnp.mean(model.apply(params, real[r_test])) - jnp.mean(model.apply(params, fake[f_test])))
    return {"w1": w1, "n_test_real": len(r_test), "n_test_fake": len(f_test)}
