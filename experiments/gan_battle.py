"""Two trained GANs battle by swapping discriminators (GAM, Im et al. 2016).

Each run's discriminator scores ``--n`` random MNIST test images and ``--n`` samples of the other run's
generator (its average if kept), each set as one batch (a BatchNorm discriminator normalises with that
set's statistics, as in training); :func:`gendl_jax.metrics.generative_adversarial_metric` turns the four
error rates into r_test, r_samples and a winner (r_samples < 1 with r_test ~ 1: run 1 wins).

    GENDL_DATA_DIR=/path/to/mnist python experiments/gan_battle.py RUN1 RUN2 [--n 10000]

Writes ``<name1>_vs_<name2>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib

import jax
import numpy as np

from gendl_jax.data import load_dataset
from gendl_jax.metrics import generative_adversarial_metric, prepare_images
from gendl_jax.objectives import adversarial
from gendl_jax.train import load_run


def _load_gan(run: pathlib.Path):
    objective, state, _ = load_run(run)
    if objective.name != "gan":
        raise ValueError(
            f"{run} is a {objective.name!r} run: GAM reads D(x) > 1/2 as 'real', which needs a GAN "
            "discriminator (a WGAN critic has no such threshold)"
        )
    return objective, state


def main(args) -> None:
    (obj1, s1), (obj2, s2) = _load_gan(args.run1), _load_gan(args.run2)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    real = prepare_images(test.images[rng.choice(len(test), min(args.n, len(test)), replace=False)])
    key1, key2 = jax.random.split(jax.random.PRNGKey(args.seed))
    samples1 = np.asarray(obj1.sample(s1, key1, args.n))
    samples2 = np.asarray(obj2.sample(s2, key2, args.n))
    # As in training, where D only saw all-real or all-fake batches: BatchNorm with the statistics of the set
    # being judged (its running averages blend real and fake and misjudge real images; --running-averages).
    discriminate = jax.jit(functools.partial(adversarial.discriminate, batch_statistics=not args.running_averages))
    out = generative_adversarial_metric(
        discriminate(s1, real),
        discriminate(s2, real),
        discriminate(s1, samples2),
        discriminate(s2, samples1),
        test_tolerance=args.test_tolerance,
    )
    record = {
        "command": (
            f"python experiments/gan_battle.py {args.run1} {args.run2} --n {args.n} "
            f"--seed {args.seed} --test-tolerance {args.test_tolerance}"
            f"{' --running-averages' if args.running_averages else ''} --out {args.out}"
        ),
        "run1": str(args.run1),
        "run2": str(args.run2),
        **out,
    }
    path = pathlib.Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{args.run1.name}_vs_{args.run2.name}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run1", type=pathlib.Path)
    p.add_argument("run2", type=pathlib.Path)
    p.add_argument("--n", type=int, default=10000, help="test images and samples per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-tolerance", type=float, default=0.1)
    p.add_argument(
        "--running-averages",
        action="store_true",
        help="BatchNorm discriminators normalise with their running averages instead of each set's statistics",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="experiments/results/gan_battle")
    main(p.parse_args())
