"""Wasserstein distances: gendl_jax.transport against POT, raw ott-jax and scipy, measured in one run.

Rows (each: jitted ours with compile time apart, warm-up, ``block_until_ready``, median of repeats,
ours and the reference timed alternately so that load from other processes hits both alike):

  exact W2, uniform weights, n = m in {500, 1000, 2000}, d = 2     vs POT ``ot.emd2`` (float64, C++ network simplex)
  exact W2 + gradient in x (same sizes)                             vs POT ``ot.emd2`` (value only)
  exact W2, general weights, n = m in {500, 1000, 2000}, d = 2      vs POT ``ot.emd2``
  exact W2 by optax.assignment.hungarian_algorithm (jit), n = 500   vs POT ``ot.emd2`` (the in-JAX alternative)
  Sinkhorn W2, n in {1000, 4000}, d in {2, 64}, eps = 0.1           vs POT ``sinkhorn2(method="sinkhorn_log")``
                                                                    and raw ott-jax (PointCloud + Sinkhorn,
                                                                    reading ``reg_ot_cost``: the solve alone)
  1-D W1, n = m = 10^6                                              vs ``scipy.stats.wasserstein_distance``

Points are standard normal scaled by 1/sqrt(d) (so costs are O(1) in every d), y shifted by 0.5.
The POT timing includes ``ot.dist`` (its cost matrix), as ours includes the cost matrix in JAX.
Prints a table and writes ``benchmarks/results/transport.json``; with ``--sections`` only those
sections are run and their rows replace the same sections' rows in the JSON (the others are kept,
each row names its section and the command that measured it). Usage::

    python benchmarks/transport.py                 # full table (about 10 min on a loaded 2-core CPU)
    python benchmarks/transport.py --sections exact exact_jax   # the exact solver rows only
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

from gendl_jax.transport import costs, wasserstein, wasserstein_1d


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
        cost = costs.cost_matrix(x, y, 2)
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


SECTIONS = ("exact", "exact_jax", "sinkhorn", "1d")


def _section_of(row) -> str:
    """Section of a row (rows written before sections were named carry none)."""
    if "section" in row:
        return row["section"]
    case = row["case"]
    if case.startswith("exact W2 by optax"):
        return "exact_jax"
    return "exact" if case.startswith("exact") else "sinkhorn" if case.startswith("Sinkhorn") else "1d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes only (checks the script)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "transport.json")
    args = parser.parse_args()
    exact_sizes = (100, 200) if args.quick else (500, 1000, 2000)
    sinkhorn_sizes = (200,) if args.quick else (1000, 4000)
    command = "python benchmarks/transport.py" + (" --quick" if args.quick else "")
    if set(args.sections) != set(SECTIONS):
        command += " --sections " + " ".join(args.sections)
    if args.repeats != 5:
        command += f" --repeats {args.repeats}"
    rows = []
    # One generator per section, so that a section's data do not depend on which others run.
    rngs = {section: np.random.default_rng(i) for i, section in enumerate(SECTIONS)}

    def add(section, new_rows):
        rows.extend(r | {"section": section, "command": command} for r in new_rows)
        print(rows[-1]["case"], "done", flush=True)

    if "exact" in args.sections:
        for with_weights in (False, True):
            for n in exact_sizes:
                repeats = args.repeats if n < 2000 else max(1, args.repeats // 2)
                add("exact", bench_exact(rngs["exact"], n, repeats, with_weights=with_weights))
    if "exact_jax" in args.sections:
        add("exact_jax", bench_exact_in_jax(rngs["exact_jax"], 100 if args.quick else 500, args.repeats))
    if "sinkhorn" in args.sections:
        for n in sinkhorn_sizes:
            for d in (2, 64):
                repeats = args.repeats if n < 4000 else max(1, args.repeats // 2)
                add("sinkhorn", bench_sinkhorn(rngs["sinkhorn"], n, d, repeats))
    if "1d" in args.sections:
        add("1d", bench_1d(rngs["1d"], 10**4 if args.quick else 10**6, args.repeats))

    print(f"\n{'case':<42} {'ours (ms)':>10} {'reference':<30} {'ref (ms)':>10} {'speed-up':>9} {'compile s':>9}")
    for r in rows:
        print(
            f"{r['case']:<42} {1e3 * r['ours_s']:>10.1f} {r['reference']:<30} {1e3 * r['reference_s']:>10.1f} "
            f"{r['speedup']:>8.2f}x {r['compile_s']:>9.2f}"
        )
    meta = {
        "command": command,
        "repeats": args.repeats,
        "jax": jax.__version__,
        "pot": ot.__version__,
        "scipy": scipy.__version__,
        "backend": jax.default_backend(),
        "machine": platform.processor() or platform.machine(),
        "exact_solver": "gendl_jax.transport.netsimplex (our network simplex, C extension, float64); "
        "scipy linear_sum_assignment for uniform weights with n = m <= 100",
    }
    if set(args.sections) != set(SECTIONS) and args.out.exists():
        previous = json.loads(args.out.read_text())
        old_command = previous.get("meta", {}).get("command", "unknown")
        kept = [r for r in previous.get("rows", []) if _section_of(r) not in args.sections]
        for r in kept:
            r.setdefault("section", _section_of(r))
            r.setdefault("command", old_command)
        rows = sorted(kept + rows, key=lambda r: SECTIONS.index(r["section"]))
        meta["note"] = "rows carry the command (and so the run) that measured them; meta describes the latest run"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
