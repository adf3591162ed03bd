"""Several models of one objective trained in one compiled program: ``vmap`` of the pure step over a
leading axis of states (one state, and one data stream, per model).

* :func:`train_sweep`: K models with their own seeds (which may repeat) and, for the adversarial
  objectives, their own hyper-parameters (learning rates, the WGAN-GP weight, the WGAN clipping
  bound: what the objective declares as ``Objective.hparams`` / ``with_hparams``).
* :func:`train_seeds`: the same for seeds only (kept for the experiments).

``gendl train ... --seeds K`` runs through the fit loop (:func:`gendl_jax.train.train_and_evaluate`),
which vmaps the step the same way and adds checkpoints, resume and per-seed logs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from gendl_jax import data as gdata
from gendl_jax.objectives import Objective, get_objective


def stack_batches(iterators: Sequence[gdata.BatchIterator], step: int) -> dict:
    """The batches of ``step`` from each iterator, stacked on a new leading axis."""
    batches = [it.batch_at(step) for it in iterators]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def unstack(states: Any, i: int) -> Any:
    """The ``i``-th state of a stacked (vmapped) state."""
    return jax.tree_util.tree_map(lambda leaf: leaf[i], states)


def init_sweep(
    obj: Objective,
    config: Any,
    example_batch: dict,
    seeds: Sequence[int],
    hparams: Mapping[str, Sequence[float]] | None = None,
) -> Any:
    """Stacked initial states: model ``i`` is exactly the single-model ``obj.init(PRNGKey(seeds[i]), config_i,
    example_batch)``, where ``config_i`` is ``config`` with the swept fields set to ``hparams[name][i]`` (an
    initial state may depend on them: WGAN's critic starts inside its own clipping box), and its
    ``state.hparams`` hold those values."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    if not hparams:
        return jax.vmap(lambda k: obj.init(k, config, example_batch))(keys)
    if obj.with_hparams is None:
        raise ValueError(
            f"objective {obj.name!r} keeps no hyper-parameters in its state; hparams {sorted(hparams)} cannot be swept"
        )
    for name, values in hparams.items():
        if np.ndim(values) != 1 or len(values) != len(seeds):
            raise ValueError(f"hparams[{name!r}] must hold one value per model ({len(seeds)} seeds), got {values!r}")
    fields = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    in_config = [name for name in hparams if name in fields]
    if in_config:  # one init per model with its own config; the stacked state keeps the sweep's static config
        models = [
            obj.init(
                keys[i], dataclasses.replace(config, **{n: float(hparams[n][i]) for n in in_config}), example_batch
            )
            for i in range(len(seeds))
        ]
        models = [m.replace(config=config) if hasattr(m, "config") else m for m in models]
        states = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *models)
    else:
        states = jax.vmap(lambda k: obj.init(k, config, example_batch))(keys)
    return obj.with_hparams(states, **{k: np.asarray(v, np.float64) for k, v in hparams.items()})


def train_sweep(
    objective: str | Objective,
    config: Any,
    dataset,
    *,
    seeds: Sequence[int],
    hparams: Mapping[str, Sequence[float]] | None = None,
    steps: int,
    batch_size: int | None,
    progress: bool = True,
    desc: str | None = None,
    log_every: int = 200,
    on_log: Callable[[int, dict], None] | None = None,
) -> tuple[Any, dict]:
    """Trains ``K = len(seeds)`` models at once with ``jax.jit(jax.vmap(step))``.

    Model ``i`` draws its initial parameters from ``PRNGKey(seeds[i])`` and its data stream from
    seed ``seeds[i]`` (:func:`gendl_jax.data.make_iterator`, the objective's value range), so
    it follows the same trajectory as a single-model run with that seed (up to float32 rounding).
    ``hparams`` maps names of ``state.hparams`` leaves to K values each (e.g.
    ``{"d_learning_rate": [1e-4, 3e-4, 1e-3]}``); unnamed leaves keep the config's value.

    Every ``log_every`` steps and at the end, ``on_log(done, metrics)`` gets the host metrics,
    each an array of shape (K,) (it may raise to stop the run).

    Returns ``(states, info)``: ``states`` has a leading axis of size K on every array leaf;
    ``info`` holds ``compile_seconds`` (the first step, compile included), ``train_seconds`` (the
    other steps) and ``last_metrics`` (lists of K values).
    """
    obj = get_objective(objective) if isinstance(objective, str) else objective
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of integers")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    config.validate()
    iterators = [gdata.make_iterator(dataset, batch_size, s, config.inner_steps, obj.value_range) for s in seeds]
    states = init_sweep(obj, config, iterators[0].batch_at(0), seeds, hparams)
    step = jax.jit(jax.vmap(obj.step), donate_argnums=0)
    t0 = time.perf_counter()
    compile_s = train_s = None
    with tqdm(total=steps, disable=not progress, desc=desc or f"{obj.name} x{len(seeds)}", dynamic_ncols=True) as bar:
        for s in range(steps):
            states, metrics = step(states, stack_batches(iterators, s))
            if s == 0:
                jax.block_until_ready(states)
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
            done = s + 1
            if done % log_every == 0 or done == steps:
                host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
                if on_log is not None:
                    on_log(done, host)
                bar.set_postfix({k: f"{np.mean(v):.3g}" for k, v in host.items()}, refresh=False)
            bar.update(1)
        jax.block_until_ready(states)
        train_s = time.perf_counter() - t0
    info = {
        "compile_seconds": compile_s,
        "train_seconds": train_s,
        "last_metrics": {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()},
    }
    return states, info


def train_seeds(
    objective: str | Objective,
    config: Any,
    dataset,
    seeds: Sequence[int],
    *,
    steps: int,
    batch_size: int,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[Any, dict]:
    """:func:`train_sweep` over seeds only (every model with the config's hyper-parameters)."""
    return train_sweep(
        objective, config, dataset, seeds=seeds, steps=steps, batch_size=batch_size, progress=progress, desc=desc
    )


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error ``std(ddof=1) / sqrt(K)``; the stderr is None for K = 1 or when a
    value is not finite (e.g. an infinite reverse KL of a run that covers no mode; the mean is then
    the plain mean, inf or nan)."""
    values = np.asarray(values, np.float64)
    if values.size < 2 or not np.all(np.isfinite(values)):
        return float(values.mean()), None
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))
