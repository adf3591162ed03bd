"""Train-step speed of every adversarial objective, against the same mathematics written plainly and against PyTorch.

Cases: the ring (MLPs 3 x 512, batch 256) and MNIST (DCGAN 28x28, batch 64), for gan, wgan, wgan-gp and wgan-sn.
Columns, all measured in the same process:

* **library**: the step as ``gendl train`` runs it: :func:`gendl_jax.train.guard.guard_nonfinite` around the
  objective's step (metrics and the non-finite flag computed on every step), jitted with the state donated;
* **minimal**: ``benchmarks/minimal_steps.py``, the same networks, losses, optimisers and random draws written plainly
  (two losses as metrics, no guard, plain optax), also donated; ``tests/test_benchmarks.py`` checks that one step of
  each gives the same parameters. The two are timed alternately (one library step, one minimal step, ...), so load
  changes hit both;
* **XLA peak memory** of one library step from the compiled executable's memory analysis
  (arguments + outputs + temporaries - donated aliases), with and without donating the state;
* **torch eager** and **torch.compile** (``benchmarks/torch_reference.py``; ``pip install torch==2.13.0``, reference
  only): the same networks and updates in PyTorch on random data, torch.compile on both networks and both optimiser
  steps; its compile time is the first step's. WGAN-GP cannot be compiled (AOTAutograd has no double backward), and
  any other failure of torch.compile is recorded with its message.

Each time is the median of ``--repeats`` steps after 3 warm-up steps, compile time apart, ``block_until_ready``.

    python benchmarks/train_steps.py [--repeats 20] [--only ring8|mnist] [--objectives wgan-sn ...] [--no-torch]
                                     [--no-compile]

Writes ``benchmarks/results/train_steps.json``; with ``--only`` / ``--objectives`` the rows measured replace
those of the same (objective, data) in an existing file and the others are kept.
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
import minimal_steps

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.objectives import gan, get_objective, wgan, wgan_gp, wgan_sn
from gendl_jax.train import guard

torch_ref = None

CASES = {
    # (data, model, batch): {label: (objective, config)}
    ("ring8", "mlp", 256): {
        "gan": ("gan", gan.GANConfig(hidden=(512, 512, 512))),
        "wgan": ("wgan", wgan.WGANConfig(hidden=(512, 512, 512))),
        "wgan-gp": ("wgan-gp", wgan_gp.WGANGPConfig(hidden=(512, 512, 512), gp_weight=10.0)),
        "wgan-sn": ("wgan-sn", wgan_sn.WGANSNConfig(hidden=(512, 512, 512))),
    },
    ("mnist", "dcgan", 64): {
        "gan": ("gan", gan.GANConfig(model="dcgan")),
        "wgan": ("wgan", wgan.WGANConfig(model="dcgan")),
        "wgan-gp": ("wgan-gp", wgan_gp.WGANGPConfig(model="dcgan", gp_weight=10.0)),
        "wgan-sn": ("wgan-sn", wgan_sn.WGANSNConfig(model="dcgan")),
    },
}


def _peak_mib(compiled) -> float:
    """Arguments + outputs + temporaries - aliased (donated) bytes of a compiled executable, in MiB."""
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return total / 2**20


def time_jax(objective: str, label: str, config, dataset, batch_size: int, repeats: int) -> dict:
    """The library step (guarded, donated) and the minimal step (donated), compiled apart and timed alternately."""
    obj = get_objective(objective)
    it = BatchIterator(dataset, batch_size, seed=0, inner_steps=config.inner_steps)
    batches = [jax.device_put(it.batch_at(s)) for s in range(3)]
    state = obj.init(jax.random.PRNGKey(0), config, batches[0])
    library = guard.guard_nonfinite(obj.step)
    minimal = minimal_steps.make_step(label, config, state.data_shape)
    mini_state = minimal_steps.from_library_state(state)
    t0 = time.perf_counter()
    lib_fn = jax.jit(library, donate_argnums=0).lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mini_fn = jax.jit(minimal, donate_argnums=0).lower(mini_state, batches[0]["x"]).compile()
    minimal_compile_s = time.perf_counter() - t0
    not_donated = jax.jit(library).lower(state, batches[0]).compile()
    state, mini_state = jax.tree_util.tree_map(jnp.copy, (state, mini_state))  # the compiled calls donate them
    for i in range(3):  # warm-up
        state, _ = lib_fn(state, batches[i % 3])
        mini_state, _ = mini_fn(mini_state, batches[i % 3]["x"])
    jax.block_until_ready((state, mini_state))
    times, minimal_times = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, metrics = lib_fn(state, batches[i % 3])
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mini_state, losses = mini_fn(mini_state, batches[i % 3]["x"])
        jax.block_until_ready((mini_state, losses))
        minimal_times.append(time.perf_counter() - t0)
    return {
        "compile_s": compile_s,
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "times_ms": [1e3 * t for t in times],
        "minimal_compile_s": minimal_compile_s,
        "minimal_median_ms": 1e3 * statistics.median(minimal_times),
        "library_over_minimal": statistics.median(times) / statistics.median(minimal_times),
        "peak_mib_donated": _peak_mib(lib_fn),
        "peak_mib_not_donated": _peak_mib(not_donated),
    }


def time_torch(label: str, model: str, batch: int, config, repeats: int, compiled: bool) -> dict:
    """PyTorch eager or torch.compile times; a step torch.compile cannot run gives ``{"error": reason}``."""
    try:
        return torch_ref.time_step(label, model, batch, config, repeats, compiled=compiled)
    except Exception as e:  # torch.compile failures are results to report, not reasons to stop
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main():
    global torch_ref
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["ring8", "mnist"], default=None)
    parser.add_argument("--objectives", nargs="+", default=None, choices=sorted({o for c in CASES.values() for o in c}))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="PyTorch eager only (torch.compile takes minutes)")
    parser.add_argument("--out", default="benchmarks/results/train_steps.json")
    args = parser.parse_args()

    if not args.no_torch:
        try:
            import torch_reference

            torch_ref = torch_reference
        except ImportError as e:
            print(f"PyTorch reference unavailable ({e}); timing jax only")

    rows = []
    for (data, model, batch), cases in CASES.items():
        if args.only and data != args.only:
            continue
        dataset = load_dataset(data)
        for label, (objective, config) in cases.items():
            if args.objectives and label not in args.objectives:
                continue
            row = {
                "objective": label,
                "data": data,
                "model": model,
                "batch": batch,
                "inner_steps": config.inner_steps,
                **time_jax(objective, label, config, dataset, batch, args.repeats),
            }
            if torch_ref is not None:
                for name, compiled in (("torch", False), ("torch_compile", True)):
                    if compiled and args.no_compile:
                        continue
                    ref = time_torch(label, model, batch, config, args.repeats, compiled)
                    if "error" in ref:
                        row[f"{name}_error"] = ref["error"]
                        continue
                    row[f"{name}_median_ms"] = ref["median_ms"]
                    row[f"{name}_first_step_s"] = ref["compile_s"]
                    row[f"{name}_over_jax"] = ref["median_ms"] / row["median_ms"]
            rows.append(row)
            print(
                f"{label:8s} {data:6s} {model:5s} b{batch:<4d} compile {row['compile_s']:6.2f} s  "
                f"step {row['median_ms']:7.1f} ms  minimal {row['minimal_median_ms']:7.1f} ms "
                f"(x{row['library_over_minimal']:.3f})  peak {row['peak_mib_donated']:.1f} MiB  "
                f"torch eager {_fmt(row.get('torch_median_ms'), '.1f')} ms  "
                f"torch.compile {_fmt(row.get('torch_compile_median_ms'), '.1f')} ms "
                f"{row.get('torch_compile_error', '')}",
                flush=True,
            )

    path = pathlib.Path(args.out)
    if (args.only or args.objectives) and path.is_file():
        measured = {(r["objective"], r["data"]) for r in rows}
        kept = [r for r in json.loads(path.read_text())["rows"] if (r["objective"], r["data"]) not in measured]
        order = [(label, data) for (data, _, _), cases in CASES.items() for label in cases]
        rows = sorted(kept + rows, key=lambda r: order.index((r["objective"], r["data"])))
    print(
        "\n| objective | data | inner steps | compile s | library ms | minimal ms | library / minimal | "
        "peak MiB (donated / not) | torch eager ms | torch eager / library | torch.compile ms (first step s) | "
        "torch.compile / library |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        compiled = (
            f"{r['torch_compile_median_ms']:.1f} ({r['torch_compile_first_step_s']:.1f})"
            if "torch_compile_median_ms" in r
            else ("fails" if "torch_compile_error" in r else "-")
        )
        print(
            f"| {r['objective']} | {r['data']} | {r['inner_steps']} | {r['compile_s']:.2f} | {r['median_ms']:.1f} | "
            f"{_fmt(r.get('minimal_median_ms'), '.1f')} | {_fmt(r.get('library_over_minimal'), '.3f')} | "
            f"{_fmt(r.get('peak_mib_donated'), '.1f')} / {_fmt(r.get('peak_mib_not_donated'), '.1f')} | "
            f"{_fmt(r.get('torch_median_ms'), '.1f')} | {_fmt(r.get('torch_over_jax'), '.2f')} | {compiled} | "
            f"{_fmt(r.get('torch_compile_over_jax'), '.2f')} |"
        )
    for r in rows:
        if "torch_compile_error" in r:
            print(f"torch.compile, {r['objective']} {r['data']}: {r['torch_compile_error']}")
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
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
