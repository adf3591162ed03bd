"""Train-step speed of every adversarial objective: compile time apart, then the median time of one
jitted step (warm-up done, ``block_until_ready``), on the ring (MLPs 3 x 512, batch 256) and on MNIST
(DCGAN 28x28, batch 64). With PyTorch installed (``pip install torch==2.13.0``, reference only) the
same networks and updates run in PyTorch eager mode in the same process and the table gives the
ratio torch time / jax time (> 1: jax is faster).

    python benchmarks/train_steps.py [--repeats 20] [--only ring|mnist] [--objectives wgan-sn ...] [--no-torch]

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

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.objectives import gan, get_objective, wgan, wgan_gp, wgan_sn

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


def time_jax(objective: str, config, dataset, batch_size: int, repeats: int) -> dict:
    obj = get_objective(objective)
    it = BatchIterator(dataset, batch_size, seed=0, inner_steps=config.inner_steps)
    batches = [jax.device_put(it.batch_at(s)) for s in range(3)]
    state = obj.init(jax.random.PRNGKey(0), config, batches[0])
    step = jax.jit(obj.step, donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    for i in range(3):  # warm-up
        state, metrics = compiled(state, batches[i % 3])
    jax.block_until_ready(state)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batches[i % 3])
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return {
        "compile_s": compile_s,
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "times_ms": [1e3 * t for t in times],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["ring8", "mnist"], default=None)
    parser.add_argument("--objectives", nargs="+", default=None, choices=sorted({o for c in CASES.values() for o in c}))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/train_steps.json")
    args = parser.parse_args()

    torch_ref = None
    if not args.no_torch:
        try:
            import torch_reference as torch_ref
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
                **time_jax(objective, config, dataset, batch, args.repeats),
            }
            if torch_ref is not None:
                ref = torch_ref.time_step(label, model, batch, config, args.repeats)
                row["torch_median_ms"] = ref["median_ms"]
                row["torch_over_jax"] = ref["median_ms"] / row["median_ms"]
            rows.append(row)
            ratio = (
                f"  torch {row['torch_median_ms']:7.1f} ms  ratio {row['torch_over_jax']:.2f}"
                if "torch_over_jax" in row
                else ""
            )
            print(
                f"{label:8s} {data:6s} {model:5s} b{batch:<4d} compile {row['compile_s']:6.2f} s  "
                f"step {row['median_ms']:7.1f} ms ({1e3 / row['median_ms']:6.1f} steps/s){ratio}",
                flush=True,
            )

    path = pathlib.Path(args.out)
    if (args.only or args.objectives) and path.is_file():
        measured = {(r["objective"], r["data"]) for r in rows}
        kept = [r for r in json.loads(path.read_text())["rows"] if (r["objective"], r["data"]) not in measured]
        order = [(label, data) for (data, _, _), cases in CASES.items() for label in cases]
        rows = sorted(kept + rows, key=lambda r: order.index((r["objective"], r["data"])))
    print(
        "\n| objective | data | model | batch | inner steps | compile s | jax ms/step (median) | steps/s |"
        " torch eager ms/step | torch / jax |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['objective']} | {r['data']} | {r['model']} | {r['batch']} | {r['inner_steps']} | "
            f"{r['compile_s']:.2f} | {r['median_ms']:.1f} | {1e3 / r['median_ms']:.1f} | "
            f"{r.get('torch_median_ms', float('nan')):.1f} | {r.get('torch_over_jax', float('nan')):.2f} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "jax": jax.__version__,
                    "backend": jax.default_backend(),
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
