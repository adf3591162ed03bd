"""A pure cross-entropy fine-tuning step: ``step(state, batch) -> (state, metrics)``.

The optimizer (from :func:`gendl_jax.finetune.finetune_optimizer`) decides which leaves move; the
model decides which BatchNorm statistics move (:func:`gendl_jax.finetune.freeze_batch_norm`).
Models may return logits or ``(logits, features)`` (LeNet); models with a ``train`` argument
(ResNet) get ``train=True`` in the step and ``train=False`` in :func:`predict`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax


@flax.struct.dataclass
class FinetuneState:
    """step (), params, batch_stats ({} without BatchNorm), opt_state.

    ``config`` and ``data_shape`` are static fields set by the fit-loop objective
    (:mod:`gendl_jax.finetune.objective`); the step itself does not read them.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    config: Any = flax.struct.field(pytree_node=False, default=None)
    data_shape: tuple[int, ...] = flax.struct.field(pytree_node=False, default=())


def _takes_train(model: nn.Module) -> bool:
    return "train" in inspect.signature(type(model).__call__).parameters


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


def init_finetune(variables, optimizer: optax.GradientTransformation) -> FinetuneState:
    """State from a model's ``variables`` ({"params": ..., ["batch_stats": ...]})."""
    params = variables["params"]
    return FinetuneState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}), optimizer.init(params))


def make_step(model: nn.Module, optimizer: optax.GradientTransformation) -> Callable:
    """``step(state, batch) -> (state, {"loss", "accuracy"})``; batch ``{"x": (N, ...), "y": (N,) int}``."""
    train = _takes_train(model)

    def step(state: FinetuneState, batch):
        def loss_fn(params):
            variables = {"params": params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
            if train:
                out, updates = model.apply(variables, batch["x"], train=True, mutable=["batch_stats"])
                stats = updates.get("batch_stats", state.batch_stats)
            else:
                out, stats = model.apply(variables, batch["x"]), state.batch_stats
            logits = _logits(out)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
            return loss, (stats, jnp.mean(jnp.argmax(logits, -1) == batch["y"]))

        (loss, (stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state)
        return new, {"loss": loss, "accuracy": acc}

    return step


@functools.partial(jax.jit, static_argnums=(0, 3))
def _inference_logits(model: nn.Module, variables, x, takes_train: bool):
    # The model is a static argument (modules hash by their fields): one compile per model and shape.
    return _logits(model.apply(variables, x, train=False) if takes_train else model.apply(variables, x))


def predict(model: nn.Module, state_or_variables, x, *, batch_size: int = 500) -> np.ndarray:
    """Logits (N, num_classes) in inference mode, in jitted batches (last one padded)."""
    if isinstance(state_or_variables, FinetuneState):
        variables = {"params": state_or_variables.params}
        if state_or_variables.batch_stats:
            variables["batch_stats"] = state_or_variables.batch_stats
    else:
        variables = state_or_variables
    takes_train = _takes_train(model)
    x = np.asarray(x)
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        m = len(chunk)
        if m < batch_size and len(x) > batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - m, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(_inference_logits(model, variables, chunk, takes_train))[:m])
    return np.concatenate(out)


def accuracy(model: nn.Module, state_or_variables, x, y, **kwargs) -> float:
    """Fraction of labels ``y`` (N,) predicted correctly."""
    return float(np.mean(np.argmax(predict(model, state_or_variables, x, **kwargs), -1) == np.asarray(y)))
