"""Backbones for fine-tuning: orbax variables folders, and the checkpoints of ``gendl finetune`` runs."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax.core import unfreeze

from gendl_jax.finetune.config import NAME, FinetuneConfig, finetune_state, fresh_variables
from gendl_jax.finetune.surgery import merge_backbone
from gendl_jax.train import checkpoints
from gendl_jax.train.fit import config_from_json


def save_backbone(path: str | pathlib.Path, variables: Mapping[str, Any]) -> None:
    """Writes ``variables`` as an orbax checkpoint at ``path`` (which must not exist yet)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(pathlib.Path(path).absolute(), unfreeze(dict(variables)))


def load_backbone(path: str | pathlib.Path, variables: Mapping[str, Any], *, exclude: Sequence[str] = ("fc",)) -> dict:
    """``variables`` with every sub-tree but ``exclude`` replaced by the one saved at ``path``.

    ``path`` is one of:

    * an orbax checkpoint of a variables dict (``{"params": ..., "batch_stats": ...}``) as written
      by :func:`save_backbone` or :func:`gendl_jax.metrics.classifier.save_classifier`;
    * a run folder written by ``gendl finetune`` (its latest intact checkpoint), or one of its
      checkpoints ``RUN/checkpoints/<step>`` (see :func:`run_variables`).

    Raises:
      FileNotFoundError: nothing at ``path``.
      ValueError: the checkpoint lacks a needed sub-tree or has other shapes (listed).
    """
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"no orbax checkpoint or run folder at {path}")
    if (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        saved = run_variables(path)
    elif path.parent.name == "checkpoints" and path.name.isdigit() and (path.parent.parent / "config.json").is_file():
        saved = run_variables(path.parent.parent, step=int(path.name))
    else:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as ckptr:
            saved = ckptr.restore(path)
    return merge_backbone(saved, variables, exclude=exclude, source=str(path))


def run_variables(run: str | pathlib.Path, step: int | None = None) -> dict:
    """``{"params": ..., ["batch_stats": ...]}`` of checkpoint ``step`` (None: the latest intact one)
    of a run folder written by ``gendl finetune``; the digest is verified (see
    :func:`gendl_jax.train.checkpoints.restore`). The run's own backbone is not needed.
    """
    run = pathlib.Path(run)
    record = json.loads((run / "config.json").read_text())
    if record.get("objective") != NAME:
        raise ValueError(
            f"{run} is a run of {record.get('objective')!r}, not of `gendl finetune`; "
            "pass an orbax variables folder or a state dict as the backbone"
        )
    config = config_from_json(FinetuneConfig, record["config"])
    _, variables = fresh_variables(jax.random.PRNGKey(0), config, tuple(record["data_shape"]))
    like = finetune_state(config, variables, record["data_shape"])
    manager = checkpoints.checkpoint_manager(run / "checkpoints")
    try:
        state = checkpoints.restore(manager, like, step)
    finally:
        manager.close()
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out
