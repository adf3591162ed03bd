"""Colour histograms and colour transfer by optimal transport between two photographs (lecture Fig. 2, OT part).

The two photographs shipped with scikit-learn (``sklearn.datasets.load_sample_images()``: china.jpg and
flower.jpg, 427 x 640 each, no download) are read as clouds of RGB pixels in [0, 1]^3 (the lecture's "pixels as
empirical distribution"). scikit-learn is a test extra of the package, not a run-time dependency: this script
needs ``pip install -e '.[test]'`` (or scikit-learn alone).

1. Colour histograms: a 3-D RGB histogram (``--bins`` per channel) and the three 1-D channel histograms (256
   levels), compared by the lecture's histogram distances (``gendl_jax.divergences``) and by W2 between the colour
   clouds (``gendl_jax.transport``: exact on ``--n-eval`` sub-sampled pixels, sliced on every pixel).
2. Colour transfer, in both directions (china gets flower's palette, flower gets china's):
   - exact OT: ``transport.transport_plan`` between ``--n-sub`` random pixels of each image, then
     ``transport.barycentric_map``; with equal sizes and uniform weights the plan is a scaled permutation and each
     sub-sampled source pixel receives one target pixel's colour.
   - Sinkhorn at each ``--epsilons`` (absolute, in squared [0, 1] RGB units), same sub-samples, barycentric map.
   - Extension to every pixel: each pixel moves by the mean displacement T(x_i) - x_i of its ``--k`` nearest
     sub-sampled source pixels in RGB. The exact map on 2,000 samples of a continuous colour distribution is a
     noisy field (close colours can be sent far apart, by the luck of which target samples were drawn); taking only
     the nearest sample's displacement (k = 1, also reported) gives a piecewise-constant field, one displacement per
     RGB Voronoi cell of the samples, which shows as patches in smooth regions (``zoom_china_sky.png``); an average
     over k neighbours is a cheap smoothing of the field, in the spirit of the regularised maps of Ferradans et al.
     (2014) cited by the lecture. It costs some fidelity to the target's histogram (both are in the tables).
   - Sliced: the iterative sliced transfer (Pitié et al. 2005; as sliced-Wasserstein descent in Rabin et al. 2011)
     on every pixel of both images: at each of ``--sliced-iterations`` steps draw a random orthonormal basis of
     R^3, and move each pixel along each basis direction to the target's quantile of its rank (the 1-D monotone
     rearrangement, by sorting). No sub-sampling and no extension are needed.
   The transferred images are clipped to [0, 1] and rounded to 8 bits (the fraction clipped is reported), then
   compared with the target by the same histogram distances and Wasserstein distances as in part 1.

    python experiments/colour_transfer.py            # 3-6 min on the shared 2-core CPU (185 s at load 3, 330 s at 9)
    python experiments/colour_transfer.py --stride 4 --n-sub 500 --sliced-iterations 10   # a quick check

Timings: jitted functions are compiled apart (``lower().compile()``), run once to warm up, then timed with
``block_until_ready``. The exact solver runs on the host (a ``pure_callback``); its first call is reported apart.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_sample_images

from gendl_jax import divergences as dv
from gendl_jax import transport

NAMES = ("china", "flower")
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "colour_transfer"

# Distances between 3-D histograms (bins on the last axis); p = the image compared, q = the target.
BIN_TO_BIN = {
    "kl(p||q)": lambda p, q: dv.kl(p, q),
    "kl(q||p)": lambda p, q: dv.kl(q, p),
    "jsd": dv.jsd,
    "chi2": dv.chi2,
    "hellinger": dv.hellinger,
    "bhattacharyya": dv.bhattacharyya,
    "total_variation": dv.total_variation,
    "histogram_intersection": dv.histogram_intersection,
    "minkowski_l1": lambda p, q: dv.minkowski(p, q, 1),
    "minkowski_l2": lambda p, q: dv.minkowski(p, q, 2),
}


# ----------------------------------------------------------------------------------------------------------------
# Images and histograms
# ----------------------------------------------------------------------------------------------------------------


def load_photographs(stride: int = 1) -> dict[str, np.ndarray]:
    """The two scikit-learn sample photographs as uint8 (H, W, 3), every ``stride``-th row and column."""
    images = load_sample_images()
    out = {}
    for name in NAMES:
        index = next(i for i, f in enumerate(images.filenames) if pathlib.Path(f).stem == name)
        out[name] = np.ascontiguousarray(images.images[index][::stride, ::stride])
    return out


def to_uint8(colours: np.ndarray) -> tuple[np.ndarray, float]:
    """Float colours in [0, 1] -> uint8 levels; returns them and the fraction of values that had to be clipped."""
    colours = np.asarray(colours, np.float64)
    outside = float(np.mean((colours < 0) | (colours > 1)))
    return np.round(np.clip(colours, 0.0, 1.0) * 255.0).astype(np.uint8), outside


def histogram_3d(pixels: np.ndarray, bins: int) -> np.ndarray:
    """(N, 3) uint8 pixels -> (bins^3,) histogram summing to 1; bin (r, g, b) at index (r * bins + g) * bins + b."""
    q = pixels.astype(np.int64) * bins // 256
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    return np.bincount(index, minlength=bins**3) / len(pixels)


def channel_histograms(pixels: np.ndarray, levels: int = 256) -> np.ndarray:
    """(N, 3) uint8 pixels -> (3, levels) histograms of R, G, B, each summing to 1."""
    q = pixels.astype(np.int64) * levels // 256
    return np.stack([np.bincount(q[:, c], minlength=levels) for c in range(3)]) / len(pixels)


def bin_similarity(bins: int) -> np.ndarray:
    """Cross-bin similarity A_ij = exp(-||c_i - c_j||^2 / (2 s^2)) between 3-D bin centres, s = one bin width.

    A Gaussian kernel is positive definite, as ``quadratic_form`` requires; Hafner et al.'s 1 - d_ij / d_max is not
    positive semi-definite in general.
    """
    centres = (np.arange(bins) + 0.5) / bins
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    d2 = ((grid[:, None, :] - grid[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * (1.0 / bins) ** 2))


def histogram_distances(images: list[np.ndarray], target: np.ndarray, bins: int, A: np.ndarray) -> list[dict]:
    """Every histogram distance between each (N, 3) uint8 image of ``images`` (p) and ``target`` (q)."""
    p = np.stack([histogram_3d(x, bins) for x in images])  # (k, bins^3)
    q = histogram_3d(target, bins)
    rows = [{} for _ in images]
    for name, fn in BIN_TO_BIN.items():
        for row, value in zip(rows, np.asarray(fn(p, q))):
            row[name] = float(value)
    for row, value in zip(rows, np.asarray(dv.quadratic_form(p, q, A))):
        row["quadratic_form"] = float(value)
    for row, ph in zip(rows, p):  # why a KL is infinite: mass on bins that the other histogram leaves empty
        row["mass_of_p_where_q_is_0"] = float(ph[q == 0].sum())
        row["mass_of_q_where_p_is_0"] = float(q[ph == 0].sum())
    pc = np.stack([channel_histograms(x) for x in images])  # (k, 3, 256)
    qc = channel_histograms(target)
    ks, match = np.asarray(dv.kolmogorov_smirnov(pc, qc)), np.asarray(dv.match_distance(pc, qc))
    for row, k, m in zip(rows, ks, match):
        row["kolmogorov_smirnov_rgb"] = [float(v) for v in k]
        row["match_distance_rgb"] = [float(v) for v in m]  # in 8-bit levels: W1 of each channel's marginal x 255
    return rows


def wasserstein_distances(images: list[np.ndarray], target: np.ndarray, n_eval: int, seed: int) -> list[dict]:
    """W2 in [0, 1] RGB units between each image and the target: exact on ``n_eval`` fresh random pixels (drawn
    independently of the transfer's sub-samples; the same pixel positions for every image of ``images``, which are
    the source and its transfers, so the rows are paired), and sliced (100 directions, one key) on every pixel."""
    rng = np.random.default_rng(seed)
    y = target.astype(np.float32) / 255.0
    y_eval = y[rng.choice(len(y), min(n_eval, len(y)), replace=False)]
    n_pixels = len(images[0])
    if any(len(image) != n_pixels for image in images):
        raise ValueError("the images compared must have the same number of pixels (the source and its transfers)")
    x_index = rng.choice(n_pixels, min(n_eval, n_pixels), replace=False)
    key = jax.random.key(seed)
    rows = []
    for image in images:
        x = image.astype(np.float32) / 255.0
        x_eval = x[x_index]
        rows.append(
            {
                "w2_exact_subsample": float(transport.wasserstein(x_eval, y_eval)),
                "sw2_all_pixels": float(transport.wasserstein(x, y, method="sliced", key=key, n_projections=100)),
            }
        )
    return rows


def w2_noise_floor(target: np.ndarray, n_eval: int, seed: int) -> float:
    """Exact W2 between two disjoint random sub-samples of ``n_eval`` pixels of the same image: the value a perfect
    transfer would still show on the exact sub-sampled W2."""
    y = target.astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    n = min(n_eval, len(y) // 2)
    order = rng.permutation(len(y))
    return float(transport.wasserstein(y[order[:n]], y[order[n : 2 * n]]))


# ----------------------------------------------------------------------------------------------------------------
# Transfers
# ----------------------------------------------------------------------------------------------------------------


def timed(fn, *args, warm_up: bool = True, **static) -> tuple[object, dict]:
    """Runs the jitted ``fn`` on ``args`` (``static``: its static arguments) compiled apart, warmed up, then timed;
    returns (output, seconds). A second call with the same shapes finds the compiled code in jax's cache."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args, **static).compile()
    compile_s = time.perf_counter() - t0
    if warm_up:
        jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, {"compile_s": round(compile_s, 3), "run_s": round(time.perf_counter() - t0, 3)}


def exact_map(xs, ys):
    """Exact OT (W2 plan) between sub-samples xs (n, 3), ys (m, 3); returns T(xs) (n, 3) by the barycentric map."""
    return transport.barycentric_map(transport.transport_plan(xs, ys), ys)


def sinkhorn_displacement(xs, ys, epsilon: float, max_iterations: int):
    """Sinkhorn plan at ``epsilon`` (absolute), barycentric map; returns (T(xs) - xs, converged)."""
    plan, converged = transport.transport_plan(
        xs, ys, method="sinkhorn", epsilon=epsilon, max_iterations=max_iterations
    )
    return transport.barycentric_map(plan, ys) - xs, converged


def nearest_anchors(pixels, anchors, k: int, chunk: int = 4096):
    """Indices (N, k) of the k nearest ``anchors`` (n, 3) of each of ``pixels`` (N, 3), Euclidean, by chunks."""
    n_pixels = pixels.shape[0]
    padded = -(-n_pixels // chunk) * chunk
    blocks = jnp.pad(pixels, ((0, padded - n_pixels), (0, 0))).reshape(-1, chunk, pixels.shape[1])
    anchor_norms = jnp.sum(anchors**2, 1)

    def one_block(block):
        d2 = jnp.sum(block**2, 1, keepdims=True) - 2.0 * block @ anchors.T + anchor_norms
        return jax.lax.top_k(-d2, k)[1]

    return jax.lax.map(one_block, blocks).reshape(padded, k)[:n_pixels]


def extend(pixels, neighbours, displacement):
    """Moves every pixel (N, 3) by the mean displacement of its anchors ``neighbours`` (N, k) -> (N, 3)."""
    return pixels + displacement[neighbours].mean(1)


def sliced_transfer(x, y, key, iterations: int):
    """Iterative sliced transfer of the cloud x (N, d) onto y (M, d): ``iterations`` random orthonormal bases; along
    each direction every point moves to y's quantile at its rank. Returns (moved x, (iterations,) curve) with curve[t]
    the root mean over the basis's d directions of the 1-D W2^2 at step t (before that step's move)."""
    n, d = x.shape
    m = y.shape[0]

    def step(x, key):
        basis, _ = jnp.linalg.qr(jax.random.normal(key, (d, d), x.dtype))
        px, py = x @ basis, y @ basis  # (n, d), (m, d)
        order = jnp.argsort(px, axis=0)  # order[r, j]: the point of rank r along direction j
        # y's quantile at the level of rank r: rank r itself when n == m (the monotone rearrangement).
        level_index = jnp.minimum(((jnp.arange(n) + 0.5) * (m / n)).astype(jnp.int32), m - 1)
        quantiles = jnp.sort(py, axis=0)[level_index]  # (n, d), by rank
        matched = jnp.zeros_like(px).at[order, jnp.arange(d)].set(quantiles)  # back to the points' order
        move = matched - px
        return x + move @ basis.T, jnp.sqrt(jnp.mean(move**2))

    x, curve = jax.lax.scan(step, x, jax.random.split(key, iterations))
    return x, curve


SINKHORN = jax.jit(sinkhorn_displacement, static_argnames=("epsilon", "max_iterations"))
NEAREST_ANCHORS = jax.jit(nearest_anchors, static_argnames=("k", "chunk"))
EXTEND = jax.jit(extend)
SLICED = jax.jit(sliced_transfer, static_argnames="iterations")


def transfer_direction(source, target, args, seed: int) -> dict:
    """All transfers of ``source`` (H, W, 3) uint8 onto ``target``'s palette: uint8 images (N, 3), timings, flags."""
    rng = np.random.default_rng(seed)
    x = source.reshape(-1, 3).astype(np.float32) / 255.0
    y = target.reshape(-1, 3).astype(np.float32) / 255.0
    n_sub = min(args.n_sub, len(x), len(y))
    xs = x[rng.choice(len(x), n_sub, replace=False)]
    ys = y[rng.choice(len(y), n_sub, replace=False)]
    floats, timings, converged, extra = {}, {}, {}, {}

    # Exact plan on the host: its first call (tracing the callback's wrapper) apart, then a warm call.
    t0 = time.perf_counter()
    exact_map(xs, ys).block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    mapped = exact_map(xs, ys).block_until_ready()
    timings["exact"] = {"first_call_s": round(first, 3), "plan_and_map_s": round(time.perf_counter() - t0, 3)}
    disp_exact = mapped - xs
    extra["exact_subsample"] = {"xs": xs, "ys": ys, "mapped": np.asarray(mapped)}

    displacements = {"exact": disp_exact}
    for eps in args.epsilons:
        (disp, conv), seconds = timed(SINKHORN, xs, ys, epsilon=eps, max_iterations=args.sinkhorn_max_iterations)
        name = f"sinkhorn_{eps:g}"
        displacements[name], converged[name], timings[name] = disp, bool(conv), seconds

    k = min(args.k, n_sub)
    neighbours, seconds = timed(NEAREST_ANCHORS, x, xs, k=k)
    timings["knn_search"] = seconds | {"k": k, "pixels": len(x), "anchors": n_sub}
    floats["exact_1nn"], timings["exact_extension_1nn"] = timed(EXTEND, x, neighbours[:, :1], disp_exact)
    floats[f"exact_{k}nn"], timings[f"exact_extension_{k}nn"] = timed(EXTEND, x, neighbours, disp_exact)
    for name in displacements:
        if name.startswith("sinkhorn"):
            floats[f"{name}_{k}nn"] = EXTEND(x, neighbours, displacements[name])

    (moved, curve), timings["sliced"] = timed(SLICED, x, y, jax.random.key(seed + 1), iterations=args.sliced_iterations)
    floats["sliced"] = moved
    images, clipped = {}, {}
    for name, value in floats.items():
        images[name], clipped[name] = to_uint8(np.asarray(value))
    return {
        "images": images,
        "clipped_fraction": clipped,
        "timings": timings,
        "sinkhorn_converged": converged,
        "sliced_curve": np.asarray(curve),
        "n_sub": n_sub,
        "k": k,
        **extra,
    }


def permutation_error(mapped: np.ndarray, ys: np.ndarray) -> float:
    """Largest |difference| between the rows of ``mapped`` and of ``ys``, both sorted lexicographically: 0 when the
    barycentric map of the exact plan sends the sub-sampled source pixels onto a permutation of the target's."""
    if mapped.shape != ys.shape:
        return math.inf
    # Sorted by keys rounded to 1e-5, so that a last-bit difference cannot reorder rows that tie on a channel.
    a = mapped[np.lexsort(np.round(mapped, 5).T[::-1])]
    b = ys[np.lexsort(np.round(ys, 5).T[::-1])]
    return float(np.abs(a - b).max())


# ----------------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------------

CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")


def label(name: str, k: int) -> str:
    if name == "source":
        return "source (before)"
    if name == "exact_1nn":
        return "exact OT, 1-NN"
    if name == f"exact_{k}nn":
        return f"exact OT, {k}-NN"
    if name.startswith("sinkhorn_"):
        return f"Sinkhorn eps={name.split('_')[1]}, {k}-NN"
    return {"sliced": "sliced (iterative)", "target": "target"}.get(name, name)


def plot_photographs(photos: dict, out: pathlib.Path) -> None:
    """Lecture Fig. 2: each photograph and its R, G, B histograms (the pixels as an empirical distribution)."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.2), dpi=90, gridspec_kw={"width_ratios": [1.1, 1]})
    levels = np.arange(256)
    for row, name in enumerate(NAMES):
        axes[row, 0].imshow(photos[name])
        axes[row, 0].set_axis_off()
        axes[row, 0].set_title(f"{name}.jpg", fontsize=9)
        h = channel_histograms(photos[name].reshape(-1, 3))
        ax = axes[row, 1]
        for c, colour in enumerate(CHANNEL_COLOURS):
            ax.fill_between(levels, h[c], color=colour, alpha=0.25, lw=0)
            ax.plot(levels, h[c], color=colour, lw=0.8, label="RGB"[c])
        ax.set_xlim(0, 255)
        ax.set_xlabel("level", fontsize=8)
        ax.set_ylabel("fraction of pixels", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "histograms.png")
    plt.close(fig)


def plot_transfers(source, target, images: dict, names: list[str], k: int, path: pathlib.Path) -> None:
    """One grid: source, target, then each transfer."""
    panels = [("source", source), ("target", target)] + [(n, images[n]) for n in names]
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), dpi=80)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (name, image) in zip(axes.ravel(), panels):
        ax.imshow(image)
        ax.set_title(label(name, k), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_zoom(source, images: dict, k: int, path: pathlib.Path) -> None:
    """A crop at full resolution (upper right: china's sky), to see how each extension treats a smooth region."""
    h, w = source.shape[:2]
    crop = (slice(int(0.05 * h), int(0.42 * h)), slice(int(0.47 * w), int(0.84 * w)))
    panels = [("source", source), *((n, images[n]) for n in ("exact_1nn", f"exact_{k}nn", "sliced"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.4), dpi=90)
    for ax, (name, image) in zip(axes, panels):
        ax.imshow(image[crop], interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(label(name, k), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_transfer_histograms(directions: dict, k: int, epsilons, out: pathlib.Path) -> None:
    """Per direction and channel, 64-level histograms of target, source and three transfers."""
    shown = ["source", f"exact_{k}nn", f"sinkhorn_{max(epsilons):g}_{k}nn", "sliced"]
    styles = {"source": ("0.5", "--"), shown[1]: ("tab:orange", "-"), shown[2]: ("tab:purple", "-")}
    styles["sliced"] = ("tab:cyan", "-")
    fig, axes = plt.subplots(len(directions), 3, figsize=(11, 3.0 * len(directions)), dpi=90, squeeze=False)
    levels = (np.arange(64) + 0.5) * 4
    for row, (direction, d) in enumerate(directions.items()):
        target_h = channel_histograms(d["target_pixels"], 64)
        for c in range(3):
            ax = axes[row, c]
            ax.fill_between(levels, target_h[c], color="k", alpha=0.15, lw=0)
            ax.plot(levels, target_h[c], color="k", lw=1.2, label="target")
            for name in shown:
                pixels = d["source_pixels"] if name == "source" else d["images"][name].reshape(-1, 3)
                colour, ls = styles[name]
                ax.plot(levels, channel_histograms(pixels, 64)[c], color=colour, ls=ls, lw=0.9, label=label(name, k))
            ax.set_xlim(0, 255)
            ax.set_title(f"{direction}: {'RGB'[c]} channel", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == 0 and c == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "transfer_histograms.png")
    plt.close(fig)


def plot_sliced_curves(curves: dict, out: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for direction, curve in curves.items():
        ax.semilogy(np.arange(1, len(curve) + 1), curve, label=direction)
    ax.set_xlabel("iteration")
    ax.set_ylabel("RMS 1-D displacement (3 directions)")
    ax.set_title("iterative sliced transfer: the step's 1-D W2 (RGB in [0, 1])", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sliced_convergence.png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Tables and main
# ----------------------------------------------------------------------------------------------------------------


def _json_number(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if isinstance(v, dict):
        return {key: _json_number(x) for key, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_number(x) for x in v]
    return v


def markdown_tables(direction: str, rows: dict, k: int) -> str:
    names = list(rows)
    cols1 = list(BIN_TO_BIN)
    lines = [f"{direction}: 3-D histogram distances to the target (bin by bin)", ""]
    lines.append("| image | " + " | ".join(cols1) + " |")
    lines.append("|---" * (len(cols1) + 1) + "|")
    for n in names:
        lines.append(f"| {label(n, k)} | " + " | ".join(f"{rows[n][c]:.4g}" for c in cols1) + " |")
    cols2 = [
        "mass_of_p_where_q_is_0",
        "mass_of_q_where_p_is_0",
        "quadratic_form",
        "kolmogorov_smirnov_rgb",
        "match_distance_rgb",
        "w2_exact_subsample",
        "sw2_all_pixels",
    ]
    lines += ["", f"{direction}: cross-bin, per-channel and Wasserstein distances to the target", ""]
    lines.append("| image | " + " | ".join(cols2) + " |")
    lines.append("|---" * (len(cols2) + 1) + "|")
    for n in names:
        cells = []
        for c in cols2:
            v = rows[n][c]
            cells.append(" / ".join(f"{x:.3g}" for x in v) if isinstance(v, list) else f"{v:.4g}")
        lines.append(f"| {label(n, k)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stride", type=int, default=1, help="keep every stride-th row and column of the photos")
    parser.add_argument("--n-sub", type=int, default=2000, help="pixels of each image for the exact and Sinkhorn plans")
    parser.add_argument("--n-eval", type=int, default=2000, help="fresh pixels of each image for the exact W2")
    parser.add_argument("--k", type=int, default=10, help="nearest sub-sampled pixels whose displacements are averaged")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--sinkhorn-max-iterations", type=int, default=10000)
    parser.add_argument("--sliced-iterations", type=int, default=30)
    parser.add_argument("--bins", type=int, default=8, help="bins per channel of the 3-D histogram")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Runs everything, writes ``--out``; returns the results dict (as in results.json) plus the arrays under
    ``"arrays"`` (per direction: the transferred uint8 images and the exact plan's sub-samples), for tests."""
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    photos = load_photographs(args.stride)
    pixels = {name: photos[name].reshape(-1, 3) for name in NAMES}
    plot_photographs(photos, out)
    A = bin_similarity(args.bins)
    results = {
        "command": "python experiments/colour_transfer.py" + ("" if not argv else " " + " ".join(argv)),
        "machine": f"{platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}",
        "args": {key: value for key, value in vars(args).items() if key != "out"},
        "photographs": {
            name: {
                "shape": list(photos[name].shape),
                "mean_rgb": pixels[name].mean(0).tolist(),
                "nonempty_3d_bins": int((histogram_3d(pixels[name], args.bins) > 0).sum()),
            }
            for name in NAMES
        },
        "directions": {},
    }
    arrays, for_plots, curves, tables = {}, {}, {}, []
    for i, (src, tgt) in enumerate((("china", "flower"), ("flower", "china"))):
        direction = f"{src}_to_{tgt}"
        t0 = time.perf_counter()
        res = transfer_direction(photos[src], photos[tgt], args, args.seed + 10 * i)
        k = res["k"]
        names = ["source", *res["images"]]
        compared = [pixels[src]] + [res["images"][n] for n in names[1:]]
        hist = histogram_distances(compared, pixels[tgt], args.bins, A)
        wass = wasserstein_distances(compared, pixels[tgt], args.n_eval, args.seed + 1)
        rows = {
            n: h | w | {"clipped_fraction": res["clipped_fraction"].get(n, 0.0)} for n, h, w in zip(names, hist, wass)
        }
        sub = res["exact_subsample"]
        results["directions"][direction] = {
            "source": src,
            "target": tgt,
            "n_sub": res["n_sub"],
            "k": k,
            "distances_to_target": rows,
            "w2_exact_noise_floor": w2_noise_floor(pixels[tgt], args.n_eval, args.seed + 10 * i + 2),
            "sinkhorn_converged": res["sinkhorn_converged"],
            "exact_map_permutation_error": permutation_error(sub["mapped"], sub["ys"]),
            "timings_s": res["timings"],
            "sliced_curve": res["sliced_curve"].tolist(),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        shaped = {n: img.reshape(photos[src].shape) for n, img in res["images"].items()}
        plot_transfers(photos[src], photos[tgt], shaped, list(shaped), k, out / f"transfer_{direction}.png")
        if src == "china":
            plot_zoom(photos[src], shaped, k, out / "zoom_china_sky.png")
        for_plots[direction] = {"images": res["images"], "source_pixels": pixels[src], "target_pixels": pixels[tgt]}
        curves[direction] = res["sliced_curve"]
        arrays[direction] = {"images": shaped, **sub}
        tables.append(markdown_tables(direction, rows, k))
        print(tables[-1], flush=True)
        print(direction, "converged", res["sinkhorn_converged"], "timings", json.dumps(res["timings"]), flush=True)
    plot_transfer_histograms(for_plots, args.k, args.epsilons, out)
    plot_sliced_curves(curves, out)
    results["seconds_total"] = round(time.perf_counter() - t_start, 1)
    (out / "results.json").write_text(json.dumps(_json_number(results), indent=2))
    print("total", results["seconds_total"], "s", flush=True)
    return results | {"arrays": arrays}


if __name__ == "__main__":
    main()
