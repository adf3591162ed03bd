"""SSIM against a float64 scipy version of Wang et al.'s definition (scipy.ndimage.correlate, valid region), its
closed form on constant images, PSNR by its formula, and the pair sampling of ssim_diversity."""

import numpy as np
import pytest
from scipy.ndimage import correlate

from gendl_jax.metrics import psnr, ssim, ssim_diversity
from gendl_jax.metrics.image_quality import gaussian_window


def _ssim_reference(a, b, data_range, size=11, sigma=1.5):
    """One pair of (H, W, C) images; the window correlated at every valid position, channels averaged."""
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    w = np.outer(g, g) / g.sum() ** 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    r = size // 2
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]

        def f(img):
            return correlate(img, w, mode="constant")[r : img.shape[0] - r, r : img.shape[1] - r]

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        values.append(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))
    return np.mean(values)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scipy_reference(channels):
    rng = np.random.default_rng()
    a = rng.uniform(-1, 1, size=(5, 28, 24, channels))
    b = np.clip(a + rng.normal(scale=0.3, size=a.shape), -1, 1)
    b[0] = a[0]  # identical pair
    got = ssim(a, b, data_range=2.0)
    want = [_ssim_reference(x, y, 2.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(ssim(b, a, data_range=2.0), got, rtol=1e-12)  # symmetric
    # Another window and uint8-like range, 2-d images.
    u, v = rng.integers(0, 256, size=(2, 3, 16, 16))
    np.testing.assert_allclose(
        ssim(u, v, data_range=255, window_size=7, sigma=1.0),
        [_ssim_reference(x[..., None].astype(float), y[..., None].astype(float), 255, 7, 1.0) for x, y in zip(u, v)],
        rtol=1e-10,
    )


def test_ssim_of_constant_images_is_the_luminance_term():
    c, d = 0.3, -0.5
    got = ssim(np.full((1, 12, 12), c), np.full((1, 12, 12), d), data_range=2.0)
    c1 = (0.01 * 2.0) ** 2
    assert got[0] == pytest.approx((2 * c * d + c1) / (c * c + d * d + c1), rel=1e-12)


def test_gaussian_window():
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11) and w.sum() == pytest.approx(1.0) and np.argmax(w) == 60
    np.testing.assert_allclose(w, w.T)


def test_psnr_formula():
    rng = np.random.default_rng()
    a, b = rng.uniform(0, 1, size=(2, 4, 8, 8))
    np.testing.assert_allclose(
        psnr(a, b, data_range=1.0), 10 * np.log10(1.0 / ((a - b) ** 2).mean(axis=(1, 2))), rtol=1e-12
    )
    assert psnr(a[:1], a[:1], data_range=1.0)[0] == np.inf


def test_ssim_diversity_pairs_and_labels():
    rng = np.random.default_rng()
    same = np.repeat(rng.uniform(-1, 1, size=(1, 16, 16)), 6, axis=0)
    noise = rng.uniform(-1, 1, size=(6, 16, 16))
    images = np.concatenate([same, noise])
    labels = np.array([0] * 6 + [1] * 6)
    out = ssim_diversity(images, data_range=2.0, labels=labels, n_pairs=50, seed=int(rng.integers(1000)))
    assert out["per_label"][0] == pytest.approx(1.0)  # every pair inside label 0 is a copy
    assert out["per_label"][1] < 0.1  # independent noise images; never an image with itself
    assert out["mean"] == pytest.approx((out["per_label"][0] + out["per_label"][1]) / 2)
    # Without labels: pairs over the whole set; the copies make the set less diverse than the noise alone.
    assert ssim_diversity(images, data_range=2.0, n_pairs=400)["mean"] > ssim_diversity(noise, data_range=2.0)["mean"]
    # A label with one image is left out.
    single = ssim_diversity(images[:7], data_range=2.0, labels=labels[:7], n_pairs=10)
    assert set(single["per_label"]) == {0}


def test_image_quality_bad_input():
    x = np.zeros((2, 16, 16))
    with pytest.raises(ValueError, match="data_range must be a positive finite number"):
        ssim(x, x, data_range=0)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, np.zeros((2, 16, 15)), data_range=1.0)
    with pytest.raises(ValueError, match="smaller than window_size=11"):
        ssim(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), data_range=1.0)
    with pytest.raises(ValueError, match="NaN"):
        psnr(np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4)), data_range=1.0)
    with pytest.raises(ValueError, match=r"shape \(n, H, W\) or \(n, H, W, C\)"):
        ssim(np.zeros((16, 16)), np.zeros((16, 16)), data_range=1.0)
    with pytest.raises(ValueError, match="at least 2 images"):
        ssim_diversity(x[:1], data_range=1.0)
    with pytest.raises(ValueError, match="a label with at least 2 images"):
        ssim_diversity(x, data_range=1.0, labels=np.array([0, 1]))
