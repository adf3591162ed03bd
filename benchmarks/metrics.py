"""Speed of the evaluation metrics against the references they replace, measured in the same run.

Cases (each: warm-up, ``block_until_ready``, compile time reported apart, median over repeats):

  (1) FID trace term tr((S1 S2)^1/2) at d = 2048: ``gendl_jax.metrics.trace_sqrt_product`` (float64
      Cholesky, two matmuls, eigenvalues only) vs ``np.trace(scipy.linalg.sqrtm(S1 @ S2)).real`` (what pytorch-fid does),
      with the relative difference of the values;
  (2) KID, 10,000 x 10,000 features (d = 128, the shipped LeNet's), 100 subsets of 1000, vs a
      float64 numpy version on the same subsets;
  (3) precision/recall (k=3) and density/coverage (k=5), 10,000 x 10,000, d = 128: ``prdc`` (and the two
      functions called apart) vs the prdc algorithm in float64 numpy (scikit-learn ``pairwise_distances``
      full matrices + ``np.partition``);
  (4) MNIST feature extraction (shipped LeNet, batch 500, 10,000 test images): images/s vs PyTorch
      eager with the same weights (if torch is importable);
  (5) k-means, the bins of NDB: ``gendl_jax.metrics.kmeans`` (k-means++ then Lloyd to a fixed point, jit) vs
      scikit-learn's ``KMeans(init="k-means++", n_init=1, algorithm="lloyd")``, 10,000 x 128, K = 100, with
      the inertia of each;
  (6) m-IS of 10,000 x 10 probabilities: the O(N C) sums of ``modified_inception_score`` vs the pairwise KL
      matrices of each class in float64 numpy;
  (7) latent recovery, min_z |G(z) - x|^2 for 256 targets x 4 restarts, 200 Adam steps through a DCGAN
      generator (base 64, random weights, inference mode): ``latent_reconstruction`` (one jitted scan) vs
      the same loop in PyTorch eager on the same architecture (if torch is importable; times only);
  (8) a tournament of 16 discriminators x 16 generators x 250 matches (``experiments/gan_tournament.py`` plays
      1,000; pairwise rule, synthetic logits): ``skill_rating(method="bradley-terry")`` (jitted Newton, float64)
      vs choix's ``opt_pairwise`` (Newton-CG over the list of 64,000 (winner, loser) pairs, the same prior), with
      the largest rating difference; and the time of ``skill_rating(method="glicko2")`` (50 periods in one
      ``lax.scan``; no reference: the PyPI ``glicko2`` package computes its step 5 with the rating in place of
      the deviation).

  (9) the Geometry Score's relative living times, N = 5,000 points in d = 784 (MNIST's pixel count; Gaussian),
      64 landmarks, the authors' protocol at its default gamma, 10 landmark draws: ``relative_living_times``
      (jitted float64 filtrations + the C persistence) vs the authors' pipeline on the same landmarks: scipy
      ``cdist``, GUDHI's ``WitnessComplex`` from the sorted nearest-landmark table, ``persistence()``, with the
      largest difference of the intervals.

    python benchmarks/metrics.py [--repeats 3] [--skip-sqrtm] [--only fid kid prdc features kmeans mis latent skill
                                                              geometry]

Writes ``benchmarks/results/metrics.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from gendl_jax import learned_metrics, metrics
from gendl_jax.metrics.kernel import kid_subset_indices


def _timed(fn, repeats: int, warmup: bool = True) -> dict:
    """First call (compile + run), then ``repeats`` timed calls; compile time = first - median.

    ``warmup=False`` (numpy / scipy references, nothing to compile): only the ``repeats`` calls."""
    first, out = None, None
    if warmup:
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "median_s": median,
        "min_s": min(times),
        "first_call_s": first,
        "compile_s": max(first - median, 0.0) if first is not None else None,
        "out": out,
    }


def _spd(rng, d, n):
    a = rng.normal(size=(d, n))
    return a @ a.T / n


def bench_fid_trace(repeats: int, skip_sqrtm: bool, d: int = 2048) -> dict:
    rng = np.random.default_rng(0)
    s1, s2 = _spd(rng, d, d + 512), _spd(rng, d, d + 512) * 1.5
    with jax.enable_x64(True):
        j1, j2 = jnp.asarray(s1), jnp.asarray(s2)
        ours = _timed(lambda: metrics.trace_sqrt_product(j1, j2), repeats)
    ours["out"] = float(ours["out"])
    row = {
        "case": f"FID trace term, d={d}",
        "ours": "trace_sqrt_product (Cholesky + eigenvalues only, float64, jit)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_value": ours["out"],
    }
    if not skip_sqrtm:
        ref = _timed(lambda: float(np.trace(scipy.linalg.sqrtm(s1 @ s2)).real), max(1, min(repeats, 2)), warmup=False)
        row.update(
            {
                "reference": "np.trace(scipy.linalg.sqrtm(S1 @ S2)).real",
                "reference_median_s": ref["median_s"],
                "reference_value": ref["out"],
                "speedup": ref["median_s"] / ours["median_s"],
                "relative_difference": abs(ours["out"] - ref["out"]) / abs(ref["out"]),
            }
        )
    return row


def _poly(a, b):
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _kid_numpy(real, fake, ri, fi):
    scores = []
    for a, b in zip(ri, fi):
        x, y = real[a], fake[b]
        m = len(a)
        kxx, kyy, kxy = _poly(x, x), _poly(y, y), _poly(x, y)
        scores.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(scores))


def bench_kid(repeats: int, n: int = 10000, d: int = 128) -> dict:
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.05 + 0.02
    key = jax.random.PRNGKey(0)
    ours = _timed(lambda: metrics.kid(real, fake, key=key)[0], repeats)
    ri, fi = kid_subset_indices(key, n, n, 100, 1000)
    ref = _timed(lambda: _kid_numpy(real, fake, ri, fi), repeats, warmup=False)
    return {
        "case": f"KID {n} x {n}, d={d}, 100 subsets of 1000",
        "ours": "kid (float64, jit)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_value": ours["out"],
        "reference": "numpy float64, same subsets",
        "reference_median_s": ref["median_s"],
        "reference_value": ref["out"],
        "speedup": ref["median_s"] / ours["median_s"],
        "relative_difference": abs(ours["out"] - ref["out"]) / abs(ref["out"]),
    }


def _prdc_numpy(real, fake, k_pr=3, k_dc=5):
    from sklearn.metrics import pairwise_distances

    d_rr, d_ff = pairwise_distances(real, n_jobs=1), pairwise_distances(fake, n_jobs=1)
    d_rf = pairwise_distances(real, fake, n_jobs=1)
    kth = lambda d, k: np.partition(d, k, axis=1)[:, k]
    real_r, fake_r, real_r5 = kth(d_rr, k_pr), kth(d_ff, k_pr), kth(d_rr, k_dc)
    return {
        "precision": float((d_rf <= real_r[:, None]).any(0).mean()),
        "recall": float((d_rf <= fake_r[None, :]).any(1).mean()),
        "density": float((d_rf <= real_r5[:, None]).sum() / (k_dc * len(fake))),
        "coverage": float((d_rf.min(1) <= real_r5).mean()),
    }


def bench_prdc(repeats: int, n: int = 10000, d: int = 128) -> dict:
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.1
    ours = _timed(lambda: metrics.prdc(real, fake, k_precision_recall=3, k_density_coverage=5), repeats)
    separate = _timed(
        lambda: {**metrics.precision_recall(real, fake, k=3), **metrics.density_coverage(real, fake, k=5)}, repeats
    )
    ref = _timed(lambda: _prdc_numpy(real, fake), max(1, min(repeats, 2)), warmup=False)
    return {
        "case": f"precision/recall (k=3) + density/coverage (k=5), {n} x {n}, d={d}",
        "ours": "prdc: blocked kNN (float64, jit, 1024 x 1024 blocks), 3 distance passes",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_value": ours["out"],
        "separate_calls": "precision_recall + density_coverage (5 distance passes)",
        "separate_median_s": separate["median_s"],
        "separate_value": separate["out"],
        "reference": "prdc algorithm, sklearn pairwise_distances float64 (3 full 10k x 10k matrices)",
        "reference_median_s": ref["median_s"],
        "reference_value": ref["out"],
        "speedup": ref["median_s"] / ours["median_s"],
        "speedup_separate_calls": ref["median_s"] / separate["median_s"],
        "max_abs_difference": max(
            max(abs(ours["out"][k] - ref["out"][k]), abs(separate["out"][k] - ref["out"][k])) for k in ref["out"]
        ),
    }


def bench_features(repeats: int, data_dir=None) -> dict:
    from gendl_jax.data import load_dataset

    images = load_dataset("mnist", split="test", data_dir=data_dir).images
    net = metrics.mnist_classifier()
    ours = _timed(lambda: net.logits_and_features(images, batch_size=500), repeats)
    row = {
        "case": f"MNIST LeNet features, {len(images)} images, batch 500",
        "ours": "MnistClassifier.logits_and_features (jit, float32)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_images_per_s": len(images) / ours["median_s"],
    }
    try:
        import torch
    except ImportError:
        return row
    p = jax.tree_util.tree_map(np.asarray, net.params["params"])
    conv = lambda w, b, pad: torch.nn.Conv2d(w.shape[2], w.shape[3], 5, padding=pad)
    c1, c2 = conv(p["conv1"]["kernel"], None, 2), conv(p["conv2"]["kernel"], None, 0)
    fc1 = torch.nn.Linear(*p["dense1"]["kernel"].shape)
    out = torch.nn.Linear(*p["classifier"]["kernel"].shape)
    with torch.no_grad():
        for layer, name in ((c1, "conv1"), (c2, "conv2")):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(p[name]["kernel"].transpose(3, 2, 0, 1))))
            layer.bias.copy_(torch.from_numpy(p[name]["bias"]))
        for layer, name in ((fc1, "dense1"), (out, "classifier")):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(p[name]["kernel"].T)))
            layer.bias.copy_(torch.from_numpy(p[name]["bias"]))
    pool = torch.nn.functional.max_pool2d

    def torch_features():
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / 127.5 - 1.0)
        logits, feats = [], []
        with torch.no_grad():
            for chunk in torch.split(x, 500):
                h = pool(torch.relu(c2(pool(torch.relu(c1(chunk)), 2))), 2)
                h = h.permute(0, 2, 3, 1).reshape(len(chunk), -1)  # flax flattens NHWC
                h = torch.relu(fc1(h))
                feats.append(h.numpy())
                logits.append(out(h).numpy())
        return np.concatenate(logits), np.concatenate(feats)

    ref = _timed(torch_features, repeats)  # first call warms torch up
    row.update(
        {
            "reference": f"PyTorch {torch.__version__} eager, same weights ({torch.get_num_threads()} threads)",
            "reference_median_s": ref["median_s"],
            "reference_images_per_s": len(images) / ref["median_s"],
            "speedup": ref["median_s"] / ours["median_s"],
            "max_abs_logit_difference": float(np.abs(ours["out"][0] - ref["out"][0]).max()),
        }
    )
    return row


def bench_kmeans(repeats: int, n: int = 10000, d: int = 128, k: int = 100) -> dict:
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, d)) + 3.0 * rng.normal(size=(20, d))[rng.integers(0, 20, n)]  # 20 blobs
    key = jax.random.PRNGKey(0)
    ours = _timed(lambda: metrics.kmeans(x, k, key=key), repeats)
    ref = _timed(
        lambda: KMeans(k, init="k-means++", n_init=1, algorithm="lloyd", random_state=0).fit(x), repeats, warmup=False
    )
    import sklearn

    return {
        "case": f"k-means (NDB bins) {n} x {d}, K={k}",
        "ours": "kmeans (k-means++, Lloyd to a fixed point, jit)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_inertia": ours["out"]["inertia"],
        "ours_iterations": ours["out"]["iterations"],
        "reference": f"scikit-learn {sklearn.__version__} KMeans(n_init=1, lloyd)",
        "reference_median_s": ref["median_s"],
        "reference_inertia": float(ref["out"].inertia_),
        "reference_iterations": int(ref["out"].n_iter_),
        "speedup": ref["median_s"] / ours["median_s"],
    }


def _mis_numpy(probs):
    labels, logs, kls = probs.argmax(1), np.log(probs), []
    for c in range(probs.shape[1]):
        p, lp = probs[labels == c], logs[labels == c]
        if len(p) < 2:
            continue
        pair = np.sum(p * lp, 1)[:, None] - p @ lp.T  # KL(p_i || p_j), (n_c, n_c)
        kls.append(pair.sum(1) / (len(p) - 1))  # the diagonal is 0
    return float(np.exp(np.concatenate(kls).mean()))


def bench_mis(repeats: int, n: int = 10000, c: int = 10) -> dict:
    rng = np.random.default_rng(5)
    logits = 4.0 * rng.normal(size=(n, c))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    ours = _timed(lambda: metrics.modified_inception_score(probs)["score"], repeats)
    ref = _timed(lambda: _mis_numpy(probs), repeats, warmup=False)
    return {
        "case": f"m-IS, {n} x {c} probabilities",
        "ours": "modified_inception_score (O(N C) sums, float64, jit)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "ours_value": ours["out"],
        "reference": "numpy float64, pairwise KL matrix per class",
        "reference_median_s": ref["median_s"],
        "reference_value": ref["out"],
        "speedup": ref["median_s"] / ours["median_s"],
        "relative_difference": abs(ours["out"] - ref["out"]) / ref["out"],
    }


def bench_latent(repeats: int, n: int = 256, restarts: int = 4, steps: int = 200) -> dict:
    from gendl_jax.objectives import adversarial, gan

    config = gan.GANConfig(model="dcgan", base_features=64)
    state = gan.init(jax.random.PRNGKey(0), config, {"x": jnp.zeros((1, 2, 28, 28, 1))})
    targets = np.random.default_rng(6).uniform(-1, 1, size=(n, 28, 28, 1)).astype(np.float32)

    def generate(z):
        return adversarial.generate(state, z)

    dim = adversarial.latent_dim(config, (28, 28, 1))
    run = lambda: learned_metrics.latent_reconstruction(
        generate, targets, key=jax.random.PRNGKey(1), latent_dim=dim, n_steps=steps, n_restarts=restarts
    )["mean_error"]
    ours = _timed(run, repeats)
    row = {
        "case": f"latent recovery, {n} targets x {restarts} restarts, {steps} Adam steps, DCGAN G base 64",
        "ours": "latent_reconstruction (jitted scan, float32)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
    }
    try:
        import torch
    except ImportError:
        return row
    import torch_reference

    gen, _, _ = torch_reference._dcgan_pair(config, batch_norm_in_d=True)
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    x = torch.from_numpy(np.ascontiguousarray(targets.transpose(0, 3, 1, 2))).repeat(restarts, 1, 1, 1)

    def torch_search():
        z = torch.randn(restarts * n, dim, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.05)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            opt.zero_grad()
            loss = ((gen(z) - x) ** 2).sum()
            loss.backward()
            opt.step()
            sched.step()
        return float(loss.detach())

    ref = _timed(torch_search, repeats)
    row.update(
        {
            "reference": f"PyTorch {torch.__version__} eager, same architecture and loop "
            f"({torch.get_num_threads()} threads)",
            "reference_median_s": ref["median_s"],
            "speedup": ref["median_s"] / ours["median_s"],
        }
    )
    return row


def bench_skill(repeats: int, n_d: int = 16, n_g: int = 16, m: int = 250) -> dict:
    import choix

    rng = np.random.default_rng(7)
    quality = np.linspace(-3, 1, n_g)
    fake = rng.normal(quality[None, :, None] - np.linspace(0, 2, n_d)[:, None, None], 1.0, size=(n_d, n_g, m))
    real = rng.normal(1.0, 1.0, size=(n_d, m))
    ours = _timed(lambda: metrics.skill_rating(fake, real, rule="pairwise", method="bradley-terry"), repeats)
    glicko = _timed(lambda: metrics.skill_rating(fake, real, rule="pairwise", tau=0.2, matches_per_period=5), repeats)
    outcomes = metrics.match_outcomes(fake, real, rule="pairwise")
    i, j, _k = np.nonzero(outcomes == 1.0)
    data = [(a, n_d + b) for a, b in zip(i, j)]
    i, j, _k = np.nonzero(outcomes == 0.0)
    data += [(n_d + b, a) for a, b in zip(i, j)]
    q = np.log(10) / 400
    ref = _timed(
        lambda: choix.opt_pairwise(n_d + n_g, data, alpha=1 / (2 * (q * 350) ** 2), tol=1e-10), repeats, warmup=False
    )
    mine = np.array(ours["out"]["discriminator_rating"] + ours["out"]["generator_rating"])
    return {
        "case": f"skill rating, {n_d} x {n_g} players x {m} matches",
        "ours": "skill_rating(method='bradley-terry') (jitted Newton, float64)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "reference": f"choix {importlib.metadata.version('choix')} opt_pairwise (Newton-CG)",
        "reference_median_s": ref["median_s"],
        "speedup": ref["median_s"] / ours["median_s"],
        "max_rating_difference": float(np.max(np.abs(mine - (1500 + ref["out"] / q)))),
        "glicko2_median_s": glicko["median_s"],
        "glicko2_compile_s": glicko["compile_s"],
        "glicko2_periods": glicko["out"]["n_periods"],
    }


def bench_geometry(repeats: int, n: int = 5000, d: int = 784, n_iterations: int = 10) -> dict:
    import gudhi
    from scipy.spatial.distance import cdist

    x = np.random.default_rng(8).normal(size=(n, d))
    key = jax.random.PRNGKey(8)
    ours = _timed(lambda: metrics.relative_living_times(x, key=key, n_iterations=n_iterations), repeats)
    out = ours["out"]

    def gudhi_intervals():
        intervals = []
        for landmarks, alpha in zip(out["landmarks"], out["alpha_max"]):
            dist = cdist(x, x[landmarks])
            order = np.argsort(dist, axis=1)
            table = np.dstack([order, np.take_along_axis(dist, order, 1)])
            # a far sentinel landmark closes each row (GUDHI reads one entry past a row whose landmarks all qualify)
            far = np.broadcast_to(np.array([len(landmarks), 10 * dist.max() + 10 * alpha + 1]), (n, 1, 2))
            tree = gudhi.WitnessComplex(nearest_landmark_table=np.concatenate([table, far], 1)).create_simplex_tree(
                max_alpha_square=alpha, limit_dimension=2
            )
            tree.persistence(homology_coeff_field=2)
            iv = np.array(tree.persistence_intervals_in_dimension(1), np.float64).reshape(-1, 2)
            iv[:, 1] = np.minimum(iv[:, 1], alpha)
            iv = iv[iv[:, 1] > iv[:, 0]]
            intervals.append(iv[np.lexsort((iv[:, 1], iv[:, 0]))])
        return intervals

    ref = _timed(gudhi_intervals, repeats, warmup=False)
    diffs = [
        np.max(np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)), initial=0.0) / alpha
        for a, b, alpha in zip(out["intervals"], ref["out"], out["alpha_max"])
        if len(a) == len(b)
    ]
    return {
        "case": f"Geometry Score RLTs, {n} x {d}, 64 landmarks, {n_iterations} draws",
        "ours": "relative_living_times (authors' protocol; jitted float64 filtrations, C persistence)",
        "ours_median_s": ours["median_s"],
        "ours_compile_s": ours["compile_s"],
        "reference": f"scipy cdist + gudhi {gudhi.__version__} WitnessComplex + persistence (the authors' pipeline)",
        "reference_median_s": ref["median_s"],
        "speedup": ref["median_s"] / ours["median_s"],
        "iterations_with_equal_interval_counts": f"{len(diffs)} of {n_iterations}",
        "max_interval_difference_over_alpha_max": float(max(diffs, default=float("nan"))),
        "intervals_per_iteration": float(np.mean([len(a) for a in out["intervals"]])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sqrtm", action="store_true", help="do not time scipy.linalg.sqrtm (about 20 s a call)")
    parser.add_argument(
        "--only", nargs="*", default=["fid", "kid", "prdc", "features", "kmeans", "mis", "latent", "skill", "geometry"]
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "metrics.json")
    args = parser.parse_args()
    cases = {
        "fid": lambda: bench_fid_trace(args.repeats, args.skip_sqrtm),
        "kid": lambda: bench_kid(args.repeats),
        "prdc": lambda: bench_prdc(args.repeats),
        "features": lambda: bench_features(args.repeats, args.data_dir),
        "kmeans": lambda: bench_kmeans(args.repeats),
        "mis": lambda: bench_mis(args.repeats),
        "latent": lambda: bench_latent(args.repeats),
        "skill": lambda: bench_skill(args.repeats),
        "geometry": lambda: bench_geometry(args.repeats),
    }
    # Rows already in --out for cases not re-run are kept (each case can be run on its own).
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = [r for r in previous if r.get("key") not in args.only]
    for name in args.only:
        row = {"key": name, **cases[name]()}
        rows.append(row)
        ref = f"{row['reference_median_s']:.3f} s" if "reference_median_s" in row else "-"
        speed = f"{row['speedup']:.1f}x" if "speedup" in row else "-"
        print(
            f"{row['case']:70s} ours {row['ours_median_s']:.3f} s (compile {row['ours_compile_s']:.2f} s)  "
            f"reference {ref}  speedup {speed}",
            flush=True,
        )
        row["load_average"] = os.getloadavg()
        payload = {
            "benchmark": "metrics",
            "repeats": args.repeats,
            "jax": jax.__version__,
            "backend": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")  # after every case
        print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
