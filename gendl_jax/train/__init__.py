"""Fit loop, checkpoints and pictures."""

from gendl_jax.train.fit import TrainConfig, load_run, train_and_evaluate

__all__ = ["TrainConfig", "load_run", "train_and_evaluate"]
