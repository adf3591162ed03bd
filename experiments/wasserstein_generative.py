"""Generators trained on the primal Wasserstein distance (lecture eq. 11, no critic) against WGAN and WGAN-GP at equal
wall-clock time, and the lecture's claim that a WGAN critic's gradients are aligned with the transport.

    python experiments/wasserstein_generative.py                                  # the default run (~25 min, 2-core CPU)
    python experiments/wasserstein_generative.py --toy-budget 120 --seeds 5 --mnist-budget 600   # larger
    python experiments/wasserstein_generative.py --parts toy --toy-budget 5 --seeds 2 --out /tmp/wg   # a smoke run

Three parts (``--parts``), all through the library (``gendl_jax.objectives.minibatch_ot``, ``wgan``, ``wgan_gp``,
``gendl_jax.transport``, ``gendl_jax.train.sweep.train_seeds``):

1. **Toy mixtures** (ring8, grid25; PacGAN protocol by :func:`gendl_jax.metrics.mode_coverage` on 2,500 samples per
   seed, seeds vmapped). Rows: ``minibatch-ot`` with the exact W2^2, the Sinkhorn divergence at two epsilons, the
   sliced SW2^2 (batch 256) and the exact W2^2 at batch 1,024; WGAN (clipping) and WGAN-GP with the configs of
   ``experiments/toy_mode_collapse.py``. Equal wall-clock time: each method's step (all seeds together) is timed
   first (compiled, warmed up, ``block_until_ready`` after every step, at least ``--timing-seconds``), then it gets
   ``floor(--toy-budget / step time)`` steps, its learning rates decayed to 0 over them. Also the exact W2 between
   1,000 samples and 1,000 fresh data points (the data-to-data floor is given).
2. **MNIST** (MLP generators 2 x 512 as the MLP rows of ``experiments/mnist_gans.py``): the same three distances
   against WGAN-GP (MLP row of ``mnist_gans.py``: Adam(1e-4, 0.5, 0.9), 5 critic steps, lambda 10, batch 64), each
   trained for ``--mnist-budget`` seconds (steps from its timed step), scored by the LeNet FID of ``--n-eval``
   samples against as many random MNIST test images (real-data floor: as many train images).
3. **Alignment** (ring8): WGAN-GP (and WGAN with clipping) trained with the toy configs; every ``--align-every``
   steps, on a fresh minibatch of ``--align-batch`` fakes, the cosine between the critic's input gradient
   ``grad_x f(x)`` at each fake and its displacement ``T(x) - x`` under the exact plan to a fresh real minibatch of
   the same size (``transport.transport_plan`` + ``transport.barycentric_map``; p = 1, the plan of the W1 the critic
   estimates, and p = 2), and between 8x as many fakes and real points (p = 1; a less noisy plan).

Writes ``results.json``, ``toy_samples.png``, ``mnist_samples.png``, ``alignment.png``, ``alignment_field.png`` and
``README.md`` (command, time, machine, tables; the text after its ``<!-- discussion -->`` line is kept across runs)
into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax import plots, transport
from gendl_jax.data import load_dataset, make_iterator
from gendl_jax.metrics import fid, inception_score, mnist_classifier, mode_coverage
from gendl_jax.objectives import adversarial, get_objective, minibatch_ot, wgan, wgan_gp
from gendl_jax.train.sweep import init_sweep, mean_and_stderr, stack_batches, train_seeds, unstack

LATENT = 2
TOY_BATCH = 256
EPSILONS = {"ring8": (0.01, 0.1), "grid25": (0.1, 1.0)}
"""Absolute epsilons of the Sinkhorn-divergence rows, in units of the cost ||x - y||^2: about 1/50 and 1/5 of the
squared distance between neighbouring modes (0.59 on the ring of radius 1, 4 on the grid of spacing 2)."""
MNIST_MLP = {"model": "mlp", "hidden": (512, 512)}
MNIST_OT_BATCH = 256
MNIST_GAN_BATCH = 64
MNIST_EPSILON = 10.0
"""Sinkhorn divergence on MNIST ([-1, 1] pixels, 784-d): squared distances between two digits are 230-610 (5-95%), to
the nearest of 250 others about 150; epsilon 10 is small against both."""
MNIST_PROJECTIONS = 1000


def toy_methods(data: str) -> dict:
    """label -> (objective, config builder ``steps -> config``, batch size)."""
    ot_common = dict(hidden=(128, 128, 128), latent_dim=LATENT, g_learning_rate=1e-3)
    ot = lambda **kw: lambda steps: minibatch_ot.MinibatchOTConfig(**ot_common, lr_decay_steps=steps, **kw)
    eps_small, eps_large = EPSILONS[data]
    return {
        "exact W2² (OT)": ("minibatch-ot", ot(distance="exact"), TOY_BATCH),
        f"Sinkhorn div. ε={eps_small:g}": (
            "minibatch-ot",
            ot(distance="sinkhorn-divergence", epsilon=eps_small),
            TOY_BATCH,
        ),
        f"Sinkhorn div. ε={eps_large:g}": (
            "minibatch-ot",
            ot(distance="sinkhorn-divergence", epsilon=eps_large),
            TOY_BATCH,
        ),
        "sliced SW2² (100 dir.)": ("minibatch-ot", ot(distance="sliced", n_projections=100), TOY_BATCH),
        "exact W2², batch 1024": ("minibatch-ot", ot(distance="exact"), 1024),
        "WGAN (clip)": (
            "wgan",
            lambda steps: wgan.WGANConfig(
                g_learning_rate=2e-4,
                d_learning_rate=2e-4,
                hidden=(256, 256, 256),
                latent_dim=LATENT,
                lr_decay_steps=steps,
            ),
            TOY_BATCH,
        ),
        "WGAN-GP": (
            "wgan-gp",
            lambda steps: wgan_gp.WGANGPConfig(
                **{**wgan_gp.TOY_CONFIG, "lr_decay_steps": steps}, gp_weight=0.1, latent_dim=LATENT
            ),
            TOY_BATCH,
        ),
    }


def mnist_methods() -> dict:
    ot = lambda **kw: (
        lambda steps: minibatch_ot.MinibatchOTConfig(**MNIST_MLP, g_learning_rate=1e-3, lr_decay_steps=steps, **kw)
    )
    return {
        "exact W2² (OT)": ("minibatch-ot", ot(distance="exact"), MNIST_OT_BATCH),
        f"Sinkhorn div. ε={MNIST_EPSILON:g}": (
            "minibatch-ot",
            ot(distance="sinkhorn-divergence", epsilon=MNIST_EPSILON),
            MNIST_OT_BATCH,
        ),
        f"sliced SW2² ({MNIST_PROJECTIONS} dir.)": (
            "minibatch-ot",
            ot(distance="sliced", n_projections=MNIST_PROJECTIONS),
            MNIST_OT_BATCH,
        ),
        "WGAN-GP": (
            "wgan-gp",
            lambda steps: wgan_gp.WGANGPConfig(**MNIST_MLP, d_activation="leaky_relu"),
            MNIST_GAN_BATCH,
        ),
    }


def step_seconds(obj, config, dataset, seeds, batch_size, min_seconds: float, max_steps: int = 200) -> dict:
    """Seconds per step of ``jit(vmap(obj.step))`` over ``seeds`` (what :func:`train_seeds` runs): compiled and
    warmed up by 2 steps, then timed step by step (``block_until_ready`` each) until ``min_seconds`` have passed
    (at least 3 steps, at most ``max_steps``); the batches are drawn on the host inside the timing, as in training."""
    iterators = [make_iterator(dataset, batch_size, s, config.inner_steps, obj.value_range) for s in seeds]
    states = init_sweep(obj, config, iterators[0].batch_at(0), seeds)
    step = jax.jit(jax.vmap(obj.step))
    t0 = time.perf_counter()
    for s in range(2):
        states, _ = step(states, stack_batches(iterators, s))
    jax.block_until_ready(states)
    warm = time.perf_counter() - t0
    t0, n = time.perf_counter(), 0
    while n < 3 or (time.perf_counter() - t0 < min_seconds and n < max_steps):
        states, _ = step(states, stack_batches(iterators, 2 + n))
        jax.block_until_ready(states)
        n += 1
    return {"seconds_per_step": (time.perf_counter() - t0) / n, "timed_steps": n, "compile_and_warmup_seconds": warm}


def budget_steps(seconds_per_step: float, budget: float) -> int:
    return max(2, int(budget / seconds_per_step))


# -- part 1: the toy mixtures -------------------------------------------------------------------------------------


TOY_SETTINGS = ("datasets", "seeds", "toy_budget", "timing_seconds", "n_samples", "n_w2")
MNIST_SETTINGS = ("mnist_budget", "timing_seconds", "n_eval", "seed")
ALIGN_SETTINGS = ("align_steps", "align_every", "align_batch", "align_far", "seed")


def run_toy(args, record: dict) -> dict:
    rows, scatters = [], {}
    record["toy"] = {"settings": {k: getattr(args, k) for k in TOY_SETTINGS}, "rows": rows}
    seeds = list(range(args.seeds))
    for data in args.datasets:
        dataset = load_dataset(data)
        dist = dataset.distribution
        floor_rng = np.random.default_rng([7, 0])
        w2_floor = float(
            transport.wasserstein(dist.sample(floor_rng, args.n_w2), dist.sample(floor_rng, args.n_w2), method="exact")
        )
        for label, (name, make_config, batch) in toy_methods(data).items():
            if args.toy_methods and label not in args.toy_methods:
                continue
            obj = get_objective(name)
            timing = step_seconds(obj, make_config(1000), dataset, seeds, batch, args.timing_seconds)
            steps = budget_steps(timing["seconds_per_step"], args.toy_budget)
            config = make_config(steps)
            states, info = train_seeds(
                obj,
                config,
                dataset,
                seeds,
                steps=steps,
                batch_size=batch,
                progress=args.progress,
                desc=f"{label} {data}",
            )
            per_seed = []
            sample = jax.jit(obj.sample, static_argnums=2)
            for i, seed in enumerate(seeds):
                state = unstack(states, i)
                x = np.asarray(sample(state, jax.random.PRNGKey(10_000 + seed), args.n_samples))
                scores = mode_coverage(x, dist.modes, dist.std)
                real = dist.sample(np.random.default_rng([20_000, seed]), args.n_w2)
                scores["w2_to_data"] = float(transport.wasserstein(x[: args.n_w2], real, method="exact"))
                per_seed.append(scores)
                if i == 0:
                    scatters[(label, data)] = x
            row = {
                "method": label,
                "data": data,
                "objective": name,
                "batch_size": batch,
                "steps": steps,
                **{f"timing_{k}": v for k, v in timing.items()},
                "train_seconds": info["train_seconds"],
                "compile_seconds": info["compile_seconds"],
                "config": _jsonable(config),
                "last_metrics": info["last_metrics"],
                "per_seed": per_seed,
                "w2_floor": w2_floor,
            }
            for key in ("modes", "high_quality", "reverse_kl", "w2_to_data"):
                row[key] = mean_and_stderr([r[key] for r in per_seed])
            rows.append(row)
            print(
                f"{label:26s} {data:7s} {1e3 * timing['seconds_per_step']:7.1f} ms/step -> {steps:6d} steps "
                f"({info['train_seconds']:.0f} s): modes {row['modes'][0]:.2f} HQ {100 * row['high_quality'][0]:.1f}% "
                f"rKL {row['reverse_kl'][0]:.3f} W2 {row['w2_to_data'][0]:.3f} (floor {w2_floor:.3f})",
                flush=True,
            )
            _save(args, record)
    write_toy_scatter(scatters, args.datasets, pathlib.Path(args.out) / "toy_samples.png")
    return rows


def write_toy_scatter(scatters, datasets, path):
    """One row per dataset, one column per method in the order of :func:`toy_methods` (the Sinkhorn epsilons differ
    between datasets)."""
    if not scatters:
        return
    n_cols = max(len(toy_methods(d)) for d in datasets)
    fig, axes = plt.subplots(len(datasets), n_cols, figsize=(2.4 * n_cols, 2.5 * len(datasets)), dpi=80, squeeze=False)
    for r, data in enumerate(datasets):
        modes = load_dataset(data).distribution.modes
        labels = list(toy_methods(data))
        for c in range(n_cols):
            label = labels[c] if c < len(labels) else None
            if (label, data) not in scatters:
                axes[r, c].set_axis_off()
                continue
            plots.scatter_with_modes(scatters[(label, data)], modes, None, title=f"{label}\n{data}", ax=axes[r, c])
            axes[r, c].title.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- part 2: MNIST -------------------------------------------------------------------------------------------------


def run_mnist(args, record: dict) -> dict:
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    net = mnist_classifier()
    real = test.images[np.random.default_rng(1).choice(len(test), args.n_eval, replace=False)]
    _, real_features = net.logits_and_features(real)
    floor_images = train.images[np.random.default_rng(0).choice(len(train), args.n_eval, replace=False)]
    floor_logits, floor_features = net.logits_and_features(floor_images)
    rows = [
        {
            "method": "MNIST train images (floor)",
            "fid": fid(real_features, floor_features),
            "inception_score": inception_score(floor_logits, 10, from_logits=True)[0],
        }
    ]
    record["mnist"] = {"settings": {k: getattr(args, k) for k in MNIST_SETTINGS}, "rows": rows}
    grids = {}
    for label, (name, make_config, batch) in mnist_methods().items():
        if args.mnist_methods and label not in args.mnist_methods:
            continue
        obj = get_objective(name)
        timing = step_seconds(obj, make_config(1000), train, [args.seed], batch, args.timing_seconds)
        steps = budget_steps(timing["seconds_per_step"], args.mnist_budget)
        config = make_config(steps)
        states, info = train_seeds(
            obj, config, train, [args.seed], steps=steps, batch_size=batch, progress=args.progress, desc=label
        )
        state = unstack(states, 0)
        samples = np.asarray(
            jax.jit(obj.sample, static_argnums=2)(state, jax.random.PRNGKey(args.seed + 7), args.n_eval)
        )
        logits, features = net.logits_and_features(samples)
        row = {
            "method": label,
            "objective": name,
            "batch_size": batch,
            "steps": steps,
            **{f"timing_{k}": v for k, v in timing.items()},
            "train_seconds": info["train_seconds"],
            "compile_seconds": info["compile_seconds"],
            "config": _jsonable(config),
            "last_metrics": info["last_metrics"],
            "fid": fid(real_features, features),
            "inception_score": inception_score(logits, 10, from_logits=True)[0],
            "n_eval": args.n_eval,
        }
        rows.append(row)
        grids[label] = samples[:64]
        print(
            f"MNIST {label:26s} {1e3 * timing['seconds_per_step']:7.1f} ms/step -> {steps:6d} steps "
            f"({info['train_seconds']:.0f} s): LeNet FID {row['fid']:.1f}, IS {row['inception_score']:.2f}",
            flush=True,
        )
        _save(args, record)
    if grids:
        fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), dpi=80, squeeze=False)
        for ax, (label, images) in zip(axes[0], grids.items()):
            ax.imshow(plots.image_grid_array(images, (-1.0, 1.0)), cmap="gray")
            ax.set_title(label, fontsize=9)
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(pathlib.Path(args.out) / "mnist_samples.png")
        plt.close(fig)
    return rows


# -- part 3: are the critic's gradients aligned with the transport? --------------------------------------------------


def critic_input_gradients(state, x):
    """grad_x f(x_i) for each row of x (n, d); the toy critics have no BatchNorm, so f scores each point alone."""
    return jax.grad(lambda x: jnp.sum(adversarial.discriminate(state, x)))(x)


def cosines(g, displacement):
    """(cosines, displacement lengths) of the matching rows of g and displacement (n, d); rows where either is ~0 are
    dropped."""
    g, d = np.asarray(g, np.float64), np.asarray(displacement, np.float64)
    ng, nd = np.linalg.norm(g, axis=1), np.linalg.norm(d, axis=1)
    keep = (ng > 1e-12) & (nd > 1e-9)
    return np.sum(g[keep] * d[keep], axis=1) / (ng[keep] * nd[keep]), nd[keep]


def alignment_at(state, obj, dist, m: int, key, rng, far: float) -> dict:
    """The cosines of one measurement: mean, median and share > 0 over the fakes; ``w``: weighted by the displacement
    length (sum |d_i| cos_i / sum |d_i|, the share of the transport cost each fake carries for p = 1); ``far``: over the
    fakes sent farther than ``far`` (away from their own mode's neighbourhood; ``share_far`` of the fakes)."""
    sample, gradients = jax.jit(obj.sample, static_argnums=2), jax.jit(critic_input_gradients)
    fakes, fakes_big = sample(state, key, m), sample(state, jax.random.fold_in(key, 1), 8 * m)
    grads, grads_big = np.asarray(gradients(state, fakes)), np.asarray(gradients(state, fakes_big))
    out = {"critic_grad_norm": float(np.mean(np.linalg.norm(grads, axis=1)))}
    # where the critic sends each fake locally: towards the nearest mode of the ring?
    f = np.asarray(fakes, np.float64)
    nearest = dist.modes[np.argmin(np.linalg.norm(f[:, None] - dist.modes[None], axis=-1), axis=1)]
    out["cos_nearest_mode"] = float(np.mean(cosines(grads, nearest - f)[0]))
    real = jnp.asarray(dist.sample(rng, m), jnp.float32)
    real_big = jnp.asarray(dist.sample(rng, 8 * m), jnp.float32)
    for tag, p, x, g, target in (
        ("p1", 1, fakes, grads, real),
        ("p2", 2, fakes, grads, real),
        ("p1_8x", 1, fakes_big, grads_big, real_big),
    ):
        plan = transport.transport_plan(x, target, p=p)
        d = np.asarray(transport.barycentric_map(plan, target) - x, np.float64)
        c, length = cosines(g, d)
        out[f"cos_{tag}_mean"], out[f"cos_{tag}_median"] = float(np.mean(c)), float(np.median(c))
        out[f"cos_{tag}_positive"] = float(np.mean(c > 0))
        out[f"cos_{tag}_w"] = float(np.sum(length * c) / np.sum(length))
        moved = length > far
        out[f"cos_{tag}_far"] = float(np.mean(c[moved])) if moved.any() else float("nan")
        out[f"cos_{tag}_near"] = float(np.mean(c[~moved])) if (~moved).any() else float("nan")
        out[f"share_far_{tag}"] = float(np.mean(moved))
    return out


def run_alignment(args, record: dict) -> dict:
    dataset = load_dataset("ring8")
    dist = dataset.distribution
    methods = toy_methods("ring8")
    result = {}
    record["alignment"] = {"settings": {k: getattr(args, k) for k in ALIGN_SETTINGS}, "critics": result}
    fields = {}
    for label in ("WGAN-GP", "WGAN (clip)"):
        if label not in args.align_critics:
            continue
        name, make_config, batch = methods[label]
        obj = get_objective(name)
        config = make_config(args.align_steps)
        it = make_iterator(dataset, batch, args.seed, config.inner_steps, obj.value_range)
        state = obj.init(jax.random.PRNGKey(args.seed), config, it.batch_at(0))
        step = jax.jit(obj.step)
        rng = np.random.default_rng([30_000, args.seed])
        curve = []
        t0 = time.perf_counter()
        for s in range(args.align_steps + 1):
            # from the first N steps on: a critic trained against the current generator (none at step 0)
            if s > 0 and (s % args.align_every == 0 or s == args.align_steps):
                point = {
                    "step": s,
                    **alignment_at(state, obj, dist, args.align_batch, jax.random.PRNGKey(s), rng, args.align_far),
                }
                curve.append(point)
            if s < args.align_steps:
                state, _ = step(state, it.batch_at(s))
        jax.block_until_ready(state)
        seconds = time.perf_counter() - t0
        x = np.asarray(obj.sample(state, jax.random.PRNGKey(99), 2500))
        coverage = mode_coverage(x, dist.modes, dist.std)
        result[label] = {
            "config": _jsonable(config),
            "steps": args.align_steps,
            "seconds": seconds,
            "curve": curve,
            "final_mode_coverage": {k: coverage[k] for k in ("modes", "high_quality", "reverse_kl")},
            "over_training": {
                key: {
                    "mean": float(np.nanmean([c[key] for c in curve])),
                    "median": float(np.nanmedian([c[key] for c in curve])),
                }
                for key in curve[0]
                if key != "step"
            },
        }
        fields[label] = state, obj
        print(
            f"alignment {label}: cos(grad f, T(x) - x) p=1 mean over training "
            f"{result[label]['over_training']['cos_p1_mean']['mean']:.3f}, last {curve[-1]['cos_p1_mean']:.3f} "
            f"({seconds:.0f} s)",
            flush=True,
        )
        _save(args, record)
    if result:
        write_alignment_plots(result, fields, dist, args)
    return result


def write_alignment_plots(result, fields, dist, args):
    out = pathlib.Path(args.out)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    for label, r in result.items():
        steps = [c["step"] for c in r["curve"]]
        for key, style, name in (
            ("cos_p1_mean", "-", "mean"),
            ("cos_p1_w", "--", "weighted by ‖T(x) − x‖"),
            ("cos_p1_8x_w", ":", "weighted, 8x points"),
        ):
            ax.plot(steps, [c[key] for c in r["curve"]], style, label=f"{label}: {name}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("generator step")
    ax.set_ylabel("cos(∇f(x), T(x) − x), plan p = 1")
    ax.set_ylim(-1.0, 1.0)
    ax.legend(fontsize=7)
    ax.set_title("ring8: critic gradient vs exact-OT displacement, fresh minibatches")
    fig.tight_layout()
    fig.savefig(out / "alignment.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 4.2), dpi=80, squeeze=False)
    rng = np.random.default_rng(5)
    for ax, (label, (state, obj)) in zip(axes[0], fields.items()):
        fakes = jnp.asarray(obj.sample(state, jax.random.PRNGKey(123), 128))
        real = jnp.asarray(dist.sample(rng, 128), jnp.float32)
        g = np.asarray(critic_input_gradients(state, fakes))
        d = np.asarray(transport.barycentric_map(transport.transport_plan(fakes, real, p=1), real) - fakes)
        f = np.asarray(fakes)
        unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        ax.scatter(*np.asarray(real).T, s=4, c="k", label="real")
        ax.scatter(*f.T, s=4, c="tab:orange", label="fake")
        ax.quiver(*f.T, *(0.15 * unit(g)).T, color="tab:blue", angles="xy", scale_units="xy", scale=1, width=0.004)
        ax.quiver(*f.T, *(0.15 * unit(d)).T, color="tab:red", angles="xy", scale_units="xy", scale=1, width=0.004)
        ax.set_title(f"{label}: ∇f (blue), T(x) − x (red)", fontsize=9)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "alignment_field.png")
    plt.close(fig)


# -- results -------------------------------------------------------------------------------------------------------


def _jsonable(config):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _save(args, record):
    path = pathlib.Path(args.out) / "results.json"
    path.write_text(json.dumps(record, indent=2, default=float))


def _pm(mean_stderr, fmt: str, scale: float = 1.0) -> str:
    mean, stderr = mean_stderr
    return f"{scale * mean:{fmt}}" + ("" if stderr is None else f" ± {scale * stderr:{fmt}}")


def tables(record: dict) -> str:
    lines = []
    if record.get("toy"):
        toy, st = record["toy"]["rows"], record["toy"]["settings"]
        lines += [
            "### Toy mixtures at equal wall-clock time",
            "",
            f"{st['seeds']} seeds vmapped per row, budget {st['toy_budget']:g} s of training per row (all seeds "
            f"together; steps = budget / the step time timed first); mean ± standard error over seeds; PacGAN protocol "
            f"on {st['n_samples']} samples per seed; W2 to data: exact W2 between {st['n_w2']} samples and "
            f"{st['n_w2']} fresh data points (floor: between two data samples of that size).",
            "",
            "| data | method | batch | ms / step (timed) | steps | train s (measured) | modes | high-quality % "
            "| reverse KL | W2 to data (floor) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in toy:
            lines.append(
                f"| {r['data']} | {r['method']} | {r['batch_size']} | {1e3 * r['timing_seconds_per_step']:.1f} | "
                f"{r['steps']} | {r['train_seconds']:.0f} | {_pm(r['modes'], '.1f')} | "
                f"{_pm(r['high_quality'], '.1f', 100)} | {_pm(r['reverse_kl'], '.3f')} | "
                f"{_pm(r['w2_to_data'], '.3f')} ({r['w2_floor']:.3f}) |"
            )
        lines.append("")
    if record.get("mnist"):
        rows, st = record["mnist"]["rows"], record["mnist"]["settings"]
        lines += [
            "### MNIST at equal wall-clock time",
            "",
            f"MLP generators 2 x 512; budget {st['mnist_budget']:g} s of training per model; LeNet FID and IS of "
            f"{st['n_eval']} samples against as many random MNIST test images.",
            "",
            "| method | batch | ms / step (timed) | steps | train s (measured) | LeNet FID | LeNet IS |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if "steps" not in r:
                lines.append(f"| {r['method']} | | | | | {r['fid']:.1f} | {r['inception_score']:.2f} |")
                continue
            lines.append(
                f"| {r['method']} | {r['batch_size']} | {1e3 * r['timing_seconds_per_step']:.1f} | {r['steps']} | "
                f"{r['train_seconds']:.0f} | {r['fid']:.1f} | {r['inception_score']:.2f} |"
            )
        lines.append("")
    if record.get("alignment"):
        critics, st = record["alignment"]["critics"], record["alignment"]["settings"]
        lines += [
            "### Alignment of the critic's gradient with the transport (ring8)",
            "",
            f"cos(∇f(x), T(x) − x) over {st['align_batch']} fresh fakes, T the barycentric map of the exact plan to "
            f"{st['align_batch']} fresh real points (p = 1 unless said; 8x: between 8 times as many fakes and real points), measured "
            f"every {st['align_every']} steps; each cell is the mean over the measurements of the run, the last "
            "measurement in brackets. Per measurement: mean and median over the fakes; weighted: Σ‖d_i‖ cos_i / "
            f"Σ‖d_i‖ (each fake weighted by its share of the p = 1 transport cost); far: mean over the fakes sent "
            f"farther than {st['align_far']:g} (out of their own mode's neighbourhood; the share in brackets); near: over "
            "the others. cos(∇f, nearest mode − x): whether the critic points each fake to its nearest mode.",
            "",
            "| critic | steps | mean | median | weighted | far (share) | near | p = 2 mean / weighted "
            "| 8x mean / weighted | cos(∇f, nearest mode − x) | mean ‖∇f‖ | final modes / HQ % |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, r in critics.items():
            o, last = r["over_training"], r["curve"][-1]
            cell = lambda key: f"{o[key]['mean']:.2f} ({last[key]:.2f})"
            cov = r["final_mode_coverage"]
            lines.append(
                f"| {label} | {r['steps']} | {cell('cos_p1_mean')} | {cell('cos_p1_median')} | {cell('cos_p1_w')} | "
                f"{cell('cos_p1_far')} [{o['share_far_p1']['mean']:.2f}] | {cell('cos_p1_near')} | "
                f"{o['cos_p2_mean']['mean']:.2f} / {o['cos_p2_w']['mean']:.2f} | "
                f"{o['cos_p1_8x_mean']['mean']:.2f} / {o['cos_p1_8x_w']['mean']:.2f} | {cell('cos_nearest_mode')} | "
                f"{o['critic_grad_norm']['mean']:.3g} | {cov['modes']} / {100 * cov['high_quality']:.1f} |"
            )
        lines.append("")
        for label, r in critics.items():
            lines += [f"Curve, {label} (plan p = 1 to a real minibatch of the same size):", ""]
            lines += ["| step | " + " | ".join(str(c["step"]) for c in r["curve"]) + " |"]
            lines += ["|---" * (len(r["curve"]) + 1) + "|"]
            for key, name in (
                ("cos_p1_mean", "mean cos"),
                ("cos_p1_w", "weighted"),
                ("cos_p1_far", "far"),
                ("cos_p1_near", "near"),
                ("share_far_p1", "share far"),
                ("cos_p1_8x_w", "weighted, 8x"),
                ("cos_nearest_mode", "cos(∇f, nearest mode − x)"),
            ):
                lines += [f"| {name} | " + " | ".join(f"{c[key]:.2f}" for c in r["curve"]) + " |"]
            lines.append("")
    return "\n".join(lines)


def write_readme(args, record: dict) -> None:
    path = pathlib.Path(args.out) / "README.md"
    marker = "<!-- discussion -->"
    kept = ""
    if path.is_file() and marker in path.read_text():
        kept = path.read_text().split(marker, 1)[1]
    runs = []
    for run in record["runs"]:
        m = run["machine"]
        runs.append(
            f"  - `{run['command']}` ({', '.join(run['parts'])}): {run['seconds']:.0f} s wall on "
            f"{m['processor'] or m['machine']}, {m['cpus']} CPU cores (jax {m['jax']}, {m['device']}), load average "
            f"{m['load_start']:.1f} at the start and {m['load_end']:.1f} at the end"
            + (f" {run['note']}." if run.get("note") else ".")
        )
    runs = "\n".join(runs)
    head = f"""# Generators trained on the primal Wasserstein distance

Lecture eq. (11), `min_theta W(P_r, P_theta)`, solved directly: no critic, each generator step minimises a transport
distance between a real minibatch and a minibatch of fakes (`gendl train minibatch-ot`, exact W2², the Sinkhorn
divergence or the sliced SW2²), against WGAN and WGAN-GP at equal wall-clock time; and the lecture's claim that the
WGAN critic's gradients are aligned with the transport.

```bash
python experiments/wasserstein_generative.py    # all three parts, about 20 min on the loaded 2-core CPU
```

- **Runs that made these tables** (other jobs share the machine: times are upper bounds, and the equal-time budgets
  are equal in measured seconds only as far as the load stayed the same between the timing and the training; the
  `train s` columns give what was spent):
{runs}
- **Files:** `results.json` (every number, per seed, configs, timings), `toy_samples.png` (seed 0 of each toy row),
  `mnist_samples.png`, `alignment.png` (the cosine over training), `alignment_field.png` (critic gradients and OT
  displacements at the end).

## Tables

{tables(record)}
{marker}"""
    path.write_text(head + kept)


PARTS = ("toy", "mnist", "alignment")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--datasets", nargs="+", default=["ring8", "grid25"])
    p.add_argument("--seeds", type=int, default=3, help="toy seeds, vmapped")
    p.add_argument("--toy-budget", type=float, default=30.0, help="seconds of training per toy row (all seeds)")
    p.add_argument("--toy-methods", nargs="*", default=None, help="a subset of the toy rows, by label")
    p.add_argument("--timing-seconds", type=float, default=2.0, help="at least this long timing each step")
    p.add_argument("--n-samples", type=int, default=2500)
    p.add_argument("--n-w2", type=int, default=1000, help="points of the exact W2 to the data")
    p.add_argument("--mnist-budget", type=float, default=100.0, help="seconds of training per MNIST model")
    p.add_argument("--mnist-methods", nargs="*", default=None, help="a subset of the MNIST rows, by label")
    p.add_argument("--n-eval", type=int, default=3000, help="MNIST samples scored (and test images)")
    p.add_argument("--data-dir", default=os.environ.get("GENDL_DATA_DIR"))
    p.add_argument("--align-steps", type=int, default=3000)
    p.add_argument("--align-every", type=int, default=250)
    p.add_argument("--align-batch", type=int, default=256)
    p.add_argument("--align-far", type=float, default=0.1, help="displacements longer than this count as 'far'")
    p.add_argument("--align-critics", nargs="+", default=["WGAN-GP", "WGAN (clip)"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default="experiments/results/wasserstein_generative")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python experiments/wasserstein_generative.py", *given])
    # A run of some parts keeps the other parts of an earlier run in the same folder (and the runs that made them).
    record = {}
    if (out / "results.json").is_file():
        previous = json.loads((out / "results.json").read_text())
        record = {part: previous[part] for part in PARTS if part in previous and part not in args.parts}
        kept_runs = []
        for run in previous.get("runs", []):
            parts = [part for part in run["parts"] if part in record]
            if parts:
                kept_runs.append({**run, "parts": parts})
        record["runs"] = kept_runs
    this_run = {
        "command": command,
        "parts": list(args.parts),
        "args": vars(args),
        "machine": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "device": jax.devices()[0].device_kind,
            "load_start": os.getloadavg()[0],
        },
    }
    record.setdefault("runs", []).append(this_run)
    if "toy" in args.parts:
        run_toy(args, record)
    if "mnist" in args.parts:
        run_mnist(args, record)
    if "alignment" in args.parts:
        run_alignment(args, record)
    this_run["seconds"] = time.time() - t0
    this_run["machine"]["load_end"] = os.getloadavg()[0]
    _save(args, record)
    write_readme(args, record)
    print(tables(record))
    print(f"total {this_run['seconds']:.0f} s")


if __name__ == "__main__":
    main()
