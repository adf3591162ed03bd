"""A deterministic, resumable, per-process-sharded batch iterator.

``batch_at(step)`` is a pure function of ``(seed, step)`` (and the dataset), so training resumes
from a step number alone, and every process of a multi-host job computes the same global batch
and keeps only its own contiguous block of rows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np

from gendl_jax.data.datasets import ArrayDataset, PointCloudDataset, ToyDataset

__all__ = ["BatchIterator", "make_iterator", "map_in_batches"]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class BatchIterator:
    """Batches of a dataset as a pure function of the step number.

    Args:
      dataset: an :class:`ArrayDataset`, a :class:`PointCloudDataset` or a :class:`ToyDataset`.
      batch_size: GLOBAL batch size per inner step (all processes together); must be a
        multiple of ``process_count``.
      seed: non-negative int.
      inner_steps: minibatches per step (e.g. the critic's n_critic updates), >= 1.
      value_range: (lo, hi) with lo < hi; images are mapped exactly to
        ``lo + (hi - lo) * x / max_value`` (computed in float64, rounded once to float32).
        Ignored for toy data and point clouds, whose points are returned as they are.
      process_index, process_count: this process's rank and the number of processes;
        each call returns rows ``[process_index * local, (process_index + 1) * local)`` of
        every global minibatch, ``local = batch_size // process_count``.

    Order:
      Toy data: step s draws ``inner_steps * batch_size`` samples with
        ``np.random.default_rng([seed, s])``, reshaped to (inner_steps, batch_size, 2).
      Array data and point clouds: ``steps_per_epoch = N // (inner_steps * batch_size)`` (the remainder of
        each epoch is dropped); step s is in epoch ``e = s // steps_per_epoch``, whose order is
        ``np.random.default_rng([seed, e]).permutation(N)``; step s takes the
        ``(s % steps_per_epoch)``-th consecutive run of ``inner_steps * batch_size`` indices,
        reshaped to (inner_steps, batch_size).

    ``batch_at(step)`` returns ``{"x": (inner_steps, local, *example_shape) float32}`` and, if
    the dataset has labels, ``"y": (inner_steps, local) int32``.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        *,
        seed: int = 0,
        inner_steps: int = 1,
        value_range: tuple[float, float] = (-1.0, 1.0),
        process_index: int = 0,
        process_count: int = 1,
    ):
        if not isinstance(dataset, (ArrayDataset, PointCloudDataset, ToyDataset)):
            raise TypeError(
                f"dataset must be an ArrayDataset, PointCloudDataset or ToyDataset, got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.inner_steps = _check_int(inner_steps, "inner_steps", 1)
        self.process_count = _check_int(process_count, "process_count", 1)
        self.process_index = _check_int(process_index, "process_index", 0)
        if self.process_index >= self.process_count:
            raise ValueError(f"process_index must be < process_count={self.process_count}, got {self.process_index}")
        if self.batch_size % self.process_count:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by process_count={self.process_count}")
        self.local_batch_size = self.batch_size // self.process_count
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError) as e:
            raise TypeError(f"value_range must be a pair of numbers (lo, hi), got {value_range!r}") from e
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must be finite with lo < hi, got {value_range!r}")
        self.value_range = (lo, hi)

        self._rows = slice(self.process_index * self.local_batch_size, (self.process_index + 1) * self.local_batch_size)
        self._per_step = self.inner_steps * self.batch_size
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None
        if isinstance(dataset, (ArrayDataset, PointCloudDataset)):
            n = len(dataset)
            if n < self._per_step:
                raise ValueError(
                    f"dataset {dataset.name!r} has N={n} examples, fewer than one step needs: "
                    f"batch_size={self.batch_size} x inner_steps={self.inner_steps} = {self._per_step}"
                )
            self._steps_per_epoch = n // self._per_step
            self._lut = None
            if isinstance(dataset, ArrayDataset):
                # Exact scaling table: value v -> lo + (hi - lo) * v / max_value, rounded once.
                levels = np.arange(dataset.max_value + 1, dtype=np.float64)
                self._lut = (lo + (hi - lo) * levels / dataset.max_value).astype(np.float32)
        else:
            self._steps_per_epoch = None
            self._lut = None

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per pass over an ArrayDataset or a PointCloudDataset; None for toy (infinite) data."""
        return self._steps_per_epoch

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example: (H, W, C) for images, (d,) for a point cloud, (2,) for toy data."""
        return self.dataset.shape

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
            self._perm_epoch = epoch
        return self._perm

    def indices_at(self, step: int) -> np.ndarray:
        """Dataset indices of this process's rows at ``step``: (inner_steps, local) int64.

        Only for finite datasets (ArrayDataset, PointCloudDataset).
        """
        step = _check_int(step, "step", 0)
        if self._steps_per_epoch is None:
            raise TypeError("indices_at needs an ArrayDataset; toy data has no indices")
        epoch, within = divmod(step, self._steps_per_epoch)
        perm = self._permutation(epoch)
        idx = perm[within * self._per_step : (within + 1) * self._per_step]
        return idx.reshape(self.inner_steps, self.batch_size)[:, self._rows]

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """The batch of ``step`` (>= 0); identical on every call, independent of past calls.

        Returns:
          ``{"x": (inner_steps, local, *example_shape) float32}`` plus
          ``"y": (inner_steps, local) int32`` when the dataset has labels.
        """
        step = _check_int(step, "step", 0)
        ds = self.dataset
        if isinstance(ds, ToyDataset):
            rng = np.random.default_rng([self.seed, step])
            x = ds.distribution.sample(rng, self._per_step)
            x = x.reshape(self.inner_steps, self.batch_size, 2)[:, self._rows]
            return {"x": np.ascontiguousarray(x)}
        idx = self.indices_at(step)
        out = {"x": self._lut[ds.images[idx]] if self._lut is not None else ds.points[idx]}
        if ds.labels is not None:
            out["y"] = ds.labels[idx].astype(np.int32)
        return out

    def position(self, step: int) -> dict:
        """Everything that fixes the batch stream, and where in it ``step`` is (JSON-serialisable).

        A checkpoint stores this; :meth:`check_resumable` compares it on resume, so a run is never
        continued on a different stream (another seed, batch size or dataset) without an error.
        """
        step = _check_int(step, "step", 0)
        position = {
            "dataset": self.dataset.name,
            "dataset_size": len(self.dataset) if self._steps_per_epoch is not None else None,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "inner_steps": self.inner_steps,
            "next_step": step,
        }
        if self._steps_per_epoch is not None:
            position["epoch"], position["step_in_epoch"] = divmod(step, self._steps_per_epoch)
        return position

    def check_resumable(self, saved: dict) -> None:
        """``ValueError`` naming the fields where a saved :meth:`position` and this iterator differ."""
        current = self.position(saved.get("next_step", 0))
        differ = [
            f"{k}: saved {saved.get(k)!r}, now {current[k]!r}"
            for k in ("dataset", "dataset_size", "seed", "batch_size", "inner_steps")
            if saved.get(k) != current[k]
        ]
        if differ:
            raise ValueError("cannot resume on a different data stream; " + "; ".join(differ))

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch_at(s)`` for s = start_step, start_step + 1, ... (forever)."""
        step = _check_int(start_step, "start_step", 0)
        while True:
            yield self.batch_at(step)
            step += 1

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iterate(0)

    def __repr__(self) -> str:
        return (
            f"BatchIterator(dataset={self.dataset.name!r}, batch_size={self.batch_size}, "
            f"inner_steps={self.inner_steps}, seed={self.seed}, "
            f"process={self.process_index}/{self.process_count})"
        )


def map_in_batches(fn, x, batch_size: int = 1000) -> np.ndarray:
    """``fn`` applied to consecutive slices of ``batch_size`` rows of ``x``, concatenated on the host.

    For jitted per-example functions over sets too large for one call (reconstructions, logits,
    features): (N, ...) -> (N, ...) as numpy. The last slice may be shorter (one more compile).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(x) == 0:
        raise ValueError("x must have at least one row")
    return np.concatenate([np.asarray(fn(jnp.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)])


def make_iterator(
    dataset,
    batch_size: int | None,
    seed: int,
    inner_steps: int,
    value_range: tuple[float, float] = (-1.0, 1.0),
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> BatchIterator:
    """The run's batch stream; ``batch_size`` is global (None: 256 for toy data and point clouds, 64 for images)."""
    if batch_size is None:
        batch_size = 256 if isinstance(dataset, (ToyDataset, PointCloudDataset)) else 64
    return BatchIterator(
        dataset,
        batch_size,
        seed=seed,
        inner_steps=inner_steps,
        value_range=value_range,
        process_index=process_index,
        process_count=process_count,
    )
