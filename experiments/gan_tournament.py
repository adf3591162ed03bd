"""A GAN's training trajectory judged by a tournament of its own snapshots (Olsson et al. 2018) and by NRDS
(Zhang et al. 2018), against FID and IS of the same snapshots.

One model of ``experiments/mnist_gans.py`` (``--model``, default ``dcgan``) is trained on MNIST for ``--steps``
generator steps, keeping ``--snapshots`` checkpoints evenly spaced. Then:

* every snapshot's discriminator plays every snapshot's generator on ``--matches`` samples
  (:func:`gendl_jax.metrics.skill_rating`; each set is judged as one batch, BatchNorm on its own statistics as
  in training), by the threshold rule with the data as a player and by the pairwise rule, rated by Bradley-Terry
  and by Glicko-2 (``--tau``, ``--matches-per-period``; a Glicko-2 run that diverges is recorded as such);
* NRDS (:func:`gendl_jax.learned_metrics.nrds`): one classifier learns real digits against all snapshots' samples;
* the Geometry Score (:func:`gendl_jax.metrics.relative_living_times`, ``--gs-iterations`` landmark draws) of
  each snapshot's ``--n-eval`` samples against as many MNIST test digits, on pixels, and of as many MNIST train
  digits (the real-data floor);
* FID and IS of ``--n-eval`` samples of each snapshot against as many MNIST test digits, with the shipped LeNet.

Spearman's rank correlation between each measure and FID across snapshots says whether the tournament and NRDS
order the trajectory as FID does (Olsson et al. report that the within-trajectory skill rating tracks IS and FID).

    GENDL_DATA_DIR=/path/to/mnist python experiments/gan_tournament.py --steps 6000 --snapshots 12

Writes ``gan_tournament.json``, ``gan_tournament.png`` and the tournament's logits (``logits.npz``: fake_logits
(D, G, m), real_logits (D, m)) into ``--out``; the run folder goes to ``--runs``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from gendl_jax.data import load_dataset
from gendl_jax.learned_metrics import nrds
from gendl_jax.metrics import (
    fid,
    geometry_score_from_rlts,
    inception_score,
    mnist_classifier,
    prepare_images,
    relative_living_times,
    skill_rating,
)
from gendl_jax.objectives import adversarial
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from mnist_gans import MODELS


def train(args) -> tuple[pathlib.Path, list[int]]:
    every = args.steps // args.snapshots
    run = pathlib.Path(args.runs) / f"{args.model}-seed{args.seed}-steps{args.steps}-snapshots{args.snapshots}"
    objective, config = MODELS[args.model]
    if config.lr_decay_steps == -1:
        raise ValueError(f"--model {args.model} decays its learning rate over the run; pick one without decay")
    if not (run / "train_summary.json").is_file():
        summary = train_and_evaluate(
            objective,
            config,
            TrainConfig(
                data="mnist",
                data_dir=args.data_dir,
                steps=args.steps,
                batch_size=64,
                seed=args.seed,
                out=str(run),
                log_every=100,
                sample_every=0,
                checkpoint_every=every,
                keep_checkpoints=args.snapshots,
                n_samples=64,
                progress=True,
                resume=True,
            ),
        )
        (run / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return run, [every * (i + 1) for i in range(args.snapshots)]


def main(args) -> None:
    t0 = time.time()
    run, steps = train(args)
    train_seconds = json.loads((run / "train_summary.json").read_text()).get("train_seconds")
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(test))
    real_eval = test.images[order[: args.n_eval]]
    real_matches = prepare_images(test.images[order[args.n_eval : args.n_eval + args.matches]])
    real_nrds = prepare_images(test.images[order[args.n_eval + args.matches :]])
    states = [load_run(run, step)[1] for step in steps]
    objective = load_run(run, steps[-1])[0]
    samples = [np.asarray(objective.sample(s, jax.random.PRNGKey(1000 + i), args.n_eval)) for i, s in enumerate(states)]

    net = mnist_classifier()
    _real_logits, real_features = net.logits_and_features(real_eval)
    rows = []
    for step, x in zip(steps, samples):
        logits, features = net.logits_and_features(x, value_range=(-1.0, 1.0))
        is_mean, is_std = inception_score(logits, 10, from_logits=True)
        rows.append(
            {
                "step": step,
                "fid": fid(real_features, features),
                "inception_score": is_mean,
                "inception_score_std": is_std,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    discriminate = jax.jit(functools.partial(adversarial.discriminate, batch_statistics=True))
    fake_logits = np.stack(
        [np.stack([np.asarray(discriminate(d, x[: args.matches])) for x in samples]) for d in states]
    )
    d_real = np.stack([np.asarray(discriminate(d, real_matches)) for d in states])
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "logits.npz",
        fake_logits=fake_logits.astype(np.float32),
        real_logits=d_real.astype(np.float32),
        steps=np.asarray(steps),
    )
    names = [str(s) for s in steps]
    tournaments, failures = {}, {}
    for rule in ("threshold", "pairwise"):
        for method in ("bradley-terry", "glicko2"):
            try:
                tournaments[f"{rule}_{method}"] = skill_rating(
                    fake_logits,
                    d_real,
                    rule=rule,
                    method=method,
                    tau=args.tau,
                    matches_per_period=args.matches_per_period,
                    generator_names=names,
                    discriminator_names=names,
                )
            except FloatingPointError as e:  # Glicko-2's volatility ran away: recorded, not hidden
                failures[f"{rule}_{method}"] = str(e)
                print(f"{rule} / {method}: {e}", flush=True)
    # Geometry Score on pixels (as Khrulkov & Oseledets score MNIST): the real MRLT once, then each snapshot's.
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    gs_key = jax.random.PRNGKey(args.seed + 7)
    rlts = functools.partial(relative_living_times, n_iterations=args.gs_iterations)
    real_rlts = rlts(flat(prepare_images(real_eval)), key=gs_key)["rlts"]
    train_digits = load_dataset("mnist", split="train", data_dir=args.data_dir).images
    floor_set = prepare_images(train_digits[rng.choice(len(train_digits), args.n_eval, replace=False)])
    floor_rlts = rlts(flat(floor_set), key=jax.random.fold_in(gs_key, 0))["rlts"]
    floor_gs = geometry_score_from_rlts(real_rlts, floor_rlts)
    snapshot_rlts = [rlts(flat(x), key=jax.random.fold_in(gs_key, i + 1))["rlts"] for i, x in enumerate(samples)]
    nrds_out = nrds(
        real_nrds,
        {n: x[args.matches :] for n, x in zip(names, samples)},
        jax.random.PRNGKey(args.seed),
        epochs=args.nrds_epochs,
    )

    fids = [r["fid"] for r in rows]
    for i, r in enumerate(rows):
        for name, t in tournaments.items():
            r[f"skill_rating_{name}"] = t["generator_rating"][i]
            r[f"skill_deviation_{name}"] = t["generator_deviation"][i]
            r[f"discriminator_rating_{name}"] = t["discriminator_rating"][i]
        for rule in ("threshold", "pairwise"):
            r[f"win_rate_{rule}"] = tournaments[f"{rule}_bradley-terry"]["generator_win_rate"][i]
        r["nrds"] = nrds_out["nrds"][i]
        gs = geometry_score_from_rlts(real_rlts, snapshot_rlts[i])
        r["geometry_score"], r["geometry_score_unbiased"] = gs["score"], gs["score_unbiased"]
    measures = ["inception_score", "win_rate_threshold", "win_rate_pairwise"] + [
        f"skill_rating_{name}" for name in tournaments
    ]
    correlations = {
        m: float(spearmanr([r[m] for r in rows], fids).statistic)
        for m in measures + ["nrds", "geometry_score", "geometry_score_unbiased"]
    }
    record = {
        "command": (
            f"python experiments/gan_tournament.py --model {args.model} --steps {args.steps} --snapshots "
            f"{args.snapshots} --matches {args.matches} --n-eval {args.n_eval} --nrds-epochs "
            f"{args.nrds_epochs} --tau {args.tau} --matches-per-period {args.matches_per_period} "
            f"--gs-iterations {args.gs_iterations} --seed {args.seed} --out {args.out}"
        ),
        "train_seconds": train_seconds,
        "seconds": time.time() - t0,
        "rows": rows,
        "spearman_with_fid": correlations,
        "data_player": {
            name: {"rating": t["generator_rating"][-1], "win_rate": t["generator_win_rate"][-1]}
            for name, t in tournaments.items()
            if t["generator_names"][-1] == "data"
        },
        "tournaments": tournaments,
        "glicko2_failures": failures,
        "nrds": nrds_out,
        "geometry": {
            "floor_mnist_train_vs_test": floor_gs["score"],
            "floor_mnist_train_vs_test_unbiased": floor_gs["score_unbiased"],
            "real_mrlt": real_rlts.mean(axis=0)[:10].tolist(),
            "floor_mrlt": floor_rlts.mean(axis=0)[:10].tolist(),
            "snapshot_mrlt": [r.mean(axis=0)[:10].tolist() for r in snapshot_rlts],
            "n_iterations": args.gs_iterations,
            "note": "MRLT(0..9) shown; the score sums all i_max; *_unbiased: the Monte Carlo bias "
            "(tr Cov RLT_real + tr Cov RLT_fake) / n_iterations removed",
        },
    }
    (out / "gan_tournament.json").write_text(json.dumps(record, indent=2))
    plot(rows, tournaments, out / "gan_tournament.png")
    print(json.dumps({"spearman_with_fid": correlations, "seconds": record["seconds"]}), flush=True)


def plot(rows, tournaments, path) -> None:
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for name in tournaments:
        ax.errorbar(
            steps,
            [r[f"skill_rating_{name}"] for r in rows],
            [r[f"skill_deviation_{name}"] for r in rows],
            label=name.replace("_", ", "),
            capsize=2,
        )
    ax.set_xlabel("training step of the snapshot")
    ax.set_ylabel("generator skill rating (Elo scale)")
    twin = ax.twinx()
    twin.plot(steps, [r["fid"] for r in rows], "k--", label="FID")
    twin.set_ylabel("FID (LeNet features)")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    axes[1].plot(steps, [r["nrds"] for r in rows], "o-", label="NRDS")
    axes[1].set_xlabel("training step of the snapshot")
    axes[1].set_ylabel("NRDS")
    gs_axis = axes[1].twinx()
    gs_axis.plot(steps, [r["geometry_score"] for r in rows], "s--", color="C3", label="Geometry Score (pixels)")
    gs_axis.plot(steps, [r["geometry_score_unbiased"] for r in rows], "^:", color="C4", label="bias-corrected")
    gs_axis.set_ylabel("Geometry Score")
    axes[1].legend(loc="upper left", fontsize=8)
    gs_axis.legend(loc="upper right", fontsize=8)
    win = np.asarray(tournaments["pairwise_bradley-terry"]["win_matrix"])
    im = axes[2].imshow(win, vmin=0, vmax=1, cmap="viridis")
    axes[2].set_xticks(range(len(steps)), steps, rotation=90, fontsize=7)
    axes[2].set_yticks(range(len(steps)), steps, fontsize=7)
    axes[2].set_xlabel("generator snapshot")
    axes[2].set_ylabel("discriminator snapshot")
    axes[2].set_title("share of matches D won (pairwise)", fontsize=9)
    fig.colorbar(im, ax=axes[2])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dcgan", choices=sorted(MODELS))
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--snapshots", type=int, default=12)
    p.add_argument("--matches", type=int, default=1000, help="matches per (discriminator, generator) pair")
    p.add_argument("--n-eval", type=int, default=5000, help="samples per snapshot for FID / IS (and NRDS)")
    p.add_argument("--nrds-epochs", type=int, default=20)
    p.add_argument("--gs-iterations", type=int, default=100, help="Geometry Score: landmark draws per set")
    p.add_argument("--tau", type=float, default=0.2, help="Glicko-2's system constant")
    p.add_argument("--matches-per-period", type=int, default=10, help="Glicko-2: matches per pair and rating period")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", default="runs/gan_tournament")
    p.add_argument("--out", default="experiments/results/gan_tournament")
    main(p.parse_args())
