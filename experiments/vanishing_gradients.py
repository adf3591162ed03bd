"""The lecture's vanishing-gradient theorem made visible (Arjovsky & Bottou 2017, Fig. 2 style).

A generator is trained for a while on MNIST (non-saturating GAN); then it is frozen, a fresh
discriminator is trained alone against it, and every few discriminator iterations we measure the
norm of the generator's gradient under the saturating loss (eq. 5, ``log(1 - D(G(z)))``) and the
non-saturating loss (eq. 7, ``-log D(G(z))``). As D approaches optimality the first collapses
towards 0, the second does not.

    python experiments/vanishing_gradients.py                     # MLP networks, ~10 min on 2 cores
    python experiments/vanishing_gradients.py --model dcgan       # the DCGAN pair (slower)

Writes ``vanishing_gradients.png`` and ``vanishing_gradients.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gendl_jax.data import BatchIterator, load_dataset
from gendl_jax.objectives import adversarial, gan


def fresh_discriminator(state, key):
    """The state with a newly initialised discriminator and optimiser (generator untouched)."""
    new = gan.init(key, state.config, {"x": np.zeros((1, 2, *state.data_shape), np.float32)})
    return state.replace(discriminator=new.discriminator)


def run(args):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset("mnist", data_dir=args.data_dir)
    config = gan.GANConfig(
        model=args.model, hidden=(512, 512), d_activation="leaky_relu", latent_dim=100, generator_loss="non-saturating"
    )
    iterator = BatchIterator(dataset, args.batch_size, seed=args.seed, inner_steps=1)
    state = gan.init(jax.random.PRNGKey(args.seed), config, iterator.batch_at(0))
    step = jax.jit(gan.step)
    norms_fn = jax.jit(gan.generator_gradient_norms)
    z_eval = jax.random.normal(jax.random.PRNGKey(123), (256, adversarial.latent_dim(config, state.data_shape)))

    curves = {}
    g_step = 0
    data_step = 0
    t0 = time.time()
    for target in sorted(args.g_steps):
        while g_step < target:  # phase 1: ordinary GAN training up to this snapshot
            state, _ = step(state, iterator.batch_at(data_step))
            g_step += 1
            data_step += 1
        frozen_g = state.generator
        probe = fresh_discriminator(state, jax.random.PRNGKey(1000 + target))
        rows = []
        for it in range(args.d_iters + 1):
            if it % args.every == 0:
                norms = jax.device_get(norms_fn(probe, z_eval))
                logits_fake = adversarial.discriminate(probe, adversarial.generate(probe, z_eval))
                rows.append(
                    {
                        "d_iter": it,
                        "saturating": float(norms["saturating"]),
                        "non_saturating": float(norms["non_saturating"]),
                        "d_fake": float(jax.nn.sigmoid(logits_fake).mean()),
                    }
                )
            if it < args.d_iters:  # phase 2: the discriminator alone (the G update is discarded)
                probe, _ = step(probe, iterator.batch_at(data_step))
                probe = probe.replace(generator=frozen_g)
                data_step += 1
        curves[target] = rows
        last = rows[-1]
        print(
            f"G after {target} steps: D(G(z)) {last['d_fake']:.2e}; saturating grad "
            f"{rows[0]['saturating']:.2e} -> {last['saturating']:.2e}; non-saturating "
            f"{rows[0]['non_saturating']:.2e} -> {last['non_saturating']:.2e}  ({time.time() - t0:.0f} s)",
            flush=True,
        )

    (out / "vanishing_gradients.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "batch_size": args.batch_size,
                "g_steps": args.g_steps,
                "d_iters": args.d_iters,
                "curves": {str(k): v for k, v in curves.items()},
            },
            indent=2,
        )
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120, sharey=True)
    for ax, key, title in (
        (axes[0], "saturating", "saturating: log(1 - D(G(z)))  (eq. 5)"),
        (axes[1], "non_saturating", "non-saturating: -log D(G(z))  (eq. 7)"),
    ):
        for target, rows in curves.items():
            ax.semilogy([r["d_iter"] for r in rows], [r[key] for r in rows], label=f"G after {target} steps")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("discriminator iterations (G frozen)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("generator gradient norm")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Vanishing generator gradients as D is trained ({args.model}, MNIST)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "vanishing_gradients.png")
    print(f"wrote {out}/vanishing_gradients.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "dcgan"], default="mlp")
    parser.add_argument("--g-steps", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--d-iters", type=int, default=2000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="experiments/results/vanishing_gradients")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
