"""The generic fit loop: any objective of :mod:`gendl_jax.objectives` on any dataset.

:func:`train_and_evaluate` writes into the run folder:

* ``config.json``: the objective, its resolved config, the data and the train settings;
* ``metrics.jsonl``: one JSON line of step metrics every ``log_every`` steps;
* ``samples_<step>.png``: a scatter with the true modes (2-D data) or an image grid from fixed
  latents, every ``sample_every`` steps and at the end;
* ``checkpoints/``: orbax checkpoints of the whole state (resumable with ``resume=True``);
* ``.lock``: the run's hold on its folder while it runs (:mod:`gendl_jax.train.run_lock`);
* ``samples.npy``: ``n_samples`` samples at the end (objectives with a sampler), and ``summary.json``
  (for data with known modes: modes covered, high-quality fraction and reverse KL by the PacGAN
  protocol; for a point cloud: exact and sliced W2 to its held-out points, and the same for a Gaussian fitted
  to the training points, :func:`point_cloud_measures`), merged with what the objective's ``report`` returns
  (autoencoders and the VAE: test reconstruction error, ELBO and importance-weighted log-likelihood; it also writes
  ``reconstructions.png``, ``interpolations.png`` and, for a 2-D latent, ``manifold.png``).

What differs per objective is what its :class:`~gendl_jax.objectives.Objective` declares: the value
range images are scaled to, an optional dataset preparation, the sampler, the report, whether it is
class-conditional and where its hyper-parameters live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time
from typing import Any, Literal

import jax
import numpy as np
from tqdm.auto import tqdm

from gendl_jax import data as gdata
from gendl_jax import metrics as gmetrics
from gendl_jax import plots
from gendl_jax import transport as gtransport
from gendl_jax.objectives import Objective, get_objective
from gendl_jax.train import checkpoints, guard, logger, parallel, run_lock, sweep

MULTI_DEVICE_CPU_SYNC_EVERY = 8
"""With several CPU devices (simulated with ``--xla_force_host_platform_device_count``) the loop waits for the
step every this many steps. XLA:CPU runs every device's share of a collective on one thread pool, as large as
the larger of the core and device counts; when 32 launches queue up, a dispatch task holds a pool thread and the
collective waits forever for its last device ("only 3 of 4 threads arrived", seen on a loaded 2-core machine).
Waiting every few steps keeps the queue short (``PJRT_NPROC`` = twice the device count also avoids it)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (everything that is not the objective's hyper-parameters)."""

    data: str = gdata.DEFAULT_DATA
    """ring8 | grid25 | swissroll | mnist | digits | cifar10 | cifar100 | a folder of images (with --image-size) |
    an .npy / .npz file (uint8 images, or a float (N, d) point cloud) | any TFDS dataset prepared on this machine.
    A folder or a file trains on its fixed 90% train split; the other 10% is held out."""
    image_size: int | None = None
    """For a folder of images: every image is resized (shorter side) and centre-cropped to this side (28, 32 or
    64 for the DCGAN networks; other sizes train MLPs). Only for folders."""
    steps: int = 4000
    """Generator updates (each preceded by the objective's discriminator/critic updates)."""
    batch_size: int | None = None
    """Global minibatch per update; None: 256 for 2-D data, 64 for images."""
    seed: int = 0
    out: str | None = None
    """Run folder; None: runs/<objective>-<data>-seed<seed>."""
    data_dir: str | None = None
    """Where MNIST's IDX files, CIFAR's files (or TFDS data) are; None: $GENDL_DATA_DIR."""
    log_every: int = 100
    sample_every: int = 1000
    """Write a sample picture every this many steps (0: only at the end)."""
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    n_samples: int = 2500
    """Samples written to samples.npy and scored in summary.json (2,500 as in PacGAN)."""
    resume: bool = False
    """Continue from the latest checkpoint in the run folder."""
    progress: bool = True
    seeds: int = 1
    """Train this many models at once (seeds seed .. seed + seeds - 1, vmapped in one compiled step);
    each gets a summary in <out>/seed<s>/ and <out>/summary.json holds their mean and standard error."""
    devices: int = 1
    """Data-parallel over this many devices (a Mesh with the batch sharded on its ``data`` axis);
    in a multi-process job 1 means every device of every process."""
    skip_nonfinite: bool = False
    """Drop updates whose losses or gradient norms are NaN/inf (and count them) instead of stopping."""
    best_metric: str | None = None
    """Also keep the ``keep_best`` checkpoints with the best value of this logged metric."""
    best_mode: Literal["min", "max"] = "min"
    keep_best: int = 1

    def validate(self) -> None:
        for name in ("steps", "log_every", "keep_checkpoints", "n_samples", "checkpoint_every", "seeds", "devices"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ValueError(f"image_size (--image-size) must be >= 1 or None, got {self.image_size!r}")


def run_dir(objective: str, train: TrainConfig) -> pathlib.Path:
    """``train.out``, or runs/<objective>-<data>-seed<s> (-seeds<a>-<b> for several seeds); for a folder or an
    array file, <data> is its last name without the suffix (:func:`gendl_jax.data.data_label`)."""
    if train.out:
        return pathlib.Path(train.out)
    data = gdata.data_label(train.data)
    if train.seeds > 1:
        return pathlib.Path(f"runs/{objective}-{data}-seeds{train.seed}-{train.seed + train.seeds - 1}")
    return pathlib.Path(f"runs/{objective}-{data}-seed{train.seed}")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def config_from_json(cls: type, values: dict) -> Any:
    """Rebuilds a (flat) config dataclass from its JSON form, turning lists back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} for {cls.__name__}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _write_samples_picture(path, samples, dataset, title, value_range=(-1.0, 1.0)):
    if isinstance(dataset, gdata.ToyDataset):
        plots.scatter_with_modes(samples, dataset.distribution.modes, path, title=title)
    elif isinstance(dataset, gdata.PointCloudDataset) and dataset.shape[0] >= 2:
        suffix = "" if dataset.shape[0] == 2 else " (first two coordinates)"
        plots.scatter_with_modes(np.asarray(samples)[:, :2], np.zeros((0, 2)), path, title=title + suffix)
    elif np.ndim(samples) == 4:
        plots.image_grid(samples[:64], path, title=title, value_range=value_range)


POINT_CLOUD_MAX_POINTS = 2500
"""Most points on each side of the exact W2 of :func:`point_cloud_measures` (an m x m assignment problem)."""
SLICED_PROJECTIONS = 500
"""Directions of the sliced W2 of :func:`point_cloud_measures`."""


def gaussian_baseline(points, n: int, seed: int) -> np.ndarray:
    """``n`` draws of the Gaussian fitted to ``points`` (N, d), N >= 2: mean and covariance (divisor N - 1) in
    float64, drawn by ``np.random.default_rng([seed, 2]).multivariate_normal(mean, cov, n, method="eigh")``.

    Returns:
      (n, d) float64.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"the Gaussian baseline needs training points of shape (N, d) with N >= 2, got {points.shape}")
    mean = points.mean(axis=0)
    cov = np.atleast_2d(np.cov(points, rowvar=False))
    return np.random.default_rng([seed, 2]).multivariate_normal(mean, cov, size=n, method="eigh")


def point_cloud_measures(
    samples,
    reference,
    train_points,
    *,
    seed: int = 0,
    max_points: int = POINT_CLOUD_MAX_POINTS,
    n_projections: int = SLICED_PROJECTIONS,
) -> dict:
    """How close generated ``samples`` are to ``reference`` points of a point cloud (its held-out points), next to
    the baseline to beat, a Gaussian fitted to the ``train_points`` (:func:`gaussian_baseline`), and to the
    sampling floor, training points themselves.

    With ``m = min(len(samples), len(reference), max_points)``: the first ``m`` samples, ``m`` reference points
    (all of them, or ``m`` drawn without replacement by ``np.random.default_rng([seed, 1]).choice``, kept in
    order), ``m`` baseline draws and ``m`` training points (drawn likewise with ``default_rng([seed, 3])``; all of
    them when there are fewer); every distance in float64 between uniform point sets: the exact W2
    (:func:`gendl_jax.transport.wasserstein`, network simplex) and the sliced W2 over ``n_projections`` directions
    drawn from ``jax.random.PRNGKey(seed)`` (the same directions for all three). Two finite samples of one
    distribution are not at distance 0: the training points' W2 is the level a perfect model reaches on average
    (a model that concentrates its mass, e.g. near the modes, can even go below it).

    Args:
      samples: (n, d) generated points, finite.
      reference: (r, d) points the samples are compared with.
      train_points: (N, d) points the baseline Gaussian is fitted to, N >= 2.
      seed: seeds the reference subset, the baseline draws and the sliced directions.
      max_points: cap on ``m``.
      n_projections: directions of the sliced W2.
    Returns:
      ``w2_samples``, ``sliced_w2_samples``, ``w2_gaussian_baseline``, ``sliced_w2_gaussian_baseline``,
      ``w2_train_points``, ``sliced_w2_train_points``, ``transport_points`` (m), ``sliced_projections``.
    Raises:
      ValueError: shapes that disagree, or samples with NaN or inf (counted).
    """
    samples = np.asarray(samples, np.float64)
    reference = np.asarray(reference, np.float64)
    train_points = np.asarray(train_points, np.float64)
    if reference.ndim != 2 or samples.ndim != 2 or train_points.ndim != 2:
        raise ValueError(
            f"samples, reference and train_points must be (n, d) point sets, got shapes {samples.shape}, "
            f"{reference.shape} and {train_points.shape}"
        )
    if not samples.shape[1] == reference.shape[1] == train_points.shape[1]:
        raise ValueError(
            f"samples, reference and train_points must have the same dimension d, got shapes {samples.shape}, "
            f"{reference.shape} and {train_points.shape}"
        )
    bad = int(np.sum(~np.isfinite(samples).all(axis=1)))
    if bad:
        raise ValueError(f"{bad} of the {len(samples)} samples hold NaN or inf; no distance to the point cloud")
    m = min(len(samples), len(reference), int(max_points))
    if m < 1:
        raise ValueError(f"no points to compare: {len(samples)} samples, {len(reference)} reference points")
    if len(reference) > m:
        reference = reference[np.sort(np.random.default_rng([seed, 1]).choice(len(reference), m, replace=False))]
    samples = samples[:m]
    baseline = gaussian_baseline(train_points, m, seed)
    if len(train_points) > m:
        train_points = train_points[
            np.sort(np.random.default_rng([seed, 3]).choice(len(train_points), m, replace=False))
        ]
    key = jax.random.PRNGKey(seed)
    with jax.enable_x64(True):
        out = {}
        for name, points in (("samples", samples), ("gaussian_baseline", baseline), ("train_points", train_points)):
            out[f"w2_{name}"] = float(gtransport.wasserstein(points, reference, p=2))
            out[f"sliced_w2_{name}"] = float(
                gtransport.wasserstein(points, reference, p=2, method="sliced", key=key, n_projections=n_projections)
            )
    return {**out, "transport_points": m, "sliced_projections": int(n_projections)}


def summarize(samples: np.ndarray, dataset, *, reference=None, seed: int = 0) -> dict:
    """Scores of final samples: the PacGAN mode coverage for data with known modes; for a point cloud,
    :func:`point_cloud_measures` against ``reference`` = ``(points, description)`` (None: the training points
    themselves), recorded with ``w2_reference`` (the description)."""
    if isinstance(dataset, gdata.ToyDataset):
        dist = dataset.distribution
        return gmetrics.mode_coverage(samples, dist.modes, dist.std)
    if isinstance(dataset, gdata.PointCloudDataset):
        points, described = reference if reference is not None else (dataset.points, "the training points")
        return {
            **point_cloud_measures(samples, points, dataset.points, seed=seed),
            "w2_reference": described,
        }
    return {}


def _local_copy(tree: Any) -> Any:
    """``tree`` with every global array replaced by this process's first copy (for sampling and
    reports after training; the state is replicated, so every copy is the whole value)."""

    def local(leaf):
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            return jax.device_put(leaf.addressable_data(0), jax.local_devices()[0])
        return leaf

    return jax.tree_util.tree_map(local, tree)


def _nonfinite_models(pending: list[tuple[int, dict]]) -> tuple[int, int, np.ndarray, list[int]] | None:
    """For the first pending step with a non-finite metric: (step, index in ``pending``, its flags
    (one per model), total count of bad updates per model over ``pending``); None if all finite."""
    flags = [np.atleast_1d(np.asarray(f)).astype(bool) for f in jax.device_get([m[guard.FINITE] for _, m in pending])]
    bad_counts = np.sum([~f for f in flags], axis=0)
    for i, ((step, _), f) in enumerate(zip(pending, flags)):
        if not f.all():
            return step, i, f, bad_counts
    return None


def _nonfinite_message(
    step: int, metrics: dict, last_checkpoint: int | None, ckpt_dir: pathlib.Path, seed: int | None = None
) -> str:
    bad = [name for name, value in metrics.items() if name != guard.FINITE and not math.isfinite(value)]
    where = f"{ckpt_dir}/{last_checkpoint}" if last_checkpoint is not None else "none saved yet"
    shown = ", ".join(f"{name}={metrics[name]}" for name in bad)
    model = f" for seed {seed}" if seed is not None else ""
    return (
        f"non-finite {shown} at step {step}{model}; stopping. Last good checkpoint: {where} (left intact). "
        "Resume from it with --resume, or pass --skip-nonfinite to drop such updates."
    )


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _check_resume_config(out: pathlib.Path, record: dict) -> None:
    saved = json.loads((out / "config.json").read_text())
    changed = sorted(
        k for k in set(saved["config"]) | set(record["config"]) if saved["config"].get(k) != record["config"].get(k)
    )
    if saved["objective"] != record["objective"] or changed:
        raise ValueError(
            f"cannot resume {out}: it was trained as {saved['objective']} and these hyper-parameters differ "
            f"from its config.json: {changed}"
        )
    if saved.get("seeds") != record.get("seeds"):
        raise ValueError(f"cannot resume {out}: it trained seeds {saved.get('seeds')}, not {record.get('seeds')}")


def _mesh_for(train: TrainConfig):
    """The data-parallel mesh (None for one device in one process)."""
    n = train.devices
    if jax.process_count() > 1 and n == 1:
        n = jax.device_count()  # every process's devices: one global data-parallel mesh
    if n == 1:
        return None
    return parallel.make_mesh(n)


def _model_metrics(host: dict, i: int | None) -> dict[str, float]:
    """Model ``i``'s scalars from metrics of shape (K,) (``i=None``: already scalars)."""
    return {k: float(v if i is None else np.asarray(v)[i]) for k, v in host.items()}


def _aggregate(per_seed: list[dict]) -> dict:
    """Per-seed values, mean and standard error of every numeric score."""
    names = [
        k
        for k, v in per_seed[0].items()
        if k not in ("seed", "steps") and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    out = {}
    for name in names:
        values = [float(p[name]) for p in per_seed]
        mean, stderr = sweep.mean_and_stderr(values)
        out[name] = {"values": values, "mean": mean, "stderr": stderr}
    return out


def check_dataset_labels(dataset, num_classes: int) -> None:
    """A class-conditional model (``num_classes > 0``) needs a labelled dataset whose labels lie in
    ``[0, num_classes)``; checked once on the host, since the jitted step cannot."""
    if not num_classes:
        return
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(
            f"num_classes={num_classes} (a class-conditional model) needs labelled data; dataset "
            f"{getattr(dataset, 'name', dataset)!r} has no labels"
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"num_classes={num_classes}, but dataset {dataset.name!r} has labels in [{lo}, {hi}]; "
            f"num_classes must be > {hi}"
        )


def train_and_evaluate(objective: str | Objective, config: Any, train: TrainConfig, *, dataset=None) -> dict:
    """Trains ``objective`` with ``config`` as ``train`` says; returns the summary (also in summary.json).

    With ``train.seeds = K > 1``, seeds ``train.seed .. train.seed + K - 1`` train together in one
    ``jax.jit(jax.vmap(step))`` (each with its own initialisation and data stream, as K single runs
    would): the checkpoints hold the stacked state, ``seed<s>/`` holds each seed's metrics,
    TensorBoard files, samples and ``summary.json``, and the run's ``summary.json`` gives every
    score's per-seed values, mean and standard error.

    With ``train.devices > 1`` or several processes (``jax.distributed``), the step runs under
    ``jax.jit`` over a ``data`` mesh, the batch sharded and the state replicated; each process reads
    its own rows of every global batch, and only process 0 writes logs, pictures and summaries
    (every process takes part in saving checkpoints, as orbax requires).

    The run holds its folder while it runs (:func:`~gendl_jax.train.run_lock.hold_run_folder`: an OS lock
    on ``<out>/.lock``, taken by process 0, released when the process ends, even by SIGKILL).

    Raises:
      RunFolderBusyError: (a ``FileExistsError``) another process holds the folder; names the holder.
      FileExistsError: the folder already holds checkpoints and ``train.resume`` is False.
    """
    obj = get_objective(objective) if isinstance(objective, str) else objective
    train.validate()
    config.validate()
    out = run_dir(obj.name, train)
    # The run holds its folder (an OS lock, released when the process ends, even killed) from before the
    # existing-checkpoints check until it returns: a second process on the same folder stops at once.
    with run_lock.hold_run_folder(out, enabled=jax.process_index() == 0):
        return _train_holding_folder(obj, config, train, out, dataset)


def _train_holding_folder(obj: Objective, config: Any, train: TrainConfig, out: pathlib.Path, dataset) -> dict:
    """The body of :func:`train_and_evaluate`, run while this process holds ``out``."""
    n_models = train.seeds
    seeds = list(range(train.seed, train.seed + n_models))
    ckpt_dir = out / "checkpoints"
    primary = jax.process_index() == 0
    mesh = _mesh_for(train)
    if n_models > 1 and mesh is not None:
        raise ValueError(
            f"--seeds {n_models} cannot be combined with several devices or processes yet "
            f"(--devices {train.devices}, {jax.process_count()} process(es))"
        )
    reference = None  # a point cloud's held-out points, for the summary
    if dataset is None:
        dataset = gdata.load_dataset(train.data, split="train", data_dir=train.data_dir, image_size=train.image_size)
        if isinstance(dataset, gdata.PointCloudDataset):
            held_out = gdata.load_dataset(train.data, split="test", data_dir=train.data_dir).points
            reference = (held_out, f"the held-out split of {train.data} ({len(held_out)} points, never trained on)")
    if obj.prepare_dataset is not None:
        dataset = obj.prepare_dataset(dataset, config)
    check_dataset_labels(dataset, obj.num_classes(config))
    iterators = [
        gdata.make_iterator(
            dataset,
            train.batch_size,
            s,
            config.inner_steps,
            obj.value_range,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        for s in seeds
    ]
    if mesh is not None and iterators[0].batch_size % mesh.size:
        raise ValueError(
            f"batch_size={iterators[0].batch_size} must be divisible by the {mesh.size} devices of --devices"
        )
    if n_models == 1:
        batch_at = iterators[0].batch_at
        state = obj.init(jax.random.PRNGKey(train.seed), config, batch_at(0))
    else:
        batch_at = lambda s: sweep.stack_batches(iterators, s)
        state = sweep.init_sweep(obj, config, iterators[0].batch_at(0), seeds)
    data_shape = state.data_shape
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    manager = checkpoints.checkpoint_manager(
        ckpt_dir,
        keep_last=train.keep_checkpoints,
        best_metric=train.best_metric,
        best_mode=train.best_mode,
        keep_best=train.keep_best,
    )
    record = {
        "objective": obj.name,
        "config": _jsonable(config),
        "train": _jsonable(train),
        "data_shape": list(data_shape),
    }
    if n_models > 1:
        record["seeds"] = seeds
    start = 0
    if manager.latest_step() is not None:
        if not train.resume:
            raise FileExistsError(
                f"{out} already holds checkpoints (latest step {manager.latest_step()}); "
                "pass resume=True (--resume) to continue it or choose another out folder"
            )
        if primary and (out / "config.json").is_file():
            _check_resume_config(out, record)
        # a corrupted newer checkpoint is moved aside, so that this run can save its step again
        state, meta = checkpoints.restore_with_meta(manager, state, set_aside_corrupted=True)
        positions = meta.get("data_position")
        if positions:
            for it, position in zip(iterators, positions if isinstance(positions, list) else [positions]):
                it.check_resumable(position)
        start = int(np.ravel(jax.device_get(_local_copy(state.step)))[0])
    if primary:
        out.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(out / "config.json", json.dumps(record, indent=2))

    step = guard.guard_nonfinite(obj.step, skip=train.skip_nonfinite)
    if n_models > 1:
        step = jax.vmap(step)
    cpu_devices = mesh is not None and all(d.platform == "cpu" for d in mesh.devices.flat)
    if mesh is None:
        step_fn = jax.jit(step, donate_argnums=0)
        place = lambda batch: batch
    else:
        step_fn = parallel.jit_step(step, mesh)
        place = lambda batch: parallel.shard_batch(batch, mesh)
    sample_fn = jax.jit(obj.sample, static_argnums=2) if obj.sample is not None else None
    n_picture = 2500 if isinstance(dataset, (gdata.ToyDataset, gdata.PointCloudDataset)) else 64
    model_dirs = [out] if n_models == 1 else [out / f"seed{s}" for s in seeds]
    model_index = [None] if n_models == 1 else list(range(n_models))

    def model_state(i):
        return _local_copy(state) if i is None else sweep.unstack(_local_copy(state), i)

    def write_picture(done: int, logs) -> None:
        for i, s, d, log in zip(model_index, seeds, model_dirs, logs):
            # fixed latents (from seed + 1) for every picture of a run
            samples = np.asarray(sample_fn(model_state(i), jax.random.PRNGKey(s + 1), n_picture))
            title = f"{obj.name} step {done}" + (f" seed {s}" if i is not None else "")
            _write_samples_picture(d / f"samples_{done:07d}.png", samples, dataset, title, obj.value_range)
            if samples.ndim == 4:
                log.image(done, "samples", plots.image_grid_array(samples[:64], obj.value_range))

    last_checkpoint = manager.latest_step()
    pending: list[tuple[int, dict]] = []
    skipped = np.zeros(n_models, np.int64)
    t0 = time.perf_counter()
    compile_s = None
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(logger.RunLogger(d, enabled=primary, resume_step=start)) for d in model_dirs]
        bar = stack.enter_context(
            tqdm(
                total=train.steps,
                initial=start,
                disable=not (train.progress and primary),
                desc=f"{obj.name} {gdata.data_label(train.data)}" + (f" x{n_models} seeds" if n_models > 1 else ""),
                dynamic_ncols=True,
            )
        )
        logs[0].run_info(record)  # resolved config, package versions, devices, git revision: run_info.jsonl
        for s in range(start, train.steps):
            state, metrics = step_fn(state, place(batch_at(s)))
            if compile_s is None:
                jax.block_until_ready(state)
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
            done = s + 1
            if mesh is not None and cpu_devices and done % MULTI_DEVICE_CPU_SYNC_EVERY == 0:
                jax.block_until_ready(state)  # bound the launches queued ahead of XLA:CPU's collectives (below)
            pending.append((done, metrics))
            is_checkpoint = done % train.checkpoint_every == 0 or done == train.steps
            if done % train.log_every == 0 or is_checkpoint:
                bad = _nonfinite_models(pending)
                if bad is not None:
                    bad_step, index, flags, counts = bad
                    first = int(np.argmin(flags))
                    if not train.skip_nonfinite:
                        manager.wait_until_finished()
                        manager.close()
                        host = (
                            parallel.host_metrics(pending[index][1])
                            if n_models == 1
                            else _model_metrics(jax.device_get(pending[index][1]), first)
                        )
                        raise FloatingPointError(
                            _nonfinite_message(
                                bad_step, host, last_checkpoint, ckpt_dir, None if n_models == 1 else seeds[first]
                            )
                        )
                    skipped += counts
                    tqdm.write(
                        f"skipped {int(counts.sum())} non-finite update(s) in steps {pending[0][0]}..{done} "
                        f"(first at step {bad_step}); {int(skipped.sum())} so far"
                    )
                pending = []
                host = parallel.host_metrics(metrics) if n_models == 1 else jax.device_get(metrics)
                rows = []
                for i, log, n_skipped in zip(model_index, logs, skipped):
                    row = _model_metrics(host, i)
                    row["skipped_updates"] = float(n_skipped)
                    log.scalars(done, row)
                    rows.append(row)
                mean_row = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                if train.best_metric is not None and train.best_metric not in mean_row:
                    raise ValueError(
                        f"best_metric {train.best_metric!r} is not a metric of {obj.name}; "
                        f"logged metrics: {sorted(mean_row)}"
                    )
                bar.set_postfix({k: f"{v:.3g}" for k, v in mean_row.items() if k != guard.FINITE}, refresh=False)
                if is_checkpoint:
                    finite = {k: v for k, v in mean_row.items() if math.isfinite(v)}
                    positions = [it.position(done) for it in iterators]
                    checkpoints.save(
                        manager, done, state, metrics=finite, data_position=positions[0] if n_models == 1 else positions
                    )
                    last_checkpoint = done
            if sample_fn and primary and train.sample_every and done % train.sample_every == 0 and done != train.steps:
                write_picture(done, logs)
            bar.update(1)
        jax.block_until_ready(state)
        train_s = time.perf_counter() - t0
        manager.wait_until_finished()
        if sample_fn is not None and primary:
            write_picture(train.steps, logs)

    summary = {}
    if primary:
        per_model = []
        for i, s, d, n_skipped in zip(model_index, seeds, model_dirs, skipped):
            one = model_state(i)
            scores = {}
            if sample_fn is not None:
                samples = np.asarray(sample_fn(one, jax.random.PRNGKey(s + 2), train.n_samples))
                np.save(d / "samples.npy", samples)
                scores = summarize(samples, dataset, reference=reference, seed=s)
            if obj.report is not None:
                scores = {
                    **scores,
                    **obj.report(one, d, dataclasses.replace(train, seed=s, seeds=1, out=str(d)), dataset),
                }
            model_summary = {
                "objective": obj.name,
                "data": train.data,
                "seed": s,
                "steps": train.steps,
                "skipped_updates": int(n_skipped),
                **scores,
            }
            if n_models > 1:
                if obj.hparams is not None:
                    model_summary["hparams"] = {k: float(v) for k, v in jax.device_get(obj.hparams(one)).items()}
                _write_text_atomic(d / "summary.json", json.dumps(model_summary, indent=2))
            per_model.append(model_summary)
        timing = {
            "resumed_from": start,
            "devices": 1 if mesh is None else mesh.size,
            "processes": jax.process_count(),
            "compile_seconds": compile_s,
            "train_seconds": train_s,
            "steps_per_second": (train.steps - start - 1) / train_s if train.steps - start > 1 else None,
        }
        if n_models == 1:
            summary = {**per_model[0], **timing}
        else:
            summary = {
                "objective": obj.name,
                "data": train.data,
                "seeds": seeds,
                "steps": train.steps,
                **timing,
                "metrics": _aggregate(per_model),
            }
        _write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    manager.close()
    return summary


def load_run(run: str | pathlib.Path, step: int | None = None):
    """(objective, state, record) of a run folder written by :func:`train_and_evaluate`."""
    run = pathlib.Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {run} a run folder written by `gendl train`?")
    record = json.loads(config_path.read_text())
    obj = get_objective(record["objective"])
    config = config_from_json(obj.config_cls, record["config"])
    data_shape = tuple(record["data_shape"])
    example = {"x": np.zeros((config.inner_steps, 2, *data_shape), np.float32)}
    like = obj.init(jax.random.PRNGKey(0), config, example)
    manager = checkpoints.checkpoint_manager(run / "checkpoints")
    state = checkpoints.restore(manager, like, step)
    manager.close()
    return obj, state, record
