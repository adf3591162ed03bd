"""Head surgery, freezing by named sub-tree, discriminative learning rates, backbone loading.

Sub-trees are named by their module path in the parameter tree, "/"-separated: ``"layer1"``,
``"layer3/0/conv2"``, ``"fc"``. Freezing uses optax's masking: a frozen leaf's update is
``optax.set_to_zero()`` inside ``optax.multi_transform``; BatchNorm statistics of frozen parts are
frozen by the model (:func:`freeze_batch_norm`, for modules with a ``frozen_bn`` attribute such
as :class:`gendl_jax.models.ResNet`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import optax
from flax.core import unfreeze

FROZEN = "frozen"
DEFAULT = "default"
MODES = ("full", "linear_probe")


def subtree_names(params: Mapping[str, Any]) -> list[str]:
    """Every module path in ``params`` ("/"-separated), parents before children, e.g. ["conv1", "layer1", "layer1/0", ...]."""
    names = []

    def walk(node, prefix):
        for key, child in node.items():
            if isinstance(child, Mapping):
                name = f"{prefix}{key}"
                names.append(name)
                walk(child, name + "/")

    walk(params, "")
    return names


def _check_names(params, names: Sequence[str], argument: str) -> None:
    if isinstance(names, str):
        raise TypeError(f"{argument} must be a sequence of sub-tree names, got the string {names!r}")
    valid = subtree_names(params)
    unknown = [n for n in names if n not in valid]
    if unknown:
        top = [n for n in valid if "/" not in n]
        nested = [n for n in valid if "/" in n]
        example = f", e.g. {nested[0]!r}" if nested else ""
        raise ValueError(
            f"{argument} has unknown sub-tree names {unknown}; valid top-level names: {top} "
            f"(nested names join module names with '/'{example})"
        )


def label_tree(params: Mapping[str, Any], assignments: Mapping[str, str], default: str = DEFAULT):
    """A pytree of labels shaped like ``params``: each leaf gets the label of its longest assigned prefix.

    Args:
      params: a parameter tree (nested dicts).
      assignments: sub-tree name -> label.
      default: label of leaves under no assigned name.
    Raises:
      ValueError: an unknown sub-tree name (the valid names are listed).
    """
    _check_names(params, list(assignments), "assignments")

    def label(path, _):
        parts = [p.key for p in path]
        for cut in range(len(parts) - 1, 0, -1):
            name = "/".join(parts[:cut])
            if name in assignments:
                return assignments[name]
        return default

    return jax.tree_util.tree_map_with_path(label, unfreeze(params))


def frozen_for_mode(params: Mapping[str, Any], mode: str, head: str = "fc") -> tuple[str, ...]:
    """Sub-trees to freeze: "linear_probe" -> every top-level module but ``head``; "full" -> none."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_names(params, [head], "head")
    return tuple(n for n in params if n != head) if mode == "linear_probe" else ()


def finetune_optimizer(
    params: Mapping[str, Any],
    learning_rate: float,
    *,
    frozen: Sequence[str] = (),
    stage_learning_rates: Mapping[str, float] | None = None,
    optimizer: Callable[[float], optax.GradientTransformation] = optax.adam,
) -> optax.GradientTransformation:
    """``optimizer(learning_rate)`` on trainable leaves, ``optax.set_to_zero()`` on frozen ones.

    Args:
      params: the model's parameter tree (its structure fixes the labels).
      learning_rate: learning rate of leaves with no stage rate.
      frozen: sub-tree names that receive zero updates (and no optimizer state).
      stage_learning_rates: sub-tree name -> learning rate (discriminative rates, e.g. smaller
        for early stages); the longest matching name wins, ``frozen`` wins over all.
      optimizer: learning rate -> optax transformation.
    Raises:
      ValueError: unknown sub-tree names (listing the valid ones), or a learning rate <= 0.
    """
    stage_learning_rates = dict(stage_learning_rates or {})
    for name, lr in [
        ("learning_rate", learning_rate),
        *((f"stage_learning_rates[{k!r}]", v) for k, v in stage_learning_rates.items()),
    ]:
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
            raise ValueError(f"{name} must be a positive number, got {lr!r}")
    _check_names(params, frozen, "frozen")
    assignments = {name: f"lr:{name}" for name in stage_learning_rates}
    assignments.update(dict.fromkeys(frozen, FROZEN))
    labels = label_tree(params, assignments)
    transforms = {DEFAULT: optimizer(learning_rate), FROZEN: optax.set_to_zero()}
    transforms.update({f"lr:{name}": optimizer(lr) for name, lr in stage_learning_rates.items()})
    return optax.multi_transform(transforms, labels)


def freeze_batch_norm(model: nn.Module, frozen: Sequence[str]) -> nn.Module:
    """``model`` whose BatchNorm layers in the frozen top-level parts use and keep their running statistics.

    Needs a model with a ``frozen_bn`` attribute (ResNet); models without BatchNorm are returned as is.
    Only whole top-level parts ("bn1", "layer1", ...) are frozen this way: a nested name such as
    "layer2/0/conv1" freezes those parameters, while layer2's BatchNorm statistics keep updating.
    """
    top = tuple(dict.fromkeys(name for name in frozen if "/" not in name))
    if not hasattr(model, "frozen_bn"):
        return model
    valid = ("bn1", *getattr(model, "STAGE_NAMES", ()))
    return model.clone(frozen_bn=tuple(n for n in top if n in valid))


@functools.partial(jax.jit, static_argnums=0)
def init_variables(model: nn.Module, key: jax.Array, example):
    return model.init(key, example)


def replace_head(
    model: nn.Module, variables: Mapping[str, Any], key: jax.Array, num_classes: int, example, *, head: str = "fc"
) -> tuple[nn.Module, dict]:
    """A new classification head for ``num_classes`` classes; every other variable is kept.

    Args:
      model: a module with a ``num_classes`` attribute and a head sub-module named ``head``.
      variables: its trained variables.
      key: PRNG key for the new head's initialisation.
      num_classes: classes of the new task.
      example: an input batch (N, ...) to initialise the new model with.
    Returns:
      (the model with ``num_classes``, its variables: ``variables`` with a fresh ``head``).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not hasattr(model, "num_classes"):
        raise TypeError(f"model must have a num_classes attribute, got {type(model).__name__}")
    _check_names(variables["params"], [head], "head")
    new_model = model.clone(num_classes=num_classes)
    fresh = unfreeze(init_variables(new_model, key, example))
    out = unfreeze(jax.tree_util.tree_map(lambda a: a, dict(variables)))
    out["params"][head] = fresh["params"][head]
    for collection, tree in fresh.items():
        shapes_old = jax.tree_util.tree_map(lambda a: a.shape, {k: v for k, v in out[collection].items() if k != head})
        shapes_new = jax.tree_util.tree_map(lambda a: a.shape, {k: v for k, v in tree.items() if k != head})
        if shapes_old != shapes_new:
            raise ValueError(f"variables[{collection!r}] do not fit model (outside the head {head!r})")
    return new_model, out


def merge_backbone(
    saved: Mapping[str, Any],
    variables: Mapping[str, Any],
    *,
    exclude: Sequence[str] = ("fc",),
    source: str = "the backbone",
) -> dict:
    """``variables`` with every top-level sub-tree of each collection but ``exclude`` taken from ``saved``.

    Raises:
      ValueError: ``saved`` lacks a needed sub-tree or has other shapes (listed).
    """
    out = unfreeze(jax.tree_util.tree_map(lambda a: a, dict(variables)))
    problems = []
    for collection, tree in out.items():
        for name in tree:
            if name in exclude:
                continue
            got = saved.get(collection, {}).get(name)
            if got is None:
                problems.append(f"{collection}/{name}: missing from the checkpoint")
                continue
            want_shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), tree[name])
            got_shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), got)
            if want_shapes != got_shapes:
                problems.append(f"{collection}/{name}: shapes differ")
                continue
            tree[name] = jax.tree_util.tree_map(lambda a, b: jax.numpy.asarray(a, b.dtype), got, tree[name])
    if problems:
        raise ValueError(f"checkpoint at {source} does not fit the model: {problems}")
    return out
