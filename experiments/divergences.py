"""Divergences and optimal transport, the lecture's pictures (PNG + JSON each).

1. ``kl_directions``: fitting a Gaussian q to a bimodal p by KL(p||q) (covers both modes) and by
   KL(q||p) (locks onto one), lecture Figure 3. The KL(p||q) optimum is p's mean and variance.
2. ``mle_gmm``: a Gaussian mixture fitted by gradient ascent on the log-likelihood, i.e. by
   minimising KL(p_data || q_theta), against scikit-learn's EM.
3. ``disjoint_supports``: two parallel segments {0} x [0, 1] and {theta} x [0, 1] (Arjovsky et al.
   2017, Example 1): JSD stays at log 2 and KL is infinite for every theta != 0, while W1 = |theta|.
4. ``monotone_rearrangement``: in 1-D the optimal plan matches sorted samples; W1 is the area
   between the quantile functions.
5. ``kantorovich_rubinstein``: an MLP critic with gradient penalty maximising E_x f - E_y f; its
   dual estimate approaches the exact W1 between the two point clouds.

    python experiments/divergences.py            # about 2-4 min on 2 CPU cores
    python experiments/divergences.py --critic-steps 500   # quicker check

Everything runs in float64 (``jax_enable_x64``) so that the densities of parts 1-2 do not underflow.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
import scipy.stats
from sklearn.mixture import GaussianMixture as SklearnGMM

from gendl_jax import divergences as dv
from gendl_jax import transport
from gendl_jax.data.toy import ring8
from gendl_jax.models import MLPDiscriminator
from gendl_jax.objectives.wgan_gp import gradient_penalty

GRID = np.linspace(-9.0, 9.0, 3601)


def _gaussian_hist(mu, log_sigma, grid=GRID):
    """N(mu, sigma^2) discretised on ``grid`` as a histogram (normalised on the grid)."""
    logp = -0.5 * ((grid - mu) / jnp.exp(log_sigma)) ** 2
    return jax.nn.softmax(logp)


def _mixture_hist(weights, means, sds, grid=GRID):
    logp = jax.scipy.special.logsumexp(
        jnp.log(weights) + jax.scipy.stats.norm.logpdf(grid[:, None], means, sds), axis=1
    )
    return jax.nn.softmax(logp)


def _fit(loss, init, steps, lr):
    """Adam on ``loss(params)`` for ``steps``; returns final params and the loss curve."""
    opt = optax.adam(lr)

    def body(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state)
        return (optax.apply_updates(params, updates), state), value

    (params, _), curve = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), None, length=steps))(init)
    return params, np.asarray(curve)


def kl_directions(out: pathlib.Path) -> dict:
    p = _mixture_hist(jnp.array([0.5, 0.5]), jnp.array([-2.5, 2.5]), jnp.array([0.7, 0.7]))
    forward = lambda th: dv.kl(p, _gaussian_hist(th[0], th[1]))
    reverse = lambda th: dv.kl(_gaussian_hist(th[0], th[1]), p)
    th_f, curve_f = _fit(forward, jnp.array([0.7, 0.0]), 4000, 0.02)
    th_r, curve_r = _fit(reverse, jnp.array([0.7, 0.0]), 4000, 0.02)
    th_r2, _ = _fit(reverse, jnp.array([-0.7, 0.0]), 4000, 0.02)
    mean_p = float(jnp.sum(p * GRID))
    sd_p = float(jnp.sqrt(jnp.sum(p * (GRID - mean_p) ** 2)))
    q_f = _gaussian_hist(th_f[0], th_f[1])
    sd_q = float(jnp.sqrt(jnp.sum(q_f * (GRID - jnp.sum(q_f * GRID)) ** 2)))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    dx = GRID[1] - GRID[0]
    panels = (
        (axes[0], th_f, "minimise KL(p || q): q covers p"),
        (axes[1], th_r, "minimise KL(q || p): q picks a mode"),
    )
    for ax, th, title in panels:
        ax.plot(GRID, p / dx, color="k", label="p (bimodal)")
        label = f"q = N({th[0]:.2f}, {math.exp(th[1]):.2f}^2)"
        ax.plot(GRID, _gaussian_hist(th[0], th[1]) / dx, color="tab:red", label=label)
        ax.set_xlim(-6, 6)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "kl_directions.png")
    plt.close(fig)
    return {
        "p": "0.5 N(-2.5, 0.7^2) + 0.5 N(2.5, 0.7^2) on a grid of 3601 points in [-9, 9]",
        "forward_kl_fit": {"mean": float(th_f[0]), "sd": math.exp(float(th_f[1])), "kl": float(curve_f[-1])},
        # q is normalised on the truncated grid, so its own sd (the one moment matching fixes) is below exp(log_sd).
        "forward_kl_fit_sd_on_grid": sd_q,
        "forward_kl_closed_form_optimum": {"mean": mean_p, "sd": sd_p},
        "reverse_kl_fit_from_+0.7": {"mean": float(th_r[0]), "sd": math.exp(float(th_r[1])), "kl": float(curve_r[-1])},
        "reverse_kl_fit_from_-0.7": {"mean": float(th_r2[0]), "sd": math.exp(float(th_r2[1]))},
    }


def mle_gmm(out: pathlib.Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w_true, m_true, s_true = np.array([0.5, 0.3, 0.2]), np.array([-3.0, 0.0, 2.5]), np.array([0.6, 1.0, 0.5])
    comp = rng.choice(3, size=3000, p=w_true)
    data = rng.normal(m_true[comp], s_true[comp])
    p_hist = _mixture_hist(w_true, m_true, s_true)
    entropy_p = float(-jnp.sum(jnp.where(p_hist > 0, p_hist * jnp.log(p_hist), 0.0)) + np.log(GRID[1] - GRID[0]))

    def unpack(theta):
        return jax.nn.softmax(theta["logits"]), theta["means"], jnp.exp(theta["log_sds"])

    def nll(theta):
        w, m, s = unpack(theta)
        return -jnp.mean(jax.scipy.special.logsumexp(jnp.log(w) + jax.scipy.stats.norm.logpdf(data[:, None], m, s), 1))

    init = {"logits": jnp.zeros(3), "means": jnp.asarray(rng.choice(data, 3, replace=False)), "log_sds": jnp.zeros(3)}
    steps, every = 3000, 50
    opt = optax.adam(0.03)
    theta, state = init, opt.init(init)
    step = jax.jit(lambda th, st: _adam_step(opt, nll, th, st))
    curve = []
    for i in range(steps + 1):
        if i % every == 0:
            w, m, s = unpack(theta)
            curve.append((i, float(nll(theta)), float(dv.kl(p_hist, _mixture_hist(w, m, s)))))
        if i < steps:
            theta, state = step(theta, state)
    w, m, s = (np.asarray(t) for t in unpack(theta))
    order = np.argsort(m)
    em = SklearnGMM(3, covariance_type="spherical", n_init=5, tol=1e-9, max_iter=2000, random_state=seed)
    em.fit(data[:, None])
    em_order = np.argsort(em.means_[:, 0])
    em_params = em.weights_[em_order], em.means_[em_order, 0], np.sqrt(em.covariances_[em_order])

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    ax = axes[0]
    ax.hist(data, bins=80, density=True, color="0.8", label="data (n=3000)")
    dens = lambda w, m, s: np.sum(w * scipy.stats.norm.pdf(GRID[:, None], m, s), 1)
    ax.plot(GRID, dens(w, m, s), color="tab:red", label="gradient ascent on log-lik")
    ax.plot(GRID, dens(*em_params), "--", color="tab:blue", label="scikit-learn EM")
    ax.set_xlim(-6, 5)
    ax.legend(fontsize=7)
    ax.set_title("MLE of a 3-component mixture", fontsize=9)
    c = np.array(curve)
    ax = axes[1]
    ax.plot(c[:, 0], c[:, 1], color="tab:red", label="mean negative log-likelihood (data)")
    ax.plot(c[:, 0], c[:, 2] + entropy_p, "--", color="k", label="KL(p || q_theta) + H(p) (grid)")
    ax.set_xlabel("gradient step")
    ax.set_ylim(c[-1, 1] - 0.2, c[-1, 1] + 1.5)
    ax.legend(fontsize=7)
    ax.set_title("maximising likelihood = minimising KL(p || q)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "mle_gmm.png")
    plt.close(fig)
    return {
        "true": {"weights": w_true.tolist(), "means": m_true.tolist(), "sds": s_true.tolist()},
        "gradient_ascent": {
            "weights": w[order].tolist(),
            "means": m[order].tolist(),
            "sds": s[order].tolist(),
            "mean_log_likelihood": -float(nll(theta)),
            "steps": steps,
        },
        "sklearn_em": {
            "weights": em_params[0].tolist(),
            "means": em_params[1].tolist(),
            "sds": em_params[2].tolist(),
            "mean_log_likelihood": float(em.score(data[:, None])),
        },
        "kl_p_q_start_end": [curve[0][2], curve[-1][2]],
        "entropy_p": entropy_p,
    }


def _adam_step(opt, loss, params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state


def disjoint_supports(out: pathlib.Path) -> dict:
    n = 128
    ys = (np.arange(n) + 0.5) / n
    p0 = np.stack([np.zeros(n), ys], 1)
    thetas = np.round(np.linspace(-1.0, 1.0, 41), 6)
    x_edges, y_edges = np.linspace(-1.025, 1.025, 42), np.linspace(0, 1, 11)  # theta values fall in distinct x bins
    h0 = np.histogram2d(p0[:, 0], p0[:, 1], [x_edges, y_edges])[0].ravel() / n
    w1 = jax.jit(lambda x, y: transport.wasserstein(x, y, p=1))
    rows = []
    for t in thetas:
        pt = np.stack([np.full(n, t), ys], 1)
        ht = np.histogram2d(pt[:, 0], pt[:, 1], [x_edges, y_edges])[0].ravel() / n
        row = {"theta": float(t), "w1": float(w1(p0, pt)), "jsd": float(dv.jsd(h0, ht)), "kl": float(dv.kl(h0, ht))}
        rows.append(row)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    th = np.array([r["theta"] for r in rows])
    ax.plot(th, [r["w1"] for r in rows], "o-", ms=3, label="W1 (exact)")
    ax.plot(th, [r["jsd"] for r in rows], "s-", ms=3, label="JSD")
    kl = np.array([r["kl"] for r in rows])
    ax.plot(th[np.isfinite(kl)], kl[np.isfinite(kl)], "^", color="tab:red", label="KL (finite)")
    ax.plot(
        th[~np.isfinite(kl)],
        np.full((~np.isfinite(kl)).sum(), 1.05),
        "^",
        color="tab:red",
        mfc="none",
        label="KL = +inf (drawn at 1.05)",
    )
    ax.axhline(math.log(2), color="0.5", lw=0.8, ls=":")
    ax.text(-1, math.log(2) + 0.02, "log 2", fontsize=7)
    ax.set_xlabel("theta (distance between the segments)")
    ax.set_title("parallel segments: only W1 sees how far apart they are", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "disjoint_supports.png")
    plt.close(fig)
    finite = lambda v: v if math.isfinite(v) else "inf"
    return {
        "n_points": n,
        "rows": [r | {"kl": finite(r["kl"])} for r in rows],
        "max_abs_w1_minus_abs_theta": float(max(abs(r["w1"] - abs(r["theta"])) for r in rows)),
        "jsd_for_theta_nonzero": sorted({round(r["jsd"], 12) for r in rows if r["theta"] != 0}),
    }


def monotone_rearrangement(out: pathlib.Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    u_small = rng.normal(size=10)
    v_small = np.concatenate([rng.normal(-2, 0.4, 5), rng.normal(2.5, 0.6, 5)])
    n = 2000
    u = rng.normal(size=n)
    v = np.concatenate([rng.normal(-2, 0.4, n // 2), rng.normal(2.5, 0.6, n - n // 2)])
    w1 = float(transport.wasserstein_1d(u, v, p=1))
    w2 = float(transport.wasserstein_1d(u, v, p=2))
    # The exact LP on the first 500 points of each (the assignment solver is slow on 1-D costs, full of ties).
    w1_sorting_500 = float(transport.wasserstein_1d(u[:500], v[:500], p=1))
    w1_lp_500 = float(transport.wasserstein(u[:500, None], v[:500, None], p=1))
    plan = np.asarray(transport.transport_plan(u_small[:, None], v_small[:, None], p=2))
    match = plan.argmax(1)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    ax = axes[0]
    ax.scatter(u_small, np.zeros(10), color="tab:blue", zorder=3, label="u (N(0,1))")
    ax.scatter(v_small, np.ones(10), color="tab:red", zorder=3, label="v (bimodal)")
    for i in range(10):
        ax.plot([u_small[i], v_small[match[i]]], [0, 1], color="0.5", lw=0.8)
    ax.set_yticks([0, 1], ["u", "v"])
    ax.set_title("exact LP plan = sorted matching (no crossings)", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    ax = axes[1]
    levels = (np.arange(n) + 0.5) / n
    ax.plot(levels, np.sort(u), color="tab:blue", label="quantile function of u")
    ax.plot(levels, np.sort(v), color="tab:red", label="quantile function of v")
    ax.fill_between(levels, np.sort(u), np.sort(v), color="0.85")
    ax.set_xlabel("t")
    ax.set_title(f"W1 = shaded area = {w1:.4f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "monotone_rearrangement.png")
    plt.close(fig)
    sorted_match = bool(np.array_equal(np.argsort(np.argsort(u_small)), np.argsort(np.argsort(v_small[match]))))
    return {
        "n": n,
        "w1_sorting": w1,
        "w1_scipy": float(scipy.stats.wasserstein_distance(u, v)),
        "w1_sorting_first_500": w1_sorting_500,
        "w1_exact_lp_first_500": w1_lp_500,
        "w2_sorting": w2,
        "small_plan_is_monotone": sorted_match,
    }


def kantorovich_rubinstein(out: pathlib.Path, seed: int, steps: int) -> dict:
    rng = np.random.default_rng(seed)
    n = 512
    x = ring8(radius=2.0, std=0.1).sample(rng, n).astype(np.float64)
    y = (rng.normal(size=(n, 2)) * 0.5).astype(np.float64)
    exact = float(transport.wasserstein(x, y, p=1))
    critic = MLPDiscriminator(hidden=(128, 128, 128), activation="relu")
    params = critic.init(jax.random.key(seed), x[:1])
    opt = optax.adam(1e-3, b1=0.5, b2=0.9)
    gp_weight = 10.0

    def dual(params):
        return jnp.mean(critic.apply(params, x)) - jnp.mean(critic.apply(params, y))

    def loss(params, key):
        gp, _ = gradient_penalty(lambda z: critic.apply(params, z), x, y, jax.random.uniform(key, (n,)))
        return -dual(params) + gp_weight * gp

    @jax.jit
    def step(params, state, key):
        grads = jax.grad(loss)(params, key)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    key = jax.random.key(seed + 1)
    curve = []
    for i in range(steps + 1):
        if i % 25 == 0:
            curve.append((i, float(dual(params))))
        if i < steps:
            key, sub = jax.random.split(key)
            params, state = step(params, state, sub)

    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 121), np.linspace(-3, 3, 121)), -1).reshape(-1, 2)
    f = np.asarray(critic.apply(params, grid)).reshape(121, 121)
    slopes = np.asarray(jax.vmap(jax.grad(lambda z: critic.apply(params, z[None])[0]))(jnp.asarray(grid)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    c = np.array(curve)
    ax = axes[0]
    ax.plot(c[:, 0], c[:, 1], label="critic: mean f(x) - mean f(y)")
    ax.axhline(exact, color="k", ls="--", label=f"exact W1 = {exact:.4f}")
    ax.set_xlabel("critic step")
    ax.legend(fontsize=7)
    ax.set_title("Kantorovich-Rubinstein dual with gradient penalty", fontsize=9)
    ax = axes[1]
    cs = ax.contourf(grid[:, 0].reshape(121, 121), grid[:, 1].reshape(121, 121), f, levels=20, cmap="coolwarm")
    fig.colorbar(cs, ax=ax, fraction=0.046)
    ax.scatter(x[:, 0], x[:, 1], s=2, color="k", label="x: ring")
    ax.scatter(y[:, 0], y[:, 1], s=2, color="w", label="y: Gaussian")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("critic f", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "kantorovich_rubinstein.png")
    plt.close(fig)
    final = float(np.mean(c[-4:, 1]))
    lipschitz_grid = float(np.max(np.linalg.norm(slopes, axis=1)))
    return {
        "n_per_cloud": n,
        "exact_w1": exact,
        "critic_estimate_final": float(c[-1, 1]),
        "critic_estimate_mean_last_100_steps": final,
        "ratio_to_exact": final / exact,
        # f / L is 1-Lipschitz if L bounds the slope everywhere: (dual / L) is then a lower bound on W1.
        "dual_over_max_grid_slope": final / lipschitz_grid,
        "steps": steps,
        "gp_weight": gp_weight,
        "critic_gradient_norm_on_grid": {
            "median": float(np.median(np.linalg.norm(slopes, axis=1))),
            "max": lipschitz_grid,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results" / "divergences"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--critic-steps", type=int, default=3000)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, run in (
        ("kl_directions", lambda: kl_directions(out)),
        ("mle_gmm", lambda: mle_gmm(out, args.seed)),
        ("disjoint_supports", lambda: disjoint_supports(out)),
        ("monotone_rearrangement", lambda: monotone_rearrangement(out, args.seed)),
        ("kantorovich_rubinstein", lambda: kantorovich_rubinstein(out, args.seed, args.critic_steps)),
    ):
        t0 = time.perf_counter()
        results[name] = run() | {"seconds": round(time.perf_counter() - t0, 1)}
        (out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
        print(name, json.dumps(results[name])[:400], flush=True)
    command = "python experiments/divergences.py"
    if args.critic_steps != 3000:
        command += f" --critic-steps {args.critic_steps}"
    (out / "summary.json").write_text(json.dumps({"command": command, "seed": args.seed} | results, indent=2))


if __name__ == "__main__":
    main()
