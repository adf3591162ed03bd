"""Speed of the FID Inception-V3 (gendl_jax) against pytorch-fid 0.3.0, features and FID end to end.

Cases (warm-up, ``block_until_ready``, compile time reported apart, median over repeats):

  (1) ``features``: pool3 ("2048") features of uint8 RGB images, images per second:
      ``InceptionExtractor.features(images, ("2048",), batch_size=B)`` (resize as pytorch-fid, network jitted) vs
      ``pytorch_fid.inception.InceptionV3([3])`` with its defaults (``resize_input=True, normalize_input=True``),
      eval mode, ``torch.no_grad()``, ``torch.set_num_threads(os.cpu_count())``, fed contiguous NCHW
      ``uint8 / 255`` as its ``ToTensor`` and the DataLoader's collate give it; at 32 x 32 (CIFAR) and 299 x 299
      inputs and batch sizes 8, 50 (pytorch-fid's default) and 200, on the same ``--n-features`` images per timed
      call; with the largest difference of the two feature sets. A third column runs the same torch model and
      input in channels-last memory format (``model.to(memory_format=torch.channels_last)``), which pytorch-fid
      does not do: what PyTorch itself could reach on this CPU. (A tensor permuted from NHWC and not made
      contiguous has channels-last strides, which carry through the resize into every convolution: feeding
      pytorch-fid's model that way measures this third column, not pytorch-fid.)
  (2) ``fid``: FID end to end, ``--n`` vs ``--n`` images (32 x 32 RGB uint8, written as two folders of PNG files
      that both sides read): ``gendl_jax.metrics.inception_fid.fid_from_paths(a, b, weights=..., batch_size=50)``
      vs ``pytorch_fid.fid_score.calculate_fid_given_paths([a, b], 50, "cpu", 2048, num_workers=0)``; wall time
      of each (model loading, file reading, compilation included: this is what a user waits for), the time of
      the Frechet distance inside it, and the two FID values. The time to decode the PNG files alone (PIL, one
      process) is given too. ``--n`` should exceed 2048, or the covariances are singular.

Weights: no published weights can be downloaded here, so both sides read one file of random weights whose
BatchNorm statistics are calibrated on images (features of order 1): ``calibrated_state_dict`` of
``tests/metrics/conftest.py`` (imported through a ``sys.path`` insert, with its ``smooth_images`` for the test
images and ``import_torchvision`` for the CPU torch beside the CUDA torchvision wheel), saved by ``torch.save``.
pytorch-fid reads it through its own ``fid_inception_v3`` with ``load_state_dict_from_url`` replaced by
``torch.load`` of that file (as ``tests/metrics/test_inception_features.py`` does). The speed does not depend on
the weights' values.

Separate processes: the script re-invokes itself as ``--worker jax`` / ``--worker torch`` (one process per side,
case and configuration, the sides alternating) and collects their JSON. XLA:CPU's thread pool keeps spinning for
a while after each call, so PyTorch timed in the same process as jax runs on cores that are still busy (reported
at about 40% slower on this 2-core CPU when both ran in one process; not re-measured here): in one process the
comparison would flatter jax. The torch workers never import jax.

Load: PyTorch's OpenMP threads wait for each other by spinning, so when another job holds one of the two cores
its throughput collapses far more than XLA's (measured while writing this script, with a test suite running
beside it: 1.6 images/s at 32 x 32, batch 8, against 20.3 on a quiet machine; jax 14.9 against 22.0). The ratios
mean something only at low load; every row records the load average before and after it.

    python benchmarks/inception.py [--repeats 3] [--only features fid] [--n 10000] [--sizes 32 299]
                                   [--batch-sizes 8 50 200] [--n-features 200] [--work-dir DIR]

Writes ``benchmarks/results/inception.json`` (rows of cases not re-run are kept).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FID_BATCH = 50  # pytorch-fid's default
TORCH_SIDES = ("torch", "torch-channels-last")


def _conftest():
    """tests/metrics/conftest.py as a module (calibrated weights, smooth images, the torchvision shim)."""
    sys.path.insert(0, str(ROOT / "tests" / "metrics"))
    import conftest

    return conftest


def _versions() -> dict:
    out = {}
    for name in ("jax", "jaxlib", "flax", "torch", "torchvision", "pytorch-fid", "numpy", "pillow"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _timed(fn, repeats: int, sync=lambda out: out) -> tuple[dict, object]:
    """First call (compile + run), then ``repeats`` timed calls; compile time = first - median.

    ``sync`` waits for the result (``jax.block_until_ready`` on the jax side; the torch worker never imports jax,
    so that no XLA thread pool runs beside PyTorch)."""
    t0 = time.perf_counter()
    out = sync(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = sync(fn())
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"median_s": median, "min_s": min(times), "first_call_s": first, "compile_s": max(first - median, 0.0)}, out


# ---------------------------------------------------------------- workers (one process per side and case)


def _jax_extractor(weights: Path):
    from gendl_jax.metrics.inception_features import load_inception

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not the published weights
        return load_inception(weights)


def _torch_model(weights: Path):
    import torch

    _conftest().import_torchvision()
    from pytorch_fid import inception as pf

    pf.load_state_dict_from_url = lambda url, progress=True: torch.load(weights)
    return pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def worker_features(side: str, work: Path, sizes, batch_sizes, repeats: int) -> list[dict]:
    sync = lambda out: out  # torch returns numpy arrays: the work is done
    if side in TORCH_SIDES:
        import torch

        torch.set_num_threads(os.cpu_count())
        model = _torch_model(work / "weights.pth")
        channels_last = side == "torch-channels-last"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)

        def run(images, batch_size):
            out = []
            with torch.no_grad():
                for i in range(0, len(images), batch_size):
                    x = torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2).float().div(255)
                    # contiguous NCHW, as ToTensor and the DataLoader's collate give it to pytorch-fid's model; the
                    # permuted (channels-last) strides would carry through the resize and make every convolution
                    # run channels-last, which pytorch-fid does not do
                    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                    out.append(model(x)[0].squeeze(3).squeeze(2).numpy())
            return np.concatenate(out)

        implementation = (
            f"pytorch-fid {importlib.metadata.version('pytorch-fid')} InceptionV3([3]), "
            f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads"
            + (", model and input channels-last (not what pytorch-fid does)" if channels_last else "")
        )
    else:
        import jax

        sync = jax.block_until_ready
        extractor = _jax_extractor(work / "weights.pth")
        run = lambda images, batch_size: extractor.features(images, ("2048",), batch_size=batch_size)["2048"]
        implementation = "gendl_jax InceptionExtractor.features (jit, float32, HIGHEST precision)"
    rows = []
    for size in sizes:
        images = np.load(work / f"features_{size}.npy")
        for batch_size in batch_sizes:
            load_before = os.getloadavg()
            timing, feats = _timed(lambda: run(images, batch_size), repeats, sync)
            np.save(work / f"features_{size}_{side}.npy", feats)
            row = {
                "side": side,
                "implementation": implementation,
                "size": size,
                "batch_size": batch_size,
                "n_images": len(images),
                **timing,
                "images_per_s": len(images) / timing["median_s"],
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
            }
            print(
                f"  {side:5s} {size:3d}x{size:<3d} batch {batch_size:3d}: {row['images_per_s']:6.1f} img/s "
                f"(median {timing['median_s']:.2f} s, first call {timing['first_call_s']:.2f} s)",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    return rows


def _timing_wrapper(fn, log: list):
    """``fn`` that adds its wall time to ``log`` (to split the end-to-end time; the result is unchanged)."""

    def wrapped(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        log.append(time.perf_counter() - t0)
        return out

    return wrapped


def worker_fid(side: str, work: Path, n: int) -> dict:
    frechet_s: list[float] = []
    folders = [str(work / f"fid_{n}" / name) for name in ("a", "b")]
    weights = work / "weights.pth"
    load_before = os.getloadavg()
    if side == "torch":
        import torch

        torch.set_num_threads(os.cpu_count())
        _conftest().import_torchvision()
        from pytorch_fid import fid_score
        from pytorch_fid import inception as pf

        pf.load_state_dict_from_url = lambda url, progress=True: torch.load(weights)
        fid_score.calculate_frechet_distance = _timing_wrapper(fid_score.calculate_frechet_distance, frechet_s)
        t0 = time.perf_counter()
        value = fid_score.calculate_fid_given_paths(folders, FID_BATCH, "cpu", 2048, num_workers=0)
        wall = time.perf_counter() - t0
        implementation = (
            f"pytorch_fid.fid_score.calculate_fid_given_paths(paths, 50, 'cpu', 2048, num_workers=0), "
            f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
        )
    else:
        from gendl_jax.metrics import inception_fid

        inception_fid.frechet_distance = _timing_wrapper(inception_fid.frechet_distance, frechet_s)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = inception_fid.fid_from_paths(
                folders[0], folders[1], weights=weights, batch_size=FID_BATCH, progress=True
            )
        wall = time.perf_counter() - t0
        implementation = "gendl_jax fid_from_paths(a, b, weights=..., batch_size=50)"
    return {
        "side": side,
        "implementation": implementation,
        "n_per_side": n,
        "wall_s": wall,
        "images_per_s": 2 * n / wall,
        "frechet_distance_s": sum(frechet_s),
        "fid": float(value),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


# ---------------------------------------------------------------- parent: data, workers, table


def _spawn(side: str, case: str, args, work: Path, sizes=(), batch_sizes=()) -> object:
    result = work / f"result_{case}_{side}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--case", case, "--work-dir", str(work)]
    cmd += ["--repeats", str(args.repeats), "--n", str(args.n), "--result", str(result)]
    cmd += ["--sizes", *map(str, sizes), "--batch-sizes", *map(str, batch_sizes)]
    subprocess.run(cmd, check=True)
    return json.loads(result.read_text())


def _weights(work: Path) -> Path:
    path = work / "weights.pth"
    if not path.is_file():
        import torch

        torch.save(_conftest().calibrated_state_dict(seed=0), path)
    return path


def prepare_features(work: Path, sizes, n: int) -> None:
    smooth_images = _conftest().smooth_images
    for size in sizes:
        path = work / f"features_{size}.npy"
        if not path.is_file() or np.load(path, mmap_mode="r").shape != (n, size, size, 3):
            np.save(path, smooth_images(np.random.default_rng(size), n, size, size, 3))


def prepare_fid(work: Path, n: int) -> dict:
    """Two sets of ``n`` smooth 32 x 32 RGB images (the second 30 levels brighter), as .npy and as PNG folders."""
    from PIL import Image

    smooth_images = _conftest().smooth_images
    base = work / f"fid_{n}"
    rng = np.random.default_rng(2026)
    a = smooth_images(rng, n, 32, 32, 3)
    b = np.clip(smooth_images(rng, n, 32, 32, 3).astype(np.int64) + 30, 0, 255).astype(np.uint8)
    for name, images in (("a", a), ("b", b)):
        folder = base / name
        if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        np.save(base / f"{name}.npy", images)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    # the decoding alone, as both sides do it (PIL open + convert("RGB"))
    t0 = time.perf_counter()
    for name in ("a", "b"):
        for path in sorted((base / name).glob("*.png")):
            np.asarray(Image.open(path).convert("RGB"))
    return {"png_decode_s": time.perf_counter() - t0}


def bench_features(args, work: Path) -> dict:
    prepare_features(work, args.sizes, args.n_features)
    _weights(work)
    table, runs = [], {side: [] for side in ("jax", *TORCH_SIDES)}
    # one process per side and configuration, the sides alternating: on a shared machine a change of load then
    # falls on both sides of a ratio instead of on all of one side's rows
    for size in args.sizes:
        for batch_size in args.batch_sizes:
            r = {side: _spawn(side, "features", args, work, sizes=[size], batch_sizes=[batch_size])[0] for side in runs}
            ours, ref = (np.load(work / f"features_{size}_{side}.npy").astype(np.float64) for side in ("jax", "torch"))
            table.append(
                {
                    "size": size,
                    "batch_size": batch_size,
                    "jax_images_per_s": r["jax"]["images_per_s"],
                    "jax_compile_s": r["jax"]["compile_s"],
                    "torch_images_per_s": r["torch"]["images_per_s"],
                    "torch_first_call_overhead_s": r["torch"]["compile_s"],
                    "ratio_jax_over_torch": r["jax"]["images_per_s"] / r["torch"]["images_per_s"],
                    "torch_channels_last_images_per_s": r["torch-channels-last"]["images_per_s"],
                    "ratio_jax_over_torch_channels_last": r["jax"]["images_per_s"]
                    / r["torch-channels-last"]["images_per_s"],
                    "max_abs_difference": float(np.abs(ours - ref).max()),
                    "max_relative_difference": float(np.abs(ours - ref).max() / np.abs(ref).max()),
                    "mean_abs_feature": float(np.abs(ref).mean()),
                }
            )
            for side in runs:
                runs[side].append(r[side])
    return {
        "key": "features",
        "case": f"Inception pool3 features, {args.n_features} uint8 RGB images per timed call",
        "goal": "jax >= 1.5x pytorch-fid (issue 28)",
        "table": table,
        **runs,
    }


def bench_fid(args, work: Path) -> dict:
    _weights(work)
    decode = prepare_fid(work, args.n)
    rows = {side: _spawn(side, "fid", args, work) for side in ("jax", "torch")}
    ours, ref = rows["jax"]["fid"], rows["torch"]["fid"]
    return {
        "key": "fid",
        "case": f"FID end to end, {args.n} vs {args.n} PNG images (32 x 32 RGB), batch 50, dims 2048",
        "jax_wall_s": rows["jax"]["wall_s"],
        "torch_wall_s": rows["torch"]["wall_s"],
        "speedup": rows["torch"]["wall_s"] / rows["jax"]["wall_s"],
        "jax_fid": ours,
        "torch_fid": ref,
        "relative_difference": abs(ours - ref) / abs(ref),
        "jax_frechet_distance_s": rows["jax"]["frechet_distance_s"],
        "torch_frechet_distance_s": rows["torch"]["frechet_distance_s"],
        **decode,
        "jax": rows["jax"],
        "torch": rows["torch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["features", "fid"], choices=["features", "fid"])
    parser.add_argument("--n", type=int, default=10000, help="images per side for the FID case")
    parser.add_argument("--n-features", type=int, default=200, help="images per timed call for the features case")
    parser.add_argument("--sizes", type=int, nargs="*", default=[32, 299])
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 50, 200])
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "gendl_inception_bench", help="images, weights"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "inception.json")
    parser.add_argument("--worker", choices=["jax", *TORCH_SIDES], help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=["features", "fid"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.case == "features":
            out = worker_features(args.worker, args.work_dir, args.sizes, args.batch_sizes, args.repeats)
        else:
            out = worker_fid(args.worker, args.work_dir, args.n)
        args.result.write_text(json.dumps(out, indent=2, default=float))
        return

    args.work_dir.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/inception.py " + " ".join(sys.argv[1:])
    cases = {"features": bench_features, "fid": bench_fid}
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = [r for r in previous if r.get("key") not in args.only]
    for name in args.only:
        print(f"{name}:", flush=True)
        row = {"command": command, "repeats": args.repeats, **cases[name](args, args.work_dir)}
        rows.append(row)
        if name == "features":
            print(
                f"{'input':>8s} {'batch':>5s} {'jax img/s':>10s} {'torch img/s':>12s} {'jax/torch':>9s} "
                f"{'torch NHWC img/s':>16s} {'jax/NHWC':>8s} {'compile s':>9s} {'max rel diff':>12s}"
            )
            for t in row["table"]:
                print(
                    f"{t['size']:>4d}x{t['size']:<3d} {t['batch_size']:5d} {t['jax_images_per_s']:10.1f} "
                    f"{t['torch_images_per_s']:12.1f} {t['ratio_jax_over_torch']:9.2f} "
                    f"{t['torch_channels_last_images_per_s']:16.1f} {t['ratio_jax_over_torch_channels_last']:8.2f} "
                    f"{t['jax_compile_s']:9.1f} {t['max_relative_difference']:12.1e}"
                )
        else:
            print(
                f"  jax {row['jax_wall_s']:.1f} s (FID {row['jax_fid']:.6f})  pytorch-fid {row['torch_wall_s']:.1f} s "
                f"(FID {row['torch_fid']:.6f})  speed-up {row['speedup']:.2f}x  relative difference "
                f"{row['relative_difference']:.2e}  PNG decoding alone {row['png_decode_s']:.1f} s  Frechet distance "
                f"jax {row['jax_frechet_distance_s']:.1f} s, pytorch-fid {row['torch_frechet_distance_s']:.1f} s"
            )
        payload = {
            "benchmark": "inception",
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "versions": _versions(),
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")  # after every case
        print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
