"""K models in one vmapped step against K sequential single-model steps (gendl_jax.train.sweep).

For each case and K in (1, 4, 8, 16): (a) ``jax.jit(jax.vmap(step))`` on K stacked states (seeds
0..K-1) and K stacked batches; (b) the single-model ``jax.jit(step)`` called K times, once per
state (dispatched back to back, one ``block_until_ready`` at the end), which is what K sequential
runs cost per train step. Compile times are measured apart (``lower().compile()``); then 3 warm-up
calls and the median of ``--repeats`` timed calls. The ratio is sequential / vmapped (> 1: the
vmapped sweep is faster). Cases: the toy ring, MLPs 3 x 256, batch 256: WGAN-GP (n_critic 5) and
the GAN (1 D step); and the same with MLPs 2 x 32 ('-small'), where per-call overhead dominates.

The roofline columns answer whether a sweep can pay at all: XLA's FLOP count of one compiled step
(``compiled.cost_analysis()``) divided by its measured time, against the float32 matmul peak of the same
machine measured in the same run (a 2048 x 2048 product through jax). A sequential run near the peak leaves
nothing for vmap to win; one far below it (small networks: dispatch and per-op overhead) is where stacking K
models pays. ``--matmuls`` adds the batched products of the vmapped step against K separate products of the same
shapes (e.g. (K, 256, 512) x (K, 512, 512) and the transposed products of their gradients).

    python benchmarks/sweeps.py [--repeats 20] [--ks 1 4 8 16] [--matmuls]

Writes ``benchmarks/results/sweeps.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.objectives import gan, get_objective, wgan_gp
from gendl_jax.train import sweep

HIDDEN = (256, 256, 256)
CASES = {
    # label: (objective, config); data ring8, batch 256
    "wgan-gp": ("wgan-gp", wgan_gp.WGANGPConfig(hidden=HIDDEN, n_critic=5)),
    "gan": ("gan", gan.GANConfig(hidden=HIDDEN)),
    # Small networks, where a step is dominated by per-call overhead rather than matmul FLOPs.
    "wgan-gp-small": ("wgan-gp", wgan_gp.WGANGPConfig(hidden=(32, 32), n_critic=5)),
    "gan-small": ("gan", gan.GANConfig(hidden=(32, 32))),
}
BATCH = 256


def _median_ms(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), [1e3 * t for t in times]


def _flops(compiled) -> float:
    """XLA's FLOP count of one call of a compiled executable."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def _op_counts(compiled) -> dict:
    """Physical transposes, copies and dots (batched ones apart) in a compiled executable's optimised HLO."""
    lines = compiled.as_text().splitlines()
    count = lambda op: sum(1 for line in lines if f" {op}(" in line)
    return {
        "transposes": count("transpose"),
        "copies": count("copy"),
        "dots": count("dot"),
        "batched_dots": sum(1 for line in lines if " dot(" in line and "lhs_batch_dims" in line),
    }


def _timed_jit(fn, *args, repeats: int = 20) -> float:
    """Median ms of a jitted ``fn(*args)`` after one warm-up call."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 GFLOP/s of an n x n matrix product through jax (the machine's practical peak)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    return 2 * n**3 / 1e6 / _timed_jit(lambda a: a @ a, a, repeats=repeats)


def batched_matmuls(k: int, shapes=((256, 256, 256), (256, 512, 512)), repeats: int = 20) -> list[dict]:
    """The products of a vmapped MLP step, (k, n, d) x (k, d, h) and the weight gradient's (k, n, d)^T x (k, n, h),
    as one batched product against k separate products in one program; GFLOP/s of each."""
    rows = []
    for n, d, h in shapes:
        keys = jax.random.split(jax.random.PRNGKey(1), 3)
        x, w, g = (jax.random.normal(kk, shape) for kk, shape in zip(keys, [(k, n, d), (k, d, h), (k, n, h)]))
        gflop = 2 * k * n * d * h / 1e9
        cases = {
            "x @ w": (
                lambda x, w: jnp.einsum("knd,kdh->knh", x, w),
                lambda x, w: [x[i] @ w[i] for i in range(k)],
                (x, w),
            ),
            "x^T @ g": (
                lambda x, g: jnp.einsum("knd,knh->kdh", x, g),
                lambda x, g: [x[i].T @ g[i] for i in range(k)],
                (x, g),
            ),
        }
        for name, (batched, separate, args) in cases.items():
            b_ms, s_ms = _timed_jit(batched, *args, repeats=repeats), _timed_jit(separate, *args, repeats=repeats)
            rows.append(
                {
                    "k": k,
                    "shape": [n, d, h],
                    "product": name,
                    "batched_ms": b_ms,
                    "separate_ms": s_ms,
                    "batched_gflops": gflop / b_ms * 1e3,
                    "separate_gflops": gflop / s_ms * 1e3,
                }
            )
    return rows


def time_case(objective: str, config, dataset, k: int, repeats: int) -> dict:
    obj = get_objective(objective)
    jax.clear_caches()  # the single step's compile time is measured afresh for every K, not read from the cache
    seeds = list(range(k))
    its = [BatchIterator(dataset, BATCH, seed=s, inner_steps=config.inner_steps) for s in seeds]
    stacked_batches = [jax.device_put(sweep.stack_batches(its, s)) for s in range(3)]
    single_batches = [[jax.device_put(it.batch_at(s)) for it in its] for s in range(3)]

    # (a) vmapped
    states = sweep.init_sweep(obj, config, single_batches[0][0], seeds)
    vstep = jax.jit(jax.vmap(obj.step), donate_argnums=0)
    t0 = time.perf_counter()
    vcompiled = vstep.lower(states, stacked_batches[0]).compile()
    v_compile = time.perf_counter() - t0
    for i in range(3):
        states, _ = vcompiled(states, stacked_batches[i % 3])
    jax.block_until_ready(states)

    def run_vmapped(i):
        nonlocal states
        states, metrics = vcompiled(states, stacked_batches[i % 3])
        jax.block_until_ready((states, metrics))

    v_ms, v_times = _median_ms(run_vmapped, repeats)

    # (b) K sequential single-model steps
    singles = [obj.init(jax.random.PRNGKey(s), config, single_batches[0][0]) for s in seeds]
    step = jax.jit(obj.step, donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(singles[0], single_batches[0][0]).compile()
    s_compile = time.perf_counter() - t0
    for i in range(3):
        singles = [compiled(st, single_batches[i % 3][j])[0] for j, st in enumerate(singles)]
    jax.block_until_ready(singles)

    def run_sequential(i):
        nonlocal singles
        out = [compiled(st, single_batches[i % 3][j]) for j, st in enumerate(singles)]
        singles = [o[0] for o in out]
        jax.block_until_ready(out)

    s_ms, s_times = _median_ms(run_sequential, repeats)
    v_flops, s_flops = _flops(vcompiled), _flops(compiled)
    return {
        "k": k,
        "vmapped_hlo": _op_counts(vcompiled),
        "single_hlo": _op_counts(compiled),
        "vmapped_gflop": v_flops / 1e9,
        "single_gflop": s_flops / 1e9,
        "vmapped_gflops": v_flops / 1e6 / v_ms,
        "sequential_gflops": k * s_flops / 1e6 / s_ms,
        "vmapped_compile_s": v_compile,
        "single_compile_s": s_compile,
        "vmapped_ms": v_ms,
        "sequential_ms": s_ms,
        "sequential_over_vmapped": s_ms / v_ms,
        "vmapped_ms_per_model": v_ms / k,
        "vmapped_times_ms": v_times,
        "sequential_times_ms": s_times,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    parser.add_argument("--matmuls", action="store_true", help="also time batched against separate products")
    parser.add_argument("--out", default="benchmarks/results/sweeps.json")
    args = parser.parse_args()

    dataset = load_dataset("ring8")
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak (2048 x 2048 through jax): {peak:.0f} GFLOP/s", flush=True)
    rows = []
    for label, (objective, config) in CASES.items():
        if args.only and label != args.only:
            continue
        for k in args.ks:
            row = {
                "objective": label,
                "data": "ring8",
                "hidden": list(config.hidden),
                "batch": BATCH,
                "inner_steps": config.inner_steps,
                **time_case(objective, config, dataset, k, args.repeats),
            }
            rows.append(row)
            print(
                f"{label:8s} K={k:<3d} vmapped {row['vmapped_ms']:8.1f} ms (compile {row['vmapped_compile_s']:5.2f} s)"
                f"  sequential {row['sequential_ms']:8.1f} ms (compile {row['single_compile_s']:5.2f} s)"
                f"  ratio {row['sequential_over_vmapped']:.2f}  GFLOP/s seq {row['sequential_gflops']:.0f} "
                f"vmap {row['vmapped_gflops']:.0f} (peak {peak:.0f})",
                flush=True,
            )
    matmuls = []
    if args.matmuls:
        for k in sorted({k for k in args.ks if k > 1}):
            matmuls += batched_matmuls(k, repeats=args.repeats)

    print(
        "\n| objective | K | vmapped ms/step (median) | ms per model | K sequential ms/step (median) |"
        " sequential / vmapped | GFLOP per model step | sequential GFLOP/s (% of peak) | vmapped GFLOP/s (% of peak) |"
        " HLO transposes single / vmapped | vmapped compile s | single compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['objective']} | {r['k']} | {r['vmapped_ms']:.1f} | {r['vmapped_ms_per_model']:.2f} | "
            f"{r['sequential_ms']:.1f} | {r['sequential_over_vmapped']:.2f} | {r['single_gflop']:.3f} | "
            f"{r['sequential_gflops']:.0f} ({100 * r['sequential_gflops'] / peak:.0f}%) | "
            f"{r['vmapped_gflops']:.0f} ({100 * r['vmapped_gflops'] / peak:.0f}%) | "
            f"{r['single_hlo']['transposes']} / {r['vmapped_hlo']['transposes']} | {r['vmapped_compile_s']:.2f} | "
            f"{r['single_compile_s']:.2f} |"
        )
    if matmuls:
        print("\n| K | n, d, h | product | batched ms | K separate ms | batched GFLOP/s | separate GFLOP/s |")
        print("|---|---|---|---|---|---|---|")
        for r in matmuls:
            print(
                f"| {r['k']} | {', '.join(map(str, r['shape']))} | {r['product']} | {r['batched_ms']:.2f} | "
                f"{r['separate_ms']:.2f} | {r['batched_gflops']:.0f} | {r['separate_gflops']:.0f} |"
            )
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "jax": jax.__version__,
                    "backend": jax.default_backend(),
                    "load_average": os.getloadavg(),
                },
                "repeats": args.repeats,
                "batch": BATCH,
                "matmul_peak_gflops": peak,
                "rows": rows,
                "matmuls": matmuls,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
