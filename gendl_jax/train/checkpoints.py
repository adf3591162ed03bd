"""Orbax checkpoints of a whole train state (every array leaf: parameters, BatchNorm statistics,
optimiser states, PRNG key, step; the step is also the data iterator's position).

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed mid-save never leaves a half-written checkpoint that ``latest_step`` would pick up.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def checkpoint_manager(directory: str | pathlib.Path, *, max_to_keep: int | None = 3) -> ocp.CheckpointManager:
    """A manager for ``directory`` (created if needed) that keeps the last ``max_to_keep`` saves."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, *, wait: bool = False) -> None:
    """Saves ``state`` as checkpoint ``step`` (asynchronously unless ``wait``)."""
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if wait:
        manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, like: Any, step: int | None = None) -> Any:
    """The state saved at ``step`` (default: the latest complete one), shaped like ``like``.

    ``like`` is a state of the same structure (e.g. a fresh ``init``); its static fields (config,
    data shape) are kept, its arrays replaced.
    """
    if step is None:
        step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
