"""Several seeds of one objective trained in one compiled program: ``vmap`` of the pure step over a
leading axis of states (one state, and one data stream, per seed).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

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
    """Trains ``len(seeds)`` models at once; seed ``s`` draws its initial parameters and its data from ``s``.

    Returns ``(states, info)``: ``states`` has a leading axis of size ``len(seeds)`` on every array
    leaf; ``info`` holds compile and train seconds and the last metrics per seed.
    """
    obj = get_objective(objective) if isinstance(objective, str) else objective
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of integers")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config.validate()
    iterators = [
        gdata.BatchIterator(dataset, batch_size, seed=s, inner_steps=config.inner_steps) for s in seeds
    ]
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    states = jax.vmap(lambda k: obj.init(k, config, iterators[0].batch_at(0)))(keys)
    step = jax.jit(jax.vmap(obj.step), donate_argnums=0)
    t0 = time.perf_counter()
    states, metrics = step(states, stack_batches(iterators, 0))
    jax.block_until_ready(states)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tqdm(total=steps, initial=1, disable=not progress, desc=desc or obj.name, dynamic_ncols=True) as bar:
        for s in range(1, steps):
            states, metrics = step(states, stack_batches(iterators, s))
            if s % 200 == 0 or s == steps - 1:
                host = jax.device_get(metrics)
                bar.set_postfix({k: f"{np.mean(v):.3g}" for k, v in host.items()}, refresh=False)
            bar.update(1)
    jax.block_until_ready(states)
    info = {
        "compile_seconds": compile_s,
        "train_seconds": time.perf_counter() - t0,
        "last_metrics": {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()},
    }
    return states, info


def unstack(states: Any, i: int) -> Any:
    """The ``i``-th state of a stacked (vmapped) state."""
    return jax.tree_util.tree_map(lambda leaf: leaf[i], states)
