"""Everything the other benchmark scripts time, in one run on one device: gendl_jax on the default jax device
(GPU, TPU or CPU) against PyTorch / POT / pytorch-fid on the same device (torch on ``cuda`` when jax's backend is
``gpu`` and ``torch.cuda.is_available()``, otherwise on the CPU; a TPU's rows compare with torch on the host CPU).

Sections (``--only``); each row: ours compiled apart (its compile time, or first call minus median, reported
apart), warm-up, ``jax.block_until_ready`` / ``torch.cuda.synchronize``, median of ``--repeats``, the reference timed
in the same run, and the ratio reference / ours (> 1: gendl_jax is faster):

  train      one train step of gan, wgan, wgan-gp, wgan-sn on the two cases of ``train_steps.CASES`` (ring8, MLPs
             3 x 512, batch 256; MNIST DCGAN, batch 64), timed by ``train_steps.time_jax`` (in float32 with its
             minimal-step and memory fields where that version gives them), in float32 and in bfloat16 (the
             configs' ``precision="bfloat16"``, parameters stay float32), against
             ``torch_reference.time_step`` in PyTorch eager and with ``torch.compile`` (``compiled=True``). PyTorch
             bfloat16 is ``torch.autocast(device, dtype=torch.bfloat16)`` around the same float32 modules and steps
             (``--no-autocast``: the bfloat16 rows are compared with the float32 PyTorch times). The VAE step
             (``gendl_jax.objectives.vae``, MLP 784-200-200-50 tanh, Bernoulli, dynamic binarisation, Adam eps 1e-4,
             batch 100 of MNIST) in float32 only (the VAE config has no precision field), against the same network,
             loss and optimiser written here in PyTorch (eager and compiled). A torch.compile failure, or
             ``CompileUnsupported`` (WGAN-GP: AOTAutograd has no double backward), is a row with its reason.
  lenet      MNIST LeNet features and logits (the shipped classifier, ``logits_and_features``, batch 500, HIGHEST
             precision) vs the same layers and weights in PyTorch eager on the torch device (as
             ``metrics.py``'s ``bench_features``), both returning numpy; images per second and the largest logit
             difference.
  inception  FID Inception-V3 pool3 features of uint8 32 x 32 RGB images (resized to 299 on both sides):
             ``InceptionExtractor.features`` vs pytorch-fid's ``InceptionV3([3])`` on the torch device, fed
             ``uint8 / 255`` NCHW. No weights can be downloaded: both sides get one random state dict of the right
             architecture with BatchNorm statistics calibrated on images (``calibrated_state_dict`` of
             ``tests/metrics/conftest.py``, as ``inception.py`` does); the speed does not depend on the weights.
  fid        FID from two sets of 2048-d features: ``gendl_jax.metrics.fid`` (float64 statistics, Cholesky and
             eigenvalues, on the device) vs pytorch-fid (``np.mean`` / ``np.cov`` + its
             ``calculate_frechet_distance``: scipy ``sqrtm`` on the host; pytorch-fid has no device path), with the
             relative difference of the values.
  prdc       precision / recall (k=3) and density / coverage (k=5): ``gendl_jax.metrics.prdc`` (float64, blocked)
             vs the prdc algorithm in float64 torch on the torch device (``torch.cdist`` + ``torch.kthvalue``,
             written here), with the largest difference of the four values.
  sinkhorn   entropic W2 (eps 0.1, threshold 1e-3, at most 2000 iterations), d in {2, 64}:
             ``gendl_jax.transport.wasserstein(method="sinkhorn")`` vs POT ``ot.sinkhorn2(method="sinkhorn_log")`` on
             float32 torch tensors on the torch device (POT's torch backend; ``ot.dist`` included), with the
             difference of the values.
  exact      exact W2 (network simplex, a C extension that runs on the host whatever the device) vs POT ``ot.emd2``
             on torch tensors on the torch device (POT copies them to the host for its C++ solver).

Sizes (``--quick``: for a 2-core CPU, 13.5 minutes in all at load average 7-9 with ``--torch-threads 1``, most of
it the train steps' compilations and scipy's ``sqrtm``; default: for an accelerator)::

  section     --quick                          default
  repeats     3                                20 for train, 5 for the others
  lenet       2,000 MNIST test images          10,000
  inception   16 images, batch 8               1,000 images, batch 200
  fid         2,500 x 2,500 features, d 2048   10,000 x 10,000, d 2048
  prdc        2,000 x 2,000, d 128             10,000 x 10,000, d 128
  sinkhorn    n = m = 500                      n = m in {4,000, 10,000}
  exact       n = m = 500                      n = m in {1,000, 2,000}

    python benchmarks/accelerator.py                       # on a GPU / TPU
    python benchmarks/accelerator.py --quick --torch-threads 1   # on a (loaded) CPU, to check the script
    python benchmarks/accelerator.py --only fid prdc sinkhorn exact [--repeats 10]

Needs MNIST (``$GENDL_DATA_DIR``) for ``train`` and ``lenet``, PyTorch, POT and pytorch-fid. Writes
``benchmarks/results/accelerator_<backend>.json`` (with the jax and torch device names; with ``--only``, rows of
the sections not run are kept) and prints a markdown table. On a CPU, jax and torch share the cores in one
process: XLA's thread pool keeps spinning a while after each call, and PyTorch's OpenMP threads collapse when
another job holds a core (see ``inception.py``), so CPU ratios under load favour jax and mean little;
``--torch-threads 1`` makes PyTorch far less sensitive to load (4x faster on a 2-core CPU at load average 8).
On a GPU: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (set here) so that torch gets memory too; jax's default float32
matmul precision may use TF32 where PyTorch's does not (``torch.backends.cuda.matmul.allow_tf32``, recorded; set
it with ``--torch-tf32``), while the LeNet and Inception run at HIGHEST precision on the jax side.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax and torch share the accelerator

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import itertools
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("train", "lenet", "inception", "fid", "prdc", "sinkhorn", "exact")
SIZES = {
    "quick": {
        "repeats": 3,
        "repeats_metrics": 3,
        "lenet_n": 2000,
        "inception_n": 16,
        "inception_batch": 8,
        "fid_n": 2500,
        "fid_d": 2048,
        "prdc_n": 2000,
        "prdc_d": 128,
        "sinkhorn_n": (500,),
        "exact_n": (500,),
    },
    "default": {
        "repeats": 20,
        "repeats_metrics": 5,
        "lenet_n": 10000,
        "inception_n": 1000,
        "inception_batch": 200,
        "fid_n": 10000,
        "fid_d": 2048,
        "prdc_n": 10000,
        "prdc_d": 128,
        "sinkhorn_n": (4000, 10000),
        "exact_n": (1000, 2000),
    },
}


# ---------------------------------------------------------------- devices and timing


def torch_device() -> str:
    """``cuda`` when jax runs on a GPU and torch sees one, else ``cpu``."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _torch_sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _ms(seconds: float) -> float:
    return 1e3 * seconds


def race(ours, reference, repeats: int, *, reference_warmup: bool = True) -> dict:
    """Times two callables that return when their work is done: one first call of each (ours: compile + run;
    the reference: warm-up, torch's kernel selection), then ``repeats`` rounds alternating the two (so that load
    from other processes falls on both). ``reference_warmup=False`` (a numpy / scipy reference, nothing to warm):
    the reference's first call counts as a repeat. Returns medians, first calls and the outputs."""
    t0 = time.perf_counter()
    ours_out = ours()
    ours_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_out = reference()
    ref_first = time.perf_counter() - t0
    ours_t, ref_t = [], [] if reference_warmup else [ref_first]
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        ours_t.append(time.perf_counter() - t0)
        if len(ref_t) < repeats:
            t0 = time.perf_counter()
            reference()
            ref_t.append(time.perf_counter() - t0)
    ours_med, ref_med = statistics.median(ours_t), statistics.median(ref_t)
    return {
        "ours_median_ms": _ms(ours_med),
        "ours_compile_s": max(ours_first - ours_med, 0.0),
        "reference_median_ms": _ms(ref_med),
        "reference_first_call_s": ref_first,
        "ratio": ref_med / ours_med,
        "ours_out": ours_out,
        "reference_out": ref_out,
    }


def _row(section: str, case: str, ours: str, reference: str, **fields) -> dict:
    return {"section": section, "case": case, "ours": ours, "reference": reference, "status": "ok", **fields}


def _failed(row: dict, exc: BaseException, status: str = "failed") -> dict:
    return {**row, "status": status, "reason": f"{type(exc).__name__}: {exc}".strip()[:500]}


# ---------------------------------------------------------------- train steps


def _time_jax_step(step, state, batches, repeats: int) -> dict:
    """``train_steps.time_jax`` for a step and batches built here (the VAE needs data in [0, 1])."""
    jitted = jax.jit(step, donate_argnums=0)
    t0 = time.perf_counter()
    compiled = jitted.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    for i in range(3):
        state, metrics = compiled(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batches[i % len(batches)])
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_ms": _ms(statistics.median(times)), "min_ms": _ms(min(times))}


def _time_torch_step(step, repeats: int, device: str) -> dict:
    """``torch_reference.time_step``'s loop for a closure built here: the first step (for torch.compile, its
    compilation) timed apart, 2 more warm-up steps, then the median of ``repeats``."""
    t0 = time.perf_counter()
    step()
    _torch_sync(device)
    first_s = time.perf_counter() - t0
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        _torch_sync(device)
        t0 = time.perf_counter()
        step()
        _torch_sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_ms": _ms(statistics.median(times)), "min_ms": _ms(min(times)), "compile_s": first_s}


def torch_vae_step(config, batch: int, *, compiled: bool = False, device: str = "cpu"):
    """One step of ``gendl_jax.objectives.vae`` (MLP encoder / decoder, Bernoulli likelihood with a fresh
    binarisation, reparameterised z, closed-form KL, Adam with eps 1e-4) in PyTorch; ``compiled``: both networks
    and the optimiser step wrapped in ``torch.compile``, as ``torch_reference.make_step`` does."""
    import torch
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}[config.activation]

    def mlp(widths):
        layers = []
        for a, b in itertools.pairwise(widths[:-1]):
            layers += [nn.Linear(a, b), act()]
        return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))

    enc = mlp([784, *config.hidden, 2 * config.latent_dim]).to(device)
    dec = mlp([config.latent_dim, *reversed(config.hidden), 784]).to(device)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], config.learning_rate, eps=1e-4)
    grey = torch.rand(batch, 784, device=device)
    update = opt.step
    if compiled:
        enc, dec, update = torch.compile(enc), torch.compile(dec), torch.compile(opt.step)
    bce = nn.functional.binary_cross_entropy_with_logits

    def step():
        x = torch.bernoulli(grey)
        mean, log_var = enc(x).chunk(2, dim=1)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        log_px = -bce(dec(z), x, reduction="none").sum(1)
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)
        loss = (config.beta * kl - log_px).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        update()
        return loss.detach()

    return step


def _torch_variants(time_fn, device: str, autocast: bool) -> dict:
    """{(precision, 'eager' | 'compile'): timing dict or exception} of ``time_fn(compiled)``; bfloat16 under
    ``torch.autocast``; ``torch._dynamo.reset()`` before each compiled case (torch.compile's optimiser step is
    one code object for every optimiser, and its recompilation limit would otherwise send later cases to eager)."""
    import contextlib

    import torch

    out = {}
    for precision in ("float32", "bfloat16") if autocast else ("float32",):
        for mode in ("eager", "compile"):
            ctx = (
                torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                if precision == "bfloat16"
                else contextlib.nullcontext()
            )
            try:
                if mode == "compile":
                    torch._dynamo.reset()
                with ctx:
                    out[(precision, mode)] = time_fn(mode == "compile")
            except Exception as e:  # a torch.compile failure is a result, not a crash
                out[(precision, mode)] = e
    return out


def _train_rows(case: str, jax_times: dict, torch_times: dict, device: str, autocast: bool, extra: dict) -> list:
    import torch
    import torch_reference

    rows = []
    for precision, ours in jax_times.items():
        for mode in ("eager", "compile"):
            ref_precision = precision if (precision, mode) in torch_times else "float32"
            ref = torch_times[(ref_precision, mode)]
            name = "PyTorch eager" if mode == "eager" else "PyTorch torch.compile"
            name += ", autocast bfloat16" if ref_precision == "bfloat16" else ", float32"
            row = _row("train", case, "jitted step", f"{name} ({device})", precision=precision, **extra)
            if isinstance(ours, BaseException):
                rows.append(_failed(row, ours))
                continue
            row.update(ours_median_ms=ours["median_ms"], ours_compile_s=ours["compile_s"])
            row.update({k: ours[k] for k in _MINIMAL_FIELDS if k in ours})
            if isinstance(ref, BaseException):
                status = "unsupported" if isinstance(ref, torch_reference.CompileUnsupported) else "failed"
                rows.append(_failed(row, ref, status))
                continue
            row.update(
                reference_median_ms=ref["median_ms"],
                reference_first_call_s=ref["compile_s"],
                ratio=ref["median_ms"] / ours["median_ms"],
                torch_threads=torch.get_num_threads(),
            )
            rows.append(row)
    return rows


def _try(fn):
    try:
        return fn()
    except Exception as e:
        return e


_MINIMAL_FIELDS = (
    "minimal_compile_s",
    "minimal_median_ms",
    "library_over_minimal",
    "peak_mib_donated",
    "peak_mib_not_donated",
)


def time_library_step(objective: str, label: str, config, dataset, batch: int, repeats: int) -> dict:
    """``train_steps.time_jax``: compile time, median and min of the library step; in float32 also the minimal
    step's fields (``minimal_steps`` computes in float32 only, so they are dropped for bfloat16)."""
    from train_steps import time_jax

    out = time_jax(objective, label, config, dataset, batch, repeats)
    kept = ("compile_s", "median_ms", "min_ms") + (_MINIMAL_FIELDS if config.precision == "float32" else ())
    return {k: out[k] for k in kept if k in out}


def bench_train(sizes: dict, device: str, autocast: bool, log) -> list:
    import torch_reference
    from train_steps import CASES

    from gendl_jax.data import BatchIterator, load_dataset
    from gendl_jax.objectives import vae

    repeats, rows = sizes["repeats"], []
    for (data, model, batch), cases in CASES.items():
        dataset = load_dataset(data)
        for label, (objective, config) in cases.items():
            jax_times = {
                precision: _try(
                    lambda p=precision: time_library_step(
                        objective, label, dataclasses.replace(config, precision=p), dataset, batch, repeats
                    )
                )
                for precision in ("float32", "bfloat16")
            }
            torch_times = _torch_variants(
                lambda compiled, c=config, lb=label, m=model, b=batch: torch_reference.time_step(
                    lb, m, b, c, repeats, compiled=compiled, device=device
                ),
                device,
                autocast,
            )
            case = f"{label}, {data} {model}, batch {batch}"
            extra = {
                "objective": label,
                "data": data,
                "model": model,
                "batch": batch,
                "inner_steps": config.inner_steps,
            }
            for row in _train_rows(case, jax_times, torch_times, device, autocast, extra):
                log(row)
                rows.append(row)

    config, batch = vae.VAEConfig(), 100
    it = BatchIterator(load_dataset("mnist"), batch, seed=0, value_range=(0.0, 1.0))
    batches = [jax.device_put(it.batch_at(s)) for s in range(3)]
    jax_times = {
        "float32": _try(
            lambda: _time_jax_step(vae.step, vae.init(jax.random.PRNGKey(0), config, batches[0]), batches, repeats)
        )
    }
    torch_times = _torch_variants(
        lambda compiled: _time_torch_step(
            torch_vae_step(config, batch, compiled=compiled, device=device), repeats, device
        ),
        device,
        autocast=False,
    )
    extra = {"objective": "vae", "data": "mnist", "model": "mlp", "batch": batch, "inner_steps": 1}
    extra["note"] = "float32 only: VAEConfig has no precision field"
    for row in _train_rows("vae, mnist MLP 784-200-200-50, batch 100", jax_times, torch_times, device, False, extra):
        log(row)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- LeNet and Inception features


def torch_lenet(net, device: str):
    """The shipped LeNet's layers in PyTorch with its weights: uint8 (N, 28, 28, 1) -> (logits, features) numpy."""
    import torch

    p = jax.tree_util.tree_map(np.asarray, net.params["params"])
    layers = {}
    for name, pad in (("conv1", 2), ("conv2", 0)):
        w = p[name]["kernel"]
        layer = torch.nn.Conv2d(w.shape[2], w.shape[3], w.shape[0], padding=pad)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
            layer.bias.copy_(torch.from_numpy(np.array(p[name]["bias"])))
        layers[name] = layer.to(device)
    for name in ("dense1", "classifier"):
        w = p[name]["kernel"]
        layer = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            layer.bias.copy_(torch.from_numpy(np.array(p[name]["bias"])))
        layers[name] = layer.to(device)
    pool, relu = torch.nn.functional.max_pool2d, torch.relu

    def run(images: np.ndarray, batch_size: int):
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        logits, feats = [], []
        with torch.no_grad():
            for chunk in torch.split(x, batch_size):
                h = chunk.float() / 127.5 - 1.0
                h = pool(relu(layers["conv2"](pool(relu(layers["conv1"](h)), 2))), 2)
                h = relu(layers["dense1"](h.permute(0, 2, 3, 1).reshape(len(chunk), -1)))  # flax flattens NHWC
                feats.append(h.cpu().numpy())
                logits.append(layers["classifier"](h).cpu().numpy())
        return np.concatenate(logits), np.concatenate(feats)

    return run


def bench_lenet(sizes: dict, device: str, data_dir=None) -> list:
    from gendl_jax import metrics
    from gendl_jax.data import load_dataset

    images = load_dataset("mnist", split="test", data_dir=data_dir).images[: sizes["lenet_n"]]
    net, batch = metrics.mnist_classifier(), 500
    row = _row(
        "lenet",
        f"MNIST LeNet logits + features, {len(images)} images, batch {batch}",
        "MnistClassifier.logits_and_features (jit, HIGHEST precision)",
        f"PyTorch eager, same layers and weights ({device})",
        precision="float32",
    )
    try:
        ref = torch_lenet(net, device)
        r = race(
            lambda: net.logits_and_features(images, batch_size=batch),
            lambda: ref(images, batch),
            sizes["repeats_metrics"],
        )
    except Exception as e:
        return [_failed(row, e)]
    diff = float(np.abs(r["ours_out"][0] - r["reference_out"][0]).max())
    row.update({k: v for k, v in r.items() if not k.endswith("_out")})
    row.update(
        ours_images_per_s=len(images) / (r["ours_median_ms"] / 1e3),
        reference_images_per_s=len(images) / (r["reference_median_ms"] / 1e3),
        difference=diff,
        agreement=f"max logit diff {diff:.1e}",
    )
    return [row]


def metrics_conftest():
    """``tests/metrics/conftest.py`` under its own module name (random calibrated Inception weights, smooth test
    images, the torchvision import shim); not as ``conftest``, which under pytest is another file."""
    name = "gendl_tests_metrics_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "metrics" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def bench_inception(sizes: dict, device: str, size: int = 32) -> list:
    n, batch = sizes["inception_n"], sizes["inception_batch"]
    row = _row(
        "inception",
        f"Inception pool3 features, {n} uint8 {size}x{size} RGB images, batch {batch} (random calibrated weights)",
        "InceptionExtractor.features (jit, HIGHEST precision)",
        f"pytorch-fid {importlib.metadata.version('pytorch-fid')} InceptionV3([3]), eager ({device})",
        precision="float32",
        note="random weights of the FID Inception architecture (none can be downloaded); times do not depend on them",
    )
    try:
        import torch

        from gendl_jax.metrics.inception_features import InceptionExtractor, inception_variables

        conftest = metrics_conftest()
        state_dict = conftest.calibrated_state_dict(seed=0)
        conftest.import_torchvision()
        from pytorch_fid import inception as pf

        pf.load_state_dict_from_url = lambda url, progress=True: state_dict
        model = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval().to(device)
        extractor = InceptionExtractor(inception_variables({k: v.numpy() for k, v in state_dict.items()}))
        images = conftest.smooth_images(np.random.default_rng(size), n, size, size, 3)

        def reference():
            out = []
            with torch.no_grad():
                for i in range(0, n, batch):
                    x = torch.from_numpy(images[i : i + batch]).to(device).permute(0, 3, 1, 2).float().div(255)
                    out.append(model(x.contiguous())[0].squeeze(3).squeeze(2).cpu().numpy())
            return np.concatenate(out)

        r = race(
            lambda: extractor.features(images, ("2048",), batch_size=batch)["2048"], reference, sizes["repeats_metrics"]
        )
    except Exception as e:
        return [_failed(row, e)]
    diff = np.abs(r["ours_out"].astype(np.float64) - r["reference_out"])
    rel = float(diff.max() / np.abs(r["reference_out"]).max())
    row.update({k: v for k, v in r.items() if not k.endswith("_out")})
    row.update(
        ours_images_per_s=n / (r["ours_median_ms"] / 1e3),
        reference_images_per_s=n / (r["reference_median_ms"] / 1e3),
        difference=rel,
        agreement=f"max feature diff / max |feature| {rel:.1e}",
    )
    return [row]


# ---------------------------------------------------------------- FID and prdc


def _features(rng, n: int, d: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """(n, d) correlated, non-negative float32 features (ReLU of a random linear map of Gaussians)."""
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(scale * rng.normal(size=(n, d)) @ mix + shift, 0.0).astype(np.float32)


def bench_fid(sizes: dict, device: str) -> list:
    from gendl_jax import metrics

    n, d = sizes["fid_n"], sizes["fid_d"]
    rng = np.random.default_rng(3)
    a, b = _features(rng, n, d), _features(rng, n, d, 1.1, 0.05)
    row = _row(
        "fid",
        f"FID of {n} vs {n} features, d={d}",
        "metrics.fid (float64 statistics, Cholesky + eigenvalues, on the jax device)",
        f"pytorch-fid {importlib.metadata.version('pytorch-fid')}: np.mean / np.cov + calculate_frechet_distance "
        "(scipy sqrtm, host CPU)",
        precision="float64",
    )
    try:
        metrics_conftest().import_torchvision()
        from pytorch_fid.fid_score import calculate_frechet_distance

        def reference():
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            mu1, s1 = a64.mean(0), np.cov(a64, rowvar=False)
            mu2, s2 = b64.mean(0), np.cov(b64, rowvar=False)
            return float(calculate_frechet_distance(mu1, s1, mu2, s2))

        r = race(lambda: metrics.fid(a, b), reference, sizes["repeats_metrics"], reference_warmup=False)
    except Exception as e:
        return [_failed(row, e)]
    rel = abs(r["ours_out"] - r["reference_out"]) / abs(r["reference_out"])
    row.update({k: v for k, v in r.items() if not k.endswith("_out")})
    row.update(
        ours_value=r["ours_out"],
        reference_value=r["reference_out"],
        difference=rel,
        agreement=f"FID {r['ours_out']:.6g} vs {r['reference_out']:.6g}, rel. diff {rel:.1e}",
    )
    return [row]


def torch_prdc(real, fake, device: str, k_pr: int = 3, k_dc: int = 5) -> dict:
    """The prdc algorithm (Naeem et al. 2020) in float64 torch on ``device``: full distance matrices by
    ``torch.cdist``, k-th neighbour radii (the point itself counted as its 0-th neighbour) by ``torch.kthvalue``."""
    import torch

    r = torch.as_tensor(real, dtype=torch.float64, device=device)
    f = torch.as_tensor(fake, dtype=torch.float64, device=device)
    d_rr = torch.cdist(r, r)
    real_r, real_r5 = (torch.kthvalue(d_rr, k + 1, dim=1).values for k in (k_pr, k_dc))
    del d_rr
    fake_r = torch.kthvalue(torch.cdist(f, f), k_pr + 1, dim=1).values
    d_rf = torch.cdist(r, f)
    out = {
        "precision": (d_rf <= real_r[:, None]).any(0).double().mean(),
        "recall": (d_rf <= fake_r[None, :]).any(1).double().mean(),
        "density": (d_rf <= real_r5[:, None]).sum() / (k_dc * f.shape[0]),
        "coverage": (d_rf.min(1).values <= real_r5).double().mean(),
    }
    return {k: float(v) for k, v in out.items()}  # float(): on the host, so the work is done


def bench_prdc(sizes: dict, device: str) -> list:
    from gendl_jax import metrics

    n, d = sizes["prdc_n"], sizes["prdc_d"]
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.1
    row = _row(
        "prdc",
        f"precision/recall (k=3) + density/coverage (k=5), {n} x {n}, d={d}",
        "metrics.prdc (float64, blocked kNN, jit)",
        f"torch float64 cdist + kthvalue ({device})",
        precision="float64",
    )
    try:
        r = race(
            lambda: metrics.prdc(real, fake, k_precision_recall=3, k_density_coverage=5),
            lambda: torch_prdc(real, fake, device),
            sizes["repeats_metrics"],
        )
    except Exception as e:
        return [_failed(row, e)]
    diff = max(abs(r["ours_out"][k] - r["reference_out"][k]) for k in r["reference_out"])
    row.update({k: v for k, v in r.items() if not k.endswith("_out")})
    row.update(
        ours_value=r["ours_out"],
        reference_value=r["reference_out"],
        difference=diff,
        agreement=f"max diff of the 4 values {diff:.1e}",
    )
    return [row]


# ---------------------------------------------------------------- transport


def bench_sinkhorn(sizes: dict, device: str, eps: float = 0.1, threshold: float = 1e-3, max_iterations: int = 2000):
    import ot
    import torch
    import transport

    from gendl_jax.transport import wasserstein

    rng, rows = np.random.default_rng(1), []
    for n in sizes["sinkhorn_n"]:
        for d in (2, 64):
            x, y = transport._clouds(rng, n, d)
            row = _row(
                "sinkhorn",
                f"Sinkhorn W2, eps={eps}, n=m={n}, d={d}",
                "transport.wasserstein(method='sinkhorn') (ott-jax, jit)",
                f"POT {ot.__version__} sinkhorn2(method='sinkhorn_log'), torch backend ({device})",
                precision="float32",
            )
            try:
                fn, compile_s = transport._compile(
                    lambda x, y: wasserstein(
                        x, y, method="sinkhorn", epsilon=eps, threshold=threshold, max_iterations=max_iterations
                    ),
                    x,
                    y,
                )
                xt, yt = (torch.as_tensor(v, device=device) for v in (x, y))
                u = torch.full((n,), 1.0 / n, dtype=torch.float32, device=device)

                def pot():
                    value = ot.sinkhorn2(
                        u, u, ot.dist(xt, yt), eps, method="sinkhorn_log", stopThr=threshold, numItermax=max_iterations
                    )
                    return float(torch.sqrt(value))  # float(): on the host, so the work is done

                r = race(lambda: tuple(map(float, fn(x, y))), pot, sizes["repeats_metrics"])
            except Exception as e:
                rows.append(_failed(row, e))
                continue
            diff = abs(r["ours_out"][0] - r["reference_out"])
            row.update({k: v for k, v in r.items() if not k.endswith("_out")})
            row.update(
                ours_compile_s=compile_s,
                ours_value=r["ours_out"][0],
                converged=bool(r["ours_out"][1]),
                reference_value=r["reference_out"],
                difference=diff,
                agreement=f"W {r['ours_out'][0]:.5f} vs {r['reference_out']:.5f}",
            )
            rows.append(row)
    return rows


def bench_exact(sizes: dict, device: str) -> list:
    import ot
    import torch
    import transport

    from gendl_jax.transport import wasserstein

    rng, rows = np.random.default_rng(0), []
    for n in sizes["exact_n"]:
        x, y = transport._clouds(rng, n, 2)
        row = _row(
            "exact",
            f"exact W2, uniform weights, n=m={n}, d=2",
            "transport.wasserstein (network simplex, C extension on the host, jit)",
            f"POT {ot.__version__} emd2 on torch tensors ({device}; solved on the host)",
            precision="float64 solver",
        )
        try:
            fn, compile_s = transport._compile(lambda x, y: wasserstein(x, y), x, y)
            xt, yt = (torch.as_tensor(v, dtype=torch.float64, device=device) for v in (x, y))
            u = torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
            pot = lambda: float(torch.sqrt(ot.emd2(u, u, ot.dist(xt, yt), numItermax=10**7)))
            r = race(lambda: float(fn(x, y)), pot, sizes["repeats_metrics"])
        except Exception as e:
            rows.append(_failed(row, e))
            continue
        diff = abs(r["ours_out"] - r["reference_out"])
        row.update({k: v for k, v in r.items() if not k.endswith("_out")})
        row.update(
            ours_compile_s=compile_s,
            ours_value=r["ours_out"],
            reference_value=r["reference_out"],
            difference=diff,
            agreement=f"W {r['ours_out']:.6f} vs {r['reference_out']:.6f}",
        )
        rows.append(row)
    return rows


# ---------------------------------------------------------------- table, JSON, main


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list) -> str:
    lines = [
        "| section | case | precision | ours ms | ours compile s | reference | reference ms | reference / ours "
        "| agreement / status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = r.get("agreement", "") if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
        status = status.replace("|", "/").replace("\n", " ")[:160]
        lines.append(
            f"| {r['section']} | {r['case']} | {r.get('precision', '')} | {_fmt(r.get('ours_median_ms'), '.2f')} | "
            f"{_fmt(r.get('ours_compile_s'), '.2f')} | {r['reference']} | "
            f"{_fmt(r.get('reference_median_ms'), '.2f')} | {_fmt(r.get('ratio'), '.2f')} | {status} |"
        )
    return "\n".join(lines)


def _versions() -> dict:
    out = {}
    for name in ("jax", "jaxlib", "flax", "ott-jax", "torch", "pot", "pytorch-fid", "numpy", "scipy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine(device: str) -> dict:
    import torch

    info = {
        "backend": jax.default_backend(),
        "jax_device": jax.devices()[0].device_kind,
        "jax_devices": len(jax.devices()),
        "torch_device": device,
        "torch_device_name": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else (platform.processor() or platform.machine()),
        "torch_threads": torch.get_num_threads(),
        "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
    }
    return info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU (module docstring)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION")
    parser.add_argument(
        "--repeats", type=int, default=None, help="all sections (default: 3 with --quick; else 20 train, 5 others)"
    )
    parser.add_argument("--no-autocast", action="store_true", help="no PyTorch bfloat16 (autocast) train steps")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads (CPU; default: torch's own)"
    )
    parser.add_argument("--torch-tf32", action="store_true", help="torch.backends.cuda.matmul.allow_tf32 = True")
    parser.add_argument("--data-dir", default=None, help="MNIST (default: $GENDL_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/accelerator_<backend>.json")
    args = parser.parse_args(argv)

    import torch

    if args.torch_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.data_dir:
        os.environ["GENDL_DATA_DIR"] = args.data_dir
    sizes = dict(SIZES["quick" if args.quick else "default"])
    if args.repeats is not None:
        sizes["repeats"] = sizes["repeats_metrics"] = args.repeats
    device = torch_device()
    out = args.out or ROOT / "benchmarks" / "results" / f"accelerator_{jax.default_backend()}.json"
    command = "python benchmarks/accelerator.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine(device)
    print(f"jax: {info['jax_device']} ({info['backend']}); torch: {info['torch_device_name']} ({device})", flush=True)

    def log(row):
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else row["status"]
        print(
            f"  {row['case'][:62]:62s} {row.get('precision', ''):8s} ours {_fmt(row.get('ours_median_ms'), '9.2f')} ms"
            f"  ref {_fmt(row.get('reference_median_ms'), '9.2f')} ms  {ratio}  {row['reference'][:40]}",
            flush=True,
        )

    benches = {
        "train": lambda: bench_train(sizes, device, not args.no_autocast, log),
        "lenet": lambda: bench_lenet(sizes, device),
        "inception": lambda: bench_inception(sizes, device),
        "fid": lambda: bench_fid(sizes, device),
        "prdc": lambda: bench_prdc(sizes, device),
        "sinkhorn": lambda: bench_sinkhorn(sizes, device),
        "exact": lambda: bench_exact(sizes, device),
    }
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    kept = [r for r in previous if r["section"] not in args.only]
    rows: list = []
    payload: dict = {}
    for section in [s for s in SECTIONS if s in args.only]:
        print(f"{section}:", flush=True)
        load_before, t0 = os.getloadavg(), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # random Inception weights, singular-ish covariances
            new = benches[section]()
        for row in new:
            row.update(command=command, load_average_before=load_before, load_average_after=os.getloadavg())
            if section != "train":
                log(row)
        rows += new
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        all_rows = sorted(kept + rows, key=lambda r: SECTIONS.index(r["section"]))
        payload = {
            "benchmark": "accelerator",
            "command": command,
            "quick": args.quick,
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
            "autocast_bfloat16": not args.no_autocast,
            **info,
            "rows": all_rows,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, default=float) + "\n")  # after every section
    print()
    print(markdown(payload.get("rows", [])))
    print(f"\nwrote {out}")
    return payload


if __name__ == "__main__":
    main()
