"""``gendl finetune``: fine-tune a LeNet backbone on MNIST or scikit-learn's 8x8 digits.

    gendl finetune --backbone gendl_jax/metrics/assets/mnist_lenet --model mnist-lenet \\
        --data digits --head 10 --freeze conv1 conv2 --steps 500 --out runs/ft

The backbone is an orbax checkpoint of variables (this project's, e.g. the shipped MNIST
classifier) or a torch-style state dict (``.npz`` / ``.safetensors``); everything but the head is
loaded. Images are 28x28x1 in [-1, 1]; the 8x8 digits are resized to 20x20 in a 28x28 frame.
Writes ``OUT/config.json``, ``OUT/summary.json`` (test accuracy) and the fine-tuned variables as
an orbax checkpoint ``OUT/checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax.finetune.state_dict import load_state_dict
from gendl_jax.finetune.step import accuracy, init_finetune, make_step
from gendl_jax.finetune.surgery import MODES, finetune_optimizer, frozen_for_mode, load_backbone, save_backbone
from gendl_jax.models.lenet import LeNet

MODEL_WIDTHS = {
    "lenet": {"channels": (6, 16), "hidden": (120, 84)},  # LeNet-5
    "mnist-lenet": {"channels": (32, 64), "hidden": (128,)},  # the shipped MNIST classifier
}
HEAD = "classifier"


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of ``gendl finetune``."""

    backbone: str
    """orbax checkpoint folder, or a .npz / .safetensors state dict."""
    head: int = 10
    """classes of the new head."""
    data: Literal["mnist", "digits"] = "digits"
    model: Literal["lenet", "mnist-lenet"] = "mnist-lenet"
    freeze: tuple[str, ...] = ()
    """sub-tree names to freeze (e.g. conv1 conv2); with --mode linear_probe everything but the head."""
    mode: Literal["full", "linear_probe"] = "full"
    steps: int = 500
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    out: str = "runs/finetune"
    data_dir: str | None = None


def digits_as_mnist(images: np.ndarray, max_value: int) -> np.ndarray:
    """sklearn 8x8 digits (N, 8, 8, 1) uint8 -> (N, 28, 28, 1) in [-1, 1]: bilinear 20x20, centred."""
    x = images.astype(np.float32) / max_value
    x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], 20, 20, 1), "bilinear"))
    x = np.pad(np.clip(x, 0.0, 1.0), ((0, 0), (4, 4), (4, 4), (0, 0)))  # bilinear overshoots by rounding only
    return x * 2.0 - 1.0


def _split(data: str, split: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    from gendl_jax.data import load_dataset

    ds = load_dataset(data, split=split, data_dir=data_dir)
    if data == "digits":
        x = digits_as_mnist(ds.images, ds.max_value)
    else:
        x = ds.images.astype(np.float32) / ds.max_value * 2.0 - 1.0
    return x.astype(np.float32), ds.labels.astype(np.int32)


def run_finetune(config: FinetuneConfig) -> dict:
    """Loads the backbone, trains ``config.steps`` steps, writes the run folder; returns the summary."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {config.steps}, {config.batch_size}")
    if config.model not in MODEL_WIDTHS:
        raise ValueError(f"model must be one of {list(MODEL_WIDTHS)}, got {config.model!r}")
    out = pathlib.Path(config.out)
    if (out / "checkpoint").exists():
        raise FileExistsError(f"{out / 'checkpoint'} exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    model = LeNet(num_classes=config.head, **MODEL_WIDTHS[config.model])
    variables = jax.jit(model.init)(jax.random.PRNGKey(config.seed), jnp.zeros((1, 28, 28, 1)))
    backbone = pathlib.Path(config.backbone)
    if backbone.suffix in (".npz", ".safetensors"):
        variables = load_state_dict(backbone, variables, skip=(HEAD,))
    else:
        variables = load_backbone(backbone, variables, exclude=(HEAD,))
    frozen = frozen_for_mode(variables["params"], config.mode, head=HEAD) if config.mode == "linear_probe" else config.freeze
    optimizer = finetune_optimizer(variables["params"], config.lr, frozen=tuple(frozen))
    step = jax.jit(make_step(model, optimizer))
    state = init_finetune(variables, optimizer)

    x, y = _split(config.data, "train", config.data_dir)
    x_test, y_test = _split(config.data, "test", config.data_dir)
    if y.max() >= config.head:
        raise ValueError(f"head must be > the largest label {int(y.max())} of {config.data}, got {config.head}")
    rng = np.random.default_rng(config.seed)
    batch = min(config.batch_size, len(x))
    order = np.array([], int)
    losses = []
    for _ in range(config.steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = order[:batch], order[batch:]
        state, metrics = step(state, {"x": x[idx], "y": y[idx]})
        losses.append(float(metrics["loss"]))
    save_backbone(out / "checkpoint", {"params": state.params})
    summary = {"test_accuracy": accuracy(model, state, x_test, y_test), "final_loss": losses[-1],
               "frozen": list(frozen), "steps": config.steps, "train_size": int(len(x)), "test_size": int(len(x_test))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
