"""The four autoencoders of the lecture side by side on MNIST: undercomplete, sparse (KL to a target
activation), denoising (masking noise) and contractive (squared Frobenius norm of the encoder's
Jacobian).

Same architecture for all (784-256-64 encoder with sigmoid codes, mirrored decoder, Bernoulli
cross-entropy), same steps and batches; on the 10,000 test digits we measure:

* reconstruction error (per-pixel MSE) on clean digits, and on digits corrupted by masking noise
  (30% of pixels set to 0) and by Gaussian noise (std 0.3), each compared with the clean digit;
* sparsity of the codes: mean activation, and fraction of activations below 0.05;
* contraction: mean ||J_h(x)||_F over 1,000 test digits;
* linear-probe accuracy: softmax regression (L2 1e-4, full-batch Adam) trained on the codes of the
  60,000 training digits, accuracy on the test codes (raw pixels as a baseline).

    GENDL_DATA_DIR=../shared/data/mnist python experiments/autoencoders_mnist.py    # ~20 min on 2 busy cores

Writes ``models/<name>.json`` per model, and ``autoencoders_mnist.json``, ``table.md`` and
``reconstructions.png`` (rows: inputs, then each model's reconstructions of clean and masked
digits) for all the models whose results are in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from gendl_jax.data import BatchIterator, load_dataset, map_in_batches
from gendl_jax.objectives import autoencoders as ae
from gendl_jax.objectives import contractive_ae, denoising_ae, sparse_ae

SHARED = dict(latent_dim=64, hidden=(256,), code_activation="sigmoid")
MODELS = {
    "ae": ae.AutoencoderConfig(**SHARED),
    "sparse-ae": sparse_ae.SparseAEConfig(sparsity="kl", sparsity_weight=1.0, sparsity_target=0.05, **SHARED),
    "denoising-ae": denoising_ae.DenoisingAEConfig(corruption="masking", noise_level=0.3, **SHARED),
    # The penalty on 10 of the 100 examples of each batch (an unbiased estimate; 10x cheaper).
    "contractive-ae": contractive_ae.ContractiveAEConfig(contractive_weight=0.3, penalty_examples=10, **SHARED),
}


def linear_probe_accuracy(train_x, train_y, test_x, test_y, *, steps=500, l2=1e-4, seed=0) -> float:
    """Softmax regression on standardised features, full-batch Adam; test accuracy."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    tx, vx = jnp.asarray((train_x - mu) / sd), jnp.asarray((test_x - mu) / sd)
    ty = jnp.asarray(train_y)
    params = {"w": jnp.zeros((tx.shape[1], 10)), "b": jnp.zeros(10)}
    tx_opt = optax.adam(0.05)

    def loss(p):
        logits = tx @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ty).mean() + l2 * jnp.sum(p["w"] ** 2)

    @jax.jit
    def fit(params):
        def body(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx_opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (params, _), _ = jax.lax.scan(body, (params, tx_opt.init(params)), None, length=steps)
        return params

    p = fit(params)
    return float(jnp.mean(jnp.argmax(vx @ p["w"] + p["b"], 1) == jnp.asarray(test_y)))


def train_and_measure(name, config, args, data) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    train, train_x, test, test_x, masked, noisy = data
    iterator = BatchIterator(train, args.batch_size, seed=args.seed, value_range=(0.0, 1.0))
    state = ae.init(jax.random.PRNGKey(args.seed), config, iterator.batch_at(0))
    step = jax.jit(ae.step)
    t0 = time.time()
    for s in range(args.steps):
        state, metrics = step(state, iterator.batch_at(s))
    jax.block_until_ready(state)
    seconds = time.time() - t0
    recon = jax.jit(lambda x: ae.reconstruct(state, x))
    codes_fn = jax.jit(lambda x: ae.encode(state, x))
    mse = lambda inputs: float(np.mean(np.square(map_in_batches(recon, inputs) - test_x)))
    test_codes, train_codes = map_in_batches(codes_fn, test_x), map_in_batches(codes_fn, train_x)
    contraction = map_in_batches(jax.jit(lambda x: contractive_ae.contraction(state, x)), test_x[:1000], 100)
    result = {
        "config": dataclasses.asdict(config),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_seconds": seconds,
        "final_train_loss": float(metrics["loss"]),
        "mse_clean": mse(test_x),
        "mse_masked_30pct": mse(masked),
        "mse_gaussian_0.3": mse(noisy),
        "mean_code": float(test_codes.mean()),
        "fraction_codes_below_0.05": float(np.mean(test_codes < 0.05)),
        "mean_jacobian_frobenius": float(contraction.mean()),
        "linear_probe_accuracy": linear_probe_accuracy(train_codes, train.labels, test_codes, test.labels),
    }
    return result, (map_in_batches(recon, test_x[:8]), map_in_batches(recon, masked[:8]))


def run(args):
    out = pathlib.Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    train_x = train.images.astype(np.float32) / 255
    test_x = test.images.astype(np.float32) / 255
    key = jax.random.PRNGKey(args.seed + 100)
    masked = np.asarray(denoising_ae.corrupt(key, jnp.asarray(test_x), "masking", 0.3))
    noisy = np.asarray(denoising_ae.corrupt(jax.random.fold_in(key, 1), jnp.asarray(test_x), "gaussian", 0.3))
    data = (train, train_x, test, test_x, masked, noisy)
    names = ["pixels", *MODELS] if not args.only else args.only
    for name in names:
        if name == "pixels":
            result = {
                "linear_probe_accuracy": linear_probe_accuracy(
                    train_x.reshape(len(train_x), -1), train.labels, test_x.reshape(len(test_x), -1), test.labels
                )
            }
            pictures = (test_x[:8], masked[:8])  # the inputs themselves
        else:
            result, pictures = train_and_measure(name, MODELS[name], args, data)
        (out / "models" / f"{name}.json").write_text(json.dumps(result, indent=2))
        np.savez_compressed(out / "models" / f"{name}_reconstructions.npz", clean=pictures[0], masked=pictures[1])
        print(name, {k: v for k, v in result.items() if k != "config"}, flush=True)
        summarize(out)


def summarize(out: pathlib.Path) -> None:
    """autoencoders_mnist.json, table.md and reconstructions.png from the per-model results present."""
    order = ["pixels", *MODELS]
    results = {
        n: json.loads((out / "models" / f"{n}.json").read_text())
        for n in order
        if (out / "models" / f"{n}.json").is_file()
    }
    record = {
        "results": results,
        "command": "python experiments/autoencoders_mnist.py  "
        "(per model: --only NAME; steps and batch size are in each result)",
    }
    (out / "autoencoders_mnist.json").write_text(json.dumps(record, indent=2))
    cols = [
        "mse_clean",
        "mse_masked_30pct",
        "mse_gaussian_0.3",
        "mean_code",
        "fraction_codes_below_0.05",
        "mean_jacobian_frobenius",
        "linear_probe_accuracy",
        "train_seconds",
    ]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.4g}" if c in r else "-" for c in cols) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    rows = []
    for name in results:
        pics = np.load(out / "models" / f"{name}_reconstructions.npz")
        label = "input" if name == "pixels" else name
        rows += [(f"{label}: clean", pics["clean"]), (f"{label}: masked 30%", pics["masked"])]
    fig, axes = plt.subplots(len(rows), 8, figsize=(8, 1.05 * len(rows)), dpi=100, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(8):
            axes[r, c].imshow(images[c, ..., 0], cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(out / "reconstructions.png")
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=["pixels", *MODELS],
        help="run only these (results of the others already in --out are kept)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="experiments/results/autoencoders_mnist")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
