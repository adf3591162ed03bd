"""Mode collapse on the 2-D toy mixtures: GAN (saturating), NS-GAN, WGAN, WGAN-GP and WGAN-SN on the ring of
8 Gaussians and the 5x5 grid, over several seeds, scored by the PacGAN protocol (Lin et al. 2018,
Table 1): modes covered, high-quality samples (%), reverse KL of the mode histogram; for the WGANs also
the trained critic's mean input-gradient norm at data points and at samples (1 for a tight 1-Lipschitz
critic).

    python experiments/toy_mode_collapse.py                 # the full table (5 seeds)
    python experiments/toy_mode_collapse.py --gan-steps 200 --wgan-steps 100 --wgan-gp-steps 100 --seeds 2 --out /tmp/toy   # a smoke run

Budgets: the GANs make GAN_STEPS[data] generator updates (one discriminator update each): 3,000 on
the ring, 12,000 on the grid, whose 25 modes need the longer run to shed the bridges between modes
(3,000 steps gave 75% high-quality samples there; on the ring 12,000 steps lose modes, 7.2-7.6 of 8).
WGAN and WGAN-SN make WGAN_STEPS generator updates with five critic updates each, so a WGAN step
costs about five GAN steps. WGAN-GP runs with the toy defaults of ``gendl train wgan-gp``
(:data:`gendl_jax.objectives.wgan_gp.TOY_CONFIG`: MLPs 3 x 128, Adam 2e-3, n_critic 2, 20,000 updates).
``--gan-steps`` / ``--wgan-steps`` / ``--wgan-gp-steps`` override them for every dataset.

All seeds of one (objective, dataset) pair train together: the pure step is vmapped over a leading
axis of states, so one compiled program trains 5 models. Writes ``results.json``, ``table.md`` and
``scatter.png`` (seed 0 of each pair) into ``--out``.

Published rows to compare with (PacGAN Table 1, their architecture and budget): GAN ring
6.3 modes / 98.2% / rKL 0.45; GAN grid 17.3 / 94.8% / 0.70; PacGAN4 grid 24.8 / 93.6% / 0.04.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax import plots
from gendl_jax.data import load_dataset
from gendl_jax.metrics import mode_coverage
from gendl_jax.objectives import adversarial, gan, get_objective, wgan, wgan_gp, wgan_sn
from gendl_jax.train.sweep import mean_and_stderr, train_seeds, unstack

HIDDEN = (256, 256, 256)
LATENT = 2
GAN_STEPS = {"ring8": 3_000, "grid25": 12_000}
WGAN_STEPS = 3_000


def configs(gan_steps: int, wgan_steps: int, wgan_gp_steps: int = wgan_gp.TOY_STEPS) -> dict:
    """name -> (objective, config, generator steps). Shared: MLPs 3 x 256 (ReLU generator, LeakyReLU(0.2)
    discriminator for the GANs), latent 2, learning rates decayed linearly to 0 over the run. The GANs
    use Adam(1e-3, 0.5); WGAN keeps Arjovsky et al.'s RMSProp and clipping 0.01 with a larger rate
    (2e-4 instead of 5e-5, which barely moves in this budget); WGAN-GP uses lambda = 0.1, Gulrajani et
    al.'s own choice for their toy experiments, with the toy defaults of ``gendl train wgan-gp`` (MLPs 3 x 128,
    Adam(2e-3, 0.5, 0.9), n_critic 2, ``wgan_gp_steps`` updates); WGAN-SN (spectrally normalised critic,
    Miyato et al. 2018) has Adam(5e-4, 0.5, 0.9) and no penalty.
    """
    common = dict(hidden=HIDDEN, latent_dim=LATENT)
    gan_common = dict(
        d_activation="leaky_relu", g_learning_rate=1e-3, d_learning_rate=1e-3, lr_decay_steps=gan_steps, **common
    )
    wgan_common = dict(lr_decay_steps=wgan_steps, **common)
    return {
        "GAN (saturating)": ("gan", gan.GANConfig(generator_loss="saturating", **gan_common), gan_steps),
        "NS-GAN": ("gan", gan.GANConfig(generator_loss="non-saturating", **gan_common), gan_steps),
        "WGAN (clip)": ("wgan", wgan.WGANConfig(g_learning_rate=2e-4, d_learning_rate=2e-4, **wgan_common), wgan_steps),
        "WGAN-GP": (
            "wgan-gp",
            wgan_gp.WGANGPConfig(
                **{**wgan_gp.TOY_CONFIG, "lr_decay_steps": wgan_gp_steps}, gp_weight=0.1, latent_dim=LATENT
            ),
            wgan_gp_steps,
        ),
        "WGAN-SN": (
            "wgan-sn",
            wgan_sn.WGANSNConfig(g_learning_rate=5e-4, d_learning_rate=5e-4, **wgan_common),
            wgan_steps,
        ),
        **family_configs(gan_common, gan_steps, wgan_gp_steps),
    }


R1_GAMMA = 0.1
"""gamma of the toy R1 / R2 rows: a pilot on the ring (one seed, 3,000 steps, gamma in {0.1, 1, 10}) chose the
smallest, 0.1 (high-quality share 92 / 88 / 77% with R1, 90 / 87 / 70% with R2; see the results README)."""
DRAGAN_LAMBDA = 0.1
"""lambda of the toy DRAGAN row: the same pilot (lambda in {0.1, 1, 10}) gave 94 / 85 / 0% high-quality samples;
Kodali et al.'s default, 10, collapses on the toys and has its own row."""
LAZY_EVERY = 16
"""k of the lazy R1 row: StyleGAN2's interval for R1."""


def family_configs(gan_common: dict, gan_steps: int, wgan_gp_steps: int) -> dict:
    """The GAN-family options of the library (issue 29) as rows at the budget of the rows they modify: NS-GAN with
    R1, R2 (gamma :data:`R1_GAMMA`), DRAGAN (lambda :data:`DRAGAN_LAMBDA`) or lazy R1 (every
    :data:`LAZY_EVERY`-th update, k x gamma), and DRAGAN at Kodali et al.'s lambda = 10; the least-squares GAN (both losses, Mao et al. 2017); NS-GAN computed in
    bfloat16; WGAN-GP with the one-sided penalty max(0, ||grad|| - 1)^2. AC-GAN needs labels (the toys have none);
    DiffAugment and the ResNet networks need images: they are rows of the MNIST table only."""
    ns = dict(generator_loss="non-saturating", **gan_common)
    return {
        "NS-GAN + R1": ("gan", gan.GANConfig(r1_weight=R1_GAMMA, **ns), gan_steps),
        "NS-GAN + R2": ("gan", gan.GANConfig(r2_weight=R1_GAMMA, **ns), gan_steps),
        "NS-GAN + DRAGAN": ("gan", gan.GANConfig(dragan_weight=DRAGAN_LAMBDA, **ns), gan_steps),
        "NS-GAN + DRAGAN (lambda 10)": ("gan", gan.GANConfig(dragan_weight=10.0, **ns), gan_steps),
        f"NS-GAN + lazy R1 (k={LAZY_EVERY})": (
            "gan",
            gan.GANConfig(r1_weight=R1_GAMMA, penalty_every=LAZY_EVERY, **ns),
            gan_steps,
        ),
        "LSGAN": (
            "gan",
            gan.GANConfig(discriminator_loss="least-squares", **{**ns, "generator_loss": "least-squares"}),
            gan_steps,
        ),
        "NS-GAN bfloat16": ("gan", gan.GANConfig(precision="bfloat16", **ns), gan_steps),
        "WGAN-GP one-sided": (
            "wgan-gp",
            wgan_gp.WGANGPConfig(
                **{**wgan_gp.TOY_CONFIG, "lr_decay_steps": wgan_gp_steps},
                gp_weight=0.1,
                gp_one_sided=True,
                latent_dim=LATENT,
            ),
            wgan_gp_steps,
        ),
    }


@jax.jit
def _mean_critic_gradient_norm(state, x):
    return wgan_gp.per_sample_gradient_norms(lambda x: adversarial.discriminate(state, x), x).mean()


def critic_gradient_norm(state, x) -> float:
    """Mean ||grad_x f(x)|| of the trained critic over the points x (n, 2): 1 where the critic is a
    tight 1-Lipschitz function (WGAN-GP's target), much less where its constraint holds it flat."""
    return float(_mean_critic_gradient_norm(state, np.asarray(x, np.float32)))


def _pm(mean_stderr, fmt: str, scale: float = 1.0) -> str:
    """'mean ± stderr' of a (mean, stderr or None) pair, 'mean' alone when there is no stderr (one seed)."""
    mean, stderr = mean_stderr
    return f"{scale * mean:{fmt}}" + ("" if stderr is None else f" ± {scale * stderr:{fmt}}")


def run(
    gan_steps: int | None,
    wgan_steps: int,
    seeds: list[int],
    batch_size: int,
    n_samples: int,
    datasets: list[str],
    out: pathlib.Path,
    only: list[str] | None = None,
    wgan_gp_steps: int = wgan_gp.TOY_STEPS,
):
    out.mkdir(parents=True, exist_ok=True)
    results, scatters = _previous_rows(out, only, seeds, batch_size, n_samples)
    for data_name in datasets:
        dataset = load_dataset(data_name)
        dist = dataset.distribution
        data_gan_steps = gan_steps or GAN_STEPS.get(data_name, max(GAN_STEPS.values()))
        for label, (objective, config, steps) in configs(data_gan_steps, wgan_steps, wgan_gp_steps).items():
            if only and label not in only:
                continue
            obj = get_objective(objective)
            states, info = train_seeds(
                obj, config, dataset, seeds, steps=steps, batch_size=batch_size, desc=f"{label} {data_name}"
            )
            per_seed = []
            for i, seed in enumerate(seeds):
                state = unstack(states, i)
                samples = np.asarray(
                    jax.jit(obj.sample, static_argnums=2)(state, jax.random.PRNGKey(10_000 + seed), n_samples)
                )
                per_seed.append(mode_coverage(samples, dist.modes, dist.std))
                if objective.startswith("wgan"):
                    real = dist.sample(np.random.default_rng([20_000, seed]), n_samples)
                    per_seed[-1]["critic_grad_norm_data"] = critic_gradient_norm(state, real)
                    per_seed[-1]["critic_grad_norm_samples"] = critic_gradient_norm(state, samples)
                if i == 0:
                    scatters[(label, data_name)] = samples
            row = {
                "objective": label,
                "data": data_name,
                "steps": steps,
                "config": dataclasses.asdict(config),
                "per_seed": per_seed,
                "compile_seconds": info["compile_seconds"],
                "train_seconds": info["train_seconds"],
            }
            for key in ("modes", "high_quality", "reverse_kl", "critic_grad_norm_data", "critic_grad_norm_samples"):
                if key in per_seed[0]:
                    row[key] = mean_and_stderr([r[key] for r in per_seed])
            results = [r for r in results if (r["objective"], r["data"]) != (label, data_name)] + [row]
            print(
                f"{label:18s} {data_name:7s} modes {_pm(row['modes'], '5.2f')}  "
                f"HQ {100 * row['high_quality'][0]:5.1f}%  rKL {row['reverse_kl'][0]:.3f}  "
                f"({info['train_seconds']:.0f} s)",
                flush=True,
            )
            results.sort(key=lambda r: (r["data"] != "ring8", list(configs(1, 1)).index(r["objective"])))
            (out / "results.json").write_text(
                json.dumps(
                    {"seeds": seeds, "batch_size": batch_size, "n_samples": n_samples, "results": results}, indent=2
                )
            )
            np.savez(out / "samples_seed0.npz", **{f"{k[0]}|{k[1]}": v for k, v in scatters.items()})
    write_table(results, out / "table.md", seeds, batch_size)
    write_scatter(scatters, sorted({d for _, d in scatters}, key=lambda d: d != "ring8"), out / "scatter.png")
    return results


def _previous_rows(out: pathlib.Path, only, seeds, batch_size, n_samples) -> tuple[list, dict]:
    """Rows and seed-0 samples of an earlier run in ``out``, kept when ``--objectives`` reruns a subset."""
    if not only or not (out / "results.json").is_file():
        return [], {}
    previous = json.loads((out / "results.json").read_text())
    settings = {"seeds": seeds, "batch_size": batch_size, "n_samples": n_samples}
    if any(previous.get(k) != v for k, v in settings.items()):
        raise SystemExit(
            f"{out}/results.json was made with other settings "
            f"({ {k: previous.get(k) for k in settings} }); rerun every row or choose another --out"
        )
    samples = {}
    if (out / "samples_seed0.npz").is_file():
        with np.load(out / "samples_seed0.npz") as f:
            samples = {tuple(k.split("|")): f[k] for k in f.files}
    return previous["results"], samples


def write_table(results, path, seeds, batch_size):
    lines = [
        f"Toy mode collapse, {len(seeds)} seeds, batch {batch_size}, MLPs {len(HIDDEN)} x {HIDDEN[0]} "
        f"(WGAN-GP: its toy defaults, 3 x {wgan_gp.TOY_CONFIG['hidden'][0]}), "
        f"latent {LATENT}; mean ± standard error over seeds; 2,500 samples per seed.",
        "",
        "| objective | data | generator steps | modes | high-quality % | reverse KL | critic ‖∇f‖ data / samples "
        "| train s (all seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        grad = (
            f"{r['critic_grad_norm_data'][0]:.3g} / {r['critic_grad_norm_samples'][0]:.3g}"
            if "critic_grad_norm_data" in r
            else "-"
        )
        lines.append(
            f"| {r['objective']} | {r['data']} | {r['steps']} | {_pm(r['modes'], '.1f')} | "
            f"{_pm(r['high_quality'], '.1f', 100)} | {_pm(r['reverse_kl'], '.3f')} | {grad} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "PacGAN Table 1: GAN ring 6.3 / 98.2% / 0.45; GAN grid 17.3 / 94.8% / 0.70; PacGAN4 grid 24.8 / 93.6% / 0.04.",
    ]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_scatter(scatters, datasets, path):
    labels = list(dict.fromkeys(label for label, _ in scatters))
    fig, axes = plt.subplots(
        len(datasets), len(labels), figsize=(3 * len(labels), 3 * len(datasets)), dpi=110, squeeze=False
    )
    for r, data_name in enumerate(datasets):
        modes = load_dataset(data_name).distribution.modes
        for c, label in enumerate(labels):
            if (label, data_name) not in scatters:
                axes[r, c].set_axis_off()
                continue
            plots.scatter_with_modes(
                scatters[(label, data_name)], modes, None, title=f"{label}, {data_name}", ax=axes[r, c]
            )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--gan-steps",
        type=int,
        default=None,
        help=f"generator steps of the two GANs on every dataset (default: {GAN_STEPS})",
    )
    parser.add_argument("--wgan-steps", type=int, default=WGAN_STEPS, help="generator steps of WGAN and WGAN-SN")
    parser.add_argument(
        "--wgan-gp-steps", type=int, default=wgan_gp.TOY_STEPS, help="generator steps of WGAN-GP (its toy defaults)"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-samples", type=int, default=2500)
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=None,
        help="a subset of the rows, by name: 'GAN (saturating)' NS-GAN 'WGAN (clip)' WGAN-GP",
    )
    parser.add_argument("--out", default="experiments/results/toy_mode_collapse")
    args = parser.parse_args()
    t0 = time.time()
    run(
        args.gan_steps,
        args.wgan_steps,
        list(range(args.seeds)),
        args.batch_size,
        args.n_samples,
        args.data,
        pathlib.Path(args.out),
        args.objectives,
        args.wgan_gp_steps,
    )
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
