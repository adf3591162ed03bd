"""NRDS, the normalised relative discriminative score (Zhang et al. 2018, "Decoupled learning for conditional
adversarial networks", WACV; the "NRDS" row of Borji 2018's table of GAN measures).

One binary classifier D (real = 1, fake = 0) is trained on the real samples against the pooled samples of n
models. After every epoch (and before the first, epoch 0) the mean of ``sigmoid(D)`` on each model's held-out
samples is recorded: the closer a model's samples are to the data, the longer D keeps calling them real.
``A_i`` is the area under model i's curve (trapezoid rule, one unit per epoch) and ``NRDS_i = A_i / sum_j A_j``.

Like :func:`~gendl_jax.learned_metrics.two_sample.classifier_two_sample`, it trains in float32 in one compiled
``lax.scan`` (epochs) of ``lax.scan`` (steps).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.metrics.common import as_samples, flatten_samples, positive_int, same_dim, split_indices
from gendl_jax.models.mlp import MLPDiscriminator


class _Inputs(NamedTuple):
    """Everything :func:`_train_curves` reads, drawn from the key (the test's reference replays it)."""

    names: list
    n_test: list[int]
    model: nn.Module
    params: dict  # initial parameters of D
    real: np.ndarray  # (n, d) float32, all real samples (D is never scored on real data)
    pool: np.ndarray  # (sum_i m_i - n_test_i, d) float32, the models' training samples, model after model
    test: np.ndarray  # (sum_i n_test_i, d) float32, the models' held-out samples, model after model
    segment: np.ndarray  # (sum_i n_test_i,) int32, the model of each row of ``test`` (sorted)
    real_idx: jax.Array  # (epochs, steps_per_epoch, batch_size) rows of ``real`` of each minibatch
    fake_idx: jax.Array  # (epochs, steps_per_epoch, batch_size) rows of ``pool`` of each minibatch


def _samples(x, label: str, min_n: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` (m, ...) as a finite float64 (m, d) array and its per-sample shape."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:  # e.g. ragged lists
        raise TypeError(f"{label} must be an array of shape (m, ...), got {type(x).__name__}") from e
    return as_samples(flatten_samples(arr, label), label, min_n=min_n), arr.shape[1:]


def _model_sets(real, fakes) -> tuple[np.ndarray, list, list[str], list[np.ndarray]]:
    """``real`` (n, d) and the model sets (m_i, d) as float32, the models' names and their labels in messages."""
    if isinstance(fakes, Mapping):
        names, arrays = list(fakes), list(fakes.values())
        labels = [f"fakes[{name!r}]" for name in names]
    elif isinstance(fakes, (np.ndarray, jax.Array, str)) or not hasattr(fakes, "__len__"):
        raise TypeError(
            "fakes must be a sequence of (m_i, ...) arrays, one per model, or a dict name -> array, "
            f"got {type(fakes).__name__} (for one model, pass [samples])"
        )
    else:
        names, arrays = list(range(len(fakes))), list(fakes)
        labels = [f"fakes[{i}]" for i in names]
    if not arrays:
        raise ValueError("fakes must hold at least one model's samples, got none")
    real, shape = _samples(real, "real", 1)
    sets = []
    for x, label in zip(arrays, labels):
        flat, x_shape = _samples(x, label, 2)
        same_dim(real, flat, "real", label)
        if x_shape != shape:
            raise ValueError(f"real and {label} must have the same per-sample shape, got {shape} and {x_shape}")
        sets.append(flat.astype(np.float32))
    return real.astype(np.float32), names, labels, sets


def _inputs(real, fakes, key, *, epochs, steps_per_epoch, hidden, batch_size, test_fraction) -> _Inputs:
    real, names, labels, sets = _model_sets(real, fakes)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    epochs, steps_per_epoch = positive_int(epochs, "epochs"), positive_int(steps_per_epoch, "steps_per_epoch")
    batch_size = positive_int(batch_size, "batch_size")
    try:
        hidden = tuple(hidden)
    except TypeError as e:
        raise TypeError(f"hidden must be a tuple of hidden widths, got {hidden!r}") from e
    model = MLPDiscriminator(hidden=hidden, activation="relu")
    k_split, k_init, k_real, k_fake = jax.random.split(key, 4)
    pool, test, n_test = [], [], []
    for x, label, k in zip(sets, labels, jax.random.split(k_split, len(sets))):
        train_rows, test_rows = split_indices(k, len(x), test_fraction, label)
        pool.append(x[train_rows])
        test.append(x[test_rows])
        n_test.append(len(test_rows))
    pool, test = np.concatenate(pool), np.concatenate(test)
    segment = np.repeat(np.arange(len(sets), dtype=np.int32), n_test)
    shape = (epochs, steps_per_epoch, batch_size)
    return _Inputs(
        names=names,
        n_test=n_test,
        model=model,
        params=model.init(k_init, real[:1]),
        real=real,
        pool=pool,
        test=test,
        segment=segment,
        real_idx=jax.random.randint(k_real, shape, 0, len(real)),
        fake_idx=jax.random.randint(k_fake, shape, 0, len(pool)),
    )


@functools.partial(jax.jit, static_argnames=("model", "lr", "n_models"))
def _train_curves(params, x_real, x_pool, x_test, segment, real_idx, fake_idx, model, lr, n_models):
    """(epochs + 1, n_models) mean ``sigmoid(D)`` on each model's rows of ``x_test`` (``segment``: their model),
    before training and after each epoch; the minibatches are ``x_real[real_idx[e, s]]`` and
    ``x_pool[fake_idx[e, s]]``."""
    opt = optax.adam(lr)
    counts = jax.ops.segment_sum(jnp.ones(segment.shape, x_test.dtype), segment, n_models, indices_are_sorted=True)

    def curve(p):
        d = jax.nn.sigmoid(model.apply(p, x_test))
        return jax.ops.segment_sum(d, segment, n_models, indices_are_sorted=True) / counts

    def loss_fn(p, xr, xf):
        return (
            jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xr), 1.0))
            + jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xf), 0.0))
        ) / 2

    def step(carry, idx):
        p, s = carry
        g = jax.grad(loss_fn)(p, x_real[idx[0]], x_pool[idx[1]])
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    def epoch(carry, idx):
        carry, _ = jax.lax.scan(step, carry, idx)
        return carry, curve(carry[0])

    _, curves = jax.lax.scan(epoch, (params, opt.init(params)), (real_idx, fake_idx))
    return jnp.concatenate([curve(params)[None], curves])


def nrds(
    real,
    fakes,
    key,
    *,
    epochs: int = 20,
    steps_per_epoch: int = 100,
    hidden: tuple[int, ...] = (128, 128),
    batch_size: int = 128,
    lr: float = 1e-3,
    test_fraction: float = 0.5,
) -> dict:
    """Normalised relative discriminative score of n models against ``real``.

    D is an :class:`~gendl_jax.models.mlp.MLPDiscriminator` (ReLU, ``hidden`` widths; ``()`` is logistic
    regression) trained with Adam (``lr``) on half the BCE of a real minibatch (label 1) plus half that of a fake
    minibatch (label 0), ``batch_size`` rows each, drawn with replacement from all of ``real`` and from the pool of
    the models' training samples (so a model with more samples is drawn more often). Each model set is split once:
    a ``test_fraction`` of it is held out and only scored, the rest joins the pool.

    NRDS is a learned and relative measure: it ranks the models given, and its values change with the set of
    models compared (they share the pool D learns from) and with D's budget (``hidden``, ``epochs`` x
    ``steps_per_epoch``, ``lr``). With one model NRDS is trivially ``[1.0]``; its curve and area still mean something.

    Args:
      real: (n, ...) real samples; flattened.
      fakes: sequence of (m_i, ...) arrays (m_i >= 2), one per model, of the same per-sample shape as ``real``;
        or a dict name -> array.
      key: PRNG key of the splits, D's initialisation and the minibatches.

    Returns a dict:
      ``"nrds"``: (n_models,) list, ``A_i / sum_j A_j`` (sums to 1);
      ``"areas"``: (n_models,) list, ``A_i`` = trapezoid area under model i's curve, in [0, epochs];
      ``"curves"``: (epochs + 1) x n_models nested list, ``curves[e][i]`` = mean ``sigmoid(D)`` on model i's
      held-out samples after e epochs (row 0: before training);
      ``"epochs"``: [0, 1, ..., epochs], the x axis of the curves;
      ``"names"``: the dict's keys, or 0 .. n_models - 1;
      ``"n_test"``: (n_models,) list of held-out samples per model.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    inp = _inputs(
        real,
        fakes,
        key,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        hidden=hidden,
        batch_size=batch_size,
        test_fraction=test_fraction,
    )
    curves = _train_curves(
        inp.params,
        inp.real,
        inp.pool,
        inp.test,
        inp.segment,
        inp.real_idx,
        inp.fake_idx,
        model=inp.model,
        lr=float(lr),
        n_models=len(inp.names),
    )
    curves = np.asarray(curves, np.float64)
    areas = curves.sum(axis=0) - (curves[0] + curves[-1]) / 2
    total = areas.sum()
    if not total > 0:
        raise ValueError(
            f"D's outputs on every model's samples are 0 (areas {areas.tolist()}): its logits underflow "
            "the float32 sigmoid; standardise the samples"
        )
    return {
        "nrds": (areas / total).tolist(),
        "areas": areas.tolist(),
        "curves": curves.tolist(),
        "epochs": list(range(curves.shape[0])),
        "names": inp.names,
        "n_test": inp.n_test,
    }
