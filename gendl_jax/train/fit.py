"""The generic fit loop: any objective of :mod:`gendl_jax.objectives` on any dataset.

:func:`train_and_evaluate` writes into the run folder:

* ``config.json``: the objective, its resolved config, the data and the train settings;
* ``metrics.jsonl``: one JSON line of step metrics every ``log_every`` steps;
* ``samples_<step>.png``: a scatter with the true modes (2-D data) or an image grid from fixed
  latents, every ``sample_every`` steps and at the end;
* ``checkpoints/``: orbax checkpoints of the whole state (resumable with ``resume=True``);
* ``samples.npy``: ``n_samples`` samples at the end (objectives with a sampler), and ``summary.json``
  (for data with known modes: modes covered, high-quality fraction and reverse KL by the PacGAN
  protocol), merged with what the objective's ``report`` returns (autoencoders and the VAE: test
  reconstruction error, ELBO and importance-weighted log-likelihood; it also writes
  ``reconstructions.png``, ``interpolations.png`` and, for a 2-D latent, ``manifold.png``).

What differs per objective is a field of :class:`~gendl_jax.objectives.Objective`: the value range
images are scaled to, an optional dataset preparation, the sampler, the report and the CLI's
default train settings.
"""

from __future__ import annotations

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
from gendl_jax.objectives import Objective, get_objective
from gendl_jax.train import checkpoints, guard, logger, parallel, plots


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (everything that is not the objective's hyper-parameters)."""

    data: str = "grid25"
    """ring8 | grid25 | swissroll | mnist | digits | any TFDS dataset prepared on this machine."""
    steps: int = 4000
    """Generator updates (each preceded by the objective's discriminator/critic updates)."""
    batch_size: int | None = None
    """Global minibatch per update; None: 256 for 2-D data, 64 for images."""
    seed: int = 0
    out: str | None = None
    """Run folder; None: runs/<objective>-<data>-seed<seed>."""
    data_dir: str | None = None
    """Where MNIST's IDX files (or TFDS data) are; None: $GENDL_DATA_DIR."""
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


def run_dir(objective: str, train: TrainConfig) -> pathlib.Path:
    return pathlib.Path(train.out or f"runs/{objective}-{train.data}-seed{train.seed}")


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


def make_iterator(dataset, batch_size: int | None, seed: int, inner_steps: int,
                  value_range: tuple[float, float] = (-1.0, 1.0), *, process_index: int = 0,
                  process_count: int = 1) -> gdata.BatchIterator:
    """The run's batch stream; ``batch_size`` is global (None: 256 for 2-D data, 64 for images)."""
    if batch_size is None:
        batch_size = 256 if isinstance(dataset, gdata.ToyDataset) else 64
    return gdata.BatchIterator(dataset, batch_size, seed=seed, inner_steps=inner_steps, value_range=value_range,
                               process_index=process_index, process_count=process_count)


def _write_samples_picture(path, samples, dataset, title, value_range=(-1.0, 1.0)):
    if isinstance(dataset, gdata.ToyDataset):
        plots.scatter_with_modes(samples, dataset.distribution.modes, path, title=title)
    elif np.ndim(samples) == 4:
        plots.image_grid(samples[:64], path, title=title, value_range=value_range)


def summarize(samples: np.ndarray, dataset) -> dict:
    """Scores of final samples: the PacGAN mode coverage for data with known modes."""
    if isinstance(dataset, gdata.ToyDataset):
        dist = dataset.distribution
        return gmetrics.mode_coverage(samples, dist.modes, dist.std)
    return {}


def _local_copy(tree: Any) -> Any:
    """``tree`` with every global array replaced by this process's first copy (for sampling and
    reports after training; the state is replicated, so every copy is the whole value)."""

    def local(leaf):
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            return jax.device_put(leaf.addressable_data(0), jax.local_devices()[0])
        return leaf

    return jax.tree_util.tree_map(local, tree)


def _first_nonfinite(pending: list[tuple[int, dict]]) -> tuple[int, dict] | None:
    """The first ``(step, host metrics)`` of ``pending`` whose ``finite`` flag is false, if any."""
    flags = jax.device_get([m[guard.FINITE] for _, m in pending])
    for (step, metrics), ok in zip(pending, flags):
        if not bool(ok):
            return step, parallel.host_metrics(metrics)
    return None


def _nonfinite_message(step: int, metrics: dict, last_checkpoint: int | None, ckpt_dir: pathlib.Path) -> str:
    bad = [name for name, value in metrics.items() if name != guard.FINITE and not math.isfinite(value)]
    where = f"{ckpt_dir}/{last_checkpoint}" if last_checkpoint is not None else "none saved yet"
    shown = ", ".join(f"{name}={metrics[name]}" for name in bad)
    return (f"non-finite {shown} at step {step}; stopping. Last good checkpoint: {where} (left intact). "
            "Resume from it with --resume, or pass --skip-nonfinite to drop such updates.")


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _check_resume_config(out: pathlib.Path, record: dict) -> None:
    saved = json.loads((out / "config.json").read_text())
    changed = sorted(k for k in set(saved["config"]) | set(record["config"])
                     if saved["config"].get(k) != record["config"].get(k))
    if saved["objective"] != record["objective"] or changed:
        raise ValueError(
            f"cannot resume {out}: it was trained as {saved['objective']} and these hyper-parameters differ "
            f"from its config.json: {changed}"
        )


def _mesh_for(train: TrainConfig):
    """The data-parallel mesh (None for one device in one process)."""
    n = train.devices
    if jax.process_count() > 1 and n == 1:
        n = jax.device_count()  # every process's devices: one global data-parallel mesh
    if n == 1:
        return None
    return parallel.make_mesh(n)


def train_and_evaluate(
    objective: str | Objective, config: Any, train: TrainConfig, *, dataset=None
) -> dict:
    """Trains ``objective`` with ``config`` as ``train`` says; returns the summary (also in summary.json).

    With ``train.seeds > 1`` the seeds train vmapped (:func:`gendl_jax.train.sweep.train_seeds_and_summarize`).
    With ``train.devices > 1`` or several processes (``jax.distributed``), the step runs under
    ``jax.jit`` over a ``data`` mesh, the batch sharded and the state replicated; each process reads
    its own rows of every global batch, and only process 0 writes logs, pictures and summaries
    (every process takes part in saving checkpoints, as orbax requires).
    """
    obj = get_objective(objective) if isinstance(objective, str) else objective
    train.validate()
    config.validate()
    if train.seeds > 1:
        from gendl_jax.train import sweep

        return sweep.train_seeds_and_summarize(obj, config, train, dataset=dataset)
    out = run_dir(obj.name, train)
    ckpt_dir = out / "checkpoints"
    primary = jax.process_index() == 0
    mesh = _mesh_for(train)
    if dataset is None:
        dataset = gdata.load_dataset(train.data, split="train", data_dir=train.data_dir)
    if obj.prepare_dataset is not None:
        dataset = obj.prepare_dataset(dataset, config)
    iterator = make_iterator(dataset, train.batch_size, train.seed, config.inner_steps, obj.value_range,
                             process_index=jax.process_index(), process_count=jax.process_count())
    if mesh is not None and iterator.batch_size % mesh.size:
        raise ValueError(f"batch_size={iterator.batch_size} must be divisible by the {mesh.size} devices of --devices")

    state = obj.init(jax.random.PRNGKey(train.seed), config, iterator.batch_at(0))
    data_shape = state.data_shape
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    manager = checkpoints.checkpoint_manager(
        ckpt_dir, keep_last=train.keep_checkpoints, best_metric=train.best_metric, best_mode=train.best_mode,
        keep_best=train.keep_best,
    )
    record = {"objective": obj.name, "config": _jsonable(config), "train": _jsonable(train),
              "data_shape": list(data_shape)}
    start = 0
    if manager.latest_step() is not None:
        if not train.resume:
            raise FileExistsError(
                f"{out} already holds checkpoints (latest step {manager.latest_step()}); "
                "pass resume=True (--resume) to continue it or choose another out folder"
            )
        if primary and (out / "config.json").is_file():
            _check_resume_config(out, record)
        state, meta = checkpoints.restore_with_meta(manager, state)
        if meta.get("data_position"):
            iterator.check_resumable(meta["data_position"])
        start = int(jax.device_get(_local_copy(state.step)))
    if primary:
        out.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(out / "config.json", json.dumps(record, indent=2))

    step = guard.guard_nonfinite(obj.step, skip=train.skip_nonfinite)
    if mesh is None:
        step_fn = jax.jit(step, donate_argnums=0)
        place = lambda batch: batch  # noqa: E731
    else:
        step_fn = parallel.jit_step(step, mesh)
        place = lambda batch: parallel.shard_batch(batch, mesh)  # noqa: E731
    sample_fn = jax.jit(obj.sample, static_argnums=2) if obj.sample is not None else None
    picture_key = jax.random.PRNGKey(train.seed + 1)  # fixed latents for every picture of the run
    n_picture = 2500 if isinstance(dataset, gdata.ToyDataset) else 64

    def write_picture(done: int, log: logger.RunLogger) -> None:
        samples = np.asarray(sample_fn(_local_copy(state), picture_key, n_picture))
        title = f"{obj.name} step {done}"
        _write_samples_picture(out / f"samples_{done:07d}.png", samples, dataset, title, obj.value_range)
        if samples.ndim == 4:
            log.image(done, "samples", logger.image_grid_array(samples[:64], obj.value_range))

    last_checkpoint = manager.latest_step()
    pending: list[tuple[int, dict]] = []
    skipped = 0
    t0 = time.perf_counter()
    compile_s = None
    with logger.RunLogger(out, enabled=primary, resume_step=start) as log, tqdm(
        total=train.steps, initial=start, disable=not (train.progress and primary), desc=f"{obj.name} {train.data}",
        dynamic_ncols=True,
    ) as bar:
        log.run_info(record)  # resolved config, package versions, devices, git revision: run_info.jsonl
        for s in range(start, train.steps):
            state, metrics = step_fn(state, place(iterator.batch_at(s)))
            if compile_s is None:
                jax.block_until_ready(state)
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
            done = s + 1
            pending.append((done, metrics))
            is_checkpoint = done % train.checkpoint_every == 0 or done == train.steps
            if done % train.log_every == 0 or is_checkpoint:
                bad = _first_nonfinite(pending)
                if bad is not None:
                    bad_step, bad_metrics = bad
                    if not train.skip_nonfinite:
                        manager.wait_until_finished()
                        manager.close()
                        raise FloatingPointError(_nonfinite_message(bad_step, bad_metrics, last_checkpoint, ckpt_dir))
                    flags = jax.device_get([m[guard.FINITE] for _, m in pending])
                    n_bad = sum(not bool(f) for f in flags)
                    skipped += n_bad
                    tqdm.write(f"skipped {n_bad} non-finite update(s) in steps {pending[0][0]}..{done} "
                               f"(first at step {bad_step}); {skipped} so far")
                pending = []
                host = parallel.host_metrics(metrics)
                host[guard.FINITE] = float(host[guard.FINITE])
                host["skipped_updates"] = float(skipped)
                if train.best_metric is not None and train.best_metric not in host:
                    raise ValueError(f"best_metric {train.best_metric!r} is not a metric of {obj.name}; "
                                     f"logged metrics: {sorted(host)}")
                log.scalars(done, host)
                bar.set_postfix({k: f"{v:.3g}" for k, v in host.items() if k != guard.FINITE}, refresh=False)
                if is_checkpoint:
                    finite = {k: v for k, v in host.items() if math.isfinite(v)}
                    checkpoints.save(manager, done, state, metrics=finite, data_position=iterator.position(done))
                    last_checkpoint = done
            if sample_fn and primary and train.sample_every and done % train.sample_every == 0 and done != train.steps:
                write_picture(done, log)
            bar.update(1)
        jax.block_until_ready(state)
        train_s = time.perf_counter() - t0
        manager.wait_until_finished()
        if sample_fn is not None and primary:
            write_picture(train.steps, log)

    summary = {}
    if primary:
        local_state = _local_copy(state)
        scores = {}
        if sample_fn is not None:
            samples = np.asarray(sample_fn(local_state, jax.random.PRNGKey(train.seed + 2), train.n_samples))
            np.save(out / "samples.npy", samples)
            scores = summarize(samples, dataset)
        if obj.report is not None:
            scores = {**scores, **obj.report(local_state, out, train, dataset)}
        summary = {
            "objective": obj.name,
            "data": train.data,
            "seed": train.seed,
            "steps": train.steps,
            "resumed_from": start,
            "devices": 1 if mesh is None else mesh.size,
            "processes": jax.process_count(),
            "skipped_updates": skipped,
            "compile_seconds": compile_s,
            "train_seconds": train_s,
            "steps_per_second": (train.steps - start - 1) / train_s if train.steps - start > 1 else None,
            **scores,
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
