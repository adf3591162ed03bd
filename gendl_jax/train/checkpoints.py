"""Orbax checkpoints of a whole train state, with the data position and an integrity digest.

Each checkpoint ``<dir>/<step>/`` holds two items:

* ``state``: every array leaf of the train state (parameters, BatchNorm statistics, optimiser
  states, PRNG key, step, hyper-parameter leaves);
* ``meta`` (JSON): the step, the data iterator's position (:meth:`BatchIterator.position`), the
  metrics given at save time, and a SHA-256 digest of the state's bytes.

Guarantees:

* Atomic: orbax writes into a temporary folder and renames it when every file is written, so a
  run killed mid-save (even by SIGKILL) leaves no folder that :meth:`CheckpointManager.all_steps`
  lists; the temporary folder is cleaned up by the next manager.
* Verified: :func:`restore` recomputes the digest of what it read; a checkpoint that fails to load
  or whose digest differs is reported with a warning and the previous one is used instead. With
  ``set_aside_corrupted=True`` (what a resumed run uses) the skipped checkpoints are moved to
  ``<dir>/<step>.corrupt-<UTC time>`` (:func:`set_aside`), kept for inspection but no longer listed,
  so that the run can save those steps again.
* Checked: restoring into a state of another structure or shape raises a ``ValueError`` that names
  the mismatching leaves.

Retention: the last ``keep_last`` checkpoints, plus (with ``best_metric``) the ``keep_best`` with
the best value of that metric.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import time
import warnings
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers


class CorruptCheckpointError(RuntimeError):
    """No checkpoint of the folder could be restored intact."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tree (leaf names or shapes) differs from the model it is restored into."""


def checkpoint_manager(
    directory: str | pathlib.Path,
    *,
    keep_last: int = 3,
    best_metric: str | None = None,
    best_mode: Literal["min", "max"] = "min",
    keep_best: int = 1,
    primary_host: int | None = 0,
    max_to_keep: int | None = None,
) -> ocp.CheckpointManager:
    """A manager for ``directory`` (created if needed).

    Args:
      keep_last: keep the ``keep_last`` most recent checkpoints (>= 1).
      best_metric: also keep the ``keep_best`` checkpoints with the best value of this metric
        (given to :func:`save` as ``metrics``); ``best_mode`` says whether lower or higher is better.
      primary_host: the process that writes metadata in a multi-process job.
      max_to_keep: deprecated alias of ``keep_last``.
    """
    if max_to_keep is not None:
        keep_last = max_to_keep
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    if best_mode not in ("min", "max"):
        raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    policies = [ocp_managers.LatestN(n=keep_last)]
    if best_metric is not None:
        if keep_best < 1:
            raise ValueError(f"keep_best must be >= 1 with best_metric, got {keep_best}")
        policies.append(
            ocp_managers.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric],
                reverse=best_mode == "min",
                n=keep_best,
                keep_checkpoints_without_metrics=False,
            )
        )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp_managers.AnyPreservationPolicy(policies),
        create=True,
        best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
        best_mode=best_mode,
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=primary_host),
    )
    return ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
    )


def _host_leaves(state: Any) -> list[tuple[str, np.ndarray]]:
    """(path, host array) of every array leaf; replicated global arrays read from a local copy."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)
        out.append((jax.tree_util.keystr(path), np.asarray(leaf)))
    return out


def state_digest(state: Any) -> str:
    """SHA-256 over the paths, dtypes, shapes and bytes of every array leaf of ``state``."""
    digest = hashlib.sha256()
    for path, leaf in _host_leaves(state):
        digest.update(f"{path}:{leaf.dtype.str}:{leaf.shape};".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    *,
    metrics: dict[str, float] | None = None,
    data_position: dict | None = None,
    wait: bool = False,
) -> None:
    """Saves ``state`` as checkpoint ``step`` (asynchronously unless ``wait``).

    ``metrics`` (finite floats) drive best-by-metric retention; ``data_position`` is stored as is
    and returned by :func:`restore_with_meta` (the fit loop stores the iterator's position).
    """
    meta = {
        "step": int(step),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "data_position": data_position,
        "sha256": state_digest(state),
    }
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=meta["metrics"] or None,
        force=True,
    )
    if wait:
        manager.wait_until_finished()


def _abstract(like: Any) -> Any:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)


def _path_name(path) -> str:
    """A key path as ``a/b/0/c``, the same for a dataclass attribute, a dict key or a tuple index, so
    that the tree orbax saved (dicts and lists) and the live state (dataclasses, namedtuples) compare."""
    parts = []
    for entry in path:
        for attr in ("name", "key", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> Any:
    """The metadata tree (nested dicts / lists of array metadata) of checkpoint ``step``'s state."""
    legacy = _legacy_item(manager, step)
    if legacy is not None:
        with ocp.StandardCheckpointer() as checkpointer:
            saved = checkpointer.metadata(legacy)
        saved = getattr(saved, "item_metadata", saved)
    else:
        saved = manager.item_metadata(step)["state"]
    if saved is None:
        raise CorruptCheckpointError(f"checkpoint {manager.directory}/{step} has no readable state metadata")
    return getattr(saved, "tree", saved)


def check_compatible(manager: ocp.CheckpointManager, step: int, like: Any) -> None:
    """``ValueError`` naming every leaf whose presence, shape or dtype differs between checkpoint
    ``step`` and ``like``."""
    saved_tree = _saved_tree(manager, step)
    saved_leaves = {
        _path_name(p): leaf
        for p, leaf in jax.tree_util.tree_flatten_with_path(saved_tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    }
    wanted = {_path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(like)[0]}
    problems = [f"missing from the checkpoint: {p}" for p in sorted(set(wanted) - set(saved_leaves))]
    problems += [f"in the checkpoint but not in the model: {p}" for p in sorted(set(saved_leaves) - set(wanted))]
    for path in sorted(set(wanted) & set(saved_leaves)):
        want, got = wanted[path], saved_leaves[path]
        want_shape = tuple(np.shape(want))
        if tuple(got.shape) != want_shape:
            problems.append(f"{path}: checkpoint shape {tuple(got.shape)}, model expects {want_shape}")
    if problems:
        listed = "\n  ".join(problems[:40]) + ("\n  ..." if len(problems) > 40 else "")
        raise CheckpointMismatchError(
            f"checkpoint {manager.directory}/{step} does not fit this model ({len(problems)} leaves differ):\n  {listed}"
        )


def restore_with_meta(
    manager: ocp.CheckpointManager, like: Any, step: int | None = None, *, set_aside_corrupted: bool = False
) -> tuple[Any, dict]:
    """``(state, meta)`` of checkpoint ``step``, or of the latest intact one when ``step`` is None.

    ``like`` is a state of the same structure (e.g. a fresh ``init``, possibly sharded): its static
    fields are kept, its arrays replaced (with ``like``'s shardings). With ``step=None`` a
    checkpoint that fails to load or to verify is skipped with a warning and the one before it is
    tried; an explicit ``step`` must itself be intact.

    Args:
      set_aside_corrupted: with ``step=None``, move the newer checkpoints that were skipped aside with
        :func:`set_aside` (process 0 moves, every process then re-lists), so that the manager lists the
        restored step as its latest and a resumed run can save the skipped steps again. Off by default:
        reading a run (sampling, evaluation) must not move its files.

    Raises:
      FileNotFoundError: no checkpoint (or no checkpoint ``step``).
      CheckpointMismatchError: every checkpoint's tree differs from ``like``'s.
      CorruptCheckpointError: no checkpoint could be restored intact (nothing is moved).
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint {step} in {manager.directory}; it holds {sorted(steps)}")
        steps = [step]
    errors, mismatches = [], []
    for candidate in steps:
        try:
            check_compatible(manager, candidate, like)
        except CheckpointMismatchError as e:
            # A shape mismatch in every checkpoint is the caller's model; in the latest only, damage.
            mismatches.append(e)
            errors.append((candidate, "its stored tree does not fit the model"))
            continue
        except Exception as e:
            errors.append((candidate, f"{type(e).__name__}: {e}"))
            continue
        try:
            state, meta = _restore_verified(manager, candidate, like)
        except Exception as e:
            errors.append((candidate, f"{type(e).__name__}: {e}"))
            continue
        moved = set_aside(manager, [bad for bad, _ in errors]) if set_aside_corrupted and errors else {}
        for bad, error in errors:
            where = f"; moved it to {moved[bad]} (kept for inspection)" if bad in moved else ""
            cause = error if len(error) <= 400 else error[:400] + " ..."
            warnings.warn(
                f"checkpoint {manager.directory}/{bad} is corrupted; restored checkpoint {candidate} instead{where}. "
                f"Cause: {cause}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state, meta
    if len(mismatches) == len(steps):
        raise mismatches[0]
    raise CorruptCheckpointError(
        f"no intact checkpoint in {manager.directory}:\n  " + "\n  ".join(f"{bad}: {error}" for bad, error in errors)
    )


CORRUPT_SUFFIX = ".corrupt-"
"""Checkpoints set aside are renamed ``<step>.corrupt-<UTC time>``: not a step name, so orbax never lists,
restores or deletes them."""


def set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> dict[int, pathlib.Path]:
    """Moves checkpoints ``steps`` of ``manager`` to ``<dir>/<step>.corrupt-<UTC time>`` (never deletes them)
    and makes the manager re-list its steps; returns ``{step: new path}``.

    In a multi-process job every process must call it with the same ``steps``: only process 0 moves the
    folders (the paths it returns are the true ones; other processes return the names their own clock
    gives), then all processes wait for each other (a barrier) and re-list.
    """
    directory = pathlib.Path(manager.directory)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    targets = {}
    for step in steps:
        target = directory / f"{step}{CORRUPT_SUFFIX}{stamp}"
        n = 1
        while target.exists():  # the same step set aside twice in one second
            target = directory / f"{step}{CORRUPT_SUFFIX}{stamp}-{n}"
            n += 1
        targets[step] = target
    manager.wait_until_finished()
    if jax.process_index() == 0:
        for step, target in targets.items():
            os.replace(directory / str(step), target)
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(f"gendl_set_aside_{'_'.join(map(str, steps))}")
    manager.reload()
    return targets


def _legacy_item(manager: ocp.CheckpointManager, step: int) -> pathlib.Path | None:
    """The single ``default`` item of a checkpoint written before the state/meta layout, if it is one."""
    step_dir = pathlib.Path(manager.directory) / str(step)
    legacy = step_dir / "default"
    return legacy if legacy.is_dir() and not (step_dir / "state").exists() else None


def _restore_verified(manager: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict]:
    legacy = _legacy_item(manager, step)
    if legacy is not None:  # no digest or data position was saved: restored as is
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(legacy, _abstract(like)), {"step": step}
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like)), meta=ocp.args.JsonRestore())
        )
        state, meta = restored["state"], restored["meta"]
    except ValueError:
        # The leaves fit (check_compatible passed) but the containers differ: an empty subtree the state
        # gained after the checkpoint was written (e.g. ``generator_ema={}``). Restore by the saved tree.
        state, meta = _restore_by_saved_tree(manager, step, like)
    if meta is None or "sha256" not in meta:
        raise CorruptCheckpointError("its meta item is missing or unreadable")
    if state_digest(state) != meta["sha256"]:
        raise CorruptCheckpointError("the restored arrays do not match the SHA-256 digest saved with them")
    return state, meta


def _restore_by_saved_tree(manager: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict]:
    """Checkpoint ``step`` restored into the container structure it was saved with, its leaves then put
    into ``like``'s structure by path (``like``'s shapes, dtypes and shardings)."""
    is_saved_leaf = lambda x: hasattr(x, "shape")
    saved_tree = _saved_tree(manager, step)
    wanted = {_path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(_abstract(like))[0]}
    target = jax.tree_util.tree_map_with_path(lambda p, _: wanted[_path_name(p)], saved_tree, is_leaf=is_saved_leaf)
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
    )
    by_path = {_path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(restored["state"])[0]}
    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    state = jax.tree_util.tree_unflatten(treedef, [by_path[_path_name(p)] for p, _ in paths])
    return state, restored["meta"]


def restore(manager: ocp.CheckpointManager, like: Any, step: int | None = None) -> Any:
    """The state of :func:`restore_with_meta` without its meta."""
    return restore_with_meta(manager, like, step)[0]
