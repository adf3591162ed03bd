"""Fit loop, checkpoints, run logging and pictures."""

from gendl_jax.train.fit import TrainConfig, load_run, train_and_evaluate
from gendl_jax.train.logger import RunLogger, git_revision, image_grid_array, run_metadata

__all__ = [
    "RunLogger",
    "TrainConfig",
    "git_revision",
    "image_grid_array",
    "load_run",
    "run_metadata",
    "train_and_evaluate",
]
