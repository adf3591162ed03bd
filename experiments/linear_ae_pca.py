"""The lecture's claim: "when the decoder is linear and L is the mean squared error, an undercomplete
autoencoder learns to span the same subspace as PCA".

A linear autoencoder (encoder ``W_e x + b_e``, decoder ``W_d z + b_d``, code size k, squared error)
is trained on MNIST with Adam (learning rate decayed to 0 by a cosine); every few steps we measure the principal angles between the span
of the decoder's k columns and the span of the top-k principal directions of the (centred)
training images, and the reconstruction error against PCA's (the optimum). The largest angle
should go to 0 (Baldi & Hornik 1989: every minimum of the linear autoencoder spans the PCA subspace).

    GENDL_DATA_DIR=../shared/data/mnist python experiments/linear_ae_pca.py          # k = 10, ~2 min

Writes ``linear_ae_pca.json`` and ``linear_ae_pca.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.objectives import autoencoders as ae


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spans of a (D, k) and b (D, k)."""
    qa, _ = np.linalg.qr(np.float64(a))
    qb, _ = np.linalg.qr(np.float64(b))
    cosines = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)
    return np.sort(np.arccos(cosines))


def run(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    x_all = (train.images.reshape(len(train), -1) / 255.0).astype(np.float64)
    mean = x_all.mean(0)
    _, singular, vt = np.linalg.svd(x_all - mean, full_matrices=False)
    pca = vt[: args.k].T  # (784, k)
    variance = singular**2 / len(x_all)
    pca_mse = variance[args.k :].sum() / x_all.shape[1]  # per-pixel MSE of the best rank-k reconstruction

    config = ae.AutoencoderConfig(
        latent_dim=args.k,
        hidden=(),
        code_activation="linear",
        reconstruction="mse",
        decoder_output="linear",
        learning_rate=args.learning_rate,
        lr_schedule="cosine",
        lr_schedule_steps=args.steps,
    )
    iterator = BatchIterator(train, args.batch_size, seed=args.seed, value_range=(0.0, 1.0))
    state = ae.init(jax.random.PRNGKey(args.seed), config, iterator.batch_at(0))
    step = jax.jit(ae.step)
    eval_x = jnp.asarray(x_all[:10000].reshape(-1, 28, 28, 1), jnp.float32)
    mse_fn = jax.jit(lambda s: jnp.mean(jnp.square(ae.reconstruct(s, eval_x) - eval_x)))
    pca_mse_eval = float(np.mean(np.square((x_all[:10000] - mean) - (x_all[:10000] - mean) @ pca @ pca.T)))

    checkpoints = sorted({int(s) for s in np.geomspace(1, args.steps, 40)} | {args.steps})
    rows, t0 = [], time.time()
    for s in range(1, args.steps + 1):
        state, _ = step(state, iterator.batch_at(s - 1))
        if s in checkpoints:
            decoder = np.asarray(state.params["decoder"]["output"]["kernel"]).T  # (784, k): columns span the image
            angles = np.degrees(principal_angles(decoder, pca))
            rows.append(
                {
                    "step": s,
                    "largest_angle_deg": float(angles[-1]),
                    "angles_deg": angles.tolist(),
                    "mse": float(mse_fn(state)),
                }
            )
    seconds = time.time() - t0
    last = rows[-1]
    print(
        f"k={args.k}: largest principal angle {last['largest_angle_deg']:.3f} deg after {args.steps} steps; "
        f"MSE {last['mse']:.5f} vs PCA {pca_mse_eval:.5f} ({seconds:.0f} s)"
    )
    record = {
        "k": args.k,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "largest_angle_deg": last["largest_angle_deg"],
        "angles_deg": last["angles_deg"],
        "mse_linear_ae": last["mse"],
        "mse_pca": pca_mse_eval,
        "mse_pca_train": float(pca_mse),
        "pca_eigenvalues_k_and_k+1": [float(variance[args.k - 1]), float(variance[args.k])],
        "train_seconds": seconds,
        "trajectory": rows,
        "command": f"python experiments/linear_ae_pca.py --k {args.k} --steps {args.steps} "
        f"--batch-size {args.batch_size} --learning-rate {args.learning_rate}",
    }
    (out / "linear_ae_pca.json").write_text(json.dumps(record, indent=2))

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    steps = [r["step"] for r in rows]
    ax.loglog(steps, [r["largest_angle_deg"] for r in rows], label="largest")
    ax.loglog(steps, [r["angles_deg"][0] for r in rows], label="smallest", alpha=0.6)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("principal angle to PCA subspace (deg)")
    ax.set_title(f"linear AE, k = {args.k}, MNIST", fontsize=9)
    ax.legend(fontsize=8)
    ax2.semilogx(steps, [r["mse"] for r in rows], label="linear AE")
    ax2.axhline(pca_mse_eval, color="k", ls="--", label="PCA (optimum)")
    ax2.set_xlabel("Adam step")
    ax2.set_ylabel("per-pixel MSE (first 10,000 train images)")
    ax2.set_ylim(pca_mse_eval * 0.9, pca_mse_eval * 3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "linear_ae_pca.png")
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="experiments/results/linear_ae_pca")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
