"""One objective step on several devices: thin wrappers, no second step function.

An objective's ``step(state, batch, *, axis_name=None) -> (state, metrics)`` runs unchanged in
three ways (``batch["x"]``: ``(inner_steps, m, *data_shape)``, the minibatch on axis 1):

* :func:`jit_step` (a): ``jax.jit`` over a :class:`~jax.sharding.Mesh`, the state replicated and
  the batch sharded along its minibatch axis on the ``data`` mesh axis. The step is traced for the
  global batch *without* ``axis_name``; XLA (GSPMD) inserts the cross-device reductions, so
  gradients and BatchNorm statistics are those of the global batch.
* :func:`pmap_step` (b): ``jax.pmap`` with ``axis_name``; state and batch carry a leading device
  axis (:func:`stack_for_pmap`, :func:`split_for_pmap`). The step averages gradients and BatchNorm
  statistics over the axis and draws its latents for the global batch.
* :func:`shard_map_step` (c): ``jax.shard_map`` with ``axis_name``, the same global arrays as (a).

All three reproduce one device on the same global batch (``tests/train/test_parallel.py``).
Multi-process (``jax.distributed.initialize``): every process calls :func:`make_mesh`,
:func:`replicate` on the same initial state, :func:`shard_batch` on its own rows (e.g. from
``BatchIterator(..., process_index=jax.process_index(), process_count=jax.process_count())``),
and the wrapped step; :func:`host_metrics` reads the replicated metrics.

Usage::

    mesh = make_mesh(4)
    state = replicate(objective.init(key, config, batch), mesh)
    step = jit_step(objective.step, mesh)          # or shard_map_step(objective.step, mesh)
    state, metrics = step(state, shard_batch(batch, mesh))
    print(host_metrics(metrics))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
Step = Callable[..., tuple[PyTree, dict]]

__all__ = [
    "host_metrics",
    "jit_step",
    "make_mesh",
    "pmap_step",
    "replicate",
    "shard_batch",
    "shard_map_step",
    "split_for_pmap",
    "stack_for_pmap",
    "unstack_first",
]


def make_mesh(n_devices: int | None = None, axis_name: str = "data") -> Mesh:
    """A 1-D mesh ``(n_devices,)`` named ``axis_name`` over the first ``n_devices`` of ``jax.devices()``.

    ``None`` takes all (global) devices. ``ValueError`` if ``n_devices`` is < 1 or more than available.
    """
    devices = jax.devices()
    if n_devices is None:
        n_devices = len(devices)
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)):
        raise TypeError(f"n_devices must be an int or None, got {type(n_devices).__name__}")
    if not 1 <= n_devices <= len(devices):
        raise ValueError(
            f"n_devices (--devices) must be between 1 and the {len(devices)} available "
            f"{devices[0].platform} device(s), got {n_devices}"
        )
    return Mesh(np.asarray(devices[:n_devices]), (axis_name,))


def _data_axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must be 1-D (a data axis), got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array leaf as a global ``jax.Array`` replicated on ``mesh`` (``NamedSharding(mesh, P())``).

    Each process must pass the same full value (e.g. the same ``init`` key). Non-array leaves and
    static pytree fields are left as they are.
    """
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            return leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(leaf)))
            return jax.random.wrap_key_data(data, impl=impl)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree_util.tree_map(put, tree)


def shard_batch(local_batch: dict, mesh: Mesh, axis: int = 1) -> dict:
    """This process's rows -> global arrays sharded along ``axis`` over the mesh's data axis.

    Args:
      local_batch: ``{"x": (inner_steps, local_m, *data_shape), ...}`` numpy arrays, this
        process's contiguous block of rows of the global minibatch (all rows in one process).
      mesh: from :func:`make_mesh`.
      axis: the minibatch axis (1 for ``(inner_steps, m, ...)``).

    Returns:
      The same keys as global ``jax.Array``: ``(inner_steps, local_m * process_count, ...)``.

    Raises:
      ValueError: the global minibatch is not divisible by the number of devices in the mesh.
    """
    name = _data_axis(mesh)
    n_dev = mesh.shape[name]
    spec = P(*([None] * axis), name)
    sharding = NamedSharding(mesh, spec)
    out = {}
    for key, local in local_batch.items():
        local = np.asarray(local)
        if local.ndim <= axis:
            raise ValueError(f"batch[{key!r}] must have a minibatch axis {axis}, got shape {local.shape}")
        global_m = local.shape[axis] * jax.process_count()
        if global_m % n_dev:
            raise ValueError(
                f"batch_size={global_m} (batch[{key!r}] shape {local.shape} x {jax.process_count()} "
                f"process(es)) must be divisible by the number of devices, {n_dev}"
            )
        global_shape = local.shape[:axis] + (global_m,) + local.shape[axis + 1 :]
        out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
    return out


def jit_step(step: Step, mesh: Mesh, *, donate: bool = True) -> Step:
    """(a) ``step`` under ``jax.jit`` over ``mesh``: state and metrics replicated, batch sharded on axis 1.

    The step runs without ``axis_name`` on the global batch; XLA partitions it. ``donate``
    donates the input state's buffers (do not reuse the state passed in).
    """
    name = _data_axis(mesh)
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P(None, name))
    return jax.jit(
        step,
        in_shardings=(replicated, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,) if donate else (),
    )


def pmap_step(step: Step, axis_name: str = "data") -> Step:
    """(b) ``step`` under ``jax.pmap`` with ``axis_name``.

    The returned function takes a state stacked over devices (:func:`stack_for_pmap`: every leaf
    ``(n, ...)``) and a batch split over devices (:func:`split_for_pmap`:
    ``{"x": (n, inner_steps, m / n, *data_shape)}``) and returns the stacked new state and
    metrics ``(n,)`` (identical across devices).
    """
    return jax.pmap(functools.partial(step, axis_name=axis_name), axis_name=axis_name)


def stack_for_pmap(tree: PyTree, n: int) -> PyTree:
    """Every array leaf repeated on a new leading device axis: ``(...)`` -> ``(n, ...)``."""
    return jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, (n, *jnp.shape(leaf))), tree)


def split_for_pmap(batch: dict, n: int, axis: int = 1) -> dict:
    """Each leaf's ``axis`` cut into ``n`` contiguous blocks stacked on a new leading axis.

    ``(inner_steps, m, ...)`` -> ``(n, inner_steps, m / n, ...)``; device ``d`` gets rows
    ``[d * m / n, (d + 1) * m / n)``. ``ValueError`` if ``m`` is not divisible by ``n``.
    """
    out = {}
    for key, x in batch.items():
        x = np.asarray(x)
        if x.shape[axis] % n:
            raise ValueError(
                f"batch_size={x.shape[axis]} (batch[{key!r}] shape {x.shape}) must be divisible "
                f"by the number of devices, {n}"
            )
        out[key] = np.stack(np.split(x, n, axis=axis))
    return out


def unstack_first(tree: PyTree) -> PyTree:
    """Device 0's copy of a pmapped tree: every leaf ``(n, ...)`` -> ``(...)``."""
    return jax.tree_util.tree_map(lambda leaf: leaf[0], tree)


def shard_map_step(step: Step, mesh: Mesh, axis_name: str = "data") -> Step:
    """(c) ``step`` under ``jax.shard_map`` (jitted) over ``mesh`` with ``axis_name``.

    Same arguments as :func:`jit_step`: state replicated (``P()``), batch ``(inner_steps, m, ...)``
    sharded on axis 1 (``P(None, axis_name)``); each device sees ``m / n`` rows. State and metrics
    come back replicated.

    ``check_vma=False``: the step itself averages its gradients and statistics (as under
    ``pmap``). With ``check_vma=True`` JAX would instead psum the gradient of the replicated
    parameters automatically, and the step's own ``pmean`` would no longer be the reduction.
    """
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name={axis_name!r} is not an axis of the mesh {mesh.axis_names}")
    mapped = jax.shard_map(
        functools.partial(step, axis_name=axis_name),
        mesh=mesh,
        in_specs=(P(), P(None, axis_name)),
        out_specs=(P(), P()),
        check_vma=False,
    )
    return jax.jit(mapped)


def host_metrics(metrics: dict) -> dict[str, float]:
    """Scalar metrics as Python floats.

    Works for replicated global arrays that this process cannot fully address (multi-process),
    and for pmap's per-device ``(n,)`` metrics (device 0's value).
    """
    out = {}
    for key, value in metrics.items():
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            value = value.addressable_data(0)
        out[key] = float(np.asarray(value).reshape(-1)[0])
    return out
