"""Wasserstein distances: gendl_jax.transport against POT, raw ott-jax and scipy, measured in one run.

Rows (each: jitted ours with compile time apart, warm-up, ``block_until_ready``, median of repeats,
ours and the reference timed alternately so that load from other processes hits both alike):

  exact W2, uniform weights, n = m in {500, 1000, 2000}, d = 2     vs POT ``ot.emd2`` (float64, C++ network simplex)
  exact W2 + gradient in x (same sizes)                             vs POT ``ot.emd2`` (value only)
  exact W2, general weights, n = m = 200                            vs POT ``ot.emd2``
  exact W2 by optax.assignment.hungarian_algorithm (jit), n = 500   vs POT ``ot.emd2`` (the in-JAX alternative)
  Sinkhorn W2, n in {1000, 4000}, d in {2, 64}, eps = 0.1           vs POT ``sinkhorn2(method="sinkhorn_log")``
                                                                    and raw ott-jax (PointCloud + Sinkhorn,
                                                                    reading ``reg_ot_cost``: the solve alone)
  1-D W1, n = m = 10^6                                              vs ``scipy.stats.wasserstein_distance``

Points are standard normal scaled by 1/sqrt(d) (so costs are O(1) in every d), y shifted by 0.5.
Prints a table and writes ``benchmarks/results/transport.json``. Usage::

    python benchmarks/transport.py                 # full table (about 10 min on a loaded 2-core CPU)
    python benchmarks/transport.py --quick         # small sizes, to check the script
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import ot
import scipy
import scipy.stats
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from gendl_jax.transport import _costs, wasserstein, wasserstein_1d


def _compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _alternate(runners: dict, repeats: int, no_warmup: tuple = ()) -> dict:
    """Median seconds per runner; one warm-up each, then round-robin repeats.

    Runners named in ``no_warmup`` (NumPy/C++ references, nothing to compile or cache) count their
    first call as a repeat, so a slow reference is run ``repeats`` times, not ``repeats + 1``.
    """
    outs, times = {}, {name: [] for name in runners}
    for name, run in runners.items():
        t0 = time.perf_counter()
        outs[name] = run()
        if name in no_warmup:
            times[name].append(time.perf_counter() - t0)
    for i in range(repeats):
        for name, run in runners.items():
            if name in no_warmup and i == repeats - 1:
                continue
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(t), "times_s": t, "out": outs[name]} for name, t in times.items()}


def _clouds(rng, n, d, m=None):
    m = n if m is None else m
    x = rng.normal(size=(n, d)) / np.sqrt(d)
    y = rng.normal(size=(m, d)) / np.sqrt(d) + 0.5
    return x.astype(np.float32), y.astype(np.float32)


def bench_exact(rng, n, repeats, with_weights=False):
    x, y = _clouds(rng, n, 2)
    if with_weights:
        a = rng.uniform(0.2, 1, n)
        b = rng.uniform(0.2, 1, n)
        a, b = (a / a.sum()).astype(np.float32), (b / b.sum()).astype(np.float32)
        value, compile_s = _compile(lambda x, y, a, b: wasserstein(x, y, a, b), x, y, a, b)
        ours = {"ours": lambda: float(value(x, y, a, b))}
    else:
        a = b = np.full(n, 1.0 / n, np.float32)
        value, compile_s = _compile(lambda x, y: wasserstein(x, y), x, y)
        grad, compile_grad_s = _compile(jax.value_and_grad(lambda x, y: wasserstein(x, y)), x, y)
        ours = {
            "ours": lambda: float(value(x, y)),
            "ours value+grad": lambda: float(jax.block_until_ready(grad(x, y))[0]),
        }
    x64, y64, a64, b64 = (np.asarray(t, np.float64) for t in (x, y, a, b))

    def pot():
        return float(np.sqrt(ot.emd2(a64, b64, ot.dist(x64, y64), numItermax=10**7)))

    res = _alternate(ours | {"POT emd2": pot}, repeats, no_warmup=("POT emd2",))
    rows = []
    for name in ours:
        rows.append(
            {
                "case": f"exact W2{' weighted' if with_weights else ''}, n={n}, d=2"
                + (" (+grad)" if "grad" in name else ""),
                "ours_s": res[name]["median_s"],
                "reference": "POT emd2",
                "reference_s": res["POT emd2"]["median_s"],
                "speedup": res["POT emd2"]["median_s"] / res[name]["median_s"],
                "compile_s": compile_grad_s if "grad" in name else compile_s,
                "abs_diff": abs(res[name]["out"] - res["POT emd2"]["out"]),
            }
        )
    return rows


def bench_exact_in_jax(rng, n, repeats):
    """The in-JAX alternative for the exact solver: ``optax.assignment.hungarian_algorithm`` (what
    ``ott.tools.unreg`` calls), jitted, on the same uniform problem."""
    x, y = _clouds(rng, n, 2)

    def hungarian_w2(x, y):
        cost = _costs.cost_matrix(x, y, 2)
        rows, cols = optax.assignment.hungarian_algorithm(cost)
        return jnp.sqrt(jnp.mean(cost[rows, cols]))

    value, compile_s = _compile(hungarian_w2, x, y)
    u = np.full(n, 1.0 / n)
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    res = _alternate(
        {
            "optax": lambda: float(value(x, y)),
            "POT emd2": lambda: float(np.sqrt(ot.emd2(u, u, ot.dist(x64, y64)))),
        },
        repeats,
        no_warmup=("POT emd2",),
    )
    return [
        {
            "case": f"exact W2 by optax.assignment (jit), n={n}, d=2",
            "ours_s": res["optax"]["median_s"],
            "reference": "POT emd2",
            "reference_s": res["POT emd2"]["median_s"],
            "speedup": res["POT emd2"]["median_s"] / res["optax"]["median_s"],
            "compile_s": compile_s,
            "abs_diff": abs(res["optax"]["out"] - res["POT emd2"]["out"]),
        }
    ]


def bench_sinkhorn(rng, n, d, repeats, eps=0.1, threshold=1e-3, max_iterations=2000):
    x, y = _clouds(rng, n, d)

    def ours_fn(x, y):
        return wasserstein(x, y, method="sinkhorn", epsilon=eps, threshold=threshold, max_iterations=max_iterations)

    def raw_fn(x, y):
        geom = pointcloud.PointCloud(x, y, epsilon=eps)
        out = ott_sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)(
            linear_problem.LinearProblem(geom)
        )
        return out.reg_ot_cost, out.converged, out.n_iters

    ours, compile_s = _compile(ours_fn, x, y)
    raw, raw_compile_s = _compile(raw_fn, x, y)
    u = np.full(n, 1.0 / n)
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    iters = int(raw(x, y)[2])

    def pot():
        M = ot.dist(x64, y64)
        value = ot.sinkhorn2(u, u, M, eps, method="sinkhorn_log", stopThr=threshold, numItermax=max_iterations)
        return float(np.sqrt(value))

    jax_runners = {
        "ours": lambda: float(jax.block_until_ready(ours(x, y))[0]),
        "raw ott-jax": lambda: float(jax.block_until_ready(raw(x, y))[0]),
    }
    # The wrapper's overhead is a few percent at most: measured with 3x the repeats, alternating.
    vs_ott = _alternate(jax_runners, 3 * repeats)
    res = _alternate({"ours": jax_runners["ours"], "POT sinkhorn_log": pot}, repeats, ("POT sinkhorn_log",))
    converged = bool(ours(x, y)[1])
    base = {"compile_s": compile_s, "converged": converged, "ott_iterations": iters}
    return [
        base
        | {
            "ours_s": res["ours"]["median_s"],
            "case": f"Sinkhorn W2 eps={eps}, n={n}, d={d}",
            "reference": "POT sinkhorn2(sinkhorn_log)",
            "reference_s": res["POT sinkhorn_log"]["median_s"],
            "speedup": res["POT sinkhorn_log"]["median_s"] / res["ours"]["median_s"],
            "abs_diff": abs(res["ours"]["out"] - res["POT sinkhorn_log"]["out"]),
        },
        base
        | {
            "case": f"Sinkhorn W2 eps={eps}, n={n}, d={d}",
            "reference": "raw ott-jax",
            "ours_s": vs_ott["ours"]["median_s"],
            "reference_s": vs_ott["raw ott-jax"]["median_s"],
            "speedup": vs_ott["raw ott-jax"]["median_s"] / vs_ott["ours"]["median_s"],
            "reference_compile_s": raw_compile_s,
        },
    ]


def bench_1d(rng, n, repeats):
    u = rng.normal(size=n).astype(np.float32)
    v = (rng.standard_t(4, size=n) + 0.3).astype(np.float32)
    ours, compile_s = _compile(functools.partial(wasserstein_1d, p=1), u, v)
    res = _alternate(
        {"ours": lambda: float(ours(u, v)), "scipy": lambda: float(scipy.stats.wasserstein_distance(u, v))},
        repeats,
        no_warmup=("scipy",),
    )
    return [
        {
            "case": f"1-D W1, n=m={n}",
            "ours_s": res["ours"]["median_s"],
            "reference": "scipy.stats.wasserstein_distance",
            "reference_s": res["scipy"]["median_s"],
            "speedup": res["scipy"]["median_s"] / res["ours"]["median_s"],
            "compile_s": compile_s,
            "abs_diff": abs(res["ours"]["out"] - res["scipy"]["out"]),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes only (checks the script)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "transport.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    exact_sizes = (100, 200) if args.quick else (500, 1000, 2000)
    sinkhorn_sizes = (200,) if args.quick else (1000, 4000)
    rows = []
    for n in exact_sizes:
        rows += bench_exact(rng, n, args.repeats if n < 2000 else max(1, args.repeats // 2))
        print(rows[-1]["case"], "done", flush=True)
    rows += bench_exact(rng, 50 if args.quick else 200, max(1, args.repeats // 2), with_weights=True)
    rows += bench_exact_in_jax(rng, 100 if args.quick else 500, args.repeats)
    for n in sinkhorn_sizes:
        for d in (2, 64):
            rows += bench_sinkhorn(rng, n, d, args.repeats if n < 4000 else max(1, args.repeats // 2))
            print(rows[-1]["case"], "done", flush=True)
    rows += bench_1d(rng, 10**4 if args.quick else 10**6, args.repeats)

    print(f"\n{'case':<42} {'ours (ms)':>10} {'reference':<30} {'ref (ms)':>10} {'speed-up':>9} {'compile s':>9}")
    for r in rows:
        print(
            f"{r['case']:<42} {1e3 * r['ours_s']:>10.1f} {r['reference']:<30} {1e3 * r['reference_s']:>10.1f} "
            f"{r['speedup']:>8.2f}x {r['compile_s']:>9.2f}"
        )
    meta = {
        "command": "python benchmarks/transport.py" + (" --quick" if args.quick else ""),
        "repeats": args.repeats,
        "jax": jax.__version__,
        "pot": ot.__version__,
        "scipy": scipy.__version__,
        "backend": jax.default_backend(),
        "machine": platform.processor() or platform.machine(),
        "exact_solver": "scipy.optimize.linear_sum_assignment (uniform, n = m); linprog highs-ipm otherwise",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
