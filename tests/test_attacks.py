"""FGSM and PGD: closed-form gradient of a linear softmax model, eps-ball and range constraints, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.attacks import fgsm, loss_gradient, pgd, predictions_and_confidence

D, K, N = 12, 4, 16


@pytest.fixture
def linear_model():
    rng = np.random.default_rng()
    w = rng.normal(size=(D, K)).astype(np.float32)
    b = rng.normal(size=K).astype(np.float32)
    x = rng.uniform(0.3, 0.7, size=(N, D)).astype(np.float32)
    y = rng.integers(0, K, size=N)
    w_j, b_j = jnp.asarray(w), jnp.asarray(b)
    return (lambda xb: xb @ w_j + b_j), w, b, x, y


def _softmax_ce_grad64(w, b, x, y):
    """float64 closed form: d/dx CE(softmax(xW + b), y) = (softmax(z) - onehot(y)) W^T."""
    z = x.astype(np.float64) @ w.astype(np.float64) + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p @ w.T.astype(np.float64)


def test_gradient_matches_closed_form_and_finite_differences(linear_model):
    logits_fn, w, b, x, y = linear_model
    g = np.asarray(jax.jit(loss_gradient, static_argnums=0)(logits_fn, x, y))
    np.testing.assert_allclose(g, _softmax_ce_grad64(w, b, x, y), rtol=1e-4, atol=1e-5)

    def ce64(xx):
        z = xx @ w.astype(np.float64) + b
        m = z.max(1, keepdims=True)
        return (np.log(np.exp(z - m).sum(1)) + m[:, 0] - z[np.arange(N), y]).sum()

    h, i, j = 1e-6, 3, 5
    e = np.zeros((N, D))
    e[i, j] = h
    fd = (ce64(x + e) - ce64(x - e)) / (2 * h)
    np.testing.assert_allclose(g[i, j], fd, rtol=1e-3, atol=1e-5)


def test_fgsm_is_eps_times_sign_of_the_gradient(linear_model):
    logits_fn, w, b, x, y = linear_model
    eps = 0.1  # inputs in [0.3, 0.7]: no clipping
    x_adv = np.asarray(fgsm(logits_fn, x, y, eps))
    expected = x + eps * np.sign(_softmax_ce_grad64(w, b, x, y))
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)
    # The loss increases (first order: by eps * ||g||_1 > 0).
    ce = lambda xx: -np.log(np.asarray(jax.nn.softmax(logits_fn(xx)))[np.arange(N), y])
    assert np.all(ce(x_adv) > ce(x))
    np.testing.assert_array_equal(np.asarray(fgsm(logits_fn, x, y, 0.0)), x)


def test_fgsm_clips_to_the_value_range(linear_model):
    logits_fn, w, b, x, y = linear_model
    x_adv = np.asarray(fgsm(logits_fn, x, y, 0.5))
    expected = np.clip(x + 0.5 * np.sign(_softmax_ce_grad64(w, b, x, y)), 0.0, 1.0)
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)


def test_pgd_stays_in_the_ball_and_range_and_raises_the_loss():
    rng = np.random.default_rng()
    params = [jnp.asarray(rng.normal(size=s).astype(np.float32) / np.sqrt(s[0])) for s in ((D, 32), (32, K))]
    logits_fn = lambda xb: jnp.tanh(xb @ params[0]) @ params[1]
    x = rng.uniform(0, 1, size=(N, D)).astype(np.float32)
    x[:, 0] = 0.0
    x[:, 1] = 1.0
    y = rng.integers(0, K, size=N)
    eps = 0.2
    x_adv = np.asarray(pgd(logits_fn, x, y, eps, steps=20, key=jax.random.PRNGKey(1)))
    assert np.all(np.abs(x_adv - x) <= eps + 1e-6)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    loss = lambda xx: np.asarray(
        jax.vmap(lambda lg, t: -jax.nn.log_softmax(lg)[t])(logits_fn(jnp.asarray(xx)), jnp.asarray(y))
    )
    assert loss(x_adv).mean() > loss(x).mean()
    # One full-size step from x is FGSM.
    one = np.asarray(pgd(logits_fn, x, y, eps, steps=1, step_size=eps))
    np.testing.assert_allclose(one, np.asarray(fgsm(logits_fn, x, y, eps)), atol=1e-6)


def test_predictions_and_confidence():
    logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])
    pred, conf = predictions_and_confidence(logits)
    np.testing.assert_array_equal(pred, [1, 0])
    np.testing.assert_allclose(conf, [0.75, 0.5], rtol=1e-6)


def test_bad_input(linear_model):
    logits_fn, _, _, x, y = linear_model
    with pytest.raises(ValueError, match="eps must be a finite scalar >= 0"):
        fgsm(logits_fn, x, y, -0.1)
    with pytest.raises(ValueError, match="eps must be"):
        pgd(logits_fn, x, y, -1e-3)
    with pytest.raises(ValueError, match="x must lie in value_range"):
        fgsm(logits_fn, x * 3, y, 0.1)
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        fgsm(logits_fn, x, y[:3], 0.1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        pgd(logits_fn, x, y, 0.1, steps=0)
