"""Low-level image statistics against numpy / scipy references and closed forms (scaling, shifts, white noise)."""

import jax
import numpy as np
import pytest
from scipy.signal import correlate2d
from scipy.stats import wasserstein_distance

from gendl_jax.metrics.image_statistics import (
    filter_responses,
    low_level_statistics,
    radial_power_spectrum,
    random_filters,
    sampled_filter_responses,
)


def _spectrum_reference(images):
    """Ring means of |FFT|^2 / (H W) by explicit loops over the frequencies (float64 numpy)."""
    _n, h, w = images.shape
    power = np.mean([np.abs(np.fft.fft2(x)) ** 2 for x in images], axis=0) / (h * w)
    r_max = min(h, w) // 2
    sums, counts = np.zeros(r_max + 1), np.zeros(r_max + 1)
    for i in range(h):
        for j in range(w):
            ky = i if i <= h // 2 else i - h  # the FFT's signed frequency (cycles per image)
            kx = j if j <= w // 2 else j - w
            if i == h // 2 and h % 2 == 0:
                ky = -h // 2
            if j == w // 2 and w % 2 == 0:
                kx = -w // 2
            r = int(np.rint(np.sqrt(ky**2 + kx**2)))
            if r <= r_max:
                sums[r] += power[i, j]
                counts[r] += 1
    return sums / counts


@pytest.mark.parametrize("shape", [(7, 12, 10), (5, 9, 9), (4, 8, 8, 3)])
def test_radial_power_spectrum_matches_a_loop(shape):
    images = np.random.default_rng().normal(size=shape)
    expected = _spectrum_reference(images.mean(axis=3) if images.ndim == 4 else images)
    np.testing.assert_allclose(radial_power_spectrum(images), expected, rtol=1e-12)


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    sigma = 0.7
    images = sigma * np.random.default_rng().normal(size=(1000, 16, 16))
    spectrum = radial_power_spectrum(images)
    assert spectrum.shape == (9,)
    # each ring averages >= 1000 exponential-like powers (ring 0: one chi-squared(1) term per image)
    np.testing.assert_allclose(spectrum, sigma**2, rtol=0.2)
    np.testing.assert_allclose(spectrum[1:].mean(), sigma**2, rtol=0.03)


def test_filter_responses_match_scipy_correlate2d():
    rng = np.random.default_rng()
    images, filters = rng.normal(size=(3, 11, 9)), random_filters(jax.random.PRNGKey(0), 4, 3)
    out = filter_responses(images, filters)
    assert out.shape == (4, 3, 9, 7)
    for f in range(4):
        for n in range(3):
            np.testing.assert_allclose(out[f, n], correlate2d(images[n], filters[f], mode="valid"), atol=1e-12)


def test_random_filters_are_zero_mean_unit_norm_and_keyed():
    f = random_filters(jax.random.PRNGKey(1), 6, 5)
    assert f.shape == (6, 5, 5)
    np.testing.assert_allclose(f.mean(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(f.reshape(6, -1), axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(f, random_filters(jax.random.PRNGKey(1), 6, 5))
    assert not np.allclose(f, random_filters(jax.random.PRNGKey(2), 6, 5))


def test_sampled_responses_are_responses_at_drawn_positions():
    rng = np.random.default_rng()
    images, filters = rng.normal(size=(20, 10, 10)), random_filters(jax.random.PRNGKey(0), 3, 4)
    full = filter_responses(images, filters).reshape(3, -1)  # 20 x 49 positions
    np.testing.assert_array_equal(sampled_filter_responses(images, filters, jax.random.PRNGKey(1), 980), full)
    sampled = sampled_filter_responses(images, filters, jax.random.PRNGKey(1), 300)
    assert sampled.shape == (3, 300)
    # each sampled column is the column of one position of the full responses, for all filters at once
    distances = np.abs(sampled.T[:, None, :] - full.T[None, :, :]).max(axis=2)
    assert distances.min(axis=1).max() < 1e-12


def _all_positions_statistics(real, fake, key=None):
    key = jax.random.PRNGKey(3) if key is None else key
    return low_level_statistics(real, fake, key=key, n_filters=5, filter_size=3, max_responses=10**6)


def test_statistics_of_a_scaled_and_a_shifted_set_against_closed_forms():
    rng = np.random.default_rng()
    real = rng.uniform(-1, 1, size=(40, 12, 12)) * rng.uniform(0.2, 1.0, size=(40, 1, 1))
    filters = random_filters(jax.random.split(jax.random.PRNGKey(3), 3)[0], 5, 3)
    responses = np.stack([[correlate2d(x, f, mode="valid") for x in real] for f in filters])
    a, c = 1.7, 0.3
    # scaled by a > 0: every sorted distribution scales, W1 = |a - 1| E|.|; the spectrum scales by a^2
    scaled = _all_positions_statistics(real, a * real)
    assert scaled["log_power_spectrum_rms"] == pytest.approx(2 * np.log10(a), rel=1e-10)
    assert scaled["filter_response_w1"] == pytest.approx((a - 1) * np.abs(responses).mean(), rel=1e-9)
    assert scaled["mean_intensity_w1"] == pytest.approx((a - 1) * np.abs(real.mean(axis=(1, 2))).mean(), rel=1e-9)
    assert scaled["contrast_w1"] == pytest.approx((a - 1) * real.std(axis=(1, 2)).mean(), rel=1e-9)
    # shifted by c: zero-mean filters, contrast and the spectrum beyond radius 0 do not see it
    shifted = _all_positions_statistics(real, real + c)
    assert shifted["filter_response_w1"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["contrast_w1"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["log_power_spectrum_rms"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["mean_intensity_w1"] == pytest.approx(c, rel=1e-12)
    same = _all_positions_statistics(real, real.copy())
    assert all(
        same[k] == 0.0 for k in ("filter_response_w1", "mean_intensity_w1", "contrast_w1", "log_power_spectrum_rms")
    )


def test_statistics_of_unrelated_sets_against_scipy():
    rng = np.random.default_rng()
    real, fake = rng.normal(size=(30, 10, 10, 1)), 0.5 * rng.standard_t(3, size=(17, 10, 10, 1))
    out = _all_positions_statistics(real, fake)
    filters = random_filters(jax.random.split(jax.random.PRNGKey(3), 3)[0], 5, 3)
    want = np.mean(
        [
            wasserstein_distance(filter_responses(real, f[None]).ravel(), filter_responses(fake, f[None]).ravel())
            for f in filters
        ]
    )
    assert out["filter_response_w1"] == pytest.approx(want, rel=1e-9)
    assert out["contrast_w1"] == pytest.approx(
        wasserstein_distance(real.std(axis=(1, 2, 3)), fake.std(axis=(1, 2, 3))), rel=1e-9
    )
    ratio = np.log10(_spectrum_reference(fake[..., 0])[1:] / _spectrum_reference(real[..., 0])[1:])
    assert out["log_power_spectrum_rms"] == pytest.approx(np.sqrt(np.mean(ratio**2)), rel=1e-9)
    np.testing.assert_allclose(out["power_spectrum_fake"], _spectrum_reference(fake[..., 0]), rtol=1e-12)


def test_bad_input():
    x = np.zeros((4, 8, 8)) + np.arange(8)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"real and fake images must have the same size, got \(8, 8\) and \(8, 6\)"):
        low_level_statistics(x, x[:, :, :6], key=key)
    with pytest.raises(ValueError, match=r"fake must be at least 2 images of shape \(N, H, W\)"):
        low_level_statistics(x, x[0], key=key)
    with pytest.raises(ValueError, match="real contains NaN or inf"):
        low_level_statistics(np.where(x > 6, np.nan, x), x, key=key)
    with pytest.raises(ValueError, match="zero ring"):
        low_level_statistics(np.ones((4, 8, 8)), x, key=key)
    with pytest.raises(ValueError, match=r"filters must be \(F, k, k\) with k <= min\(H, W\) = 8"):
        filter_responses(x, np.ones((2, 9, 9)))
    with pytest.raises(ValueError, match="n_filters must be >= 1"):
        random_filters(key, 0)
