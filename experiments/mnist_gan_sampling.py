"""Truncation and discriminator rejection sampling on a trained MNIST GAN: what each does to IS, FID,
precision and recall (:mod:`gendl_jax.sampling`).

    python experiments/mnist_gans.py --models dcgan-deepest-d --model-steps dcgan-deepest-d=26000   # the run
    python experiments/mnist_gan_sampling.py runs/mnist_gans/dcgan-deepest-d-seed0-steps26000
    python experiments/mnist_gan_sampling.py runs/mnist_gans/dcgan-deepest-d-seed0-steps26000 --no-plain \
        --truncation --acceptance --refit-steps 0 --ddls-steps 10 30 100

Rows, each ``--n-eval`` samples scored as in ``mnist_gans.py`` (shipped LeNet features, against MNIST
test; ``gendl eval``'s protocol):

* ``plain``: latents from N(0, I), the model's own sampler (the generator's average when it keeps one);
* ``truncation-T``: latents truncated to |z_i| <= T (Brock et al. 2019);
* ``drs-D-MODE-A``: discriminator rejection sampling (Azadi et al. 2019) of the plain sampler, with the
  discriminator's logits Platt-scaled on ``--calibration`` MNIST *train* images against as many fresh
  samples, and DRS's shift gamma solved for a mean acceptance A on a 10,000-proposal burn-in. D is
  ``trained`` (the run's discriminator) or ``refit`` (that one after ``--refit-steps`` more updates against
  the fixed sampler, :func:`gendl_jax.objectives.gan.refit_discriminator_step`); MODE is how its
  BatchNorm normalises: ``inference`` (running averages) or ``batch`` (each batch of 1,000 by its own
  statistics, as in training);
* ``drs-D-MODE-exact``: gamma = 0, the exact rejection sampler under the calibrated ratio (only when its
  burn-in acceptance is at least ``--min-exact-acceptance``);
* ``ddls-D-MODE[-xS]-epsE-T``: discriminator-driven latent sampling (Che et al. 2020): ``--n-eval`` Langevin
  chains from N(0, I) latents on ``N(z; 0, I) exp(S * l(G(z)))``, ``l`` the Platt-scaled logit (S =
  ``--ddls-scale``, 1 is DDLS proper), step size E (``--ddls-step-size``), scored after each T in
  ``--ddls-steps`` (one set of chains, continued; :func:`gendl_jax.sampling.latent_langevin`). With
  ``batch`` BatchNorm, D normalises each batch of 1,000 chains by its own statistics, which couples the
  chains of a batch slightly (each gradient also flows through the batch mean and variance).

A class-conditional run (``cdcgan-*``; uniform labels) gets plain, truncation and DRS rows (trained D,
calibrated with labels, each proposal scored with its own label) with ``label_accuracy``; no refit, no DDLS.

Each row also splits the one-split IS into class balance x confidence
(:func:`gendl_jax.metrics.inception_score_breakdown`). Writes ``mnist_gan_sampling.json``,
``tradeoff.png`` (IS and FID against the share of proposals kept; precision against recall) and
``samples_<row>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

from gendl_jax import plots, sampling
from gendl_jax.data import BatchIterator, load_dataset, map_in_batches
from gendl_jax.evaluation import image_measures, mnist_test_subset
from gendl_jax.metrics import inception_score_breakdown, mnist_classifier
from gendl_jax.metrics.classifier import prepare_images
from gendl_jax.objectives import adversarial, gan
from gendl_jax.train import load_run

BATCH = 1000
"""Images per generator / discriminator call (bounds memory on a CPU)."""


def make_networks(state):
    """Jitted ``propose(key, m)`` (N(0, I) latents) and the discriminator's logits ``{mode: logits(x)}`` of a trained
    adversarial state, with BatchNorm in inference mode (running averages) or on the batch's own
    statistics (as in training, where D saw all-real or all-fake minibatches)."""
    dim = adversarial.latent_dim(state.config, state.data_shape)

    @functools.partial(jax.jit, static_argnums=1)
    def propose(key, m):
        return adversarial.generate(state, sampling.truncated_latents(key, m, dim))

    disc = {
        mode: jax.jit(functools.partial(adversarial.discriminate, state, batch_statistics=mode == "batch"))
        for mode in ("inference", "batch")
    }
    return propose, disc


def draw(state, key, n: int, threshold=None) -> sampling.GanSamples:
    """n samples of the plain (or truncated) sampler, in batches of BATCH (with their labels for a
    class-conditional run)."""
    return sampling.sample_gan(state, key, n, truncation=threshold, batch_size=BATCH)


def score(samples, real, train_images, out: pathlib.Path, name: str, seed: int, labels=None) -> dict:
    plots.image_grid(samples[:100], out / f"samples_{name}.png", title=name)
    row = image_measures(
        samples, real, key=jax.random.PRNGKey(seed + 1), train_images=train_images, sample_labels=labels
    )
    breakdown = inception_score_breakdown(mnist_classifier().logits(samples, value_range=(-1.0, 1.0)))
    row.update({k: breakdown[k] for k in ("class_balance", "confidence", "fraction_below_threshold")})
    return row


def main(args) -> None:
    if any(t < 1 for t in args.ddls_steps) or args.ddls_step_size <= 0:
        raise SystemExit(
            f"--ddls-steps must be positive ints and --ddls-step-size > 0, got {args.ddls_steps} and "
            f"{args.ddls_step_size}"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, state, record = load_run(args.run)
    if record["train"]["data"] != "mnist" or record["objective"] != "gan":
        raise SystemExit(
            f"{args.run}: expected a GAN run on mnist (DRS reads the discriminator's logit as "
            f"log p_data / p_g; a WGAN critic is no such estimate), got {record['objective']} on "
            f"{record['train']['data']}"
        )
    propose, disc = make_networks(state)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    real = test.images[mnist_test_subset(args.n_eval, args.seed)]
    key = jax.random.PRNGKey(args.seed)
    command = "python experiments/mnist_gan_sampling.py " + " ".join(sys.argv[1:])
    result = {
        "run": str(args.run),
        "objective": record["objective"],
        "step": int(state.step),
        "config": record["config"],
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "rows": {},
        "calibration": {},
        "exact_burn_in_acceptance": {},
    }
    path = out / "mnist_gan_sampling.json"
    if path.is_file():  # rows of earlier commands on the same run stay (each row keeps its command)
        earlier = json.loads(path.read_text())
        if earlier.get("run") == result["run"] and earlier.get("step") == result["step"]:
            for key_ in ("rows", "calibration", "exact_burn_in_acceptance"):
                result[key_].update(earlier.get(key_, {}))
            result.update({k: v for k, v in earlier.items() if k.startswith("refit")})

    def write(name, samples, labels=None, **extra):
        t0 = time.perf_counter()
        row = {"command": command, **extra, **score(samples, real, train.images, out, name, args.seed, labels)}
        row["score_seconds"] = time.perf_counter() - t0
        result["rows"][name] = row
        shown = {k: v for k, v in row.items() if k not in ("predicted_class_histogram", "command")}
        print(json.dumps({"row": name, **shown}), flush=True)
        path.write_text(json.dumps(result, indent=2))

    if args.plain:
        drawn = draw(state, jax.random.fold_in(key, 0), args.n_eval)
        write("plain", drawn.samples, drawn.labels, kept=1.0)
    for i, t in enumerate(args.truncation):
        drawn = draw(state, jax.random.fold_in(key, 1 + i), args.n_eval, t)
        write(f"truncation-{t:g}", drawn.samples, drawn.labels, threshold=t, kept=1.0)
    if state.config.num_classes:
        conditional_drs(state, train, key, args, result, write)
        plot(
            result["rows"], out / "tradeoff.png", title=f"{pathlib.Path(args.run).name}: {args.n_eval} samples per row"
        )
        return

    discriminators, discriminator_states = {"trained": disc}, {"trained": state}
    if args.refit_steps:
        t0 = time.perf_counter()
        refit_state, result["refit"] = refit(state, train, args)
        result["refit"]["seconds"] = time.perf_counter() - t0
        print(json.dumps({"refit": result["refit"]}), flush=True)
        discriminators["refit"], discriminator_states["refit"] = make_networks(refit_state)[1], refit_state
    for which, modes in discriminators.items():
        for mode in args.d_modes:
            # Platt scaling on held-out data: MNIST train images (the scores use MNIST test) against fresh samples.
            logits_of, label = modes[mode], f"{which}-{mode}"
            idx = np.random.default_rng(args.seed).choice(len(train), args.calibration, replace=False)
            d_state = discriminator_states[which]
            try:
                cal = sampling.calibrate_discriminator(
                    d_state,
                    prepare_images(train.images[idx]),
                    draw(state, jax.random.fold_in(key, 100), args.calibration).samples,
                    batch_statistics=mode == "batch",
                    batch_size=BATCH,
                )
            except ValueError as e:  # e.g. separable: no finite calibration, so no DRS rows for this D
                result["calibration"][label] = {"error": str(e)}
                print(json.dumps({"calibration": label, **result["calibration"][label]}), flush=True)
                continue
            a, b = cal.a, cal.b
            result["calibration"][label] = {
                "a": a,
                "b": b,
                "n": args.calibration,
                "d_real_mean": cal.d_real_mean,
                "d_fake_mean": cal.d_fake_mean,
                "auc": cal.auc,
            }
            print(json.dumps({"calibration": label, **result["calibration"][label]}), flush=True)

            def log_ratio(x, logits_of=logits_of, a=a, b=b):
                return a * np.asarray(logits_of(x)) + b

            # Exact rejection sampling (gamma = 0) when its acceptance is not hopeless.
            burn = map_in_batches(log_ratio, draw(state, jax.random.fold_in(key, 200), 10000).samples)
            exact = float(np.mean(np.exp(burn - burn.max())))
            result["exact_burn_in_acceptance"][label] = exact
            targets = [(f"drs-{label}-{acc:g}", {"acceptance": acc}) for acc in args.acceptance]
            if exact >= args.min_exact_acceptance:
                targets.append((f"drs-{label}-exact", {"gamma": 0.0}))
            for i, (name, kwargs) in enumerate(targets):
                t0 = time.perf_counter()
                drawn = sampling.rejection_sample(
                    jax.random.fold_in(key, 300 + i),
                    propose,
                    log_ratio,
                    args.n_eval,
                    batch_size=BATCH,
                    progress=args.progress,
                    **kwargs,
                )
                write(
                    name,
                    drawn.samples,
                    discriminator=which,
                    d_mode=mode,
                    kept=drawn.acceptance_rate,
                    gamma=drawn.gamma,
                    max_logit=drawn.max_logit,
                    proposals=drawn.proposals,
                    sample_seconds=time.perf_counter() - t0,
                )

            for i, scale in enumerate(args.ddls_scale if args.ddls_steps else []):

                def latent_log_ratio(z, logits_of=logits_of, a=a, b=b, scale=scale):
                    return scale * (a * logits_of(adversarial.generate(state, z)) + b)

                prefix = f"ddls-{label}" + ("" if scale == 1 else f"-x{scale:g}") + f"-eps{args.ddls_step_size:g}"
                for steps, samples, extra in ddls(jax.random.fold_in(key, 400 + i), state, latent_log_ratio, args):
                    write(
                        f"{prefix}-{steps}",
                        samples,
                        discriminator=which,
                        d_mode=mode,
                        kept=1.0,
                        scale=scale,
                        step_size=args.ddls_step_size,
                        metropolis=args.ddls_metropolis,
                        **extra,
                    )
    plot(result["rows"], out / "tradeoff.png", title=f"{pathlib.Path(args.run).name}: {args.n_eval} samples per row")


def conditional_drs(state, train, key, args, result, write) -> None:
    """DRS rows of a class-conditional run: the trained discriminator, Platt-scaled on MNIST train images with their
    labels against samples with the labels they were drawn for; each proposal is scored with its own label
    (:func:`gendl_jax.sampling.sample_gan`). No refit and no DDLS for these runs."""
    if args.refit_steps or args.ddls_steps:
        raise SystemExit(
            "a class-conditional run gets DRS rows with its trained discriminator only: pass "
            "--refit-steps 0 and no --ddls-steps"
        )
    idx = np.random.default_rng(args.seed).choice(len(train), args.calibration, replace=False)
    fake = draw(state, jax.random.fold_in(key, 100), args.calibration)
    for mode in args.d_modes:
        label = f"trained-{mode}"
        cal = sampling.calibrate_discriminator(
            state,
            prepare_images(train.images[idx]),
            fake.samples,
            batch_statistics=mode == "batch",
            batch_size=BATCH,
            real_labels=train.labels[idx],
            fake_labels=fake.labels,
        )
        result["calibration"][label] = {
            "a": cal.a,
            "b": cal.b,
            "n": args.calibration,
            "d_real_mean": cal.d_real_mean,
            "d_fake_mean": cal.d_fake_mean,
            "auc": cal.auc,
        }
        print(json.dumps({"calibration": label, **result["calibration"][label]}), flush=True)
        for i, acc in enumerate(args.acceptance):
            t0 = time.perf_counter()
            drawn = sampling.sample_gan(
                state,
                jax.random.fold_in(key, 300 + i),
                args.n_eval,
                calibration=cal,
                drs_acceptance=acc,
                batch_size=BATCH,
                progress=args.progress,
            )
            info = drawn.info
            write(
                f"drs-{label}-{acc:g}",
                drawn.samples,
                drawn.labels,
                discriminator="trained",
                d_mode=mode,
                kept=info["kept"],
                gamma=info["gamma"],
                max_logit=info["max_logit"],
                proposals=info["proposals"],
                sample_seconds=time.perf_counter() - t0,
            )


def ddls(key, state, log_ratio, args):
    """Yields ``(steps, samples, extra)`` at each of ``--ddls-steps`` of one set of ``--n-eval`` Langevin
    chains on ``N(z; 0, I) exp(log_ratio(z))``, run in batches of BATCH chains."""
    dim = adversarial.latent_dim(state.config, state.data_shape)
    generate = jax.jit(functools.partial(adversarial.generate, state))
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), (args.n_eval, dim)))
    done, seconds, mean_log_ratio = 0, 0.0, []
    for steps in sorted(args.ddls_steps):
        t0 = time.perf_counter()
        chains = sampling.latent_langevin_in_batches(
            jax.random.fold_in(key, steps),
            z,
            log_ratio,
            n_steps=steps - done,
            step_size=args.ddls_step_size,
            metropolis=args.ddls_metropolis,
            batch_size=BATCH,
            progress=args.progress,
        )
        z = chains.z
        mean_log_ratio.extend(chains.mean_log_ratio.tolist()[0 if done == 0 else 1 :])
        seconds += time.perf_counter() - t0
        done = steps
        if not np.all(np.isfinite(z)):
            raise FloatingPointError(
                f"DDLS chains diverged (non-finite latents) by step {steps}; lower "
                f"--ddls-step-size (got {args.ddls_step_size})"
            )
        samples = map_in_batches(generate, z, BATCH)
        yield (
            steps,
            samples,
            {
                "steps": steps,
                "sample_seconds": seconds,
                "mh_acceptance": float(np.mean(chains.acceptance)),
                "mean_log_ratio_start": mean_log_ratio[0],
                "mean_log_ratio_end": mean_log_ratio[-1],
            },
        )


def refit(state, train, args):
    """``--refit-steps`` discriminator updates against the fixed sampler (:func:`gan.refit_discriminator_step`),
    Adam(``--refit-lr``, 0.5) on MNIST train minibatches of 64; returns the state and the last metrics."""
    tx = optax.adam(args.refit_lr, b1=0.5)
    step = jax.jit(functools.partial(gan.refit_discriminator_step, tx=tx))
    batches = BatchIterator(train, 64, seed=args.seed + 1, inner_steps=1, value_range=(-1.0, 1.0))
    opt_state, key = tx.init(state.discriminator.params), jax.random.PRNGKey(args.seed + 2)
    history = []
    for s in tqdm(range(args.refit_steps), desc="refit D", disable=not args.progress):
        state, opt_state, metrics = step(
            state, opt_state, jnp.asarray(batches.batch_at(s)["x"][0]), jax.random.fold_in(key, s)
        )
        history.append({k: float(v) for k, v in metrics.items()})
    last = {k: float(np.mean([h[k] for h in history[-100:]])) for k in history[-1]}  # mean of the last 100
    return state, {"steps": args.refit_steps, "lr": args.refit_lr, "last_100": last}


def plot(rows: dict, path: pathlib.Path, title: str) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    groups = {"truncation": [k for k in rows if k.startswith("truncation")]}
    chains = {}
    for k, row in rows.items():
        if k.startswith("drs"):
            groups.setdefault(f"DRS, {row['discriminator']} D, {row['d_mode']} BatchNorm", []).append(k)
        elif k.startswith("ddls"):
            chains.setdefault(k.rsplit("-", 1)[0], []).append(k)
    for label, names in list(groups.items()):
        if not names:
            del groups[label]
            continue
        x = [rows[k]["threshold"] if label == "truncation" else rows[k]["kept"] for k in names]
        order = np.argsort(x)
        for ax, metric in zip(axes[:2], ("inception_score", "fid")):
            ax.plot(np.asarray(x)[order], np.asarray([rows[k][metric] for k in names])[order], "o-", label=label)
    for ax, metric in zip(axes[:2], ("inception_score", "fid")):
        if "plain" in rows:
            ax.axhline(rows["plain"][metric], color="k", ls="--", label="plain")
        ax.set_xlabel("truncation threshold / share of proposals kept (DRS)")
        ax.set_ylabel(metric)
        if groups or "plain" in rows:
            ax.legend(fontsize=7)
    for name, row in rows.items():
        axes[2].scatter(row["recall"], row["precision"])
        axes[2].annotate(name, (row["recall"], row["precision"]), fontsize=6)
    axes[2].set_xlabel("recall (k=3)")
    axes[2].set_ylabel("precision (k=3)")
    fid_axis = axes[3].twinx()
    for label, names in chains.items():
        names = sorted(names, key=lambda k: rows[k]["steps"])
        steps = [0] + [rows[k]["steps"] for k in names] if "plain" in rows else [rows[k]["steps"] for k in names]
        first = [rows["plain"]] if "plain" in rows else []
        (line,) = axes[3].plot(
            steps, [r["inception_score"] for r in first + [rows[k] for k in names]], "o-", label=label
        )
        fid_axis.plot(steps, [r["fid"] for r in first + [rows[k] for k in names]], "s--", color=line.get_color())
    axes[3].set_xlabel("DDLS Langevin steps (0: plain)")
    axes[3].set_ylabel("inception_score (o-)")
    fid_axis.set_ylabel("fid (s--)")
    if chains:
        axes[3].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a GAN run folder (mnist_gans.py --runs, or gendl train)")
    p.add_argument("--n-eval", type=int, default=10000)
    p.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True, help="score the plain sampler")
    p.add_argument("--truncation", type=float, nargs="*", default=[1.5, 1.0])
    p.add_argument("--acceptance", type=float, nargs="*", default=[0.3, 0.1])
    p.add_argument(
        "--d-modes",
        nargs="*",
        default=["inference", "batch"],
        choices=["inference", "batch"],
        help="BatchNorm statistics of the discriminator for DRS: running averages, or each batch's own",
    )
    p.add_argument(
        "--calibration", type=int, default=10000, help="train images (and as many samples) for Platt scaling"
    )
    p.add_argument(
        "--refit-steps",
        type=int,
        default=2000,
        help="discriminator updates against the fixed sampler before DRS (0: only the trained D)",
    )
    p.add_argument("--refit-lr", type=float, default=1e-4)
    p.add_argument("--min-exact-acceptance", type=float, default=0.02)
    p.add_argument(
        "--ddls-steps",
        type=int,
        nargs="*",
        default=[],
        help="DDLS rows after these numbers of Langevin steps of the same chains (none: no DDLS rows)",
    )
    p.add_argument("--ddls-step-size", type=float, default=0.01)
    p.add_argument(
        "--ddls-scale",
        type=float,
        nargs="*",
        default=[1.0],
        help="multipliers of the calibrated log ratio in DDLS's energy (1: DDLS proper)",
    )
    p.add_argument(
        "--ddls-metropolis",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Metropolis-adjusted chains (MALA) instead of unadjusted Langevin as in Che et al.",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/mnist_gan_sampling")
    main(p.parse_args())
