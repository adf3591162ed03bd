"""The ``gendl`` command.

    gendl train OBJECTIVE [--data grid25] [--steps N] [--out DIR] [--seed S] [hyper-parameters]
    gendl sample RUN_DIR -n N [--out FILE] [--truncation T] [--drs-acceptance A | --ddls-steps K]
    gendl eval RUN_DIR [--n 10000]

``gendl train OBJECTIVE --help`` lists the objective's hyper-parameters with their defaults.
Configs are typed dataclasses (:class:`gendl_jax.train.TrainConfig` and the objective's config);
the library itself reads no flags.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Annotated

import tyro

from gendl_jax.objectives import OBJECTIVES

USAGE = f"""usage: gendl {{train,sample,eval}} ...

  gendl train OBJECTIVE [options]   train one of: {', '.join(OBJECTIVES)} (gendl train OBJECTIVE --help)
  gendl sample RUN_DIR -n N         draw new samples from a trained run (gendl sample --help)
  gendl eval RUN_DIR [--n 10000]    score a trained run, write RUN_DIR/eval.json (gendl eval --help)
  gendl finetune --backbone CKPT_OR_FILE [--data digits] [--freeze ...] [--head N]   (gendl finetune --help)
"""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Multi-process (multi-host) settings: ``jax.distributed.initialize`` before training.

    On a TPU pod or a SLURM / Open MPI / Kubernetes GPU cluster pass ``--distributed`` alone and
    jax discovers the coordinator and the process ids; elsewhere give all three values.
    """

    distributed: bool = False
    """Join a multi-process job (implied by --coordinator-address)."""
    coordinator_address: str | None = None
    """host:port of process 0's coordinator, e.g. localhost:12345."""
    num_processes: int | None = None
    process_id: int | None = None

    def initialize(self) -> None:
        if not (self.distributed or self.coordinator_address):
            return
        import jax

        given = {"coordinator_address": self.coordinator_address, "num_processes": self.num_processes,
                 "process_id": self.process_id}
        if self.coordinator_address and None in given.values():
            missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
            raise ValueError(f"--coordinator-address needs {' and '.join(missing)} too")
        if self.num_processes is not None and not 0 <= (self.process_id or 0) < self.num_processes:
            raise ValueError(f"process_id must be in [0, {self.num_processes}), got {self.process_id}")
        jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})


def _train(name: str, argv: list[str]) -> dict:
    from gendl_jax.train import TrainConfig, train_and_evaluate

    objective = OBJECTIVES[name]

    def run(config, train, cluster):
        cluster.initialize()
        summary = train_and_evaluate(objective, config, train)  # --seeds K > 1: K models vmapped
        if summary:  # processes other than 0 return {}
            print(json.dumps(summary, indent=2))
        return summary

    run.__annotations__ = {
        "config": tyro.conf.OmitArgPrefixes[objective.config_cls],
        "train": tyro.conf.OmitArgPrefixes[TrainConfig],
        "cluster": tyro.conf.OmitArgPrefixes[Cluster],
    }
    run.__defaults__ = (objective.config_cls(), TrainConfig(**objective.train_defaults), Cluster())
    run.__doc__ = f"Train {name} (hyper-parameters first, then the run settings)."
    return tyro.cli(run, args=argv, prog=f"gendl train {name}")


def sample(
    run: tyro.conf.Positional[str],
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 2500,
    seed: int = 0,
    out: str | None = None,
    truncation: float | None = None,
    drs_acceptance: float | None = None,
    ddls_steps: int = 0,
    ddls_step_size: float = 0.01,
    ddls_metropolis: bool = False,
    calibration: int = 10000,
    d_batch_statistics: bool = False,
    label: int | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Draw N samples from the latest checkpoint of RUN (a folder written by `gendl train`).

    GAN and WGAN runs also take --truncation T (latents with |z_i| <= T). GAN runs take discriminator
    rejection sampling (--drs-acceptance A: keep a share A of the proposals) or discriminator-driven
    latent sampling (--ddls-steps K [--ddls-step-size E] [--ddls-metropolis]); both Platt-scale the
    discriminator first on CALIBRATION training examples against as many samples, with D's BatchNorm
    on each batch's own statistics if --d-batch-statistics. The sampler's settings and statistics go to
    OUT with the suffix .json. A class-conditional GAN run draws uniform labels, or only class LABEL with
    --label.
    """
    import jax
    import numpy as np

    from gendl_jax.train import load_run

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    objective, state, record = load_run(run)
    if objective.sample is None:
        raise ValueError(f"{run} was trained as {objective.name}, which has no prior to sample from (use a vae run)")
    guided = drs_acceptance is not None or ddls_steps != 0
    num_classes = getattr(getattr(state, "config", None), "num_classes", 0)
    if label is not None and not (num_classes and 0 <= label < num_classes):
        raise ValueError(f"--label {label}: " + (f"the run's classes are 0..{num_classes - 1}" if num_classes else
                                                 f"{run} is not a class-conditional GAN run"))
    if (guided or truncation is not None) and objective.name not in ("gan", "wgan", "wgan-gp", "wgan-sn"):
        raise ValueError(f"--truncation, --drs-acceptance and --ddls-steps sample GAN runs; {run} is a "
                         f"{objective.name} run")
    if guided and objective.name != "gan":
        raise ValueError(f"--drs-acceptance and --ddls-steps read the discriminator's logit as log p_data / p_g, "
                         f"which a {objective.name} critic is not; {run} is a {objective.name} run")
    if ddls_steps and getattr(state.config, "num_classes", 0):
        raise ValueError(f"--ddls-steps is implemented for unconditional GANs; {run} is class-conditional "
                         f"(num_classes={state.config.num_classes})")
    from gendl_jax import sampling

    sampling.check_sampler_options(truncation=truncation, drs_acceptance=drs_acceptance, ddls_steps=ddls_steps,
                                   ddls_step_size=ddls_step_size)
    path = pathlib.Path(out) if out else pathlib.Path(run) / f"samples_n{n}_seed{seed}.npy"
    key = jax.random.PRNGKey(seed)
    labels = None if label is None else jax.numpy.full((n,), label, jax.numpy.int32)
    if truncation is None and not guided:
        samples = np.asarray(jax.jit(objective.sample, static_argnums=2)(state, key, n,
                                                                         **({} if labels is None else {"labels": labels})))
        info = {"sampler": "plain"}
    else:
        cal = None
        if guided:
            cal = _calibrate(state, record, objective, calibration, seed, d_batch_statistics)
            print(json.dumps({"calibration": dataclasses.asdict(cal)}))
        drawn = sampling.sample_gan(state, jax.random.fold_in(key, 1), n, truncation=truncation, calibration=cal, label=label,
                                    drs_acceptance=drs_acceptance, ddls_steps=ddls_steps,
                                    ddls_step_size=ddls_step_size, ddls_metropolis=ddls_metropolis, progress=progress)
        samples, info = drawn.samples, drawn.info
    np.save(path, samples)
    path.with_suffix(".json").write_text(json.dumps({"run": str(run), "step": int(state.step), "n": n, "seed": seed,
                                                     "label": label, **info}, indent=2))
    print(json.dumps({k: v for k, v in info.items() if k != "calibration"}))
    print(f"wrote {samples.shape} samples to {path}")
    return path


def _calibrate(state, record, objective, n: int, seed: int, batch_statistics: bool):
    """Platt scaling of a GAN run's discriminator on ``n`` training examples (as the run saw them) against
    ``n`` fresh samples."""
    import jax

    from gendl_jax import sampling
    from gendl_jax.data import load_dataset
    from gendl_jax.train.fit import make_iterator

    if n < 2:
        raise ValueError(f"calibration must be >= 2 examples, got {n}")
    dataset = load_dataset(record["train"]["data"], split="train", data_dir=record["train"].get("data_dir"))
    batch = make_iterator(dataset, n, seed + 1, 1, objective.value_range).batch_at(0)
    fake = sampling.sample_gan(state, jax.random.PRNGKey(seed + 2), n)  # in batches
    labels = {"real_labels": batch["y"][0], "fake_labels": fake.labels} if fake.labels is not None else {}
    return sampling.calibrate_discriminator(state, batch["x"][0], fake.samples, batch_statistics=batch_statistics,
                                            **labels)


def evaluate(
    run: tyro.conf.Positional[str],
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 10000,
    seed: int = 0,
    out: str | None = None,
    classifier_steps: int = 2000,
    geometry_iterations: int = 100,
) -> dict:
    """Score N samples of RUN: MNIST runs get IS, FID, KID, precision/recall, density/coverage, 1-NN, class
    balance, the GQI (and, class-conditional runs, the adversarial accuracy: MLPs trained for CLASSIFIER_STEPS
    Adam steps), the Geometry Score on pixels (GEOMETRY_ITERATIONS landmark draws; 0 skips it) and a
    nearest-neighbour picture (shipped LeNet features); 2-D runs get mode coverage and W1/W2 to the true mixture.
    Writes OUT (default RUN/eval.json)."""
    from gendl_jax.metrics.evaluate import evaluate_run

    result = evaluate_run(run, n=n, seed=seed, out=out, classifier_steps=classifier_steps,
                          geometry_iterations=geometry_iterations)
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    try:
        _dispatch(command, rest)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        # Bad input and stopped runs get one clear line, not a traceback.
        print(f"gendl {command}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _dispatch(command: str, rest: list[str]) -> None:
    if command == "train":
        if not rest or rest[0] not in OBJECTIVES:
            got = f"got {rest[0]!r}" if rest else "got none"
            print(f"gendl train: expected an objective, one of {', '.join(OBJECTIVES)}; {got}", file=sys.stderr)
            raise SystemExit(2)
        _train(rest[0], rest[1:])
    elif command == "sample":
        tyro.cli(sample, args=rest, prog="gendl sample")
    elif command == "eval":
        tyro.cli(evaluate, args=rest, prog="gendl eval")
    elif command == "finetune":
        from gendl_jax.finetune.command import main as finetune

        finetune(rest)
    else:
        print(f"gendl: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
