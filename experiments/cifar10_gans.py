"""DCGAN, WGAN-GP, SNGAN and SNGAN + DiffAugment on CIFAR-10 (32 px), scored with Inception FID and IS.

Each model is trained through the library's fit loop (:func:`gendl_jax.train.train_and_evaluate`; the same run as
``gendl train``), then ``--n-samples`` samples (default 50,000) are scored in the FID Inception
(:mod:`gendl_jax.metrics.inception_features`, weights from ``--inception-weights`` or ``$GENDL_INCEPTION_WEIGHTS``):

* FID (pytorch-fid's: pool3, covariance with N - 1, float64) against the statistics of the **training** images,
  computed once and cached as a statistics ``.npz`` (``--stats-dir``; keyed on the data, the preprocessing and the
  weights' hash), as SN-GAN, WGAN-GP and Mimicry compare;
* IS as torch-fidelity computes it (the 1008 logits without the fc bias, rows shuffled with seed 2020, 10 splits).

The preprocessing defaults to ``torch-fidelity`` (TF 1.x's bilinear resize, what the TF Inception code of the
papers below used); ``--preprocessing pytorch-fid`` gives pytorch-fid's. Every config states the published rows it
should reproduce (:data:`CONFIGS`); the results README puts them next to the measured ones.

    # the real table: CIFAR-10's python tarball or folder under $GENDL_DATA_DIR (or --data-dir), the published
    # weights file (pt_inception-2015-12-05-6726825d.pth), an accelerator
    python experiments/cifar10_gans.py --data cifar10 --inception-weights pt_inception-2015-12-05-6726825d.pth
    python experiments/cifar10_gans.py --models sngan --model-steps sngan=50000      # one row, another budget
    # the path end to end on a CPU, on a synthetic 32 x 32 RGB set (numbers meaningless, the output says so)
    python experiments/cifar10_gans.py --synthetic --steps 2 --base-features 8 --n-samples 64 --batch-size 16

Writes ``cifar10_gans.json`` (one row per model: every number, the config, the command, times and machine) and
``samples_<model>.png`` into ``--out``; run folders (checkpoints) go to ``--runs`` and cached statistics to
``--stats-dir`` (neither committed). A finished run folder is reused, an interrupted one resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time

import jax
import numpy as np

from gendl_jax import plots
from gendl_jax.data import load_dataset
from gendl_jax.metrics.fid import feature_statistics, frechet_distance
from gendl_jax.metrics.inception import inception_score
from gendl_jax.metrics.inception_features import load_inception, load_statistics, save_statistics, to_uint8
from gendl_jax.metrics.inception_fid import TORCH_FIDELITY_SEED
from gendl_jax.objectives import gan, wgan_gp
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

SNGAN_ADAM = {"g_learning_rate": 2e-4, "d_learning_rate": 2e-4, "beta1": 0.0, "beta2": 0.9}
"""Adam(2e-4, beta1 = 0, beta2 = 0.9): Miyato et al. 2018's setting for the ResNet on CIFAR-10 (and Gulrajani et al.
2017's for their ResNet), used by Mimicry for every CIFAR-10 baseline."""
SNGAN = gan.GANConfig(
    model="resnet",
    spectral_norm=True,
    discriminator_loss="hinge",
    generator_loss="hinge",
    d_steps=5,
    lr_decay_steps=-1,
    **SNGAN_ADAM,
)


@dataclasses.dataclass(frozen=True)
class Published:
    """A published row: what it reports, where, and how it was measured."""

    source: str
    inception_score: str | None
    fid: str | None
    protocol: str
    verified: str
    """How the number was checked here ("not verified" when it was not)."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    objective: str
    config: object
    steps: int
    """Generator updates of the real run."""
    description: str
    published: tuple[Published, ...]


MIMICRY = "Lee & Town 2020 (Mimicry), CIFAR-10 baselines"
MIMICRY_PROTOCOL = (
    "ResNet (G 256 / D 128 channels), batch 64, Adam(2e-4, 0, 0.9), n_dis 5, 100K G steps, linear decay; "
    "FID of 50K samples against 50K train images, IS of 50K samples in 10 splits (TF Inception)"
)
MIMICRY_CHECKED = "the Mimicry README (github.com/kwotsin/mimicry), read through the search tool"

CONFIGS: dict[str, Experiment] = {
    "dcgan": Experiment(
        "gan",
        gan.GANConfig(model="dcgan", base_features=64, generator_loss="non-saturating"),
        100_000,
        "DCGAN (Radford et al. 2016): the library's DCGAN networks at 32 px (G 4x4x256 -> 32x32x3 with BatchNorm, "
        "D with LeakyReLU 0.2), non-saturating loss, Adam(2e-4, 0.5, 0.999), one D step per G step, batch 64.",
        (
            Published(
                "Gulrajani et al. 2017, Table 3 (unsupervised CIFAR-10), quoting Huang et al. 2017",
                "6.16 ± .07",
                None,
                "IS only; the DCGAN of Huang et al.'s SGAN paper, OpenAI's IS code",
                "the WGAN-GP paper's Table 3 text found through the search tool (find_string)",
            ),
            Published(
                "Kurach et al. 2019 (A Large-Scale Study on Regularization and Normalization in GANs), as quoted by "
                "Mimicry's reproducibility table (Mimicry's own reproduction: 28.95 ± 0.42)",
                None,
                "28.12",
                "FID of 10K samples against 10K real images; Kurach et al.'s DCGAN-style networks, not this one",
                "through " + MIMICRY_CHECKED + "; the paper itself not verified",
            ),
        ),
    ),
    "wgan-gp": Experiment(
        "wgan-gp",
        wgan_gp.WGANGPConfig(model="resnet", n_critic=5, gp_weight=10.0, lr_decay_steps=-1, **SNGAN_ADAM),
        100_000,
        "WGAN-GP (Gulrajani et al. 2017) with the SNGAN ResNet networks of the library at the default width (G 256 / "
        "critic 128 channels, no normalisation in the critic), lambda 10, n_critic 5, Adam(2e-4, 0, 0.9) decayed "
        "linearly to 0, batch 64. Gulrajani et al.'s own ResNet has 128 channels in both networks.",
        (
            Published(
                "Gulrajani et al. 2017, Table 3, 'WGAN-GP ResNet (ours)', unsupervised",
                "7.86 ± .07",
                None,
                "their ResNet (128 channels), 100K G steps (200K in some versions of their code; not verified), "
                "OpenAI's IS code on 50K samples",
                "the paper's Table 3 text found through the search tool (find_string); also on Papers with Code",
            ),
            Published(
                "Heusel et al. 2017 (TTUR), as quoted by Mimicry's reproducibility table",
                None,
                "29.3",
                "FID of 50K samples against 50K real images (Mimicry: best FID reported at 53K steps)",
                "through " + MIMICRY_CHECKED + " and Papers with Code's WGAN-GP entry (FID 29.3); the TTUR paper "
                "itself not verified",
            ),
            Published(
                MIMICRY + ", WGAN-GP 32 x 32",
                "7.33 ± 0.02",
                "22.29 ± 0.06",
                MIMICRY_PROTOCOL,
                MIMICRY_CHECKED,
            ),
        ),
    ),
    "sngan": Experiment(
        "gan",
        SNGAN,
        100_000,
        "SN-GAN (Miyato et al. 2018): the ResNet generator and discriminator of their Appendix B at 32 px (G 256 / D "
        "128 channels), spectral normalisation of every D weight, hinge loss, Adam(2e-4, 0, 0.9), n_dis 5, batch 64, "
        "both learning rates decayed linearly to 0 (Mimicry's schedule).",
        (
            Published(
                "Miyato et al. 2018, Table 2, SN-GANs (ResNet), unsupervised CIFAR-10",
                "8.22 ± .05",
                "21.7 ± .21",
                "FID of 5K samples against 10K real images (as Mimicry reports the paper's protocol), IS of 50K "
                "samples; TF Inception",
                "Papers with Code's entry for the paper (IS 8.22, FID 21.7), Mimicry's reproducibility table (21.7 "
                "± 0.21 with 10K real / 5K fake) and Song & Ermon 2019's Table 1 (8.22 ± .05, 21.7), all through the "
                "search tool; the SN-GAN paper's own text not read",
            ),
            Published(
                "Miyato et al. 2018, Table 2, SN-GANs (standard CNN)",
                "7.42 ± .08",
                "29.3",
                "the paper's standard CNN, not the ResNet trained here; listed for the CNN-vs-ResNet gap",
                "one third-party summary found through the search tool; not checked against the paper",
            ),
            Published(MIMICRY + ", SNGAN 32 x 32", "7.97 ± 0.06", "16.77 ± 0.04", MIMICRY_PROTOCOL, MIMICRY_CHECKED),
        ),
    ),
    "sngan-diffaug": Experiment(
        "gan",
        dataclasses.replace(SNGAN, augment="translation,cutout,color"),
        100_000,
        "The SNGAN above with DiffAugment (Zhao et al. 2020): translation, cutout and color, the same differentiable "
        "augmentation of real and fake images before D in every D and G update.",
        (
            Published(
                "Zhao et al. 2020 publish no SN-GAN row on CIFAR-10; their closest: BigGAN (class-conditional) on "
                "100% of CIFAR-10, FID 9.59 -> 8.70 and IS 9.06 -> 9.16 with DiffAugment",
                "9.16 (BigGAN + DiffAugment)",
                "8.70 (BigGAN + DiffAugment)",
                "BigGAN-CIFAR, 'is10k' / 'fid10k' (10K samples) in the authors' README; an effect size to compare "
                "the sngan -> sngan-diffaug change with, not a row this model should reach",
                "the DiffAugment-biggan-cifar README (github.com/mit-han-lab/data-efficient-gans), read through the "
                "search tool; an SN-GAN + DiffAugment CIFAR-10 row: not verified (none found)",
            ),
        ),
    ),
}
"""Name -> experiment. Every real run: batch 64, seed 0, images in [-1, 1], ``lr_decay_steps=-1`` meaning "decay to
0 over the run's steps"."""


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 32, 32, 3) structured RGB images: a smooth two-colour gradient background with one or two
    coloured discs, squares or stripe patches on it; deterministic in ``seed``. A stand-in for CIFAR-10 so that the
    whole path (data, training, sampling, Inception scoring) runs on a CPU; nothing about CIFAR-10 is learnt."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31.0
    out = np.empty((n, 32, 32, 3), np.float32)
    for i in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.0) / 2.0
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = (1 - t)[..., None] * c0 + t[..., None] * c1
        for _ in range(rng.integers(1, 3)):
            kind = rng.integers(3)
            cy, cx = rng.uniform(6, 26, 2)
            r = rng.uniform(3, 9)
            if kind == 0:
                mask = (yy * 31 - cy) ** 2 + (xx * 31 - cx) ** 2 <= r**2
            elif kind == 1:
                mask = (np.abs(yy * 31 - cy) <= r) & (np.abs(xx * 31 - cx) <= r)
            else:
                box = (np.abs(yy * 31 - cy) <= r) & (np.abs(xx * 31 - cx) <= r)
                mask = box & (np.floor((xx * 31 + yy * 31) / 3) % 2 == 0)
            img[mask] = rng.uniform(0, 1, 3)
        out[i] = img
    out += rng.normal(0, 0.02, out.shape)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def data_source(args) -> tuple[str, str]:
    """(what ``TrainConfig.data`` / ``load_dataset`` read, the name the results give it)."""
    if not args.synthetic:
        return args.data, args.data
    path = pathlib.Path(args.runs) / f"synthetic32-n{args.synthetic_n}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, synthetic_images(args.synthetic_n))
    return str(path), f"synthetic32-n{args.synthetic_n}"


def model_config(name: str, args):
    exp = CONFIGS[name]
    config = exp.config
    if args.base_features is not None:
        config = dataclasses.replace(config, base_features=args.base_features)
    if config.lr_decay_steps == -1:
        config = dataclasses.replace(config, lr_decay_steps=model_steps(name, args))
    return exp.objective, config


def model_steps(name: str, args) -> int:
    return args.model_steps.get(name, args.steps if args.steps is not None else CONFIGS[name].steps)


def train_model(name: str, args, data: str) -> tuple[pathlib.Path, dict]:
    """Trains one model (or reuses its finished run folder, or resumes it); returns the folder and its summary."""
    objective, config = model_config(name, args)
    steps = model_steps(name, args)
    width = "" if args.base_features is None else f"-w{args.base_features}"
    tag = "synthetic" if args.synthetic else _file_name(args.data)
    run = pathlib.Path(args.runs) / f"{name}-{tag}{width}-b{args.batch_size}-seed{args.seed}-steps{steps}"
    summary_path = run / "train_summary.json"
    if summary_path.is_file():
        return run, json.loads(summary_path.read_text())
    summary = train_and_evaluate(
        objective,
        config,
        TrainConfig(
            data=data,
            data_dir=args.data_dir,
            steps=steps,
            batch_size=args.batch_size,
            seed=args.seed,
            out=str(run),
            log_every=min(steps, 100),
            sample_every=0,
            checkpoint_every=min(steps, 5000),
            n_samples=min(args.n_samples, 2500),
            progress=args.progress,
            resume=True,
        ),
    )
    summary_path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({"trained": name, "steps": steps, "train_seconds": summary.get("train_seconds")}), flush=True)
    return run, summary


def reference_statistics(extractor, data: str, data_name: str, args) -> dict:
    """mu / sigma (pool3) and the IS of the training images, computed once and cached in ``--stats-dir``."""
    stats_dir = pathlib.Path(args.stats_dir)
    stem = f"{_file_name(data_name)}-train-{extractor.preprocessing}-{extractor.weights_sha256[:8] or 'arrays'}"
    path, meta_path = stats_dir / f"{stem}.npz", stats_dir / f"{stem}.json"
    if path.is_file() and meta_path.is_file():
        mu, sigma = load_statistics(path)
        return {"mu": mu, "sigma": sigma, **json.loads(meta_path.read_text()), "path": str(path), "cached": True}
    train = load_dataset(data, split="train", data_dir=args.data_dir)
    start = time.perf_counter()
    feats = extractor.features(
        train.images, ("2048", "logits_unbiased"), batch_size=args.inception_batch_size, progress=args.progress
    )
    mu, sigma = feature_statistics(feats["2048"], "reference Inception features")
    is_mean, is_std = inception_score(feats["logits_unbiased"], 10, from_logits=True, shuffle_seed=TORCH_FIDELITY_SEED)
    meta = {
        "n": len(train),
        "inception_is": is_mean,
        "inception_is_std": is_std,
        "seconds": time.perf_counter() - start,
    }
    stats_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # a statistics file without its metadata: written again
    save_statistics(path, mu, sigma)
    meta_path.write_text(json.dumps(meta, indent=2))
    return {"mu": mu, "sigma": sigma, **meta, "path": str(path), "cached": False}


def generate(state, obj, n: int, seed: int, chunk: int) -> np.ndarray:
    """``n`` uint8 samples (n, 32, 32, 3), drawn ``chunk`` at a time with keys folded from ``seed``."""
    sample = jax.jit(obj.sample, static_argnums=2)
    parts = []
    for i, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        x = np.asarray(sample(state, jax.random.fold_in(jax.random.PRNGKey(seed), i), m))
        parts.append(to_uint8(x, obj.value_range))
    return np.concatenate(parts)


def score(extractor, samples: np.ndarray, reference: dict, args) -> dict:
    start = time.perf_counter()
    feats = extractor.features(
        samples, ("2048", "logits_unbiased"), batch_size=args.inception_batch_size, progress=args.progress
    )
    features_seconds = time.perf_counter() - start
    mu, sigma = feature_statistics(feats["2048"], "sample Inception features")
    is_mean, is_std = inception_score(feats["logits_unbiased"], 10, from_logits=True, shuffle_seed=TORCH_FIDELITY_SEED)
    return {
        "inception_fid": frechet_distance(reference["mu"], reference["sigma"], mu, sigma),
        "inception_is": is_mean,
        "inception_is_std": is_std,
        "features_seconds": features_seconds,
        "score_seconds": time.perf_counter() - start,
    }


def command_line(args) -> str:
    parts = ["python experiments/cifar10_gans.py", "--models", *args.models]
    if args.synthetic:
        parts += ["--synthetic", "--synthetic-n", str(args.synthetic_n)]
    else:
        parts += ["--data", args.data]
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    if args.model_steps:
        parts += ["--model-steps", *(f"{k}={v}" for k, v in args.model_steps.items())]
    if args.base_features is not None:
        parts += ["--base-features", str(args.base_features)]
    parts += ["--batch-size", str(args.batch_size), "--seed", str(args.seed), "--n-samples", str(args.n_samples)]
    parts += ["--preprocessing", args.preprocessing, "--out", args.out]
    return " ".join(parts)


def main(args) -> None:
    started = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, data_name = data_source(args)
    extractor = load_inception(args.inception_weights, preprocessing=args.preprocessing)  # fails early without it
    meaningless = args.synthetic or not extractor.published_weights
    if meaningless:
        print(
            "NOTE: these FID / IS numbers are meaningless as CIFAR-10 scores: "
            + ("the data is the synthetic set, " if args.synthetic else "")
            + ("" if extractor.published_weights else "the Inception weights are not the published file, ")
            + "so they only show that the path runs end to end.",
            flush=True,
        )
    trained = {name: train_model(name, args, data) for name in args.models}  # all training first
    print(f"trained in {time.perf_counter() - started:.1f} s", flush=True)
    reference = reference_statistics(extractor, data, data_name, args)
    print(f"reference statistics ({'cached' if reference['cached'] else 'computed'}): n {reference['n']}", flush=True)
    results_path = out / "cifar10_gans.json"
    record = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    record["reference"] = {
        "data": f"{data_name}:train",
        "n": reference["n"],
        "inception_is": reference["inception_is"],
        "inception_is_std": reference["inception_is_std"],
        "statistics_file": pathlib.Path(reference["path"]).name,
        "preprocessing": extractor.preprocessing,
        "weights_sha256": extractor.weights_sha256,
        "published_weights": extractor.published_weights,
    }
    record["meaningless"] = meaningless
    record["note"] = (
        "synthetic data and/or unpublished Inception weights: the FID / IS values are meaningless as CIFAR-10 scores"
        if meaningless
        else "CIFAR-10 train statistics, published Inception weights"
    )
    command = command_line(args)
    for name, (run, summary) in trained.items():
        objective, config = model_config(name, args)
        obj, state, _ = load_run(run)
        start = time.perf_counter()
        samples = generate(state, obj, args.n_samples, args.seed + 7, args.sample_chunk)
        sample_seconds = time.perf_counter() - start
        plots.image_grid(
            samples[:100], out / f"samples_{name}.png", value_range=(0, 255), title=f"{name}, {summary['steps']} steps"
        )
        row = score(extractor, samples, reference, args)
        steps = int(summary["steps"])
        record["rows"][name] = {
            "model": name,
            "command": command,
            "data": data_name,
            "objective": objective,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
            "description": CONFIGS[name].description,
            "steps": steps,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "train_seconds": summary["train_seconds"],
            "compile_seconds": summary.get("compile_seconds"),
            "steps_per_second": steps / max(summary["train_seconds"], 1e-9),
            "n_samples": args.n_samples,
            "sample_seconds": sample_seconds,
            **row,
            "reference": record["reference"]["data"],
            "reference_n": reference["n"],
            "preprocessing": extractor.preprocessing,
            "meaningless": meaningless,
            "published": [dataclasses.asdict(p) for p in CONFIGS[name].published],
            "device": jax.devices()[0].device_kind,
            "jax": jax.__version__,
            "host": platform.node(),
        }
        printed = {k: v for k, v in record["rows"][name].items() if k not in ("config", "published", "description")}
        print(json.dumps(printed), flush=True)
        results_path.write_text(json.dumps(record, indent=2))
    record["wall_seconds"] = time.perf_counter() - started
    results_path.write_text(json.dumps(record, indent=2))
    print(f"done in {record['wall_seconds']:.1f} s", flush=True)
    if meaningless:
        print("NOTE: meaningless numbers (see above): synthetic data or unpublished Inception weights.", flush=True)


def _file_name(text: str) -> str:
    """``text`` (a data name or path) as a file-name part."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


def _name_steps(text: str) -> tuple[str, int]:
    name, _, steps = text.partition("=")
    if name not in CONFIGS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL=STEPS with MODEL in {list(CONFIGS)}, got {text!r}")
    return name, int(steps)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--data", default="cifar10", help="cifar10 (under --data-dir / $GENDL_DATA_DIR) or a path")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--synthetic", action="store_true", help="a synthetic 32 x 32 RGB set instead of --data")
    p.add_argument("--synthetic-n", type=int, default=300, help="images in the synthetic set (90%% train)")
    p.add_argument("--steps", type=int, default=None, help="G steps of every model (default: each config's)")
    p.add_argument("--model-steps", type=_name_steps, nargs="*", default=[], metavar="MODEL=STEPS")
    p.add_argument("--base-features", type=int, default=None, help="network width of every model (default: each's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-samples", type=int, default=50_000, help="samples scored per model")
    p.add_argument("--sample-chunk", type=int, default=1000, help="samples drawn per generator call")
    p.add_argument("--inception-weights", default=None, help="default: $GENDL_INCEPTION_WEIGHTS")
    p.add_argument("--preprocessing", default="torch-fidelity", choices=["torch-fidelity", "pytorch-fid"])
    p.add_argument("--inception-batch-size", type=int, default=200)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.add_argument("--out", default="experiments/results/cifar10_gans")
    p.add_argument("--runs", default="runs/cifar10_gans")
    p.add_argument("--stats-dir", default="runs/cifar10_gans/stats")
    args = p.parse_args(argv)
    args.model_steps = dict(args.model_steps)
    return args


if __name__ == "__main__":
    main(parse_args())
