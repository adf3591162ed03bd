"""Run logging: JSONL metrics, TensorBoard event files with sample images, and run metadata.

A :class:`RunLogger` writes, under its ``out_dir``:

* ``metrics.jsonl``: one JSON object ``{"step": step, **metrics}`` per :meth:`RunLogger.scalars` call,
  appended (a resumed run continues the file) and flushed after each line. Non-finite values are
  written as the bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` (Python's ``json`` default):
  ``json.loads`` and pandas read them back, strict JSON parsers (``jq``, JavaScript) do not.
* ``tensorboard/``: TensorBoard event files (tensorboardX, no TensorFlow needed), one scalar
  series per metric name and the images given to :meth:`RunLogger.image`. A resumed run adds a new
  event file (unique name) to the same folder; TensorBoard merges them.
* ``run_info.jsonl``: one line per :meth:`RunLogger.run_info` call (once per start or resume), the
  resolved config with :func:`run_metadata` (package versions, devices, host, time, git revision).

Only process 0 of a multi-process job should write: construct with ``enabled=jax.process_index() == 0``.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import numbers
import os
import pathlib
import platform
import socket
import subprocess
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ott-jax", "numpy", "gendl_jax")
"""Distributions whose versions :func:`run_metadata` records."""

_GIT_TIMEOUT_S = 10.0


def package_versions(packages=PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution name, None where it is not installed."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: pathlib.Path) -> str | None:
    """Stdout of ``git args`` run in ``cwd``, or None when git is missing, fails or times out."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_revision(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """``{"git_revision": sha or None, "git_dirty": bool or None}`` for the repository holding ``path``.

    ``path`` is a file or folder, by default the ``gendl_jax`` package source. The revision is
    reported only if ``path`` is tracked by that repository, so a package installed into a
    virtual environment that happens to sit inside some checkout is not credited to it.
    ``git_dirty`` is True when tracked files differ from ``HEAD`` (untracked files are ignored).
    Never raises: both values are None without git, outside a repository or on a timeout.
    """
    if path is None:
        import gendl_jax

        path = pathlib.Path(gendl_jax.__file__).parent
    path = pathlib.Path(path).resolve()
    folder = path if path.is_dir() else path.parent
    unknown = {"git_revision": None, "git_dirty": None}
    if not folder.is_dir() or _git(["ls-files", "--error-unmatch", "--", str(path)], folder) is None:
        return unknown
    head = _git(["rev-parse", "HEAD"], folder)
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    if head is None:
        return unknown
    return {"git_revision": head.strip(), "git_dirty": None if status is None else bool(status.strip())}


def run_metadata() -> dict[str, Any]:
    """What produced a run: versions, devices, host, UTC time and git revision.

    Keys: ``python`` (str), ``packages`` (name -> version str or None, see :data:`PACKAGES`),
    ``backend``, ``device_kind`` (str), ``device_count``, ``local_device_count``,
    ``process_count``, ``process_index`` (int), ``hostname``, ``time_utc`` (ISO 8601 str),
    ``git_revision`` (str or None), ``git_dirty`` (bool or None).
    """
    import jax

    return {
        "python": platform.python_version(),
        "packages": package_versions(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "hostname": socket.gethostname(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **git_revision(),
    }


def _metric_value(name: str, value: Any) -> int | float:
    """``value`` as a Python int or float; a 0-d real array (numpy or jax) or number is accepted."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"metrics[{name!r}] must be a real number, got bool {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        array = np.asarray(value)
    except Exception as err:
        raise ValueError(f"metrics[{name!r}] must be a real number, got {type(value).__name__}") from err
    if (
        array.ndim != 0
        or array.dtype == np.bool_
        or not np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        raise ValueError(
            f"metrics[{name!r}] must be a real scalar, got {type(value).__name__} "
            f"of shape {array.shape} and dtype {array.dtype}"
        )
    return int(array) if np.issubdtype(array.dtype, np.integer) else float(array)


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return int(step)


def _image_uint8(image: Any) -> np.ndarray:
    """``image`` (H, W), (H, W, C) uint8 or float in [0, 1], C in {1, 3, 4}, as uint8 (H, W, C)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image must have shape (H, W) or (H, W, C) with C in (1, 3, 4), got {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(
            f"float image values must be finite and in [0, 1], got range "
            f"[{array.min()}, {array.max()}] (see image_grid_array to rescale)"
        )
    return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _truncate_jsonl(path: pathlib.Path, last_step: int) -> None:
    """Drops the lines of ``path`` logged after ``last_step`` (a run resumed from that checkpoint
    logs those steps again); rewrites the file atomically."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= last_step]
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)


class RunLogger:
    """Writes a run's metrics to ``out_dir/metrics.jsonl`` and TensorBoard files in ``out_dir/tensorboard``.

    ``resume_step``: the run continues from the checkpoint of that step; lines of metrics.jsonl
    after it are dropped and TensorBoard is told to purge events after it, so each step is logged once.

    With ``enabled=False`` (processes other than 0) every method does nothing and no file or
    folder is created. With ``tensorboard=False`` only the JSONL files are written and
    :meth:`image` validates its input but writes nothing. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        out_dir: str | pathlib.Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ):
        self.out_dir = pathlib.Path(out_dir)
        self.enabled = bool(enabled)
        self.tensorboard = bool(tensorboard)
        self._jsonl = None
        self._writer = None
        self._closed = False
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            _truncate_jsonl(self.out_dir / "metrics.jsonl", _check_step(resume_step))
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if self.tensorboard:
            from tensorboardX import SummaryWriter

            # tensorboardX names files by the second and host only; a restart within the same
            # second would overwrite the previous file without a unique suffix.
            suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}"
            self._writer = SummaryWriter(
                logdir=str(self.tensorboard_dir),
                flush_secs=30,
                filename_suffix=suffix,
                purge_step=resume_step + 1 if resume_step else None,
            )

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        return self.out_dir / "tensorboard"

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"RunLogger for {self.out_dir} is closed")

    def scalars(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends ``{"step": step, **metrics}`` to metrics.jsonl and one TensorBoard scalar per metric.

        ``metrics`` maps names (str, not "step") to real scalars: Python numbers, numpy scalars
        or 0-d numpy/jax arrays. TensorBoard stores float32; the JSONL keeps full precision.
        """
        if not self.enabled:
            return
        self._check_open()
        step = _check_step(step)
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics must be a mapping of name -> number, got {type(metrics).__name__}")
        values = {}
        for name, value in metrics.items():
            if not isinstance(name, str) or not name or name == "step":
                raise ValueError(f"metrics keys must be non-empty strings other than 'step', got {name!r}")
            values[name] = _metric_value(name, value)
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, float(value), global_step=step)

    def image(self, step: int, tag: str, image: Any) -> None:
        """Writes ``image`` (H, W) or (H, W, C), C in {1, 3, 4}, uint8 or float in [0, 1], under ``tag``.

        Grayscale images are stored as RGB (tensorboardX's convention). Float images are rounded
        to uint8. For a batch of samples, tile them first with :func:`image_grid_array`.
        """
        if not self.enabled:
            return
        self._check_open()
        step = _check_step(step)
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        pixels = _image_uint8(image)
        if self._writer is not None:
            self._writer.add_image(tag, pixels, global_step=step, dataformats="HWC")

    def run_info(self, config: Any = None) -> dict[str, Any] | None:
        """Appends ``{"config": config, **run_metadata()}`` as one line to ``out_dir/run_info.jsonl``.

        ``config`` is a (nested) dataclass, mapping or None; values that JSON cannot hold are
        written as ``str``. The record is also written to TensorBoard as text (tag ``run_info``).
        Returns the record (None on a disabled logger, which collects and writes nothing).
        """
        if not self.enabled:
            return None
        self._check_open()
        record = {"config": _jsonable(config), **run_metadata()}
        text = json.dumps(record, indent=2)
        with open(self.out_dir / "run_info.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            self._writer.add_text("run_info", "```\n" + text + "\n```", global_step=0)
        return record

    def flush(self) -> None:
        """Forces pending TensorBoard events to disk (the JSONL is flushed on every write)."""
        if not self.enabled or self._closed:
            return
        self._jsonl.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the files; later calls to :meth:`close` do nothing."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
