"""The ``gendl`` command.

    gendl train OBJECTIVE [--data grid25] [--steps N] [--out DIR] [--seed S] [hyper-parameters]
    gendl sample RUN_DIR -n N [--out FILE] [--truncation T] [--drs-acceptance A | --ddls-steps K]
    gendl eval RUN_DIR [--n 10000] [--features lenet|inception]
    gendl fid A B [--inception-weights W] [--dims 2048] [--save-stats]

``gendl train OBJECTIVE --help`` lists the objective's hyper-parameters with their defaults.
Configs are typed dataclasses (:class:`gendl_jax.train.TrainConfig` and the objective's config);
the library itself reads no flags.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Annotated, Literal

import tyro

from gendl_jax.objectives import OBJECTIVES
from gendl_jax.train.cluster import Cluster

USAGE = f"""usage: gendl {{train,sample,eval,fid,finetune}} ...

  gendl train OBJECTIVE [options]   train one of: {", ".join(OBJECTIVES)} (gendl train OBJECTIVE --help)
  gendl sample RUN_DIR -n N         draw new samples from a trained run (gendl sample --help)
  gendl eval RUN_DIR [--n 10000]    score a trained run, write RUN_DIR/eval.json (gendl eval --help)
  gendl fid A B [--inception-weights W]   FID between image folders, arrays or statistics (gendl fid --help)
  gendl finetune --backbone CKPT_OR_FILE [--data digits] [--freeze ...] [--head N]   (gendl finetune --help)
"""


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` (e.g. ``--data``) in ``argv``, None when not given; read before parsing so that
    the defaults shown and used can depend on it (the 2-D toy mixtures have their own)."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _train(name: str, argv: list[str]) -> dict:
    from gendl_jax.train import TrainConfig, run_dir, train_and_evaluate

    objective = OBJECTIVES[name]
    steps = _flag_value(argv, "--steps")
    config_defaults, train_defaults = objective.defaults(
        _flag_value(argv, "--data"), int(steps) if steps and steps.lstrip("-").isdigit() else None
    )

    def run(config, train, cluster):
        cluster.initialize()
        summary = train_and_evaluate(objective, config, train)  # --seeds K > 1: K models vmapped
        if summary:  # processes other than 0 return {}
            print(json.dumps(summary, indent=2))
            out = run_dir(objective.name, train)
            pictures = sorted(out.glob("samples_*.png")) or sorted(out.glob("seed*/samples_*.png"))
            # to stderr: stdout stays one JSON document for scripts
            print(f"run folder: {out}" + (f"\nsamples: {pictures[-1]}" if pictures else ""), file=sys.stderr)
        return summary

    run.__annotations__ = {
        "config": tyro.conf.OmitArgPrefixes[objective.config_cls],
        "train": tyro.conf.OmitArgPrefixes[TrainConfig],
        "cluster": tyro.conf.OmitArgPrefixes[Cluster],
    }
    run.__defaults__ = (config_defaults, TrainConfig(**train_defaults), Cluster())
    run.__doc__ = (
        f"Train {name} (hyper-parameters first, then the run settings). The defaults shown are those "
        f"for the data given with --data ({train_defaults.get('data', TrainConfig.data)} if none)."
    )
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
        raise ValueError(
            f"{run} was trained as {objective.name}, which has no prior to sample from (train a "
            f"generative model: {', '.join(k for k, o in OBJECTIVES.items() if o.sample is not None)})"
        )
    guided = drs_acceptance is not None or ddls_steps != 0
    config = state.config
    num_classes = objective.num_classes(config)
    if label is not None and not (num_classes and 0 <= label < num_classes):
        raise ValueError(
            f"--label {label}: "
            + (
                f"the run's classes are 0..{num_classes - 1}"
                if num_classes
                else f"{run} is not a class-conditional run"
            )
        )
    samplers = objective.samplers(config)
    wanted = [
        (flag, kind)
        for flag, kind, on in (
            ("--truncation", "truncation", truncation is not None),
            ("--drs-acceptance", "drs", drs_acceptance is not None),
            ("--ddls-steps", "ddls", ddls_steps != 0),
        )
        if on
    ]
    for flag, kind in wanted:
        if kind not in samplers:
            why = {
                "truncation": "its samples are not G(z) of a Gaussian latent",
                "drs": "its discriminator's output is not a calibrated log density ratio log p_data / p_g "
                "(a WGAN critic or a hinge discriminator is a score)",
                "ddls": (
                    "DDLS is implemented for unconditional GANs whose discriminator is a log density ratio"
                    + (f"; this run is class-conditional (num_classes={num_classes})" if num_classes else "")
                ),
            }
            raise ValueError(
                f"{flag} cannot sample {run} ({objective.name}): {why[kind]}; "
                f"its samplers: {', '.join(samplers) or 'none'}"
            )
    from gendl_jax import sampling

    sampling.check_sampler_options(
        truncation=truncation, drs_acceptance=drs_acceptance, ddls_steps=ddls_steps, ddls_step_size=ddls_step_size
    )
    path = pathlib.Path(out) if out else pathlib.Path(run) / f"samples_n{n}_seed{seed}.npy"
    key = jax.random.PRNGKey(seed)
    labels = None if label is None else jax.numpy.full((n,), label, jax.numpy.int32)
    if truncation is None and not guided:
        samples = np.asarray(
            jax.jit(objective.sample, static_argnums=2)(state, key, n, **({} if labels is None else {"labels": labels}))
        )
        info = {"sampler": "plain"}
    else:
        cal = None
        if guided:
            cal = _calibrate(state, record, objective, calibration, seed, d_batch_statistics)
            print(json.dumps({"calibration": dataclasses.asdict(cal)}))
        drawn = sampling.sample_gan(
            state,
            jax.random.fold_in(key, 1),
            n,
            truncation=truncation,
            calibration=cal,
            label=label,
            drs_acceptance=drs_acceptance,
            ddls_steps=ddls_steps,
            ddls_step_size=ddls_step_size,
            ddls_metropolis=ddls_metropolis,
            progress=progress,
        )
        samples, info = drawn.samples, drawn.info
    np.save(path, samples)
    path.with_suffix(".json").write_text(
        json.dumps({"run": str(run), "step": int(state.step), "n": n, "seed": seed, "label": label, **info}, indent=2)
    )
    print(json.dumps({k: v for k, v in info.items() if k != "calibration"}))
    print(f"wrote {samples.shape} samples to {path}")
    return path


def _calibrate(state, record, objective, n: int, seed: int, batch_statistics: bool):
    """Platt scaling of a GAN run's discriminator on ``n`` training examples (as the run saw them) against
    ``n`` fresh samples."""
    import jax

    from gendl_jax import sampling
    from gendl_jax.data import load_dataset, make_iterator

    if n < 2:
        raise ValueError(f"calibration must be >= 2 examples, got {n}")
    train = record["train"]
    dataset = load_dataset(
        train["data"], split="train", data_dir=train.get("data_dir"), image_size=train.get("image_size")
    )
    batch = make_iterator(dataset, n, seed + 1, 1, objective.value_range).batch_at(0)
    fake = sampling.sample_gan(state, jax.random.PRNGKey(seed + 2), n)  # in batches
    labels = {"real_labels": batch["y"][0], "fake_labels": fake.labels} if fake.labels is not None else {}
    return sampling.calibrate_discriminator(
        state, batch["x"][0], fake.samples, batch_statistics=batch_statistics, **labels
    )


def evaluate(
    run: tyro.conf.Positional[str],
    n: Annotated[int, tyro.conf.arg(aliases=("-n",))] = 10000,
    seed: int = 0,
    out: str | None = None,
    classifier_steps: int = 2000,
    geometry_iterations: int = 100,
    features: Literal["lenet", "inception"] = "lenet",
    inception_weights: str | None = None,
    inception_preprocessing: Literal["pytorch-fid", "torch-fidelity"] = "pytorch-fid",
    inception_reference: Literal["test", "train"] = "test",
) -> dict:
    """Score N samples of RUN: MNIST runs get IS, FID, KID, precision/recall, density/coverage, 1-NN, class
    balance, the GQI (and, class-conditional runs, the adversarial accuracy: MLPs trained for CLASSIFIER_STEPS
    Adam steps), the Geometry Score on pixels (GEOMETRY_ITERATIONS landmark draws; 0 skips it) and a
    nearest-neighbour picture (shipped LeNet features); 2-D runs get mode coverage and W1/W2 to the true mixture.
    --features inception adds Inception FID, IS, KID and precision/recall/density/coverage for any image data,
    against N images of the INCEPTION_REFERENCE split (weights: --inception-weights or $GENDL_INCEPTION_WEIGHTS).
    Writes OUT (default RUN/eval.json)."""
    from gendl_jax.evaluation import evaluate_run

    result = evaluate_run(
        run,
        n=n,
        seed=seed,
        out=out,
        classifier_steps=classifier_steps,
        geometry_iterations=geometry_iterations,
        features=features,
        inception_weights=inception_weights,
        inception_preprocessing=inception_preprocessing,
        inception_reference=inception_reference,
    )
    print(json.dumps(result, indent=2))
    return result


def fid(
    paths: tyro.conf.Positional[tuple[str, str]],
    inception_weights: str | None = None,
    batch_size: int = 50,
    dims: Literal[64, 192, 768, 2048] = 2048,
    preprocessing: Literal["pytorch-fid", "torch-fidelity"] = "pytorch-fid",
    save_stats: bool = False,
    progress: bool = True,
) -> float | None:
    """FID between two sources, as pytorch-fid computes it; the last line printed is "FID: <value>".

    Each of PATHS is a folder of images (searched recursively), an .npy/.npz array of uint8 images (N, H, W, C),
    or a statistics .npz with mu and sigma. With --save-stats, PATHS are a source and an output .npz: writes the
    source's statistics (pytorch-fid can read them). Weights: --inception-weights or $GENDL_INCEPTION_WEIGHTS
    (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, read without PyTorch)."""
    from gendl_jax.metrics.inception_fid import fid_from_paths, save_source_statistics

    if isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive int, got {batch_size}")
    options = dict(
        weights=inception_weights, dims=dims, batch_size=batch_size, preprocessing=preprocessing, progress=progress
    )
    if save_stats:
        written = save_source_statistics(paths[0], paths[1], **options)
        print(f"wrote the statistics of {paths[0]} to {written}")
        return None
    value = fid_from_paths(paths[0], paths[1], **options)
    print(f"FID: {value!r}")
    return value


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
    elif command == "fid":
        tyro.cli(fid, args=rest, prog="gendl fid")
    elif command == "finetune":
        from gendl_jax.finetune.command import main as finetune

        finetune(rest)
    else:
        print(f"gendl: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
