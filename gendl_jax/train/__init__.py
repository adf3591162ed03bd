"""Fit loop, checkpoints, run logging and pictures."""

from gendl_jax.plots import image_grid_array
from gendl_jax.train.fit import (
    TrainConfig,
    config_from_json,
    gaussian_baseline,
    load_run,
    point_cloud_measures,
    run_dir,
    train_and_evaluate,
)
from gendl_jax.train.logger import RunLogger, git_revision, run_metadata
from gendl_jax.train.run_lock import RunFolderBusyError, hold_run_folder

__all__ = [
    "RunFolderBusyError",
    "RunLogger",
    "TrainConfig",
    "config_from_json",
    "gaussian_baseline",
    "git_revision",
    "hold_run_folder",
    "image_grid_array",
    "load_run",
    "point_cloud_measures",
    "run_dir",
    "run_metadata",
    "train_and_evaluate",
]
