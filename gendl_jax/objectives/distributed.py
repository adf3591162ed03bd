"""What a step needs to run under ``pmap`` / ``shard_map`` with an ``axis_name`` and reproduce one
device on the same global batch: random draws made for the global batch and sliced, functions of
the whole batch evaluated on the gathered rows, and means over devices.

Every helper is the identity (or the plain call) when ``axis_name`` is None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array


def global_draw(
    sampler: Callable[..., Array], key: Array, local_shape: tuple[int, ...], axis_name: str | None
) -> Array:
    """``sampler(key, shape)`` for this device's rows of the global batch (identical to one device's draw).

    ``local_shape[0]`` is this device's number of rows; devices hold consecutive blocks in axis order.
    """
    if axis_name is None:
        return sampler(key, local_shape)
    n_dev = jax.lax.psum(1, axis_name)
    full = sampler(key, (local_shape[0] * n_dev, *local_shape[1:]))
    return jax.lax.dynamic_slice_in_dim(full, jax.lax.axis_index(axis_name) * local_shape[0], local_shape[0])


def gather_rows(x: Array, axis_name: str | None) -> Array:
    """The global batch: every device's rows of ``x`` (m, ...) concatenated in axis order (N m, ...).

    Differentiable; used for quantities of the whole batch (e.g. a mean activation). The gradient
    a device receives for its rows sums the cotangents of all N devices' identical copies, and the
    ``pmean`` of the parameter gradients divides by N again, so the result equals one device's.
    """
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def on_global_batch(fn: Callable[[Array], Array], x: Array, axis_name: str | None) -> Array:
    """``fn`` applied to the global batch, this device's rows returned: for row-wise random maps
    (corruption, binarisation) whose draws must match one device's."""
    if axis_name is None:
        return fn(x)
    out = fn(gather_rows(x, axis_name))
    m = x.shape[0]
    return jax.lax.dynamic_slice_in_dim(out, jax.lax.axis_index(axis_name) * m, m)


def mean_over_devices(tree: Any, axis_name: str | None) -> Any:
    """``pmean`` of every leaf over ``axis_name`` (gradients, BatchNorm statistics, metrics)."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)
