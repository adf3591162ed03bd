"""Forward + backward of one DCGAN transposed convolution: 7x7x128 -> 14x14x64 (k=4, s=2, p=1).

Timed implementations (each: ``value_and_grad`` of ``sum(y * g)`` w.r.t. the input and the kernel,
``jax.jit``, compile time reported apart, warm-up, ``block_until_ready``, median of repeats; the
implementations are timed round-robin so that load from other processes hits them alike):

  (a) ``gendl_jax.models.conv_transpose`` (fast custom derivative) and the ``ConvTranspose`` layer;
  (b) the reference: ``lax.conv_transpose(..., transpose_kernel=True)`` differentiated by JAX, and
      flax's ``nn.ConvTranspose`` (same thing through a module);
  (c) PyTorch ``ConvTranspose2d`` (eager, CPU) if torch is importable.

Prints a table with ratios against (b) ``lax.conv_transpose`` and torch, and writes JSON to
``benchmarks/results/conv_transpose.json``. Usage::

    python benchmarks/conv_transpose.py --batch 64 --repeats 20

``--shapes`` times instead the forward value alone, in its two forms, at the transposed convolutions of the
DCGANs (28x28, 32x32, 64x64; k=4, s=2, p=1): XLA's input-dilated convolution and the sub-pixel form (one
stride-1 convolution and a depth-to-space reshape), beside what ``conv_transpose`` picks (jax only: PyTorch's
OpenMP threads, spinning between calls, slowed XLA's here);
the threshold in ``gendl_jax/models/layers.py`` comes from this table
(``benchmarks/results/conv_transpose_forms.json``)::

    python benchmarks/conv_transpose.py --shapes --batch 64 --repeats 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.models import ConvTranspose, conv_transpose

H_IN, C_IN, H_OUT, C_OUT, K, S, P = 7, 128, 14, 64, 4, 2, 1
REFERENCE = "lax.conv_transpose autodiff"


def _compile_jax(fn, args) -> dict:
    """Compile ``fn`` for ``args``; returns a runner whose output is blocked on, and the compile time."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    return {"run": lambda: jax.block_until_ready(compiled(*args)), "compile_s": compile_s}


def _compile_torch(torch, x, w, g) -> dict:
    layer = torch.nn.ConvTranspose2d(C_IN, C_OUT, K, stride=S, padding=P, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    gt = torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2)))

    def run():
        xt.grad, layer.weight.grad = None, None
        loss = (layer(xt) * gt).sum()
        loss.backward()  # synchronous on CPU
        grads = (xt.grad.numpy().transpose(0, 2, 3, 1), layer.weight.grad.numpy().transpose(2, 3, 1, 0))
        return loss.item(), grads

    return {"run": run, "compile_s": None}


def _measure(cases: dict, repeats: int, warmup: int, pause_s: float = 0.02) -> dict:
    """Warm up, then time the cases in rounds (one call each, in a shuffled order, with a short
    untimed pause between calls so that one library's idle worker threads do not slow the next
    call), so that load from other processes affects them alike; median and min over rounds."""
    outs = dict.fromkeys(cases)
    for name, case in cases.items():
        for _ in range(warmup):
            outs[name] = case["run"]()
    times = {name: [] for name in cases}
    order = np.random.default_rng(1)
    names = list(cases)
    for _ in range(repeats):
        for i in order.permutation(len(names)):
            name = names[i]
            time.sleep(pause_s)
            t0 = time.perf_counter()
            outs[name] = cases[name]["run"]()
            times[name].append(time.perf_counter() - t0)
    return {
        name: {
            "median_ms": 1e3 * statistics.median(times[name]),
            "min_ms": 1e3 * min(times[name]),
            "compile_s": cases[name]["compile_s"],
            "out": outs[name],
        }
        for name in cases
    }


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# (input hw, C_in, C_out) of the k=4, s=2, p=1 transposed convolutions in the DCGAN generators (and the input
# gradients of the discriminators' strided convolutions, the same map) for 28x28, 32x32 and 64x64 images.
FORM_SHAPES = [
    (7, 128, 64),
    (14, 64, 1),
    (4, 256, 128),
    (8, 128, 64),
    (16, 64, 3),
    (14, 64, 64),
    (16, 128, 64),
    (32, 64, 3),
]


def forms(batch: int, repeats: int, warmup: int, out: Path) -> None:
    """The forward value's two forms at each of ``FORM_SHAPES`` (see the module docstring)."""
    from gendl_jax.models.layers import _transposed, _transposed_subpixel

    rng = np.random.default_rng(0)
    rows = []
    print(f"transposed conv forward, k=4 s=2 p=1, batch {batch}, median of {repeats} (jax {jax.__version__})")
    print(f"{'shape':28s} {'input-dilated':>14s} {'sub-pixel':>10s} {'speed-up':>9s} {'library':>8s}")
    for h, c_in, c_out in FORM_SHAPES:
        x = rng.normal(size=(batch, h, h, c_in)).astype(np.float32)
        w = (0.02 * rng.normal(size=(K, K, c_out, c_in))).astype(np.float32)
        args = ((2, 2), ((1, 1), (1, 1)), (2 * h, 2 * h))
        runners = {
            name: _compile_jax(lambda x, w, f=f: f(x, w, *args), (x, w))
            for name, f in (("dilated", _transposed), ("subpixel", _transposed_subpixel), ("library", conv_transpose))
        }
        r = _measure(runners, repeats, warmup, pause_s=0.0)  # back to back, as in a training loop
        err = _rel_err(r["subpixel"]["out"], r["dilated"]["out"])
        row = {"in": [h, h, c_in], "out": [2 * h, 2 * h, c_out], "subpixel_rel_err": err}
        row.update({f"{name}_median_ms": v["median_ms"] for name, v in r.items()})
        rows.append(row)
        print(
            f"{h}x{h}x{c_in} -> {2 * h}x{2 * h}x{c_out}".ljust(28)
            + f" {row['dilated_median_ms']:14.2f} {row['subpixel_median_ms']:10.2f}"
            f" {row['dilated_median_ms'] / row['subpixel_median_ms']:8.2f}x {row['library_median_ms']:8.2f}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "conv_transpose_forms",
        "batch": batch,
        "repeats": repeats,
        "jax": jax.__version__,
        "backend": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--shapes", action="store_true", help="time the forward value's two forms at DCGAN shapes")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup >= 0")
    results_dir = Path(__file__).resolve().parent / "results"
    if args.shapes:
        forms(args.batch, args.repeats, args.warmup, args.out or results_dir / "conv_transpose_forms.json")
        return
    args.out = args.out or results_dir / "conv_transpose.json"

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, H_IN, H_IN, C_IN)).astype(np.float32)
    w = (0.02 * rng.normal(size=(K, K, C_OUT, C_IN))).astype(np.float32)  # forward conv's HWIO kernel
    g = rng.normal(size=(args.batch, H_OUT, H_OUT, C_OUT)).astype(np.float32)
    pads = ((P, P), (P, P))
    lax_pads = ((K - 1 - P, K - 1 - P),) * 2

    def ours(x, w, g):
        return jnp.vdot(conv_transpose(x, w, (S, S), pads, (H_OUT, H_OUT)), g)

    def reference(x, w, g):
        y = lax.conv_transpose(
            x, w, (S, S), lax_pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True
        )
        return jnp.vdot(y, g)

    ours_layer = ConvTranspose(C_OUT, kernel_size=(K, K), strides=(S, S), padding=P, use_bias=False)
    flax_layer = nn.ConvTranspose(
        C_OUT, (K, K), strides=(S, S), padding=lax_pads, use_bias=False, transpose_kernel=True
    )

    def module_loss(layer):
        return lambda x, w, g: jnp.vdot(layer.apply({"params": {"kernel": w}}, x), g)

    # flax's transpose_kernel=True kernel is (kh, kw, C_out, C_in) as well; check it is the same map.
    assert jax.eval_shape(flax_layer.init, jax.random.key(0), x)["params"]["kernel"].shape == w.shape

    cases = {
        "gendl_jax conv_transpose (custom derivative)": ours,
        "gendl_jax models.ConvTranspose": module_loss(ours_layer),
        REFERENCE: reference,
        "flax nn.ConvTranspose autodiff": module_loss(flax_layer),
    }
    runners = {name: _compile_jax(jax.value_and_grad(loss, argnums=(0, 1)), (x, w, g)) for name, loss in cases.items()}

    torch_version = None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch_version = torch.__version__
        runners[f"torch ConvTranspose2d (eager, {torch.get_num_threads()} threads)"] = _compile_torch(torch, x, w, g)
    results = _measure(runners, args.repeats, args.warmup)
    torch_name = next((n for n in results if n.startswith("torch")), None)

    ref_out = results[REFERENCE]["out"]
    rows = []
    for name, r in results.items():
        _value, (gx, gw) = r["out"]
        row = {
            "name": name,
            "median_ms": r["median_ms"],
            "min_ms": r["min_ms"],
            "compile_s": r["compile_s"],
            "ratio_vs_reference": r["median_ms"] / results[REFERENCE]["median_ms"],
            "ratio_vs_torch": r["median_ms"] / results[torch_name]["median_ms"] if torch_name else None,
            "grad_x_rel_err_vs_reference": _rel_err(gx, ref_out[1][0]),
            "grad_kernel_rel_err_vs_reference": _rel_err(gw, ref_out[1][1]),
        }
        rows.append(row)

    header = f"{'implementation (fwd+bwd)':50s} {'median ms':>10s} {'compile s':>10s} {'/ lax ref':>10s} {'/ torch':>8s} {'grad err':>9s}"
    print(
        f"transposed conv {H_IN}x{H_IN}x{C_IN} -> {H_OUT}x{H_OUT}x{C_OUT}, k={K} s={S} p={P}, batch {args.batch}, "
        f"median of {args.repeats} (jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cpus)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        compile_s = f"{row['compile_s']:.2f}" if row["compile_s"] is not None else "-"
        vs_torch = f"{row['ratio_vs_torch']:.2f}x" if row["ratio_vs_torch"] is not None else "-"
        err = max(row["grad_x_rel_err_vs_reference"], row["grad_kernel_rel_err_vs_reference"])
        print(
            f"{row['name']:50s} {row['median_ms']:10.2f} {compile_s:>10s} {row['ratio_vs_reference']:9.3f}x {vs_torch:>8s} {err:9.1e}"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "conv_transpose",
        "layer": {"in": [H_IN, H_IN, C_IN], "out": [H_OUT, H_OUT, C_OUT], "kernel": K, "stride": S, "padding": P},
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "reference": REFERENCE,
        "jax": jax.__version__,
        "torch": torch_version,
        "backend": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
