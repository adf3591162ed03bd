"""Optimal transport for domain adaptation on digits (Courty, Flamary, Tuia & Rakotomamonjy 2017, IEEE TPAMI).

Protocol:

- Source domain: ``--n-source`` MNIST train digits (seed ``--seed``) with their labels. Target domain:
  ``--n-target`` MNIST test digits (a different split, so disjoint) under one fixed shift (``--shifts``):
  ``brightness`` x -> min(x + 0.5, 1) (grey background, saturated strokes), ``rotation`` by 30 degrees
  (``scipy.ndimage.rotate``, bilinear, same frame), or ``inversion`` x -> 1 - x. Target labels are used only
  to score.
- Features: raw pixels in [0, 1] (784-d), the same for every method and for the POT reference, divided by one
  constant per shift so that the median squared source-target distance is 1 (POT's ``norm="median"``): epsilon
  and eta are in units of the median cost. Raw pixels, as Courty et al. use raw grey levels for digits; a
  transported source digit is then an image one can look at, and a shift x -> a x + b with a > 0 leaves the
  exact plan unchanged (the cost changes by a term in i alone and a term in j alone).
- Classifier: 1-nearest neighbour (Courty et al.'s classifier for the digits), trained on the source
  (baseline) or on the transported source with the source labels, scored on the target.
- Adaptation: the source samples are moved to the target by the barycentric map of a plan
  (``transport.barycentric_map``):
  (a) exact OT (``transport.transport_plan(method="exact")``);
  (b) Sinkhorn at each ``--epsilons`` (``method="sinkhorn"``; ``converged`` is recorded);
  (c) the class-regularised OT of Courty et al. with the l_p-l_1 group regulariser, p = 1/2:
      min_G <G, C> - eps H(G) + eta sum_j sum_c (sum_{i in class c} G_ij)^(1/2), solved by their
      majoration-minimisation: ``--outer-iterations`` Sinkhorn solves, the first on C, each next one on
      C + eta W with W_cj = (1/2) (sum_{i in c} G_ij + 1e-3)^(-1/2) at the previous plan (the smoothing 1e-3
      is POT's). ``transport.transport_plan`` takes point clouds, not a cost matrix; the re-weighted cost is
      still a squared distance between augmented points: x_i' = (x_i, e_{c(i)}) and y_j' = (y_j, z_j) with
      z_j = -eta W_{:, j} / 2 give ||x_i' - y_j'||^2 = C_ij + eta W_{c(i) j} + 1 + ||z_j||^2, and a constant
      per column does not change a plan with fixed marginals (exact or entropic). The group-lasso (l_1-l_2)
      variant, solved by generalised conditional gradient, needs the gradient G_ij / ||G_{class(i), j}||, which
      depends on i, so it cannot be written this way.
- Reference: POT's ``ot.da`` (``EMDTransport``, ``SinkhornTransport``, ``SinkhornLpl1Transport``) on the same
  features with the same epsilon, eta and number of outer iterations; the table reports its target accuracy
  and the largest difference between its transported source and ours. POT is a test extra of the package, not a
  run-time dependency (``pip install -e '.[test]'``); ``--no-pot`` skips it.
- Stopping: Sinkhorn stops at an L1 marginal error ``--threshold`` (ours, ott-jax) or an L2 one ``--pot-tol``
  (POT), after ``--max-iterations`` at most. Each solve of the class-regularised OT runs ``--inner-iterations``
  Sinkhorn iterations (200, POT's default) unless its marginal error reaches ``--inner-threshold`` first: the
  plans of the majoration steps are truncated Sinkhorn iterates, as POT's ``sinkhorn_lpl1_mm`` computes them by
  default. ott-jax and POT both start from uniform scalings and update the column side first: after the same
  number of iterations their plans agree to rounding (1e-11 relative, measured at 10 and 50 iterations).

    GENDL_DATA_DIR=/path/to/mnist python experiments/domain_adaptation.py    # about 10 min on the loaded 2-core CPU

Everything runs in float64 (``jax.enable_x64`` inside ``main``). Our jitted solves are compiled apart
(``lower().compile()``) and timed on one run; POT's time is its ``fit`` plus ``transform``. Writes
``results.json``, ``projection.png`` and ``digits.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.ndimage import rotate

from gendl_jax import transport
from gendl_jax.data import load_dataset

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "domain_adaptation"
NUM_CLASSES = 10
LPL1_POWER = 0.5  # the p of the l_p-l_1 regulariser (Courty et al.: p = 1/2)
LPL1_SMOOTHING = 1e-3  # (mass + 1e-3)^(p - 1): the class mass of a column may be 0 (POT's constant)
ROTATION_DEGREES = 30.0
BRIGHTNESS_OFFSET = 0.5

SHIFTS = {
    "brightness": f"x -> min(x + {BRIGHTNESS_OFFSET}, 1)",
    "rotation": f"rotated by {ROTATION_DEGREES:g} degrees (bilinear, same 28x28 frame)",
    "inversion": "x -> 1 - x",
}


# ----------------------------------------------------------------------------------------------------------------
# Domains
# ----------------------------------------------------------------------------------------------------------------


def shift_images(images: np.ndarray, shift: str) -> np.ndarray:
    """(N, 28, 28) float in [0, 1] -> the shifted images, float64 in [0, 1]."""
    images = np.asarray(images, np.float64)
    if shift == "brightness":
        return np.minimum(images + BRIGHTNESS_OFFSET, 1.0)
    if shift == "rotation":
        return np.clip(rotate(images, ROTATION_DEGREES, axes=(1, 2), reshape=False, order=1), 0.0, 1.0)
    if shift == "inversion":
        return 1.0 - images
    raise ValueError(f"shift must be one of {tuple(SHIFTS)}, got {shift!r}")


def load_domains(n_source: int, n_target: int, seed: int, data_dir=None):
    """Source (n_s, 28, 28) float64 in [0, 1] and labels from MNIST train; target images (un-shifted) and labels
    from MNIST test. Both subsets drawn without replacement with ``seed``."""
    train = load_dataset("mnist", split="train", data_dir=data_dir)
    test = load_dataset("mnist", split="test", data_dir=data_dir)
    rng = np.random.default_rng(seed)
    si = np.sort(rng.choice(len(train), n_source, replace=False))
    ti = np.sort(rng.choice(len(test), n_target, replace=False))
    xs = train.images[si, ..., 0].astype(np.float64) / 255.0
    xt = test.images[ti, ..., 0].astype(np.float64) / 255.0
    return xs, train.labels[si].astype(np.int64), xt, test.labels[ti].astype(np.int64)


def median_scale(fs: np.ndarray, ft: np.ndarray) -> float:
    """sqrt of the median squared distance between the source and target features: features / scale have a median
    cost of 1."""
    sq = (fs**2).sum(1)[:, None] + (ft**2).sum(1)[None, :] - 2.0 * fs @ ft.T
    return float(np.sqrt(np.median(np.maximum(sq, 0.0))))


# ----------------------------------------------------------------------------------------------------------------
# Classifier and diagnostics
# ----------------------------------------------------------------------------------------------------------------


@jax.jit
def nearest_neighbour_predict(train_x, train_y, test_x):
    """1-NN: (n, d), (n,), (m, d) -> (m,) label of each test point's nearest training point (squared Euclidean)."""
    sq = jnp.sum(train_x**2, 1)[None, :] - 2.0 * test_x @ train_x.T
    return train_y[jnp.argmin(sq, axis=1)]


def accuracy(train_x, train_y, test_x, test_y) -> float:
    return float(np.mean(np.asarray(nearest_neighbour_predict(train_x, train_y, test_x)) == test_y))


def class_mass(plan: np.ndarray, ys: np.ndarray, yt: np.ndarray) -> float:
    """Share of the plan's mass between a source and a target digit of the same class (target labels: scoring)."""
    plan = np.asarray(plan, np.float64)
    same = sum(plan[np.ix_(ys == c, yt == c)].sum() for c in range(NUM_CLASSES))
    return float(same / plan.sum())


def marginal_errors(plan: np.ndarray) -> dict:
    """L1 errors of the plan's marginals against uniform weights."""
    plan = np.asarray(plan, np.float64)
    n, m = plan.shape
    return {
        "rows_l1": float(np.abs(plan.sum(1) - 1.0 / n).sum()),
        "columns_l1": float(np.abs(plan.sum(0) - 1.0 / m).sum()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Transport (ours: the library)
# ----------------------------------------------------------------------------------------------------------------


def exact_transport(fs, ft):
    """Exact OT plan (squared Euclidean cost) and the barycentric map of the source: (n, m), (n, d)."""
    plan = transport.transport_plan(fs, ft, method="exact")
    return plan, transport.barycentric_map(plan, ft)


def sinkhorn_transport(fs, ft, *, epsilon: float, threshold: float, max_iterations: int):
    """Sinkhorn plan, its barycentric map and ``converged``."""
    plan, converged = transport.transport_plan(
        fs, ft, method="sinkhorn", epsilon=epsilon, threshold=threshold, max_iterations=max_iterations
    )
    return plan, transport.barycentric_map(plan, ft), converged


def class_regularised_transport(
    fs, ys, ft, *, epsilon: float, eta: float, outer_iterations: int, threshold: float, max_iterations: int
):
    """l_p-l_1 class-regularised OT (p = 1/2) by majoration-minimisation; returns the plan of the last Sinkhorn
    solve, its barycentric map and the ``converged`` flag of every solve (outer_iterations,).

    Solve k >= 1 uses the cost C_ij + eta W_{c(i) j} with W = p (M + 1e-3)^(p - 1), M (classes, m) the mass each
    class sends to each target sample at the plan of solve k - 1; solve 0 uses C. The cost is written as a
    squared distance between augmented points (module docstring), so each solve is ``transport.transport_plan``.
    """
    onehot = jax.nn.one_hot(ys, NUM_CLASSES, dtype=fs.dtype)  # (n, K)
    source = jnp.concatenate([fs, onehot], axis=1)

    def solve(weights):  # weights (K, m)
        target = jnp.concatenate([ft, -0.5 * eta * weights.T], axis=1)
        return transport.transport_plan(
            source, target, method="sinkhorn", epsilon=epsilon, threshold=threshold, max_iterations=max_iterations
        )

    def body(k, carry):
        plan, converged = carry
        mass = onehot.T @ plan  # (K, m)
        plan, ok = solve(LPL1_POWER * (mass + LPL1_SMOOTHING) ** (LPL1_POWER - 1.0))
        return plan, converged.at[k].set(ok)

    plan, ok = solve(jnp.zeros((NUM_CLASSES, ft.shape[0]), fs.dtype))
    converged = jnp.zeros(outer_iterations, bool).at[0].set(ok)
    plan, converged = jax.lax.fori_loop(1, outer_iterations, body, (plan, converged))
    return plan, transport.barycentric_map(plan, ft), converged


def timed(fn, *args) -> tuple[object, float, float]:
    """jit ``fn``, compile it apart, run it once; returns (outputs as numpy, compile s, run s)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    return jax.tree.map(np.asarray, out), t1 - t0, t2 - t1


# ----------------------------------------------------------------------------------------------------------------
# Reference (POT)
# ----------------------------------------------------------------------------------------------------------------


def import_pot():
    try:
        import ot
    except ImportError as e:  # a test extra, not a run-time dependency
        raise ImportError(
            "experiments/domain_adaptation.py compares with POT's ot.da: install the test extras "
            "(pip install -e '.[test]') or pass --no-pot"
        ) from e
    return ot


def pot_transport(method: dict, fs, ys, ft):
    """POT's ot.da on the same features, with the method's ``epsilon``, ``eta``, ``outer_iterations``,
    ``max_iterations`` and ``pot_tol``; returns (coupling, transported source, seconds of fit + transform,
    POT's log of its (last) Sinkhorn solve: iterations and final marginal error, or {} for the exact plan)."""
    ot = import_pot()
    kind = method["kind"]
    t0 = time.perf_counter()
    if kind == "exact":
        model = ot.da.EMDTransport(max_iter=10_000_000)
    elif kind == "sinkhorn":
        # The plain (not log-domain) iterations: exp(-C / eps) stays far from underflow at these eps (median
        # cost 1), and they are several times faster than "sinkhorn_log". POT runs "sinkhorn_log" whatever
        # ``method`` says unless the out-of-sample map is "ferradans" (which only maps new samples).
        model = ot.da.SinkhornTransport(
            reg_e=method["epsilon"],
            method="sinkhorn",
            max_iter=method["max_iterations"],
            tol=method["pot_tol"],
            out_of_sample_map="ferradans",
            log=True,
        )
    elif kind == "lpl1":
        model = ot.da.SinkhornLpl1Transport(
            reg_e=method["epsilon"],
            reg_cl=method["eta"],
            max_iter=method["outer_iterations"],
            max_inner_iter=method["max_iterations"],
            tol=method["pot_tol"],
            log=True,
        )
    else:
        raise ValueError(f"unknown method kind {kind!r}")
    model.fit(Xs=fs, ys=ys, Xt=ft)
    moved = model.transform(Xs=fs)
    seconds = time.perf_counter() - t0
    log = {}
    if kind != "exact":  # POT's error: L2 norm of the column-marginal error, every 10 iterations
        log = {"iterations": int(model.log_["niter"]) + 1, "error_l2": float(model.log_["err"][-1])}
    return np.asarray(model.coupling_), np.asarray(moved), seconds, log


# ----------------------------------------------------------------------------------------------------------------
# One shift
# ----------------------------------------------------------------------------------------------------------------


def methods(args) -> list[dict]:
    """The adaptation methods with their parameters, shared by ours and POT.

    Sinkhorn: ours stops at an L1 marginal error ``threshold``, POT at an L2 one ``pot_tol``, both after
    ``max_iterations`` at most. Class-regularised: every inner solve runs ``inner_iterations`` Sinkhorn iterations
    unless it reaches ``inner_threshold`` first (POT's defaults: 200 and 1e-9), as in Courty et al.'s code.
    """
    sinkhorn_stop = {"threshold": args.threshold, "pot_tol": args.pot_tol, "max_iterations": args.max_iterations}
    inner_stop = {
        "threshold": args.inner_threshold,
        "pot_tol": args.inner_threshold,
        "max_iterations": args.inner_iterations,
    }
    rows = [{"name": "exact OT", "kind": "exact"}]
    rows += [{"name": f"Sinkhorn eps={e:g}", "kind": "sinkhorn", "epsilon": e, **sinkhorn_stop} for e in args.epsilons]
    rows += [
        {
            "name": f"class-reg. lp-l1 eps={args.lpl1_epsilon:g} eta={eta:g}",
            "kind": "lpl1",
            "epsilon": args.lpl1_epsilon,
            "eta": eta,
            "outer_iterations": args.outer_iterations,
            **inner_stop,
        }
        for eta in args.etas
    ]
    return rows


def ours(method: dict, fs, ys, ft):
    """(plan, transported source, converged list, compile s, run s) by the library."""
    kind = method["kind"]
    solve = {"threshold": method.get("threshold"), "max_iterations": method.get("max_iterations")}
    if kind == "exact":
        (plan, moved), c, r = timed(exact_transport, fs, ft)
        return plan, moved, [], c, r
    if kind == "sinkhorn":
        fn = functools.partial(sinkhorn_transport, epsilon=method["epsilon"], **solve)
        (plan, moved, ok), c, r = timed(fn, fs, ft)
        return plan, moved, [bool(ok)], c, r
    fn = functools.partial(
        class_regularised_transport,
        epsilon=method["epsilon"],
        eta=method["eta"],
        outer_iterations=method["outer_iterations"],
        **solve,
    )
    (plan, moved, ok), c, r = timed(fn, fs, ys, ft)
    return plan, moved, [bool(v) for v in ok], c, r


def run_shift(shift: str, xs, ys, xt_clean, yt, args) -> tuple[dict, dict]:
    """All methods on one shift; returns the JSON record and the arrays the figures need."""
    xt = shift_images(xt_clean, shift)
    raw_s, raw_t = xs.reshape(len(xs), -1), xt.reshape(len(xt), -1)
    scale = median_scale(raw_s, raw_t)
    fs, ft = raw_s / scale, raw_t / scale
    record = {
        "shift": shift,
        "description": SHIFTS[shift],
        "feature_scale": scale,
        "source_only_accuracy": accuracy(fs, ys, ft, yt),
        "source_only_predicted_counts": np.bincount(
            np.asarray(nearest_neighbour_predict(fs, ys, ft)), minlength=NUM_CLASSES
        ).tolist(),
        "target_counts": np.bincount(yt, minlength=NUM_CLASSES).tolist(),
        "no_shift_accuracy": accuracy(raw_s, ys, xt_clean.reshape(len(xt_clean), -1), yt),
        "methods": [],
    }
    print(f"[{shift}] source only {record['source_only_accuracy']:.4f} (no shift {record['no_shift_accuracy']:.4f})")
    moved_images = {}
    for method in methods(args):
        plan, moved, converged, compile_s, run_s = ours(method, fs, ys, ft)
        row = {
            **method,
            "accuracy": accuracy(moved, ys, ft, yt),
            "same_class_mass": class_mass(plan, ys, yt),
            "marginal_errors": marginal_errors(plan),
            "converged": converged,
            "compile_seconds": compile_s,
            "seconds": run_s,
        }
        if not args.no_pot:
            pot_plan, pot_moved, pot_s, pot_log = pot_transport(method, fs, ys, ft)
            row.update(
                {
                    "pot_accuracy": accuracy(pot_moved, ys, ft, yt),
                    "pot_log": pot_log,
                    "pot_same_class_mass": class_mass(pot_plan, ys, yt),
                    "pot_seconds": pot_s,
                    "pot_marginal_errors": marginal_errors(pot_plan),
                    "max_abs_diff_transported": float(np.max(np.abs(pot_moved - moved))),
                    "max_abs_diff_plan_relative": float(np.max(np.abs(pot_plan - plan)) * plan.size),
                }
            )
        record["methods"].append(row)
        moved_images[method["name"]] = moved
        print(
            f"[{shift}] {method['name']}: accuracy {row['accuracy']:.4f}"
            + (
                f" (POT {row['pot_accuracy']:.4f}, max diff {row['max_abs_diff_transported']:.2e})"
                if not args.no_pot
                else ""
            )
            + f", {run_s:.1f} s (+{compile_s:.1f} s compile)"
            + (f" / POT {row['pot_seconds']:.1f} s" if not args.no_pot else ""),
            flush=True,
        )
    arrays = {"fs": fs, "ft": ft, "scale": scale, "xt": xt, "moved": moved_images}
    return record, arrays


# ----------------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------------


def plot_projection(records, arrays, ys, yt, path: pathlib.Path, shown: list[str]) -> None:
    """Per shift, the 2-D PCA (of source + target features) of the source, the target and transported sources."""
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(records), 1 + len(shown), figsize=(3.2 * (1 + len(shown)), 3.3 * len(records)))
    axes = np.atleast_2d(axes)
    for r, (record, arr) in enumerate(zip(records, arrays)):
        fs, ft = arr["fs"], arr["ft"]
        pooled = np.concatenate([fs, ft])
        mean = pooled.mean(0)
        basis = np.linalg.svd(pooled - mean, full_matrices=False)[2][:2].T
        ps, pt = (fs - mean) @ basis, (ft - mean) @ basis
        ax = axes[r, 0]
        ax.scatter(pt[:, 0], pt[:, 1], s=3, c=cmap(yt), marker="x", alpha=0.5, linewidths=0.5)
        ax.scatter(ps[:, 0], ps[:, 1], s=3, c=cmap(ys), alpha=0.6)
        ax.set_title(f"{record['shift']}: source (o), target (x)", fontsize=8)
        for c, name in enumerate(shown, start=1):
            pm = (arr["moved"][name] - mean) @ basis
            ax = axes[r, c]
            ax.scatter(pt[:, 0], pt[:, 1], s=3, c="lightgrey", marker="x", linewidths=0.5)
            ax.scatter(pm[:, 0], pm[:, 1], s=3, c=cmap(ys), alpha=0.6)
            acc = next(m["accuracy"] for m in record["methods"] if m["name"] == name)
            ax.set_title(f"{name}\ntransported source (1-NN acc. {acc:.3f})", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "2-D PCA of source + target pixels; colour = class (source labels; target: true labels, scoring only)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_digits(records, arrays, xs, ys, path: pathlib.Path, shown: list[str]) -> None:
    """The first source digit of each class, and where each method sends it (barycentric map, as an image)."""
    picks = [int(np.flatnonzero(ys == c)[0]) for c in range(NUM_CLASSES)]
    rows = [("source", None, None)]
    for record in records:
        rows.append((f"{record['shift']}: target", record, None))
        rows += [(f"{record['shift']}: {name}", record, name) for name in shown]
    fig, axes = plt.subplots(len(rows), NUM_CLASSES, figsize=(NUM_CLASSES * 0.75, len(rows) * 0.85))
    arrays_by_shift = {record["shift"]: arr for record, arr in zip(records, arrays)}
    for r, (title, record, name) in enumerate(rows):
        for c, i in enumerate(picks):
            if record is None:
                image = xs[i]
            elif name is None:
                image = arrays_by_shift[record["shift"]]["xt"][c]  # any target digits, for the look of the domain
            else:
                arr = arrays_by_shift[record["shift"]]
                image = (arr["moved"][name][i] * arr["scale"]).reshape(28, 28)
            axes[r, c].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=6, loc="left")
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-source", type=int, default=2000)
    p.add_argument("--n-target", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shifts", nargs="+", default=["brightness", "rotation"], choices=list(SHIFTS))
    p.add_argument("--epsilons", type=float, nargs="+", default=[0.01, 0.05], help="Sinkhorn, median-cost units")
    p.add_argument("--lpl1-epsilon", type=float, default=0.05, help="entropic epsilon of the class-regularised OT")
    p.add_argument("--etas", type=float, nargs="+", default=[0.1], help="class-regulariser weights")
    p.add_argument("--outer-iterations", type=int, default=10, help="majoration-minimisation steps (Sinkhorn solves)")
    p.add_argument("--threshold", type=float, default=1e-5, help="our Sinkhorn: L1 marginal error to stop at")
    p.add_argument("--pot-tol", type=float, default=1e-7, help="POT's Sinkhorn: L2 marginal error to stop at")
    p.add_argument("--max-iterations", type=int, default=2000, help="Sinkhorn iterations at most (ours and POT)")
    p.add_argument(
        "--inner-iterations",
        type=int,
        default=200,
        help="class-regularised: Sinkhorn iterations per solve (POT's default)",
    )
    p.add_argument(
        "--inner-threshold", type=float, default=1e-9, help="class-regularised: marginal error to stop a solve earlier"
    )
    p.add_argument("--no-pot", action="store_true", help="skip the POT reference")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    return p.parse_args(argv)


def command_line(argv) -> str:
    return " ".join(["python experiments/domain_adaptation.py", *argv])


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_pot:
        import_pot()
    t_start = time.perf_counter()
    xs, ys, xt_clean, yt = load_domains(args.n_source, args.n_target, args.seed, args.data_dir)
    records, arrays = [], []
    with jax.enable_x64(True):
        for shift in args.shifts:
            record, arr = run_shift(shift, xs, ys, xt_clean, yt, args)
            records.append(record)
            arrays.append(arr)
    shown = [m["name"] for m in methods(args) if m["kind"] != "sinkhorn" or m["epsilon"] == max(args.epsilons)]
    plot_projection(records, arrays, ys, yt, out / "projection.png", shown)
    plot_digits(records, arrays, xs, ys, out / "digits.png", shown)
    results = {
        "command": command_line(argv),
        "protocol": {
            "source": f"{args.n_source} MNIST train digits (seed {args.seed}) with labels",
            "target": f"{args.n_target} MNIST test digits (seed {args.seed}) under one shift; labels for scoring only",
            "shifts": {s: SHIFTS[s] for s in args.shifts},
            "features": "raw pixels in [0, 1] (784-d) divided by sqrt(median squared source-target distance)",
            "classifier": "1-nearest neighbour (squared Euclidean), trained on the source or the transported source",
            "cost": "squared Euclidean (POT metric='sqeuclidean')",
            "epsilons": args.epsilons,
            "class_regularised": {
                "regulariser": "l_p-l_1 over (class, target sample) groups, p = 1/2 (Courty et al.)",
                "solver": "majoration-minimisation: Sinkhorn on C, then on C + eta W(previous plan)",
                "epsilon": args.lpl1_epsilon,
                "etas": args.etas,
                "outer_iterations": args.outer_iterations,
                "smoothing": LPL1_SMOOTHING,
            },
            "sinkhorn_stopping": f"ours: L1 marginal error {args.threshold:g} (ott-jax), POT: L2 marginal error "
            f"{args.pot_tol:g}; both after {args.max_iterations} iterations at most",
            "class_regularised_stopping": f"each solve: {args.inner_iterations} iterations unless the marginal error "
            f"reaches {args.inner_threshold:g} (ours L1, POT L2) first",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "pot": None if args.no_pot else import_pot().__version__,
        },
        "shifts": records,
        "total_seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown_table(results))
    return results


def markdown_table(results: dict) -> str:
    lines = []
    for record in results["shifts"]:
        lines += [
            f"\n{record['shift']} ({record['description']}): source only {record['source_only_accuracy']:.4f}, "
            f"no shift {record['no_shift_accuracy']:.4f}\n",
            "| method | target accuracy (ours) | target accuracy (POT) | same-class mass (ours) | time ours / POT (s) "
            "| max abs diff, transported source |",
            "|---|---|---|---|---|---|",
        ]
        for m in record["methods"]:
            pot = "pot_accuracy" in m
            pot_accuracy = f"{m['pot_accuracy']:.4f}" if pot else "-"
            pot_seconds = f"{m['pot_seconds']:.1f}" if pot else "-"
            diff = f"{m['max_abs_diff_transported']:.1e}" if pot else "-"
            lines.append(
                f"| {m['name']} | {m['accuracy']:.4f} | {pot_accuracy} | {m['same_class_mass']:.4f} | "
                f"{m['seconds']:.1f} / {pot_seconds} | {diff} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
