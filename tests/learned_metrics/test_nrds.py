"""NRDS against a float64 numpy replay of its training (same splits, initialisation and minibatches), numpy's
trapezoid, the Bayes-optimal discriminator of Gaussian models, and bad input."""

import jax
import numpy as np
import pytest
from scipy.special import expit

from gendl_jax.learned_metrics.nrds import _inputs, nrds


def _layers(params):
    """MLPDiscriminator's parameters as a float64 [(W, b)] list, hidden layers first, the logit last."""
    p = params["params"]
    names = sorted((k for k in p if k.startswith("dense")), key=lambda k: int(k[len("dense") :])) + ["logit"]
    assert sorted(names) == sorted(p)
    return [[np.asarray(p[k]["kernel"], np.float64), np.asarray(p[k]["bias"], np.float64)] for k in names]


def _logits(layers, x):
    h = x
    for w, b in layers[:-1]:
        h = np.maximum(h @ w + b, 0.0)
    return (h @ layers[-1][0] + layers[-1][1])[:, 0]


def _grads(layers, xr, xf):
    """Gradient of (mean BCE(D(xr), 1) + mean BCE(D(xf), 0)) / 2, by hand."""
    x = np.concatenate([xr, xf])
    hs = [x]
    for w, b in layers[:-1]:
        hs.append(np.maximum(hs[-1] @ w + b, 0.0))
    logit = (hs[-1] @ layers[-1][0] + layers[-1][1])[:, 0]
    target = np.r_[np.ones(len(xr)), np.zeros(len(xf))]
    size = np.r_[np.full(len(xr), len(xr)), np.full(len(xf), len(xf))]
    delta = ((expit(logit) - target) / (2 * size))[:, None]
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        w = layers[i][0]
        grads.append([hs[i].T @ delta, delta.sum(axis=0)])
        if i:
            delta = (delta @ w.T) * (hs[i] > 0)
    return grads[::-1]


def _reference_curves(inp, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Float64 replay: Adam written out, each model's curve from its own held-out block."""
    layers = _layers(inp.params)
    real, pool = inp.real.astype(np.float64), inp.pool.astype(np.float64)
    tests = np.split(inp.test.astype(np.float64), np.cumsum(inp.n_test)[:-1])
    m = [[np.zeros_like(a) for a in layer] for layer in layers]
    v = [[np.zeros_like(a) for a in layer] for layer in layers]
    real_idx, fake_idx = np.asarray(inp.real_idx), np.asarray(inp.fake_idx)
    curves = [[expit(_logits(layers, x)).mean() for x in tests]]
    t = 0  # Adam's step count
    for e in range(real_idx.shape[0]):
        for s in range(real_idx.shape[1]):
            t += 1
            grads = _grads(layers, real[real_idx[e, s]], pool[fake_idx[e, s]])
            for layer, gl, ml, vl in zip(layers, grads, m, v):
                for j in range(2):
                    ml[j] = b1 * ml[j] + (1 - b1) * gl[j]
                    vl[j] = b2 * vl[j] + (1 - b2) * gl[j] ** 2
                    layer[j] = layer[j] - lr * (ml[j] / (1 - b1**t)) / (np.sqrt(vl[j] / (1 - b2**t)) + eps)
        curves.append([expit(_logits(layers, x)).mean() for x in tests])
    return np.array(curves)


def _rows(x):
    return sorted(map(tuple, np.asarray(x, np.float32).reshape(len(x), -1).tolist()))


@pytest.mark.parametrize("hidden", [(), (6, 5)])
def test_curves_match_a_float64_replay_of_the_training(hidden):
    rng = np.random.default_rng()
    real = rng.normal(size=(37, 2, 2))
    fakes = [
        rng.normal(0.3, 1.0, size=(20, 2, 2)),
        rng.normal(1.0, 1.5, size=(31, 2, 2)),
        rng.normal(-0.5, 0.7, size=(12, 2, 2)),
    ]
    key = jax.random.PRNGKey(int(rng.integers(2**31)))
    kw = dict(epochs=3, steps_per_epoch=4, hidden=hidden, batch_size=8, test_fraction=0.4)
    out = nrds(real, fakes, key, lr=0.03, **kw)
    inp = _inputs(real, fakes, key, **kw)

    # The replayed inputs are what the protocol says: a partition of each model set into pool and held-out rows.
    n_test = [round(len(f) * 0.4) for f in fakes]
    assert out["n_test"] == inp.n_test == n_test
    pools = np.split(inp.pool, np.cumsum([len(f) - k for f, k in zip(fakes, n_test)])[:-1])
    tests = np.split(inp.test, np.cumsum(n_test)[:-1])
    for f, p, t in zip(fakes, pools, tests):
        assert len(p) == len(f) - len(t) and _rows(np.concatenate([p, t])) == _rows(f)
    assert np.array_equal(inp.real, real.reshape(37, 4).astype(np.float32))
    assert inp.real_idx.shape == inp.fake_idx.shape == (3, 4, 8)
    assert inp.real_idx.min() >= 0 and inp.real_idx.max() < 37 and inp.fake_idx.max() < len(inp.pool)

    expected = _reference_curves(inp, lr=0.03)
    assert np.abs(expected[-1] - expected[0]).max() > 1e-2  # the training moved D
    np.testing.assert_allclose(out["curves"], expected, rtol=0, atol=1e-4)
    assert out["epochs"] == [0, 1, 2, 3] and out["names"] == [0, 1, 2]


def test_areas_are_trapezoids_and_nrds_normalises_them():
    rng = np.random.default_rng()
    real = rng.normal(size=(60, 3))
    fakes = [rng.normal(0.5 * i, 1.0, size=(40 + 7 * i, 3)) for i in range(4)]
    out = nrds(
        real,
        fakes,
        jax.random.PRNGKey(int(rng.integers(2**31))),
        epochs=5,
        steps_per_epoch=3,
        hidden=(8,),
        batch_size=16,
    )
    curves = np.array(out["curves"])
    assert curves.shape == (6, 4) and np.all((curves > 0) & (curves < 1))
    areas = np.trapezoid(curves, x=np.arange(6), axis=0)
    np.testing.assert_allclose(out["areas"], areas, rtol=1e-12)
    np.testing.assert_allclose(out["nrds"], areas / areas.sum(), rtol=1e-12)
    assert sum(out["nrds"]) == pytest.approx(1.0, abs=1e-12)

    one = nrds(real, fakes[:1], jax.random.PRNGKey(3), epochs=2, steps_per_epoch=3, hidden=(8,), batch_size=16)
    assert one["nrds"] == [1.0]
    assert one["areas"] == pytest.approx(np.trapezoid(np.array(one["curves"])[:, 0]), rel=1e-12)


def _bayes_mean_d(mus, d, rng, n=100_000):
    """E_{x ~ N(mu_i 1, I)} D*(x), D* = p_real / (p_real + p_pool), p_real = N(0, I), p_pool the models' mixture."""
    out = []
    for mu in mus:
        x = rng.normal(size=(n, d)) + mu
        log_ratio = [-(np.sum((x - m) ** 2, 1) - np.sum(x**2, 1)) / 2 for m in mus]  # log p_j(x) / p_real(x)
        out.append(np.mean(1 / (1 + np.mean(np.exp(log_ratio), axis=0))))
    return np.array(out)


def test_models_closer_to_the_data_score_higher():
    rng = np.random.default_rng()
    d, mus = 3, [0.0, 0.5, 2.0]
    real = rng.normal(size=(2000, d))
    fakes = [rng.normal(size=(2000, d)) + mu for mu in mus]
    out = nrds(
        real, fakes, jax.random.PRNGKey(int(rng.integers(2**31))), epochs=10, steps_per_epoch=50, hidden=(32, 32)
    )
    score = out["nrds"]
    assert score[0] > score[1] > score[2]
    curves = np.array(out["curves"])
    # The same-as-real model keeps D near 1/2 (its Bayes value is 0.61: a third of the pool is real-like);
    # the far model's curve drops towards 0.
    assert np.all((curves[1:, 0] > 0.45) & (curves[1:, 0] < 0.75))
    assert curves[-1, 2] < 0.15 and curves[-1, 2] < curves[1, 2]
    # After training, D is close to the Bayes-optimal discriminator of real vs pool.
    np.testing.assert_allclose(curves[-1], _bayes_mean_d(mus, d, rng), atol=0.06)


def test_dict_input_keeps_names_and_set_sizes():
    rng = np.random.default_rng()
    fakes = {"wgan": rng.normal(size=(30, 2)), "dcgan": rng.normal(1.0, 1.0, size=(50, 2))}
    out = nrds(
        rng.normal(size=(40, 2)),
        fakes,
        jax.random.PRNGKey(0),
        epochs=2,
        steps_per_epoch=2,
        hidden=(4,),
        batch_size=8,
        test_fraction=0.2,
    )
    assert out["names"] == ["wgan", "dcgan"] and out["n_test"] == [6, 10]
    assert len(out["nrds"]) == len(out["areas"]) == 2 and np.array(out["curves"]).shape == (3, 2)


def test_result_is_reproducible_from_the_key():
    rng = np.random.default_rng()
    real, fakes = rng.normal(size=(40, 2)), [rng.normal(size=(30, 2)), rng.normal(1.0, 1.0, size=(30, 2))]
    kw = dict(epochs=3, steps_per_epoch=5, hidden=(4,), batch_size=8)
    a = nrds(real, fakes, jax.random.PRNGKey(5), **kw)
    assert nrds(real, fakes, jax.random.PRNGKey(5), **kw) == a
    b = nrds(real, fakes, jax.random.PRNGKey(6), **kw)
    assert not np.allclose(b["curves"], a["curves"], rtol=0, atol=1e-6)


def test_nrds_bad_input():
    x = np.random.default_rng().normal(size=(10, 2))
    key = jax.random.PRNGKey(0)
    cases = [
        (ValueError, "fakes must hold at least one model's samples", dict(fakes=[])),
        (TypeError, r"fakes must be a sequence of \(m_i, \.\.\.\) arrays.*got ndarray", dict(fakes=x)),
        (
            ValueError,
            r"fakes\[1\] must have at least 2 samples of dimension >= 1, got shape \(0, 2\)",
            dict(fakes=[x, x[:0]]),
        ),
        (ValueError, r"fakes\[0\] must have at least 2 samples", dict(fakes=[x[:1]])),
        (ValueError, r"fakes\['b'\] contains NaN", dict(fakes={"a": x, "b": np.r_[x, [[np.nan, 0.0]]]})),
        (ValueError, "real contains NaN", dict(real=np.r_[x, [[0.0, np.inf]]])),
        (ValueError, r"real must have at least 1 samples", dict(real=x[:0])),
        (
            ValueError,
            r"real and fakes\[1\] must have the same dimension, got 2 and 3",
            dict(fakes=[x, np.zeros((5, 3))]),
        ),
        (
            ValueError,
            r"real and fakes\[0\] must have the same per-sample shape, got \(4,\) and \(2, 2\)",
            dict(real=np.zeros((5, 4)), fakes=[np.zeros((5, 2, 2))]),
        ),
        (ValueError, "epochs must be >= 1, got 0", dict(epochs=0)),
        (TypeError, "epochs must be an int", dict(epochs=2.5)),
        (ValueError, r"test_fraction must lie in \(0, 1\), got 1.0", dict(test_fraction=1.0)),
        (ValueError, r"test_fraction must lie in \(0, 1\), got 0.0", dict(test_fraction=0.0)),
        (
            ValueError,
            r"test_fraction=0.2 leaves no training or no test sample out of the 2 of fakes\[1\]",
            dict(fakes=[x, x[:2]], test_fraction=0.2),
        ),
        (ValueError, "lr must be > 0, got 0", dict(lr=0.0)),
        (ValueError, "batch_size must be >= 1", dict(batch_size=0)),
        (TypeError, "hidden must be a tuple of hidden widths", dict(hidden=8)),
    ]
    for error, message, kwargs in cases:
        args = dict(real=x, fakes=[x, x], key=key, epochs=1, steps_per_epoch=1) | kwargs
        with pytest.raises(error, match=message):
            nrds(**args)
