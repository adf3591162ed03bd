"""``gendl finetune``: fine-tune a LeNet backbone on MNIST or scikit-learn's 8x8 digits with the fit loop.

    gendl finetune --backbone gendl_jax/metrics/assets/mnist_lenet --model mnist-lenet \\
        --data digits --head 10 --freeze conv1 conv2 --steps 500 --out runs/ft
    gendl finetune --backbone gendl_jax/metrics/assets/mnist_lenet --freeze conv1 conv2 \\
        --steps 1000 --out runs/ft --resume     # continue runs/ft from its latest checkpoint

The backbone is an orbax checkpoint of variables (this project's, e.g. the shipped MNIST
classifier), the run folder of an earlier ``gendl finetune`` (its latest checkpoint; or
``RUN/checkpoints/STEP``), or a torch-style state dict (``.npz`` / ``.safetensors`` / ``.pth`` (``torch.save``, read without torch)); everything
but the head is loaded. Images are 28x28x1 in [-1, 1]; the 8x8 digits are resized to 20x20 in a
28x28 frame.

Training runs in :func:`gendl_jax.train.train_and_evaluate` with the objective
:data:`gendl_jax.finetune.objective.FINETUNE`, so the run folder is the fit loop's:
``config.json``, ``metrics.jsonl`` (loss, accuracy), TensorBoard events, ``run_info.jsonl``,
``checkpoints/<step>`` (the whole state, with the data position and a digest; ``--resume``
continues bit for bit) and ``summary.json`` (test and train accuracy). Every flag of
``gendl train`` (``--checkpoint-every``, ``--log-every``, ``--best-metric``, ``--devices``,
``--seeds``, ``--skip-nonfinite``, ...) applies.
"""

from __future__ import annotations

import json

from gendl_jax.finetune.backbone import run_variables
from gendl_jax.finetune.config import HEAD, MODEL_WIDTHS, TRAIN_DEFAULTS, FinetuneConfig
from gendl_jax.finetune.objective import FINETUNE, digits_as_mnist

__all__ = [
    "FINETUNE",
    "HEAD",
    "MODEL_WIDTHS",
    "FinetuneConfig",
    "digits_as_mnist",
    "main",
    "run_finetune",
    "run_variables",
    "train_config",
]


def train_config(**overrides):
    """:class:`gendl_jax.train.TrainConfig` with the fine-tuning defaults (digits, 500 steps, batch 64), then ``overrides``."""
    from gendl_jax.train import TrainConfig

    return TrainConfig(**{**TRAIN_DEFAULTS, **overrides})


def run_finetune(config: FinetuneConfig, train=None, *, dataset=None) -> dict:
    """Fine-tunes as ``config`` says through the fit loop; returns the summary (also OUT/summary.json).

    Args:
      config: the fine-tuning hyper-parameters.
      train: a :class:`gendl_jax.train.TrainConfig` (None: :func:`train_config` defaults).
      dataset: the training set (None: ``train.data``'s train split).
    """
    return _train_and_evaluate(config, train if train is not None else train_config(), dataset)


def _train_and_evaluate(config, train, dataset=None) -> dict:
    from gendl_jax.train import train_and_evaluate

    return train_and_evaluate(FINETUNE, config, train, dataset=dataset)


def main(argv: list[str]) -> dict:
    """Parses ``gendl finetune`` flags (fine-tuning hyper-parameters, then the fit loop's settings), trains, prints the summary."""
    import tyro

    from gendl_jax.train import TrainConfig
    from gendl_jax.train.cluster import Cluster

    def run(config, train, cluster):
        cluster.initialize()
        summary = _train_and_evaluate(config, train)
        if summary:  # processes other than 0 return {}
            print(json.dumps(summary, indent=2))
        return summary

    run.__annotations__ = {
        "config": tyro.conf.OmitArgPrefixes[FinetuneConfig],
        "train": tyro.conf.OmitArgPrefixes[TrainConfig],
        "cluster": tyro.conf.OmitArgPrefixes[Cluster],
    }
    run.__defaults__ = (train_config(), Cluster())  # the config has a required --backbone
    run.__doc__ = (
        "Fine-tune a LeNet backbone (an orbax folder, a gendl finetune run, or a .npz / .safetensors / .pth "
        "state dict) through the fit loop: hyper-parameters first, then the run settings."
    )
    return tyro.cli(run, args=argv, prog="gendl finetune")


if __name__ == "__main__":  # pragma: no cover
    import sys

    main(sys.argv[1:])
