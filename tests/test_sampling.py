"""Truncated latents, DRS acceptance, Platt scaling and the rejection sampler, against scipy and
float64 numpy references and closed forms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

from gendl_jax import sampling


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_truncated_latents_follow_the_truncated_normal(threshold):
    z = np.asarray(jax.jit(sampling.truncated_latents, static_argnums=(1, 2, 3))(
        jax.random.PRNGKey(int(threshold * 10)), 20000, 8, threshold), np.float64)
    assert z.shape == (20000, 8) and np.abs(z).max() <= threshold
    ref = stats.truncnorm(-threshold, threshold)
    flat = z.ravel()
    se = np.sqrt(ref.var() / flat.size)
    assert abs(flat.mean()) < 5 * se
    assert flat.var() == pytest.approx(ref.var(), rel=0.03)
    assert stats.kstest(flat[:20000], ref.cdf).pvalue > 1e-3
    # Coordinates are independent.
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.04


def test_truncated_latents_without_threshold_and_bad_input():
    z = np.asarray(sampling.truncated_latents(jax.random.PRNGKey(0), 50000, 2))
    assert z.var() == pytest.approx(1.0, rel=0.03) and np.abs(z).max() > 3.0
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        sampling.truncated_latents(jax.random.PRNGKey(0), 4, 2, 0.0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sampling.truncated_latents(jax.random.PRNGKey(0), 0, 2, 1.0)


def _log_acceptance_reference(logits, max_logit, gamma, eps):
    logits = np.asarray(logits, np.float64)
    f = logits - max_logit - np.log(1.0 - np.exp(logits - max_logit - eps)) - gamma
    return np.log(1.0 / (1.0 + np.exp(-f)))


@pytest.mark.parametrize("seed,gamma", [(0, 0.0), (1, -2.5), (2, 1.7)])
def test_drs_log_acceptance_matches_numpy(seed, gamma):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=257)
    max_logit = logits.max() + rng.uniform(0, 1)
    got = jax.jit(sampling.drs_log_acceptance)(jnp.asarray(logits, jnp.float32), max_logit, gamma, 1e-3)
    np.testing.assert_allclose(got, _log_acceptance_reference(logits, max_logit, gamma, 1e-3), rtol=1e-4, atol=1e-5)


def test_drs_exact_scheme_is_exp_of_logit_minus_max():
    # gamma = 0, eps -> 0: sigmoid(F) = exp(l - M), the rejection sampler's acceptance.
    logits = np.random.default_rng(3).normal(size=100)
    max_logit = logits.max() + 0.3
    with jax.enable_x64(True):
        got = sampling.drs_log_acceptance(jnp.asarray(logits), max_logit, 0.0, 1e-12)
    np.testing.assert_allclose(got, logits - max_logit, rtol=1e-9, atol=1e-9)


def test_drs_log_acceptance_bad_input():
    with pytest.raises(ValueError, match="max_logit must be >= every logit"):
        sampling.drs_log_acceptance(jnp.array([0.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        sampling.drs_log_acceptance(jnp.array([0.0]), 1.0, eps=0.0)
    with pytest.raises(ValueError, match="finite"):
        sampling.drs_log_acceptance(jnp.array([np.nan]), 1.0)


@pytest.mark.parametrize("target", [0.05, 0.3, 0.9])
def test_gamma_for_acceptance_hits_the_target(target):
    rng = np.random.default_rng(int(target * 100))
    logits = rng.normal(loc=-2.0, scale=2.0, size=5000)
    max_logit = logits.max()
    gamma = sampling.gamma_for_acceptance(logits, max_logit, target)
    mean = np.exp(_log_acceptance_reference(logits, max_logit, gamma, 1e-6)).mean()
    assert mean == pytest.approx(target, abs=1e-9)
    with pytest.raises(ValueError, match=r"acceptance must be a number in \(0, 1\)"):
        sampling.gamma_for_acceptance(logits, max_logit, 1.0)


def test_platt_scaling_matches_scipy_and_the_gaussian_closed_form():
    rng = np.random.default_rng(4)
    # Logits of real ~ N(1, 1.5^2), of fakes ~ N(-1, 1.5^2) (unequal counts): the true log-ratio of the
    # two logit densities is linear, a = (mu_r - mu_f) / s^2, b = -(mu_r^2 - mu_f^2) / (2 s^2) = 0.
    s = 1.5
    real, fake = rng.normal(1.0, s, 40000), rng.normal(-1.0, s, 25000)
    a, b = sampling.platt_scaling(real, fake)

    def loss(p):
        return (np.mean(np.logaddexp(0, -(p[0] * real + p[1]))) + np.mean(np.logaddexp(0, p[0] * fake + p[1]))) / 2

    ref = optimize.minimize(loss, np.zeros(2), method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose([a, b], ref, rtol=1e-5, atol=1e-6)
    assert a == pytest.approx(2.0 / s**2, rel=0.05) and b == pytest.approx(0.0, abs=0.03)


def test_platt_scaling_bad_input():
    with pytest.raises(ValueError, match="perfectly separated"):
        sampling.platt_scaling(np.array([2.0, 3.0]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="logits_fake must have shape"):
        sampling.platt_scaling(np.array([2.0, 3.0]), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="logits_real must be finite"):
        sampling.platt_scaling(np.array([np.inf, 3.0]), np.array([0.0, 1.0]))


# Proposal N(0, 1), target N(0.5, 0.7^2): the log density ratio is bounded above since 0.7 < 1.
MU, SIGMA = 0.5, 0.7


def _log_ratio(x):
    return stats.norm.logpdf(x, MU, SIGMA) - stats.norm.logpdf(x)


@jax.jit
def _jax_log_ratio(x):
    x = x[:, 0]
    return (-0.5 * ((x - MU) / SIGMA) ** 2 - jnp.log(SIGMA)) + 0.5 * x**2


@functools.partial(jax.jit, static_argnums=1)
def _propose(key, m):
    return jax.random.normal(key, (m, 1))


def test_exact_rejection_sampling_recovers_the_target():
    out = sampling.rejection_sample(jax.random.PRNGKey(5), _propose, _jax_log_ratio, 4000, batch_size=2000)
    x = out.samples[:, 0].astype(np.float64)
    assert out.samples.shape == (4000, 1) and out.gamma == 0.0 and out.burn_in == 10000
    assert stats.kstest(x, stats.norm(MU, SIGMA).cdf).pvalue > 1e-3
    assert x.mean() == pytest.approx(MU, abs=4 * SIGMA / np.sqrt(len(x)))
    assert x.std() == pytest.approx(SIGMA, rel=0.05)
    # Acceptance of exact rejection sampling: 1 / max ratio (the maximum is at x* = MU / (1 - SIGMA^2)).
    x_star = MU / (1 - SIGMA**2)
    assert out.acceptance_rate == pytest.approx(np.exp(-_log_ratio(x_star)), rel=0.06)
    assert out.max_logit == pytest.approx(_log_ratio(x_star), abs=0.01)


def test_shifted_rejection_sampling_follows_the_tilted_density():
    target = 0.5
    out = sampling.rejection_sample(jax.random.PRNGKey(6), _propose, _jax_log_ratio, 5000, acceptance=target,
                                    batch_size=1000)
    assert out.acceptance_rate == pytest.approx(target, abs=0.03)
    # Accepted density ~ N(x; 0, 1) * sigmoid(F(x) - gamma), integrated numerically in float64.
    def weight(x):
        return stats.norm.pdf(x) * np.exp(_log_acceptance_reference(_log_ratio(x), out.max_logit, out.gamma, 1e-6))

    z = integrate.quad(weight, -12, 12)[0]
    mean = integrate.quad(lambda x: x * weight(x), -12, 12)[0] / z
    var = integrate.quad(lambda x: (x - mean) ** 2 * weight(x), -12, 12)[0] / z
    x = out.samples[:, 0].astype(np.float64)
    assert x.mean() == pytest.approx(mean, abs=4 * np.sqrt(var / len(x)))
    assert x.var() == pytest.approx(var, rel=0.06)
    grid = np.linspace(-12, 12, 200001)
    cdf_grid = integrate.cumulative_trapezoid(weight(grid), grid, initial=0.0) / z
    assert stats.kstest(x, lambda t: np.interp(t, grid, cdf_grid)).pvalue > 1e-3


def test_rejection_sample_bad_input():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="not both"):
        sampling.rejection_sample(key, _propose, _jax_log_ratio, 10, gamma=0.0, acceptance=0.5)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sampling.rejection_sample(key, _propose, _jax_log_ratio, 0)
    with pytest.raises(ValueError, match=r"log_ratio must map \(100, \.\.\.\) samples to \(100,\) logits"):
        sampling.rejection_sample(key, _propose, lambda x: x, 10, batch_size=100, burn_in=100)
    with pytest.raises(ValueError, match="NaN or inf"):
        sampling.rejection_sample(key, _propose, lambda x: x[:, 0] / 0.0, 10, batch_size=100, burn_in=100)
    with pytest.raises(RuntimeError, match="short of n=1000"):
        sampling.rejection_sample(key, _propose, _jax_log_ratio, 1000, gamma=30.0, batch_size=100, burn_in=100,
                                  max_proposals=500)


def test_target_acceptance_holds_when_the_burn_in_underestimates_the_maximum():
    # An unbounded log-ratio (3x) and a tiny burn-in: M is raised many times after the burn-in, and gamma is
    # solved again each time, so the acceptance stays near the target (with gamma fixed it would sink).
    out = sampling.rejection_sample(jax.random.PRNGKey(8), _propose, jax.jit(lambda x: 3.0 * x[:, 0]), 3000,
                                    acceptance=0.3, burn_in=100, batch_size=100)
    assert out.max_logit > 9.0  # beyond 3 std: above the burn-in's maximum for most keys (this one included)
    assert out.acceptance_rate == pytest.approx(0.3, abs=0.05)
