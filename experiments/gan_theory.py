"""The lecture's GAN, WGAN and autoencoder claims checked on known 1-D and 2-D densities (issue 30, part 5).

1. ``optimal_discriminator``: with the generator frozen at a known q, the GAN discriminator trained on eq. (5)
   approaches D*(x) = p(x) / (p(x) + q(x)). The generator is an MLP whose weights are set by hand so that
   G(z) = loc + scale * z exactly (:func:`affine_generator`); D is trained by
   :func:`gendl_jax.objectives.gan.refit_discriminator_step`, four (p, q) pairs x seeds in one ``vmap``.
2. ``value`` (same run): eq. (5)'s value L(D, G) = E_p log D + E_q log(1 - D) at the trained D against
   eq. (6), 2 JSD(p, q) - 2 log 2, its value at D*, by quadrature on a fine grid (JSD by
   :func:`gendl_jax.divergences.jsd` on the discretised densities) and by Monte Carlo.
3. ``weight_clipping``: WGAN critics clipped at c in {0.001, 0.01, 0.1, 1} (``clip`` is a state leaf, so the four
   train in one ``vmap``). (a) Against a frozen generator (1-D, known p and q): the critic's slope |f'| at data and
   samples, its dual estimate E_p f - E_q f, the estimate divided by the critic's largest slope on a grid (a lower
   bound on W1 when the grid slope is its Lipschitz constant) against the exact W1
   (:func:`gendl_jax.transport.wasserstein_1d` on the discretised densities), the share of weights at the bound and the
   gradient of the critic loss per layer (Gulrajani et al. 2017, Fig. 1b). (b) The whole WGAN on the ring of 8
   Gaussians (:func:`gendl_jax.train.sweep.train_sweep`): PacGAN mode coverage, exact W1 of the samples to the ring.
4. ``overcomplete_ae``: autoencoders with 256 codes on the 64-pixel 8x8 digits (scikit-learn): undercomplete
   (16 codes) for reference, overcomplete without regulariser, sparse, denoising and contractive. Does the
   unregularised one learn the identity? Reconstruction of clean digits, of uniform noise and of noisy digits (an
   identity map copies the noise), the distance of the reconstruction's Jacobian to the identity, and a linear
   probe on the codes against raw pixels (:func:`gendl_jax.learned_metrics.linear_probe`).
5. ``oscillation``: NS-GANs on the ring at a large Adam learning rate; the mode histogram every few steps
   (a heatmap mode x step), the dominant mode over time and its switches.
6. ``inner_loop``: a GAN trained for a while, then its discriminator frozen (its learning rate set to 1e-20, below
   float32 resolution: the parameters stay bitwise equal, checked) and only the generator trained, as if G were
   optimised in the inner loop; its samples move to the maximiser of D.

    python experiments/gan_theory.py                       # all parts, 12 min on the 2-core CPU at load 9-10
    python experiments/gan_theory.py --parts oscillation   # one part; the others' results in --out are kept

Writes ``results.json`` (every number), ``tables.md``, one PNG per part and ``arrays.npz`` (the curves behind the
figures) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
import optax
import scipy.stats

from gendl_jax import divergences as dv
from gendl_jax import transport
from gendl_jax.data import load_dataset, make_iterator, map_in_batches
from gendl_jax.learned_metrics import linear_probe
from gendl_jax.metrics import mode_coverage, mode_histogram
from gendl_jax.objectives import OBJECTIVES, adversarial, contractive_ae, denoising_ae, gan, sparse_ae, wgan, wgan_gp
from gendl_jax.objectives import autoencoders as ae
from gendl_jax.train.sweep import init_sweep, mean_and_stderr, stack_batches, train_sweep, unstack

PARTS = ("optimal_discriminator", "weight_clipping", "overcomplete_ae", "oscillation", "inner_loop")
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "gan_theory"

# ---------------------------------------------------------------------------------------------------------------
# Known 1-D densities: p an equal-or-weighted mixture of (at most) two Gaussians, q a Gaussian (what an affine
# generator of a Gaussian latent produces).
# ---------------------------------------------------------------------------------------------------------------

PAIRS = {
    "identical": {"p": ((1.0, 0.0), (0.0, 0.0), (1.0, 1.0)), "q": (0.0, 1.0), "label": "p = q = N(0, 1)"},
    "overlapping": {"p": ((1.0, 0.0), (0.0, 0.0), (1.0, 1.0)), "q": (1.5, 0.7), "label": "N(0, 1) vs N(1.5, 0.7²)"},
    "bimodal": {
        "p": ((0.5, 0.5), (-2.0, 2.0), (0.5, 0.5)),
        "q": (0.0, 1.0),
        "label": "½N(-2, 0.5²) + ½N(2, 0.5²) vs N(0, 1)",
    },
    "nearly_disjoint": {
        "p": ((1.0, 0.0), (0.0, 0.0), (0.5, 0.5)),
        "q": (5.0, 0.5),
        "label": "N(0, 0.5²) vs N(5, 0.5²)",
    },
}
"""name -> p = (weights, means, sds) of a two-component mixture (a weight 0 drops a component), q = (loc, scale)."""
GRID = np.linspace(-8.0, 10.0, 7201)
"""The quadrature grid of the 1-D parts (step 0.0025); every density here has mass < 1e-9 outside it."""
CLIP_PAIR = "bimodal"
"""The (p, q) pair of the frozen-generator critic of part 3a: its optimal critic f* is not a straight line."""
CLIPS = (0.001, 0.01, 0.1, 1.0)


def mixture_pdf(x, mixture) -> np.ndarray:
    """Density of the mixture ``(weights, means, sds)`` at x (n,): float64 (n,)."""
    w, m, s = (np.asarray(v, np.float64) for v in mixture)
    return np.sum(w * scipy.stats.norm.pdf(np.asarray(x, np.float64)[:, None], m, s), axis=1)


def pair_densities(name: str, x=GRID) -> tuple[np.ndarray, np.ndarray]:
    """(p(x), q(x)) of the pair ``name``, float64."""
    pair = PAIRS[name]
    loc, scale = pair["q"]
    return mixture_pdf(x, pair["p"]), scipy.stats.norm.pdf(np.asarray(x, np.float64), loc, scale)


def sample_mixture(key, mixture, n: int):
    """n draws of a mixture ``(weights (k,), means (k,), sds (k,))`` given as arrays (traceable): (n,) float32."""
    weights, means, sds = (jnp.asarray(v, jnp.float32) for v in mixture)
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(weights), shape=(n,))
    return means[comp] + sds[comp] * jax.random.normal(k_noise, (n,))


def optimal_discriminator(p, q) -> np.ndarray:
    """D*(x) = p / (p + q) (lecture, "Theoretical results"); 1/2 where both densities vanish."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    total = p + q
    return np.divide(p, total, out=np.full_like(total, 0.5), where=total > 0)


def gan_value(logits, p, q, dx: float) -> float:
    """Eq. (5)'s value L(D, G) = E_p log D + E_q log(1 - D) by quadrature, D = sigmoid(logits) on the grid."""
    logits = np.asarray(logits, np.float64)
    log_d, log_1md = -np.logaddexp(0.0, -logits), -np.logaddexp(0.0, logits)
    return float(np.sum(p * log_d + q * log_1md) * dx)


def optimal_gan_value(p, q, dx: float) -> float:
    """L(D*, G) = E_p log(p / (p + q)) + E_q log(q / (p + q)) by quadrature (0 log 0 = 0)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    total = p + q
    term = lambda a: np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / np.where(total > 0, total, 1.0)), 0.0)
    return float(np.sum(term(p) + term(q)) * dx)


def jsd_on_grid(p, q) -> float:
    """JSD(p, q) of two densities sampled on a uniform grid: :func:`gendl_jax.divergences.jsd` of the discretised
    (normalised) histograms, which converges to the continuous JSD as the step shrinks (the bin width cancels).

    Masses below 1e-30 are set to 0 first: ``jsd`` works in float32, where m = (p + q) / 2 of a mass near 1e-38
    is subnormal and XLA:CPU flushes it to 0, which made the JSD +inf (p log(p / 0)) on the nearly disjoint pair."""
    hists = []
    for h in (p, q):
        h = np.asarray(h, np.float64) / np.sum(h)
        hists.append(np.where(h < 1e-30, 0.0, h) / np.sum(np.where(h < 1e-30, 0.0, h)))
    return float(dv.jsd(*hists))


def exact_w1_on_grid(p, q, x=GRID) -> float:
    """W1 between two densities sampled on the grid x: :func:`gendl_jax.transport.wasserstein_1d` with the grid
    points as positions and the densities as weights."""
    return float(transport.wasserstein_1d(x, x, p / np.sum(p), q / np.sum(q), p=1, normalize=True))


def optimal_critic_1d(p, q, dx: float) -> np.ndarray:
    """A Kantorovich potential in 1-D: f*' = sign(F_q - F_p), so that E_p f* - E_q f* = ∫|F_p - F_q| = W1;
    centred on the grid. (E_p f - E_q f = ∫ f'(t) (F_q(t) - F_p(t)) dt by parts.)"""
    fp, fq = np.cumsum(p) * dx, np.cumsum(q) * dx
    f = np.cumsum(np.sign(fq - fp)) * dx
    return f - f.mean()


def affine_generator(state: adversarial.AdversarialState, loc, scale) -> adversarial.AdversarialState:
    """``state`` whose MLP generator computes exactly G(z) = loc + scale * z (elementwise), so that the generated
    distribution is N(loc, diag(scale^2)) for the N(0, I) latent: the first layer writes (z_j, -z_j) into units
    2j, 2j + 1, the next layers copy them, the output layer reads scale_j (relu(z_j) - relu(-z_j)) + loc_j.

    Needs vector data of dimension d, ``latent_dim == d``, a ReLU generator without BatchNorm and hidden widths
    >= 2d. ``loc``, ``scale``: (d,) (traceable, so that ``vmap`` sets one pair per model)."""
    config, d = state.config, state.data_shape[0]
    if len(state.data_shape) != 1 or adversarial.latent_dim(config, state.data_shape) != d:
        raise ValueError(f"affine_generator needs vector data and latent_dim == d, got {state.data_shape}")
    if config.g_activation != "relu" or config.g_batch_norm or min(config.hidden) < 2 * d:
        raise ValueError("affine_generator needs a ReLU generator without BatchNorm and hidden widths >= 2d")
    loc, scale = jnp.asarray(loc, jnp.float32).reshape(d), jnp.asarray(scale, jnp.float32).reshape(d)
    old = state.generator.params
    rows = jnp.arange(d)
    params = {}
    first = jnp.zeros(old["dense0"]["kernel"].shape, jnp.float32)
    params["dense0"] = {
        "kernel": first.at[rows, 2 * rows].set(1.0).at[rows, 2 * rows + 1].set(-1.0),
        "bias": jnp.zeros_like(old["dense0"]["bias"]),
    }
    for i in range(1, len(config.hidden)):
        shape = old[f"dense{i}"]["kernel"].shape
        params[f"dense{i}"] = {"kernel": jnp.eye(*shape, dtype=jnp.float32), "bias": jnp.zeros(shape[1], jnp.float32)}
    last = jnp.zeros(old["output"]["kernel"].shape, jnp.float32)
    params["output"] = {"kernel": last.at[2 * rows, rows].set(scale).at[2 * rows + 1, rows].set(-scale), "bias": loc}
    return state.replace(generator=state.generator.replace(params=params))


def _mixture_arrays(names) -> tuple:
    """Stacked (weights, means, sds) of the p's of ``names``, and (loc, scale) of their q's, as float32 arrays."""
    p = tuple(np.array([PAIRS[n]["p"][i] for n in names], np.float32) for i in range(3))
    q = tuple(np.array([[PAIRS[n]["q"][i]] for n in names], np.float32) for i in range(2))
    return p, q


def _tree_stack(states):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def _stats(values) -> dict:
    mean, stderr = mean_and_stderr(values)
    return {"mean": mean, "stderr": stderr, "values": [float(v) for v in values]}


# ---------------------------------------------------------------------------------------------------------------
# Parts 1 and 2: the optimal discriminator and the value of the game
# ---------------------------------------------------------------------------------------------------------------


def run_optimal_discriminator(out: pathlib.Path, args) -> tuple[dict, dict]:
    names = list(PAIRS)
    seeds = list(range(args.seeds))
    models = [(n, s) for n in names for s in seeds]  # pair-major
    config = gan.GANConfig(hidden=(64, 64), latent_dim=1, d_activation="leaky_relu")
    obj = OBJECTIVES["gan"]
    states = init_sweep(
        obj, config, {"x": np.zeros((1, 2, 1), np.float32)}, [1000 * i + s for i, (_, s) in enumerate(models)]
    )
    p_arrays, q_arrays = _mixture_arrays([n for n, _ in models])
    states = jax.vmap(affine_generator)(states, *q_arrays)
    tx = optax.adam(optax.cosine_decay_schedule(args.d_lr, args.d_steps))
    steps, batch = args.d_steps, args.d_batch

    def train_one(state, mixture, key):
        def body(carry, k):
            state, opt = carry
            k_real, k_z = jax.random.split(k)
            real = sample_mixture(k_real, mixture, batch)[:, None]
            state, opt, metrics = gan.refit_discriminator_step(state, opt, real, k_z, tx=tx, ema=False)
            return (state, opt), metrics["d_loss"]

        carry = (state, tx.init(state.discriminator.params))
        (state, _), losses = jax.lax.scan(body, carry, jax.random.split(key, steps))
        return state, losses

    keys = jnp.stack([jax.random.PRNGKey(7 + i) for i in range(len(models))])
    t0 = time.perf_counter()
    states, losses = jax.block_until_ready(jax.jit(jax.vmap(train_one))(states, p_arrays, keys))
    seconds = time.perf_counter() - t0
    logits = np.asarray(
        jax.jit(jax.vmap(lambda s: adversarial.discriminate(s, jnp.asarray(GRID, jnp.float32)[:, None])))(states)
    )

    # Monte Carlo value on fresh samples, as a GAN would estimate it.
    n_mc = args.mc_samples
    mc_keys = jnp.stack([jax.random.PRNGKey(99 + i) for i in range(len(models))])

    def mc_value(state, mixture, key):
        k_p, k_z = jax.random.split(key)
        xp = sample_mixture(k_p, mixture, n_mc)[:, None]
        xq = adversarial.generate(state, jax.random.normal(k_z, (n_mc, 1)))
        lp, lq = adversarial.discriminate(state, xp), adversarial.discriminate(state, xq)
        return jnp.mean(jax.nn.log_sigmoid(lp)) + jnp.mean(jax.nn.log_sigmoid(-lq))

    mc = np.asarray(jax.jit(jax.vmap(mc_value))(states, p_arrays, mc_keys))

    dx = float(GRID[1] - GRID[0])
    rows, per_model = {}, []
    for i, (name, seed) in enumerate(models):
        p, q = pair_densities(name)
        d_star = optimal_discriminator(p, q)
        d = 1.0 / (1.0 + np.exp(-logits[i].astype(np.float64)))
        m = 0.5 * (p + q)
        region = m >= args.region_density
        per_model.append(
            {
                "pair": name,
                "seed": seed,
                "max_abs_error_region": float(np.max(np.abs(d - d_star)[region])),
                "mean_abs_error_weighted": float(np.sum(m * np.abs(d - d_star)) * dx),
                "value_trained_quadrature": gan_value(logits[i], p, q, dx),
                "value_trained_monte_carlo": float(mc[i]),
                "final_minibatch_d_loss": float(np.mean(np.asarray(losses[i])[-50:])),
            }
        )
    for name in names:
        p, q = pair_densities(name)
        jsd = jsd_on_grid(p, q)
        mine = [r for r in per_model if r["pair"] == name]
        v_star = optimal_gan_value(p, q, dx)
        rows[name] = {
            "label": PAIRS[name]["label"],
            "jsd": jsd,
            "two_jsd_minus_log4": 2 * jsd - math.log(4.0),
            "value_optimal_quadrature": v_star,
            **{
                k: _stats([r[k] for r in mine])
                for k in (
                    "max_abs_error_region",
                    "mean_abs_error_weighted",
                    "value_trained_quadrature",
                    "value_trained_monte_carlo",
                    "final_minibatch_d_loss",
                )
            },
            "gap_optimal_minus_trained": _stats([v_star - r["value_trained_quadrature"] for r in mine]),
        }
    _plot_optimal_discriminator(out / "optimal_discriminator.png", names, logits, len(seeds), args.region_density)
    record = {
        "setup": {
            "discriminator": "MLP 2 x 64, LeakyReLU(0.2), logit output (GANConfig(hidden=(64, 64), d_activation='leaky_relu'))",
            "generator": "MLP set by hand to G(z) = loc + scale z, z ~ N(0, 1) (affine_generator): q exactly Gaussian",
            "optimizer": f"Adam({args.d_lr}) with a cosine decay to 0 over {steps} discriminator updates",
            "batch": f"{batch} real + {batch} generated per update",
            "seeds": seeds,
            "grid": f"{len(GRID)} points on [{GRID[0]}, {GRID[-1]}], step {dx}",
            "error_region": f"max |D - D*| over the grid points where (p + q) / 2 >= {args.region_density}; "
            "the weighted mean is ∫ (p + q) / 2 |D - D*| dx",
            "monte_carlo_samples": n_mc,
        },
        "pairs": rows,
        "per_model": per_model,
        "train_seconds": seconds,
    }
    arrays = {"grid": GRID, "logits": logits, "models": np.array([f"{n}|{s}" for n, s in models])}
    return record, arrays


def _plot_optimal_discriminator(path, names, logits, n_seeds, region_density):
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.0), dpi=110, sharey=True)
    for j, name in enumerate(names):
        ax = axes[j]
        p, q = pair_densities(name)
        scale = 0.9 / max(p.max(), q.max())
        ax.fill_between(GRID, 0, p * scale, color="tab:blue", alpha=0.15, label="p (scaled)")
        ax.fill_between(GRID, 0, q * scale, color="tab:orange", alpha=0.15, label="q (scaled)")
        ax.plot(GRID, optimal_discriminator(p, q), color="k", lw=2, label="D* = p / (p + q)")
        for s in range(n_seeds):
            d = 1.0 / (1.0 + np.exp(-logits[j * n_seeds + s]))
            ax.plot(GRID, d, "--", color="tab:red", lw=1, label="trained D" if s == 0 else None)
        support = np.flatnonzero(0.5 * (p + q) >= region_density)
        ax.set_xlim(GRID[support[0]] - 0.5, GRID[support[-1]] + 0.5)
        ax.set_title(PAIRS[name]["label"], fontsize=8)
        ax.set_xlabel("x")
    axes[0].legend(fontsize=6, loc="center left")
    fig.suptitle("GAN discriminator trained against a frozen generator vs the optimal p / (p + q)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Part 3: weight clipping
# ---------------------------------------------------------------------------------------------------------------


def _at_bound(params, clip):
    """Share of the critic's parameters at the clipping bound (|w| >= c (1 - 1e-6))."""
    leaves = jax.tree_util.tree_leaves(params)
    hits = sum(jnp.sum(jnp.abs(leaf) >= clip * (1 - 1e-6)) for leaf in leaves)
    return hits / sum(leaf.size for leaf in leaves)


@jax.jit
def _mean_slope(state, x):
    """Mean ‖∇_x f(x_i)‖ of a critic over the points x (n, d)."""
    return jnp.mean(wgan_gp.per_sample_gradient_norms(lambda y: adversarial.discriminate(state, y), x))


def _layer_gradient_norms(state, xp, xq):
    """Norm of the gradient of the critic loss (mean f(q) - mean f(p)) with respect to each layer's kernel."""

    def loss(params):
        s = state.replace(discriminator=state.discriminator.replace(params=params))
        return wgan.critic_loss(adversarial.discriminate(s, xp), adversarial.discriminate(s, xq))[0]

    grads = jax.grad(loss)(state.discriminator.params)
    names = sorted(k for k in grads if k.startswith("dense")) + ["logit"]
    return jnp.stack([jnp.linalg.norm(grads[k]["kernel"]) for k in names])


def run_weight_clipping(out: pathlib.Path, args) -> tuple[dict, dict]:
    obj = OBJECTIVES["wgan"]
    clips = list(CLIPS)
    # (a) the critic alone against a frozen generator, 1-D
    config = wgan.WGANConfig(
        hidden=(64, 64, 64), latent_dim=1, g_learning_rate=args.wgan_lr, d_learning_rate=args.wgan_lr, clip=max(clips)
    )
    k = config.n_critic
    states = init_sweep(obj, config, {"x": np.zeros((k, 2, 1), np.float32)}, [0] * len(clips), {"clip": clips})
    (p_w, p_m, p_s), (loc, scale) = _mixture_arrays([CLIP_PAIR] * len(clips))
    states = jax.vmap(affine_generator)(states, loc, scale)
    states = states.replace(
        discriminator=states.discriminator.replace(
            params=jax.vmap(wgan.clip_params)(states.discriminator.params, states.hparams["clip"])
        )
    )
    mixture = (p_w, p_m, p_s)
    batch, every = args.wgan_batch, args.critic_every

    def chunk(state, mixture, key):
        frozen = state.generator

        def body(state, kk):
            real = sample_mixture(kk, mixture, k * batch).reshape(k, batch, 1)
            state, _ = wgan.step(state, {"x": real})
            return state.replace(generator=frozen), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, every))
        return state

    chunk = jax.jit(jax.vmap(chunk))
    n_eval = args.critic_eval
    rng = np.random.default_rng(5)
    pw = np.array(PAIRS[CLIP_PAIR]["p"][0])
    comp = rng.choice(2, size=n_eval, p=pw / pw.sum())
    xp = np.array(PAIRS[CLIP_PAIR]["p"][1])[comp] + np.array(PAIRS[CLIP_PAIR]["p"][2])[comp] * rng.standard_normal(
        n_eval
    )
    xq = PAIRS[CLIP_PAIR]["q"][0] + PAIRS[CLIP_PAIR]["q"][1] * rng.standard_normal(n_eval)
    xp, xq = jnp.asarray(xp[:, None], jnp.float32), jnp.asarray(xq[:, None], jnp.float32)
    # The critic's signed slope f' on a grid gives E_p f - E_q f = ∫ f'(t) (F_q(t) - F_p(t)) dt without the float32
    # cancellation of mean f(x) - mean f(y) (at c = 0.001, f varies by 1e-10 around a constant of order c).
    x_grid = np.linspace(-6.0, 6.0, 2401)
    dx_grid = float(x_grid[1] - x_grid[0])
    (pw_, pm_, ps_), (ql_, qs_) = PAIRS[CLIP_PAIR]["p"], PAIRS[CLIP_PAIR]["q"]
    cdf_gap = scipy.stats.norm.cdf(x_grid, ql_, qs_) - np.sum(
        np.asarray(pw_) * scipy.stats.norm.cdf(x_grid[:, None], pm_, ps_), axis=1
    )
    slope_grid, cdf_gap = jnp.asarray(x_grid[:, None], jnp.float32), jnp.asarray(cdf_gap, jnp.float32)

    def evaluate(state):
        f = lambda x: adversarial.discriminate(state, x)
        slopes = lambda x: wgan_gp.per_sample_gradient_norms(f, x)
        signed = jax.grad(lambda x: jnp.sum(f(x)))(slope_grid)[:, 0]
        return {
            "estimate": jnp.mean(f(xp)) - jnp.mean(f(xq)),
            "estimate_quadrature": jnp.sum(signed * cdf_gap) * dx_grid,
            "slope_data": jnp.mean(slopes(xp)),
            "slope_samples": jnp.mean(slopes(xq)),
            "max_slope_grid": jnp.max(jnp.abs(signed)),
            "at_bound": _at_bound(state.discriminator.params, state.hparams["clip"]),
        }

    evaluate = jax.jit(jax.vmap(evaluate))
    curves = {
        key: []
        for key in ("estimate", "estimate_quadrature", "slope_data", "slope_samples", "max_slope_grid", "at_bound")
    }
    updates = []
    t0 = time.perf_counter()
    n_chunks = max(1, args.critic_steps // every)
    for c in range(n_chunks + 1):
        values = jax.device_get(evaluate(states))
        for key in curves:
            curves[key].append(np.asarray(values[key], np.float64))
        updates.append(c * every * k)
        if c < n_chunks:
            keys = jnp.stack([jax.random.PRNGKey(10_000 * c + i) for i in range(len(clips))])
            states = chunk(states, mixture, keys)
    jax.block_until_ready(states)
    critic_seconds = time.perf_counter() - t0
    curves = {key: np.stack(v, 1) for key, v in curves.items()}  # (clips, evals)
    layer_norms = np.asarray(jax.jit(jax.vmap(_layer_gradient_norms, in_axes=(0, None, None)))(states, xp, xq))
    p, q = pair_densities(CLIP_PAIR)
    w1 = exact_w1_on_grid(p, q)
    slopes_end = np.asarray(
        jax.jit(jax.vmap(lambda s: jax.grad(lambda x: jnp.sum(adversarial.discriminate(s, x)))(slope_grid)[:, 0]))(
            states
        ),
        np.float64,
    )
    critic_rows = {}
    for i, c in enumerate(clips):
        est, quad, lip = (curves[key][i, -1] for key in ("estimate", "estimate_quadrature", "max_slope_grid"))
        critic_rows[str(c)] = {
            "estimate": float(est),
            "estimate_quadrature": float(quad),
            "estimate_over_max_slope": float(quad / lip) if lip > 0 else float("nan"),
            "ratio_to_exact_w1": float(quad / lip / w1) if lip > 0 else float("nan"),
            "slope_data": float(curves["slope_data"][i, -1]),
            "slope_samples": float(curves["slope_samples"][i, -1]),
            "max_slope_grid": float(lip),
            "at_bound": float(curves["at_bound"][i, -1]),
            "layer_gradient_norms": layer_norms[i].tolist(),
            "critic_updates_to_90pct_of_final_raw_estimate": _updates_to(
                curves["estimate_quadrature"][i], updates, 0.9
            ),
            "critic_updates_to_90pct_of_final_normalised_estimate": _updates_to(
                curves["estimate_quadrature"][i] / np.maximum(curves["max_slope_grid"][i], 1e-30), updates, 0.9
            ),
        }

    # (b) the whole WGAN on the ring
    ring = load_dataset("ring8")
    dist = ring.distribution
    seeds = [s for s in range(args.ring_seeds) for _ in clips]
    ring_clips = clips * args.ring_seeds
    ring_config = wgan.WGANConfig(
        hidden=(args.toy_width,) * 3,
        latent_dim=2,
        g_learning_rate=args.wgan_lr,
        d_learning_rate=args.wgan_lr,
        lr_decay_steps=args.ring_steps,
        clip=max(clips),  # init clips the critic at config.clip, not at each model's leaf: start in the widest box
    )
    logs = []
    ring_states, info = train_sweep(
        obj,
        ring_config,
        ring,
        seeds=seeds,
        hparams={"clip": ring_clips},
        steps=args.ring_steps,
        batch_size=256,
        progress=False,
        log_every=max(1, args.ring_steps // 40),
        on_log=lambda done, m: logs.append((done, np.asarray(m["w1_estimate"]), np.asarray(m["g_grad_norm"]))),
    )
    n = args.ring_samples
    samples = np.asarray(
        jax.jit(jax.vmap(lambda s, key: wgan.sample(s, key, n)))(
            ring_states, jnp.stack([jax.random.PRNGKey(20_000 + i) for i in range(len(seeds))])
        )
    )
    real = dist.sample(np.random.default_rng(3), n)
    real2 = dist.sample(np.random.default_rng(4), n)
    w1_floor = float(transport.wasserstein(real, real2, p=1))
    per_model = []
    for i, (c, seed) in enumerate(zip(ring_clips, seeds)):
        state = unstack(ring_states, i)
        row = {"clip": c, "seed": seed}
        if np.all(np.isfinite(samples[i])):
            row.update(mode_coverage(samples[i], dist.modes, dist.std))
            row["w1_to_ring"] = float(transport.wasserstein(samples[i], real, p=1))
        else:
            row.update({"modes": float("nan"), "high_quality": float("nan"), "reverse_kl": float("nan")})
            row["w1_to_ring"] = float("nan")
        row["slope_data"] = float(_mean_slope(state, jnp.asarray(real)))
        finite = samples[i][np.all(np.isfinite(samples[i]), 1)]
        row["slope_samples"] = float(_mean_slope(state, jnp.asarray(finite))) if len(finite) else float("nan")
        row["final_w1_estimate"] = float(logs[-1][1][i])
        row["final_g_grad_norm"] = float(logs[-1][2][i])
        per_model.append(row)
    ring_rows = {}
    for c in clips:
        mine = [r for r in per_model if r["clip"] == c]
        ring_rows[str(c)] = {
            key: _stats([r[key] for r in mine])
            for key in (
                "modes",
                "high_quality",
                "reverse_kl",
                "w1_to_ring",
                "slope_data",
                "slope_samples",
                "final_w1_estimate",
                "final_g_grad_norm",
            )
        }
    _plot_weight_clipping(
        out / "weight_clipping.png",
        clips,
        updates,
        curves,
        w1,
        x_grid,
        slopes_end,
        p,
        q,
        layer_norms,
        samples,
        ring_clips,
        dist,
        logs,
    )
    record = {
        "critic": {
            "setup": {
                "p": PAIRS[CLIP_PAIR]["label"].split(" vs ")[0],
                "q": PAIRS[CLIP_PAIR]["label"].split(" vs ")[1] + " (frozen affine generator)",
                "critic": "MLP 3 x 64, ReLU, no normalisation; every parameter clipped to [-c, c] after each update",
                "optimizer": f"RMSProp({args.wgan_lr}) (PyTorch's: alpha 0.99, eps 1e-8), n_critic {k}, batch {batch}",
                "critic_updates": int(updates[-1]),
                "evaluation": f"{n_eval} fresh points of p and of q; max slope on 2,401 grid points of [-6, 6]",
            },
            "exact_w1": w1,
            "exact_w1_samples": float(transport.wasserstein_1d(np.asarray(xp[:, 0]), np.asarray(xq[:, 0]), p=1)),
            "rows": critic_rows,
            "seconds": critic_seconds,
        },
        "ring": {
            "setup": {
                "networks": f"MLPs 3 x {args.toy_width} (ReLU), latent 2",
                "optimizer": f"RMSProp({args.wgan_lr}) decayed linearly to 0, n_critic 5, batch 256",
                "generator_steps": args.ring_steps,
                "seeds": list(range(args.ring_seeds)),
                "samples": n,
                "w1": f"exact W1 between {n} samples and {n} ring points (network simplex)",
            },
            "w1_floor_two_ring_samples": w1_floor,
            "rows": ring_rows,
            "per_model": per_model,
            "compile_seconds": info["compile_seconds"],
            "train_seconds": info["train_seconds"],
        },
    }
    arrays = {
        "clip_updates": np.asarray(updates),
        **{f"clip_{key}": v for key, v in curves.items()},
        "clip_slope_grid": x_grid,
        "clip_critic_slopes_on_grid": slopes_end,
        "clip_ring_samples": samples,
        "clip_ring_log_steps": np.array([s for s, _, _ in logs]),
        "clip_ring_w1_estimate": np.stack([e for _, e, _ in logs]),
    }
    return record, arrays


def _updates_to(curve, updates, fraction) -> int | None:
    """First number of updates at which ``curve`` reaches ``fraction`` of its final value (None if never)."""
    final = curve[-1]
    if not np.isfinite(final) or final <= 0:
        return None
    hit = np.flatnonzero(curve >= fraction * final)
    return int(updates[hit[0]]) if hit.size else None


def _plot_weight_clipping(
    path, clips, updates, curves, w1, x_grid, slopes_end, p, q, layer_norms, samples, ring_clips, dist, logs
):
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(clips)))
    fig = plt.figure(figsize=(13, 6.2), dpi=100)
    top = [fig.add_subplot(2, 4, i + 1) for i in range(4)]
    ax = top[0]
    for i, c in enumerate(clips):
        ax.semilogy(updates, np.abs(curves["estimate"][i]) + 1e-30, color=colours[i], label=f"c = {c}")
    ax.axhline(w1, color="k", ls="--", lw=1, label=f"exact W1 = {w1:.3f}")
    ax.set_title("|E_p f - E_q f| (raw dual estimate)", fontsize=8)
    ax.set_xlabel("critic updates")
    ax.legend(fontsize=6)
    ax = top[1]
    for i in range(len(clips)):
        ax.plot(
            updates,
            curves["estimate_quadrature"][i] / np.maximum(curves["max_slope_grid"][i], 1e-30) / w1,
            color=colours[i],
        )
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_ylim(-0.1, 1.1)
    ax.set_title("(E_p f - E_q f) / max|f'| / W1", fontsize=8)
    ax.set_xlabel("critic updates")
    ax = top[2]
    dx = float(x_grid[1] - x_grid[0])
    p_x, q_x = np.interp(x_grid, GRID, p), np.interp(x_grid, GRID, q)
    f_star = optimal_critic_1d(p_x, q_x, dx)
    ax.plot(x_grid, f_star, color="k", lw=2, label="f* (slope ±1)")
    for i in range(len(clips)):
        f = np.cumsum(slopes_end[i]) * dx / max(np.abs(slopes_end[i]).max(), 1e-30)  # f / max|f'| from its slopes
        ax.plot(x_grid, f - f.mean(), color=colours[i], lw=1)
    ax2 = ax.twinx()
    ax2.fill_between(x_grid, 0, p_x, color="tab:blue", alpha=0.1)
    ax2.fill_between(x_grid, 0, q_x, color="tab:orange", alpha=0.1)
    ax2.set_yticks([])
    ax.set_title("critic / its max slope, centred (p, q shaded)", fontsize=8)
    ax.legend(fontsize=6)
    ax = top[3]
    for i, c in enumerate(clips):
        ax.semilogy(
            np.arange(1, layer_norms.shape[1] + 1), layer_norms[i] + 1e-30, "o-", color=colours[i], label=f"c = {c}"
        )
    ax.set_xlabel("layer (1 = input side)")
    ax.set_title("‖∂ critic loss / ∂ kernel‖ per layer", fontsize=8)
    for i in range(len(clips)):
        ax = fig.add_subplot(2, 4, 5 + i)
        x = samples[i]
        x = x[np.all(np.isfinite(x), 1)]
        ax.scatter(dist.modes[:, 0], dist.modes[:, 1], s=30, color="k", marker="x")
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color=colours[i])
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_title(f"WGAN on the ring, c = {ring_clips[i]} (seed 0)", fontsize=8)
    fig.suptitle(
        "Weight clipping: a frozen-generator critic in 1-D (top) and the whole WGAN on the ring (bottom)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Part 4: overcomplete autoencoders
# ---------------------------------------------------------------------------------------------------------------


AE_SHORT_NAMES = ("under", "over", "linear", "sparse", "denoising", "contractive")
"""``--ae-models`` names of the rows of :func:`ae_models`, in order."""


def ae_models(latent: int, under: int) -> dict:
    """name -> (objective, config): one-hidden-layer autoencoders 64 -> codes -> 64 with sigmoid codes and a
    Bernoulli likelihood (the classic setting of sparse, denoising and contractive autoencoders), and one linear
    overcomplete autoencoder with squared error, whose model class contains the identity exactly."""
    shared = dict(hidden=(), code_activation="sigmoid")
    linear = dict(hidden=(), code_activation="linear", reconstruction="mse", decoder_output="linear")
    return {
        f"undercomplete ({under})": ("ae", ae.AutoencoderConfig(latent_dim=under, **shared)),
        f"overcomplete ({latent}), no regulariser": ("ae", ae.AutoencoderConfig(latent_dim=latent, **shared)),
        f"overcomplete ({latent}), linear + MSE, no regulariser": (
            "ae",
            ae.AutoencoderConfig(latent_dim=latent, **linear),
        ),
        f"sparse ({latent})": (
            "sparse-ae",
            sparse_ae.SparseAEConfig(
                latent_dim=latent, sparsity="kl", sparsity_weight=1.0, sparsity_target=0.05, **shared
            ),
        ),
        f"denoising ({latent})": (
            "denoising-ae",
            denoising_ae.DenoisingAEConfig(latent_dim=latent, corruption="masking", noise_level=0.3, **shared),
        ),
        f"contractive ({latent})": (
            "contractive-ae",
            contractive_ae.ContractiveAEConfig(
                latent_dim=latent, contractive_weight=0.1, penalty_examples=16, **shared
            ),
        ),
    }


def identity_distance(fn, x) -> np.ndarray:
    """‖J_fn(x_i) - I‖_F / ‖I‖_F per example for a map fn of (n, *shape) -> (n, *shape): 0 for the identity, 1 for
    a constant map. x: (n, *shape) -> (n,)."""
    size = math.prod(x.shape[1:])
    single = lambda xi: fn(xi[None]).reshape(-1)
    jac = jax.vmap(jax.jacfwd(single))(x).reshape(x.shape[0], size, size)
    return np.asarray(jnp.linalg.norm(jac - jnp.eye(size), axis=(1, 2)) / math.sqrt(size))


def run_overcomplete_ae(out: pathlib.Path, args) -> tuple[dict, dict]:
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    train_x = train.images.astype(np.float32) / train.max_value
    test_x = test.images.astype(np.float32) / test.max_value
    rng = np.random.default_rng(11)
    uniform = rng.uniform(size=test_x.shape).astype(np.float32)
    noisy = np.clip(test_x + 0.2 * rng.standard_normal(test_x.shape), 0.0, 1.0).astype(np.float32)
    probe_key = jax.random.PRNGKey(3)
    pixels = linear_probe(
        train_x.reshape(len(train_x), -1),
        train.labels,
        test_x.reshape(len(test_x), -1),
        test.labels,
        probe_key,
        steps=args.probe_steps,
    )
    rows = {"raw pixels": {"linear_probe_accuracy": pixels["accuracy"], "code_size": 64, "n_test": len(test_x)}}
    pictures = {"input": test_x[:8], "input_uniform": uniform[:4]}
    mse = lambda a, b: float(np.mean(np.square(np.asarray(a, np.float64) - b)))
    models = ae_models(args.ae_latent, args.ae_under)
    for short, (name, (objective, config)) in zip(AE_SHORT_NAMES, models.items()):
        if short not in args.ae_models:
            continue
        states, info = train_sweep(
            objective, config, train, seeds=[args.seed], steps=args.ae_steps, batch_size=64, progress=False
        )
        state = unstack(states, 0)
        recon = jax.jit(lambda x, state=state: ae.reconstruct(state, x))
        codes = jax.jit(lambda x, state=state: ae.encode(state, x))
        r_clean, r_uniform, r_noisy = (map_in_batches(recon, v, 512) for v in (test_x, uniform, noisy))
        train_codes, test_codes = map_in_batches(codes, train_x, 512), map_in_batches(codes, test_x, 512)
        probe = linear_probe(train_codes, train.labels, test_codes, test.labels, probe_key, steps=args.probe_steps)
        jac_x = jnp.asarray(test_x[: args.jacobian_examples])
        rows[name] = {
            "objective": objective,
            "config": dataclasses.asdict(config),
            "code_size": config.latent_dim,
            "mse_clean": mse(r_clean, test_x),
            "mse_uniform_noise": mse(r_uniform, uniform),
            "mse_noisy_vs_noisy_input": mse(r_noisy, noisy),
            "mse_noisy_vs_clean": mse(r_noisy, test_x),
            "jacobian_to_identity": float(
                np.mean(identity_distance(lambda x, state=state: ae.reconstruct(state, x), jac_x))
            ),
            "jacobian_to_identity_uniform": float(
                np.mean(
                    identity_distance(
                        lambda x, state=state: ae.reconstruct(state, x), jnp.asarray(uniform[: args.jacobian_examples])
                    )
                )
            ),
            "encoder_jacobian_frobenius": float(np.mean(np.asarray(contractive_ae.contraction(state, jac_x)))),
            "fraction_codes_below_0.05": float(np.mean(test_codes < 0.05)),
            "linear_probe_accuracy": probe["accuracy"],
            "train_seconds": info["train_seconds"] + info["compile_seconds"],
        }
        pictures[name] = r_clean[:8]
        pictures[name + " uniform"] = r_uniform[:4]
        print(
            f"  {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[name].items() if isinstance(v, float)), flush=True
        )
    baselines = {
        "mse_uniform_if_reconstruction_is_a_constant_0.5": mse(np.full_like(uniform, 0.5), uniform),
        "mse_noisy_input_vs_clean": mse(noisy, test_x),
        "mse_clean_if_reconstruction_is_the_train_mean": mse(np.broadcast_to(train_x.mean(0), test_x.shape), test_x),
    }
    _plot_autoencoders(out / "overcomplete_ae.png", pictures)
    record = {
        "setup": {
            "data": f"scikit-learn 8x8 digits, {len(train_x)} train / {len(test_x)} test, pixels / 16 in [0, 1]",
            "networks": "encoder Dense(64 -> codes) + sigmoid, decoder Dense(codes -> 64) + sigmoid (hidden=())",
            "loss": "Bernoulli cross-entropy; Adam(1e-3), batch 64",
            "steps": args.ae_steps,
            "noise": "uniform: U(0, 1) images; noisy: test digits + N(0, 0.2^2), clipped to [0, 1]",
            "jacobian": f"‖J - I‖_F / 8 of x -> g(h(x)) at {args.jacobian_examples} test digits (and uniform images)",
            "linear_probe": f"gendl_jax.learned_metrics.linear_probe on the codes, {args.probe_steps} Adam steps",
        },
        "baselines": baselines,
        "rows": rows,
    }
    return record, {}


def _plot_autoencoders(path, pictures):
    names = [k for k in pictures if not k.endswith("uniform")]
    fig, axes = plt.subplots(len(names), 12, figsize=(10, 1.2 * len(names)), dpi=90, squeeze=False)
    for r, name in enumerate(names):
        uni = pictures["input_uniform" if name == "input" else name + " uniform"]
        for c in range(12):
            ax = axes[r, c]
            image = pictures[name][c] if c < 8 else uni[c - 8]
            ax.imshow(np.asarray(image)[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        axes[r, 0].text(0, -0.6, name + ": test digits, then uniform noise", fontsize=7, transform=axes[r, 0].transAxes)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.06, hspace=0.6, wspace=0.05)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Part 5: oscillation on the ring
# ---------------------------------------------------------------------------------------------------------------


def dominant_mode_switches(histograms, threshold: float = 0.5) -> dict:
    """Summary of mode histograms over time (T, K) (rows sum to 1): the dominant mode of each record where one
    mode holds at least ``threshold`` of the mass (else -1), the number of changes of the dominant mode between
    consecutive such records, the number of distinct dominant modes and the share of records collapsed."""
    histograms = np.asarray(histograms, np.float64)
    top = histograms.argmax(1)
    dominant = np.where(histograms.max(1) >= threshold, top, -1)
    collapsed = dominant[dominant >= 0]
    changed = np.flatnonzero(collapsed[1:] != collapsed[:-1]) if collapsed.size else np.zeros(0, int)
    switches = len(changed)
    step = (collapsed[changed + 1] - collapsed[changed]) % histograms.shape[1] if switches else np.zeros(0, int)
    records = np.flatnonzero(dominant >= 0)
    return {
        "dominant": dominant.tolist(),
        "switches": switches,
        "share_of_switches_to_a_ring_neighbour": float(np.mean((step == 1) | (step == histograms.shape[1] - 1)))
        if switches
        else float("nan"),
        "last_switch_record": int(records[changed[-1] + 1]) if switches else None,
        "distinct_dominant_modes": len(set(collapsed.tolist())),
        "share_collapsed": float(np.mean(dominant >= 0)),
        "mean_max_mass": float(histograms.max(1).mean()),
        "mean_modes_above_5pct": float(np.mean((histograms > 0.05).sum(1))),
    }


def run_oscillation(out: pathlib.Path, args) -> tuple[dict, dict]:
    obj = OBJECTIVES["gan"]
    ring = load_dataset("ring8")
    dist = ring.distribution
    lrs = [float(v) for v in args.osc_lrs]
    seeds = [int(s) for s in args.osc_seeds]
    models = [(lr, s) for lr in lrs for s in seeds]
    config = gan.GANConfig(
        hidden=(args.toy_width,) * 2, latent_dim=2, d_activation="leaky_relu", generator_loss="non-saturating"
    )
    iterators = [make_iterator(ring, 256, s, 1, obj.value_range) for _, s in models]
    states = init_sweep(
        obj,
        config,
        iterators[0].batch_at(0),
        [s for _, s in models],
        {"g_learning_rate": [lr for lr, _ in models], "d_learning_rate": [lr for lr, _ in models]},
    )
    step = jax.jit(jax.vmap(obj.step))
    n = args.osc_samples
    sample = jax.jit(jax.vmap(lambda s, key: gan.sample(s, key, n)))
    histograms, hq, steps_at = [], [], []
    t0 = time.perf_counter()
    for s in range(args.osc_steps + 1):
        if s % args.osc_every == 0:
            x = np.asarray(sample(states, jnp.stack([jax.random.PRNGKey(30_000 + s)] * len(models))))
            counts = [mode_histogram(x[i], dist.modes, dist.std, threshold=1e9) for i in range(len(models))]
            histograms.append(np.stack(counts) / n)
            hq.append([mode_coverage(x[i], dist.modes, dist.std)["high_quality"] for i in range(len(models))])
            steps_at.append(s)
        if s < args.osc_steps:
            states, _ = step(states, stack_batches(iterators, s))
    seconds = time.perf_counter() - t0
    histograms = np.stack(histograms, 1)  # (models, T, 8)
    hq = np.asarray(hq).T
    rows = []
    for i, (lr, seed) in enumerate(models):
        summary = dominant_mode_switches(histograms[i])
        rows.append(
            {
                "learning_rate": lr,
                "seed": seed,
                **{k: v for k, v in summary.items() if k != "dominant"},
                "mean_high_quality": float(hq[i].mean()),
                "last_switch_step": None
                if summary["last_switch_record"] is None
                else int(steps_at[summary["last_switch_record"]]),
                "dominant_sequence": "".join("." if d < 0 else str(d) for d in summary["dominant"]),
            }
        )
    _plot_oscillation(out / "oscillation.png", histograms, steps_at, models)
    record = {
        "setup": {
            "objective": "NS-GAN (eq. 7), one D update per G update",
            "networks": f"MLPs 2 x {args.toy_width} (ReLU generator, LeakyReLU(0.2) discriminator), latent 2",
            "optimizer": "Adam(lr, beta1 0.5) for both networks, constant rate",
            "data": "ring of 8 Gaussians, radius 1, std 0.01 (PacGAN), batch 256",
            "steps": args.osc_steps,
            "record_every": args.osc_every,
            "samples_per_record": n,
            "histogram": "share of the samples whose nearest mode is k (all samples, not only high-quality ones)",
            "dominant": "the mode holding >= 50% of the samples ('.' in the sequence: none does)",
        },
        "rows": rows,
        "seconds": seconds,
    }
    return record, {"osc_histograms": histograms, "osc_steps": np.asarray(steps_at), "osc_high_quality": hq}


def _plot_oscillation(path, histograms, steps_at, models):
    fig, axes = plt.subplots(
        len(models), 1, figsize=(10, 1.25 * len(models) + 0.6), dpi=100, sharex=True, squeeze=False
    )
    extent = (steps_at[0], steps_at[-1], 7.5, -0.5)
    for i, (lr, seed) in enumerate(models):
        ax = axes[i, 0]
        im = ax.imshow(
            histograms[i].T, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1, extent=extent
        )
        ax.set_yticks(range(8))
        ax.tick_params(labelsize=6)
        ax.set_ylabel(f"lr {lr:g}\nseed {seed}\nmode", fontsize=7)
    axes[-1, 0].set_xlabel("generator step")
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.02, label="share of samples")
    fig.suptitle("NS-GAN on the ring: share of samples per nearest mode over training", fontsize=9)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Part 6: the generator trained in the inner loop against a frozen discriminator
# ---------------------------------------------------------------------------------------------------------------


def run_inner_loop(out: pathlib.Path, args) -> tuple[dict, dict]:
    obj = OBJECTIVES["gan"]
    ring = load_dataset("ring8")
    dist = ring.distribution
    snapshots = sorted(int(v) for v in args.inner_snapshots)
    config = gan.GANConfig(
        hidden=(args.toy_width,) * 2,
        latent_dim=2,
        d_activation="leaky_relu",
        g_learning_rate=1e-3,
        d_learning_rate=1e-3,
    )
    iterators = [make_iterator(ring, 256, args.seed, 1, obj.value_range)]
    state = init_sweep(obj, config, iterators[0].batch_at(0), [args.seed])
    step = jax.jit(jax.vmap(obj.step))
    t0 = time.perf_counter()
    frozen = []
    for s in range(snapshots[-1]):
        state, _ = step(state, stack_batches(iterators, s))
        if s + 1 in snapshots:
            frozen.append(unstack(state, 0))
    states = obj.with_hparams(_tree_stack(frozen), d_learning_rate=1e-20, g_learning_rate=args.inner_lr)
    d_before = states.discriminator.params
    r = args.inner_window
    axis = np.linspace(-r, r, 401)
    plane = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
    logits = np.asarray(jax.jit(jax.vmap(lambda s: adversarial.discriminate(s, plane)))(states))
    argmax = plane[logits.argmax(1)]
    on_border = [bool(np.any(np.abs(a) >= r - 1e-6)) for a in argmax]
    n = args.inner_samples
    sample = jax.jit(jax.vmap(lambda s, key: gan.sample(s, key, n)))
    score = jax.jit(jax.vmap(adversarial.discriminate))
    key = jnp.stack([jax.random.PRNGKey(40_000)] * len(snapshots))
    curves = {k: [] for k in ("median_distance", "within_0.05", "spread", "mean_logit")}
    steps_at, start_samples = [], None
    g_iterators = [make_iterator(ring, 256, 1000 + i, 1, obj.value_range) for i in range(len(snapshots))]
    for s in range(args.inner_steps + 1):
        if s % args.inner_every == 0:
            x = np.asarray(sample(states, key))
            if start_samples is None:
                start_samples = x
            dist_to = np.linalg.norm(x - argmax[:, None, :], axis=-1)
            curves["median_distance"].append(np.median(dist_to, 1))
            curves["within_0.05"].append(np.mean(dist_to < 0.05, 1))
            curves["spread"].append(np.sqrt([np.trace(np.cov(xi.T)) for xi in x]))
            curves["mean_logit"].append(np.asarray(score(states, jnp.asarray(x))).mean(1))
            steps_at.append(s)
        if s < args.inner_steps:
            states, _ = step(states, stack_batches(g_iterators, s))
    seconds = time.perf_counter() - t0
    frozen_ok = all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(jax.tree_util.tree_leaves(d_before), jax.tree_util.tree_leaves(states.discriminator.params))
    )
    curves = {k: np.stack(v, 1) for k, v in curves.items()}
    final = np.asarray(sample(states, key))
    rows = []
    for i, snap in enumerate(snapshots):
        cells = np.round(final[i] / 0.05).astype(np.int64)
        _, counts = np.unique(cells, axis=0, return_counts=True)
        rows.append(
            {
                "gan_steps_before_freezing": snap,
                "argmax_d": argmax[i].tolist(),
                "argmax_on_window_border": on_border[i],
                "max_logit_on_window": float(logits[i].max()),
                "start": {k: float(v[i, 0]) for k, v in curves.items()},
                "end": {k: float(v[i, -1]) for k, v in curves.items()},
                "clusters_with_1pct_of_mass": int(np.sum(counts >= 0.01 * n)),
                "final_distance_to_argmax_max": float(np.linalg.norm(final[i] - argmax[i], axis=1).max()),
            }
        )
    _plot_inner_loop(
        out / "inner_loop.png", snapshots, axis, logits, argmax, start_samples, final, steps_at, curves, dist
    )
    record = {
        "setup": {
            "pre_training": f"NS-GAN, MLPs 2 x {args.toy_width}, latent 2, Adam(1e-3, 0.5), batch 256, on the ring; "
            f"discriminators frozen after {snapshots} steps",
            "inner_loop": f"only G trained for {args.inner_steps} updates, Adam({args.inner_lr}, 0.5), loss -log D(G(z)) "
            "(the library's gan.step with the discriminator's rate set to 1e-20)",
            "discriminator_bitwise_unchanged": frozen_ok,
            "argmax": f"argmax of D's logit on a 401 x 401 grid of [-{r}, {r}]^2",
            "samples": n,
        },
        "rows": rows,
        "seconds": seconds,
    }
    arrays = {
        "inner_steps": np.asarray(steps_at),
        **{f"inner_{k}": v for k, v in curves.items()},
        "inner_final_samples": final,
    }
    return record, arrays


def _plot_inner_loop(path, snapshots, axis, logits, argmax, start, final, steps_at, curves, dist):
    k = len(snapshots)
    fig, axes = plt.subplots(2, k + 1, figsize=(3.3 * (k + 1), 6.2), dpi=100, squeeze=False)
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    for i, snap in enumerate(snapshots):
        ax = axes[0, i]
        ax.imshow(logits[i].reshape(len(axis), len(axis)), origin="lower", extent=extent, cmap="coolwarm")
        ax.scatter(start[i, :, 0], start[i, :, 1], s=1, color="w", alpha=0.3)
        ax.scatter(dist.modes[:, 0], dist.modes[:, 1], s=20, color="k", marker="x")
        ax.scatter(*argmax[i], s=80, facecolors="none", edgecolors="lime", lw=2)
        ax.set_xlim(axis[0], axis[-1])
        ax.set_ylim(axis[0], axis[-1])
        ax.set_title(f"D frozen after {snap} GAN steps;\nsamples before (white)", fontsize=8)
        ax = axes[1, i]
        ax.imshow(logits[i].reshape(len(axis), len(axis)), origin="lower", extent=extent, cmap="coolwarm")
        inside = final[i][np.all(np.abs(final[i]) <= axis[-1], 1)]
        ax.scatter(inside[:, 0], inside[:, 1], s=2, color="w", alpha=0.5)
        ax.scatter(*argmax[i], s=80, facecolors="none", edgecolors="lime", lw=2)
        ax.set_title(f"after G-only training ({len(inside)}/{len(final[i])} in view)", fontsize=8)
    ax = axes[0, k]
    for i, snap in enumerate(snapshots):
        ax.semilogy(steps_at, curves["median_distance"][i], label=f"D after {snap}")
    ax.set_title("median distance of samples to argmax D", fontsize=8)
    ax.set_xlabel("generator-only updates")
    ax.legend(fontsize=6)
    ax = axes[1, k]
    for i, snap in enumerate(snapshots):
        ax.semilogy(steps_at, curves["spread"][i], label=f"D after {snap}")
    ax.set_title("spread sqrt(trace Cov) of the samples", fontsize=8)
    ax.set_xlabel("generator-only updates")
    fig.suptitle(
        "Generator trained against a frozen discriminator (green circle: argmax of D on the window)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Tables and main
# ---------------------------------------------------------------------------------------------------------------


def _pm(stat, fmt: str) -> str:
    return f"{stat['mean']:{fmt}}" + ("" if stat["stderr"] is None else f" ± {stat['stderr']:{fmt}}")


def tables(parts: dict) -> str:
    lines = []
    if "optimal_discriminator" in parts:
        r = parts["optimal_discriminator"]
        lines += [
            "### Optimal discriminator and the value of the game",
            "",
            "| p vs q | max abs(D - D*) | ∫ m abs(D - D*) | JSD | 2 JSD - log 4 (eq. 6) | L(D, G) quadrature | L(D, G) Monte Carlo | gap |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["pairs"].values():
            lines.append(
                f"| {row['label']} | {_pm(row['max_abs_error_region'], '.3f')} | {_pm(row['mean_abs_error_weighted'], '.4f')} "
                f"| {row['jsd']:.5f} | {row['two_jsd_minus_log4']:.5f} | {_pm(row['value_trained_quadrature'], '.5f')} "
                f"| {_pm(row['value_trained_monte_carlo'], '.5f')} | {_pm(row['gap_optimal_minus_trained'], '.5f')} |"
            )
        lines.append("")
    if "weight_clipping" in parts:
        r = parts["weight_clipping"]["critic"]
        lines += [
            f"### Weight clipping: critic against a frozen generator (exact W1 = {r['exact_w1']:.4f})",
            "",
            "| c | E_p f - E_q f | mean abs(f') at p / at q | max abs(f') on grid | estimate / max slope / W1 | weights at ±c | layer gradient norms (input → output) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, row in r["rows"].items():
            norms = ", ".join(f"{v:.1e}" for v in row["layer_gradient_norms"])
            lines.append(
                f"| {c} | {row['estimate']:.3e} | {row['slope_data']:.2e} / {row['slope_samples']:.2e} | {row['max_slope_grid']:.2e} "
                f"| {row['ratio_to_exact_w1']:.3f} | {100 * row['at_bound']:.1f}% | {norms} |"
            )
        ring = parts["weight_clipping"]["ring"]
        lines += [
            "",
            f"### Weight clipping: the whole WGAN on the ring (W1 floor between two ring samples: {ring['w1_floor_two_ring_samples']:.4f})",
            "",
            "| c | modes | high-quality % | reverse KL | W1 to the ring | critic abs(∇f) data / samples | last E_p f - E_q f | last ‖∇G‖ |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c, row in ring["rows"].items():
            lines.append(
                f"| {c} | {_pm(row['modes'], '.1f')} | {100 * row['high_quality']['mean']:.1f} | {_pm(row['reverse_kl'], '.3f')} "
                f"| {_pm(row['w1_to_ring'], '.3f')} | {row['slope_data']['mean']:.2e} / {row['slope_samples']['mean']:.2e} "
                f"| {row['final_w1_estimate']['mean']:.2e} | {row['final_g_grad_norm']['mean']:.2e} |"
            )
        lines.append("")
    if "overcomplete_ae" in parts:
        r = parts["overcomplete_ae"]
        b = r["baselines"]
        lines += [
            "### Overcomplete autoencoders on the 8x8 digits",
            "",
            "| model | MSE clean | MSE uniform noise | MSE noisy → noisy / → clean | ‖J - I‖ / 8 digits / noise | ‖J_h‖_F | codes < 0.05 | linear probe |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in r["rows"].items():
            if "mse_clean" not in row:
                lines.append(f"| {name} | - | - | - | - | - | - | {100 * row['linear_probe_accuracy']:.1f}% |")
                continue
            lines.append(
                f"| {name} | {row['mse_clean']:.4f} | {row['mse_uniform_noise']:.4f} | {row['mse_noisy_vs_noisy_input']:.4f} / "
                f"{row['mse_noisy_vs_clean']:.4f} | {row['jacobian_to_identity']:.3f} / {row['jacobian_to_identity_uniform']:.3f} "
                f"| {row['encoder_jacobian_frobenius']:.2f} | {100 * row['fraction_codes_below_0.05']:.1f}% | {100 * row['linear_probe_accuracy']:.1f}% |"
            )
        lines += [
            "",
            f"Baselines: a constant 0.5 reconstruction of uniform noise has MSE {b['mse_uniform_if_reconstruction_is_a_constant_0.5']:.4f}; "
            f"the noisy digits are at MSE {b['mse_noisy_input_vs_clean']:.4f} from the clean ones; the train mean digit is at "
            f"{b['mse_clean_if_reconstruction_is_the_train_mean']:.4f} from the test digits.",
            "",
        ]
    if "oscillation" in parts:
        r = parts["oscillation"]
        lines += [
            "### Oscillation on the ring",
            "",
            "| lr | seed | records collapsed (≥ 50% on one mode) | switches of the dominant mode | to a ring neighbour | last switch at step | distinct dominant modes | mean max share | modes with > 5% | mean HQ % |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['learning_rate']:g} | {row['seed']} | {100 * row['share_collapsed']:.0f}% | {row['switches']} | "
                f"{100 * row['share_of_switches_to_a_ring_neighbour']:.0f}% | {row['last_switch_step']} | "
                f"{row['distinct_dominant_modes']} | {row['mean_max_mass']:.2f} | {row['mean_modes_above_5pct']:.1f} | {100 * row['mean_high_quality']:.1f} |"
            )
        lines.append("")
    if "inner_loop" in parts:
        r = parts["inner_loop"]
        lines += [
            "### Generator trained against a frozen discriminator",
            "",
            "| D frozen after | argmax D (window) | on the border | median distance to argmax: start → end | within 0.05: start → end | spread: start → end | mean logit D(G(z)) → end (max on window) | clusters ≥ 1% |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            s, e = row["start"], row["end"]
            lines.append(
                f"| {row['gan_steps_before_freezing']} | ({row['argmax_d'][0]:.2f}, {row['argmax_d'][1]:.2f}) | {row['argmax_on_window_border']} "
                f"| {s['median_distance']:.3f} → {e['median_distance']:.3g} | {100 * s['within_0.05']:.0f}% → {100 * e['within_0.05']:.0f}% "
                f"| {s['spread']:.3f} → {e['spread']:.3g} | {s['mean_logit']:.2f} → {e['mean_logit']:.2f} ({row['max_logit_on_window']:.2f}) "
                f"| {row['clusters_with_1pct_of_mass']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _json_safe(value):
    """Non-finite floats as strings, so that results.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_safe(value.item())
    return value


def _from_json(value):
    """Inverse of :func:`_json_safe` for the non-finite floats."""
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--toy-width", type=int, default=128, help="MLP width on the ring (parts 3b, 5, 6)")
    g = parser.add_argument_group("parts 1-2")
    g.add_argument("--seeds", type=int, default=2, help="discriminators per (p, q) pair")
    g.add_argument("--d-steps", type=int, default=4000)
    g.add_argument("--d-batch", type=int, default=512)
    g.add_argument("--d-lr", type=float, default=3e-3)
    g.add_argument("--mc-samples", type=int, default=200_000)
    g.add_argument("--region-density", type=float, default=1e-3)
    g = parser.add_argument_group("part 3")
    g.add_argument("--wgan-lr", type=float, default=2e-4)
    g.add_argument("--wgan-batch", type=int, default=256)
    g.add_argument(
        "--critic-steps", type=int, default=3000, help="WGAN steps of the frozen-generator critic (x n_critic updates)"
    )
    g.add_argument("--critic-every", type=int, default=100)
    g.add_argument("--critic-eval", type=int, default=20_000)
    g.add_argument("--ring-steps", type=int, default=2000)
    g.add_argument("--ring-seeds", type=int, default=2)
    g.add_argument("--ring-samples", type=int, default=2500)
    g = parser.add_argument_group("part 4")
    g.add_argument("--ae-steps", type=int, default=4000)
    g.add_argument("--ae-latent", type=int, default=256)
    g.add_argument("--ae-under", type=int, default=16)
    g.add_argument("--ae-models", nargs="+", choices=AE_SHORT_NAMES, default=list(AE_SHORT_NAMES))
    g.add_argument("--probe-steps", type=int, default=2000)
    g.add_argument("--jacobian-examples", type=int, default=100)
    g = parser.add_argument_group("part 5")
    g.add_argument("--osc-lrs", nargs="+", default=["1e-3", "5e-2", "1e-1"])
    g.add_argument("--osc-seeds", nargs="+", default=["0", "1"])
    g.add_argument("--osc-steps", type=int, default=3000)
    g.add_argument("--osc-every", type=int, default=10)
    g.add_argument("--osc-samples", type=int, default=1000)
    g = parser.add_argument_group("part 6")
    g.add_argument("--inner-snapshots", nargs="+", default=["500", "1000", "2000", "3000", "5000"])
    g.add_argument("--inner-steps", type=int, default=4000)
    g.add_argument("--inner-every", type=int, default=100)
    g.add_argument("--inner-lr", type=float, default=1e-2)
    g.add_argument("--inner-window", type=float, default=3.0)
    g.add_argument("--inner-samples", type=int, default=2000)
    return parser.parse_args(argv)


RUNNERS = {
    "optimal_discriminator": run_optimal_discriminator,
    "weight_clipping": run_weight_clipping,
    "overcomplete_ae": run_overcomplete_ae,
    "oscillation": run_oscillation,
    "inner_loop": run_inner_loop,
}


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    previous = _from_json(json.loads(path.read_text())) if path.is_file() else {}
    parts = previous.get("parts", {})
    arrays_path = out / "arrays.npz"
    arrays = dict(np.load(arrays_path)) if arrays_path.is_file() else {}
    commands = previous.get("commands", {})
    command = "python experiments/gan_theory.py" + "".join(f" {a}" for a in argv)
    for name in args.parts:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        record, part_arrays = RUNNERS[name](out, args)
        record["seconds_total"] = time.perf_counter() - t0
        record["load_average_1min_at_start_and_end"] = [load, os.getloadavg()[0]]
        parts[name] = record
        commands[name] = command
        arrays.update(part_arrays)
        print(f"{name}: {record['seconds_total']:.0f} s", flush=True)
        results = {
            "commands": commands,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "jax": jax.__version__,
                "devices": [str(d) for d in jax.devices()],
            },
            "parts": {k: parts[k] for k in PARTS if k in parts},
        }
        path.write_text(json.dumps(_json_safe(results), indent=2, ensure_ascii=False))
        np.savez_compressed(arrays_path, **arrays)
        (out / "tables.md").write_text(tables(results["parts"]))
    print(tables(results["parts"]))
    return results


if __name__ == "__main__":
    main()
