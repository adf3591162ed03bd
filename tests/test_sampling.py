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
    z = np.asarray(
        jax.jit(sampling.truncated_latents, static_argnums=(1, 2, 3))(
            jax.random.PRNGKey(int(threshold * 10)), 20000, 8, threshold
        ),
        np.float64,
    )
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
    out = sampling.rejection_sample(
        jax.random.PRNGKey(6), _propose, _jax_log_ratio, 5000, acceptance=target, batch_size=1000
    )
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
        sampling.rejection_sample(
            key, _propose, _jax_log_ratio, 1000, gamma=30.0, batch_size=100, burn_in=100, max_proposals=500
        )


def test_target_acceptance_holds_when_the_burn_in_underestimates_the_maximum():
    # An unbounded log-ratio (3x) and a tiny burn-in: M is raised many times after the burn-in, and gamma is
    # solved again each time, so the acceptance stays near the target (with gamma fixed it would sink).
    out = sampling.rejection_sample(
        jax.random.PRNGKey(8),
        _propose,
        jax.jit(lambda x: 3.0 * x[:, 0]),
        3000,
        acceptance=0.3,
        burn_in=100,
        batch_size=100,
    )
    assert out.max_logit > 9.0  # beyond 3 std: above the burn-in's maximum for most keys (this one included)
    assert out.acceptance_rate == pytest.approx(0.3, abs=0.05)


def _quadratic_log_ratio(a, c):
    """log_ratio(z) = a.z - c |z|^2: the target N(0, I) exp(log_ratio) is N(a / lam, I / lam), lam = 1 + 2c."""
    a = jnp.asarray(a, jnp.float32)
    return lambda z: z @ a - c * jnp.sum(z * z, axis=-1)


def _chains(log_ratio, n, dim, seed, **kwargs):
    run = jax.jit(functools.partial(sampling.latent_langevin, log_ratio=log_ratio, **kwargs))
    z0 = jax.random.normal(jax.random.PRNGKey(seed), (n, dim))
    return run(jax.random.PRNGKey(seed + 1), z0)


@pytest.mark.parametrize("seed", [0, 1])
def test_unadjusted_langevin_has_the_closed_form_biased_stationary_law(seed):
    rng = np.random.default_rng(seed)
    a, c, eps = rng.normal(size=3), rng.uniform(0.3, 0.7), 0.6
    lam = 1 + 2 * c
    out = _chains(_quadratic_log_ratio(a, c), 8000, 3, seed, n_steps=200, step_size=eps)
    z = np.asarray(out.z, np.float64)
    var_ula = 1.0 / (lam * (1.0 - eps * lam / 4.0))  # z' - m = (1 - eps lam / 2)(z - m) + sqrt(eps) xi
    np.testing.assert_allclose(z.mean(0), a / lam, atol=5 * np.sqrt(var_ula / len(z)))
    np.testing.assert_allclose(z.var(0), var_ula, rtol=0.05)
    assert abs(var_ula - 1 / lam) / (1 / lam) > 0.2  # the bias is large enough to be seen
    for j in range(3):
        assert stats.kstest(z[:, j], stats.norm(a[j] / lam, np.sqrt(var_ula)).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(out.acceptance, np.ones(200))
    # The trace starts at log_ratio(z0) and ends at log_ratio(z).
    z0 = jax.random.normal(jax.random.PRNGKey(seed), (8000, 3))
    f = _quadratic_log_ratio(a, c)
    np.testing.assert_allclose(out.mean_log_ratio[0], np.mean(f(z0)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.mean_log_ratio[-1], np.mean(f(out.z)), rtol=1e-4, atol=1e-4)


def test_metropolis_adjusted_langevin_is_exact_for_the_gaussian():
    a, c, eps = np.array([1.0, -0.5]), 0.5, 0.6  # the unadjusted chain's variance would be 0.71, not 0.5
    lam = 1 + 2 * c
    out = _chains(_quadratic_log_ratio(a, c), 8000, 2, 3, n_steps=300, step_size=eps, metropolis=True)
    z = np.asarray(out.z, np.float64)
    np.testing.assert_allclose(z.mean(0), a / lam, atol=5 * np.sqrt(1 / lam / len(z)))
    np.testing.assert_allclose(z.var(0), 1 / lam, rtol=0.05)
    for j in range(2):
        assert stats.kstest(z[:, j], stats.norm(a[j] / lam, np.sqrt(1 / lam)).cdf).pvalue > 1e-3
    assert 0.5 < float(np.mean(out.acceptance)) < 1.0


def test_metropolis_adjusted_langevin_samples_a_tilted_non_gaussian_density():
    # p(z) ∝ N(z; 0, 1) exp(2 tanh(3 z) + 1.5 cos(2 z)): skewed and bimodal; CDF by quadrature.
    def log_ratio(z):
        return 2.0 * jnp.tanh(3.0 * z[:, 0]) + 1.5 * jnp.cos(2.0 * z[:, 0])

    def density(t):
        return np.exp(-0.5 * t * t + 2.0 * np.tanh(3.0 * t) + 1.5 * np.cos(2.0 * t))

    grid = np.linspace(-8, 8, 8001)
    cdf = integrate.cumulative_trapezoid(density(grid), grid, initial=0.0)
    cdf /= cdf[-1]
    out = _chains(log_ratio, 6000, 1, 5, n_steps=400, step_size=0.5, metropolis=True)
    z = np.asarray(out.z[:, 0], np.float64)
    assert stats.kstest(z, lambda t: np.interp(t, grid, cdf)).pvalue > 1e-3
    # The prior alone is clearly rejected: the chains moved.
    assert stats.kstest(z, stats.norm.cdf).pvalue < 1e-6


def test_latent_langevin_bad_input():
    f = _quadratic_log_ratio([0.0, 0.0], 0.5)
    z0 = jnp.zeros((4, 2))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="step_size must be a finite number > 0"):
        sampling.latent_langevin(key, z0, f, n_steps=3, step_size=0.0)
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        sampling.latent_langevin(key, z0, f, n_steps=0, step_size=0.1)
    with pytest.raises(ValueError, match=r"z0 must be a float array of shape \(n, ...\)"):
        sampling.latent_langevin(key, jnp.zeros(4), f, n_steps=3, step_size=0.1)
    with pytest.raises(ValueError, match=r"log_ratio must map z0 of shape \(4, 2\) to shape \(4,\)"):
        sampling.latent_langevin(key, z0, lambda z: z, n_steps=3, step_size=0.1)


def test_latent_langevin_takes_latents_of_any_rank():
    # (n, 2, 3) latents, log_ratio = -c |z|^2 over all trailing axes: the target is N(0, I / (1 + 2c)).
    c = 0.75
    run = jax.jit(
        functools.partial(
            sampling.latent_langevin,
            n_steps=150,
            step_size=0.4,
            metropolis=True,
            log_ratio=lambda z: -c * jnp.sum(z * z, axis=(1, 2)),
        )
    )
    out = run(jax.random.PRNGKey(8), 3.0 * jax.random.normal(jax.random.PRNGKey(9), (6000, 2, 3)))
    z = np.asarray(out.z, np.float64)
    assert z.shape == (6000, 2, 3)
    np.testing.assert_allclose(z.reshape(6000, -1).var(0), 1 / (1 + 2 * c), rtol=0.06)
    # mean_log_ratio tracks -c E|z|^2: from -c * 9 * 6 at the start to -c * 6 / (1 + 2c).
    np.testing.assert_allclose(out.mean_log_ratio[0], -c * 9 * 6, rtol=0.03)
    np.testing.assert_allclose(out.mean_log_ratio[-1], -c * 6 / (1 + 2 * c), rtol=0.05)


def test_latent_langevin_in_batches_matches_one_call_and_weights_the_traces():
    f = _quadratic_log_ratio([0.8, -0.3], 0.4)
    z0 = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1000, 2)))
    key = jax.random.PRNGKey(1)
    whole = sampling.latent_langevin_in_batches(key, z0, f, n_steps=20, step_size=0.3, metropolis=True, batch_size=1000)
    direct = jax.jit(
        functools.partial(sampling.latent_langevin, log_ratio=f, n_steps=20, step_size=0.3, metropolis=True)
    )(jax.random.fold_in(key, 0), jnp.asarray(z0))
    np.testing.assert_allclose(whole.z, direct.z, rtol=1e-6, atol=1e-6)
    # Uneven batches (300, 300, 300, 100): the traces are means over all chains.
    parts = sampling.latent_langevin_in_batches(key, z0, f, n_steps=20, step_size=0.3, metropolis=True, batch_size=300)
    assert parts.z.shape == (1000, 2) and parts.mean_log_ratio.shape == (21,) and parts.acceptance.shape == (20,)
    np.testing.assert_allclose(parts.mean_log_ratio[0], np.mean(f(jnp.asarray(z0))), rtol=1e-5)
    np.testing.assert_allclose(parts.mean_log_ratio[-1], np.mean(f(jnp.asarray(parts.z))), rtol=1e-5)
    assert 0.0 < parts.acceptance.min() <= parts.acceptance.max() <= 1.0
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sampling.latent_langevin_in_batches(key, z0, f, n_steps=2, step_size=0.3, batch_size=0)


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    pos, neg = np.round(rng.normal(0.5, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)  # rounding makes ties
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[pos, neg])
    assert sampling.roc_auc(pos, neg) == pytest.approx(expected, abs=1e-12)
    assert sampling.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        sampling.roc_auc([], [1.0])


@pytest.fixture(scope="module")
def toy_gan():
    """A GAN on 2-D data with 2-D latents, a few steps into training."""
    from gendl_jax.objectives import gan

    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(1, 64, 2)), jnp.float32)}
    state = gan.init(jax.random.PRNGKey(0), gan.GANConfig(model="mlp", hidden=(32, 32), latent_dim=2), batch)
    step = jax.jit(gan.step)
    for _i in range(5):
        state, _ = step(state, {"x": jnp.asarray(rng.normal(size=(1, 64, 2)) + 1.0, jnp.float32)})
    return state


def test_calibrate_discriminator_is_platt_scaling_of_the_logits(toy_gan):
    from gendl_jax.objectives import adversarial

    rng = np.random.default_rng(1)
    real = rng.normal(size=(3000, 2)).astype(np.float32) + 1.0
    fake = np.asarray(adversarial.sample(toy_gan, jax.random.PRNGKey(2), 2000))
    cal = sampling.calibrate_discriminator(toy_gan, real, fake, batch_size=700)
    logits_real = np.asarray(adversarial.discriminate(toy_gan, real), np.float64)
    logits_fake = np.asarray(adversarial.discriminate(toy_gan, fake), np.float64)
    a, b = sampling.platt_scaling(logits_real, logits_fake)
    assert (cal.a, cal.b) == pytest.approx((a, b), rel=1e-4, abs=1e-5)
    assert cal.auc == pytest.approx(sampling.roc_auc(logits_real, logits_fake), abs=1e-6)
    assert (cal.n_real, cal.n_fake) == (3000, 2000)
    np.testing.assert_allclose(jax.jit(cal.log_ratio(toy_gan))(real[:5]), a * logits_real[:5] + b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"real must have shape \(n, 2\)"):
        sampling.calibrate_discriminator(toy_gan, real[:, :1], fake)


def test_sample_gan_ddls_reaches_the_importance_weighted_target(toy_gan):
    # MALA chains on N(z; 0, I) exp(l(G(z))) with 2-D latents: E[l] and E[z] against self-normalised
    # importance sampling of 400,000 prior draws.
    from gendl_jax.objectives import adversarial

    cal = sampling.DiscriminatorCalibration(
        a=8.0, b=0.0, batch_statistics=False, auc=0.5, d_real_mean=0.5, d_fake_mean=0.5, n_real=1, n_fake=1
    )
    log_ratio = jax.jit(lambda z: cal.log_ratio(toy_gan)(adversarial.generate(toy_gan, z)))
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (400000, 2)), np.float64)
    lr = np.asarray(log_ratio(jnp.asarray(z, jnp.float32)), np.float64)
    w = np.exp(lr - lr.max())
    w /= w.sum()
    assert 1.0 / np.sum(w * w) > 10000  # enough effective samples for a reference
    drawn = sampling.sample_gan(
        toy_gan, jax.random.PRNGKey(4), 4000, calibration=cal, ddls_steps=300, ddls_step_size=0.2, ddls_metropolis=True
    )
    assert drawn.samples.shape == (4000, 2) and drawn.info["sampler"] == "ddls"
    # The tilt moves E[l] by about 0.55; the chains land within 0.05 of the reference (unadjusted chains at
    # this step size miss it by about 0.06).
    assert drawn.info["mean_log_ratio_end"] == pytest.approx(np.sum(w * lr), abs=0.05)
    assert drawn.info["mean_log_ratio_end"] > drawn.info["mean_log_ratio_start"] + 0.4
    assert 0.3 < drawn.info["mh_acceptance"] < 1.0


def test_sample_gan_plain_truncation_and_drs(toy_gan):
    from gendl_jax.objectives import adversarial

    key = jax.random.PRNGKey(5)
    plain = sampling.sample_gan(toy_gan, key, 1500, batch_size=1000)
    keys = jax.random.split(key, 2)
    expected = np.concatenate([adversarial.generate(toy_gan, jax.random.normal(k, (1000, 2))) for k in keys])[:1500]
    np.testing.assert_allclose(plain.samples, expected, rtol=1e-6, atol=1e-6)
    cal = sampling.DiscriminatorCalibration(
        a=3.0, b=0.0, batch_statistics=False, auc=0.5, d_real_mean=0.5, d_fake_mean=0.5, n_real=1, n_fake=1
    )
    drs = sampling.sample_gan(toy_gan, key, 3000, truncation=1.5, calibration=cal, drs_acceptance=0.25)
    assert drs.samples.shape == (3000, 2) and drs.info["sampler"] == "drs"
    assert drs.info["kept"] == pytest.approx(0.25, abs=0.04)
    # DRS keeps the proposals D rates higher.
    log_ratio = jax.jit(cal.log_ratio(toy_gan))
    assert np.mean(log_ratio(drs.samples)) > np.mean(log_ratio(plain.samples)) + 0.1
    with pytest.raises(ValueError, match="need calibration="):
        sampling.sample_gan(toy_gan, key, 10, drs_acceptance=0.5)
    with pytest.raises(ValueError, match="ddls_steps is not combined with drs_acceptance"):
        sampling.sample_gan(toy_gan, key, 10, calibration=cal, drs_acceptance=0.5, ddls_steps=3)
    with pytest.raises(ValueError, match="drs_acceptance must be a number in"):
        sampling.sample_gan(toy_gan, key, 10, calibration=cal, drs_acceptance=1.5)
    with pytest.raises(ValueError, match="truncation must be a finite number > 0"):
        sampling.sample_gan(toy_gan, key, 10, truncation=-1.0)
    with pytest.raises(ValueError, match="ddls_step_size must be a finite number > 0"):
        sampling.check_sampler_options(ddls_steps=5, ddls_step_size=0.0)
    with pytest.raises(ValueError, match="ddls_steps must be an int >= 0"):
        sampling.check_sampler_options(ddls_steps=-2)


def test_rejection_sample_of_pytree_proposals_keeps_each_label_with_its_sample():
    """(x, label) proposals: the accepted x are those of the array proposals under the same key, and each label is
    still the one drawn with its x."""

    @functools.partial(jax.jit, static_argnums=1)
    def propose_pairs(key, m):
        x = _propose(key, m)
        return x, (x[:, 0] > 0).astype(jnp.int32)

    kwargs = dict(acceptance=0.4, batch_size=500, burn_in=1000)
    pairs = sampling.rejection_sample(
        jax.random.PRNGKey(9), propose_pairs, lambda xy: _jax_log_ratio(xy[0]), 1500, **kwargs
    )
    plain = sampling.rejection_sample(jax.random.PRNGKey(9), _propose, _jax_log_ratio, 1500, **kwargs)
    x, labels = pairs.samples
    np.testing.assert_array_equal(x, plain.samples)
    np.testing.assert_array_equal(labels, (x[:, 0] > 0).astype(np.int32))
    assert (pairs.proposals, pairs.gamma) == (plain.proposals, plain.gamma)


@pytest.fixture(scope="module")
def toy_cgan():
    """A class-conditional GAN on 2-D data of 3 classes, a few steps into training."""
    from gendl_jax.objectives import gan

    rng = np.random.default_rng(0)

    def batch():
        y = rng.integers(0, 3, (1, 64))
        return {
            "x": jnp.asarray(rng.normal(size=(1, 64, 2)) + 2.0 * y[..., None], jnp.float32),
            "y": jnp.asarray(y, jnp.int32),
        }

    config = gan.GANConfig(model="mlp", hidden=(32, 32), latent_dim=2, num_classes=3)
    state = gan.init(jax.random.PRNGKey(0), config, batch())
    step = jax.jit(gan.step)
    for _ in range(5):
        state, _ = step(state, batch())
    return state


def test_conditional_calibration_and_drs_score_each_sample_with_its_label(toy_cgan):
    from gendl_jax.objectives import adversarial

    rng = np.random.default_rng(1)
    real_labels = rng.integers(0, 3, 2000).astype(np.int32)
    real = (rng.normal(size=(2000, 2)) + 2.0 * real_labels[:, None]).astype(np.float32)
    drawn = sampling.sample_gan(toy_cgan, jax.random.PRNGKey(2), 1500, batch_size=500)
    assert drawn.labels.shape == (1500,) and set(np.unique(drawn.labels)) == {0, 1, 2}
    z = jax.random.normal(jax.random.split(jax.random.PRNGKey(2), 3)[0], (500, 2))
    np.testing.assert_allclose(
        drawn.samples[:500], adversarial.generate(toy_cgan, z, labels=drawn.labels[:500]), rtol=1e-6, atol=1e-6
    )
    cal = sampling.calibrate_discriminator(
        toy_cgan, real, drawn.samples, real_labels=real_labels, fake_labels=drawn.labels, batch_size=700
    )
    logits_real = np.asarray(adversarial.discriminate(toy_cgan, real, labels=real_labels), np.float64)
    logits_fake = np.asarray(adversarial.discriminate(toy_cgan, drawn.samples, labels=drawn.labels), np.float64)
    a, b = sampling.platt_scaling(logits_real, logits_fake)
    assert (cal.a, cal.b) == pytest.approx((a, b), rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="needs real_labels and fake_labels"):
        sampling.calibrate_discriminator(toy_cgan, real, drawn.samples)

    out = sampling.sample_gan(
        toy_cgan, jax.random.PRNGKey(3), 1000, calibration=cal, drs_acceptance=0.5, batch_size=500
    )
    assert out.samples.shape == (1000, 2) and out.labels.shape == (1000,)
    assert out.info["sampler"] == "drs" and out.info["kept"] == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ValueError, match="DDLS is implemented for unconditional GANs"):
        sampling.sample_gan(toy_cgan, jax.random.PRNGKey(3), 10, calibration=cal, ddls_steps=2)
