"""Sweeps: K models (seeds and hyper-parameters along a leading axis) in one vmapped step equal K
single-model runs; ``gendl train ... --seeds K`` writes per-seed summaries and their mean / stderr."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from gendl_jax import cli
from gendl_jax import data as gdata
from gendl_jax.data import load_dataset
from gendl_jax.objectives import gan, get_objective, wgan, wgan_gp
from gendl_jax.train import fit, sweep

TINY = dict(hidden=(16, 16), latent_dim=2)
STEPS, BATCH = 4, 32


def _single_run(obj, config, dataset, seed, hparams, steps=STEPS, batch_size=BATCH):
    """One model with the config the sweep gives it (``config`` with the swept values), trained step by step with its
    own jitted (not vmapped) step; returned with the sweep's static config, to compare with the sweep's model."""
    it = gdata.make_iterator(dataset, batch_size, seed, config.inner_steps, obj.value_range)
    state = obj.init(jax.random.PRNGKey(seed), dataclasses.replace(config, **hparams), it.batch_at(0))
    step = jax.jit(obj.step)
    for s in range(steps):
        state, metrics = step(state, it.batch_at(s))
    return state.replace(config=config), metrics


@pytest.mark.parametrize(
    "name,config,hparams",
    [
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(n_critic=2, **TINY),
            {
                "d_learning_rate": [1e-4, 1e-3, 3e-3],
                "g_learning_rate": [2e-4, 1e-3, 1e-4],
                "gp_weight": [0.1, 1.0, 10.0],
            },
        ),
        (
            "gan",
            gan.GANConfig(d_steps=2, g_batch_norm=True, lr_decay_steps=6, **TINY),
            {"d_learning_rate": [1e-3, 2e-4, 5e-3], "g_learning_rate": [1e-3, 3e-3, 2e-4]},
        ),
        ("wgan", wgan.WGANConfig(n_critic=2, d_learning_rate=1e-3, **TINY), {"clip": [0.01, 0.05, 0.1]}),
    ],
)
def test_vmapped_sweep_equals_sequential_runs(name, config, hparams):
    obj = get_objective(name)
    dataset = load_dataset("ring8")
    seeds = [3, 0, 7]
    states, info = sweep.train_sweep(
        obj, config, dataset, seeds=seeds, hparams=hparams, steps=STEPS, batch_size=BATCH, progress=False
    )
    assert set(info) == {"compile_seconds", "train_seconds", "last_metrics"}
    for i, seed in enumerate(seeds):
        single, metrics = _single_run(obj, config, dataset, seed, {k: v[i] for k, v in hparams.items()})
        model = sweep.unstack(states, i)
        for k, v in hparams.items():
            np.testing.assert_allclose(model.hparams[k], v[i], rtol=1e-7)
        leaves, treedef = jax.tree_util.tree_flatten(single)
        model_leaves, model_treedef = jax.tree_util.tree_flatten(model)
        assert treedef == model_treedef
        for a, b in zip(leaves, model_leaves):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=1e-6)
        for k, v in metrics.items():
            np.testing.assert_allclose(info["last_metrics"][k][i], v, rtol=2e-5, atol=1e-6)


def test_swept_clip_starts_each_critic_in_its_own_box():
    """WGAN's init clips the critic to the config's bound: a sweep over clip initialises each model as the single
    model with that bound would be (it used to clip every model at the shared config's bound)."""
    config = wgan.WGANConfig(n_critic=2, hidden=(64, 64), latent_dim=2)  # clip 0.01
    it = gdata.make_iterator(load_dataset("ring8"), BATCH, 0, config.inner_steps, (-1.0, 1.0))
    clips = [0.001, 1.0]
    states = sweep.init_sweep(get_objective("wgan"), config, it.batch_at(0), [4, 4], {"clip": clips})
    for i, clip in enumerate(clips):
        single = wgan.init(jax.random.PRNGKey(4), dataclasses.replace(config, clip=clip), it.batch_at(0))
        model = sweep.unstack(states, i)
        assert model.config == config and float(model.hparams["clip"]) == pytest.approx(clip)
        for a, b in zip(
            jax.tree_util.tree_leaves(single.discriminator.params),
            jax.tree_util.tree_leaves(model.discriminator.params),
        ):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
        largest = max(float(np.abs(a).max()) for a in jax.tree_util.tree_leaves(model.discriminator.params))
        assert largest <= np.float32(clip) and (largest > 0.01 if clip == 1.0 else True)


def test_swept_learning_rate_is_used():
    """Same seed three times: equal learning rates give identical models, a different one does not."""
    config = wgan_gp.WGANGPConfig(n_critic=2, **TINY)
    states, _ = sweep.train_sweep(
        "wgan-gp",
        config,
        load_dataset("ring8"),
        seeds=[5, 5, 5],
        hparams={"d_learning_rate": [1e-4, 1e-4, 1e-2]},
        steps=3,
        batch_size=BATCH,
        progress=False,
    )
    a, b, c = (sweep.unstack(states, i) for i in range(3))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    for net in ("generator", "discriminator"):
        pa, pc = getattr(a, net).params, getattr(c, net).params
        assert any(not np.allclose(x, y) for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pc)))


def test_sweep_rejects_bad_hparams():
    config = gan.GANConfig(**TINY)
    dataset = load_dataset("ring8")
    kwargs = dict(seeds=[0, 1], steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="one value per model"):
        sweep.train_sweep("gan", config, dataset, hparams={"d_learning_rate": [1e-3]}, **kwargs)
    with pytest.raises(ValueError, match=r"unknown hyper-parameters \['gp_weight'\]"):
        sweep.train_sweep("gan", config, dataset, hparams={"gp_weight": [1.0, 2.0]}, **kwargs)
    with pytest.raises(ValueError, match="d_learning_rate must be > 0"):
        sweep.train_sweep("gan", config, dataset, hparams={"d_learning_rate": [1e-3, -1.0]}, **kwargs)
    with pytest.raises(ValueError, match="seeds must be a non-empty"):
        sweep.train_sweep("gan", config, dataset, seeds=[], steps=1, batch_size=8, progress=False)


def test_cli_seeds_writes_per_seed_summaries_and_their_mean(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "train",
        "gan",
        "--data",
        "ring8",
        "--steps",
        "30",
        "--seeds",
        "3",
        "--seed",
        "4",
        "--out",
        str(out),
        "--n-samples",
        "500",
        "--log-every",
        "10",
        "--no-progress",
    ]
    cli.main(argv)
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert printed == summary
    assert summary["seeds"] == [4, 5, 6] and summary["steps"] == 30
    record = json.loads((out / "config.json").read_text())
    assert record["objective"] == "gan" and record["seeds"] == [4, 5, 6] and record["train"]["seeds"] == 3

    config = gan.GANConfig()
    obj = get_objective("gan")
    dataset = load_dataset("ring8")
    per_seed = []
    for seed in (4, 5, 6):
        d = out / f"seed{seed}"
        s = json.loads((d / "summary.json").read_text())
        per_seed.append(s)
        assert s["seed"] == seed
        assert s["hparams"] == pytest.approx({"g_learning_rate": 2e-4, "d_learning_rate": 2e-4})
        assert (d / "samples_0000030.png").is_file()
        assert len((d / "metrics.jsonl").read_text().splitlines()) == 3  # steps 10, 20, 30
        samples = np.load(d / "samples.npy")
        assert samples.shape == (500, 2)
        assert {k: s[k] for k in fit.summarize(samples, dataset)} == fit.summarize(samples, dataset)
        if seed == 5:
            # The vmapped model's samples are a single run's (same seed, same data stream, same latents).
            # Exact to float32 rounding for a few steps (test_vmapped_sweep_equals_sequential_runs); over
            # 30 Adam steps the rounding differences of batched vs single matmuls grow (Adam turns a
            # near-zero gradient's sign flip into a full lr-sized step): measured max |param diff|
            # 1.6e-3 after 30 steps, so the samples are compared loosely, against another seed's distance.
            single, _ = _single_run(obj, config, dataset, seed, {}, steps=30, batch_size=None)
            expected = np.asarray(jax.jit(obj.sample, static_argnums=2)(single, jax.random.PRNGKey(seed + 2), 500))
            np.testing.assert_allclose(samples, expected, atol=0.05)
            assert np.max(np.abs(np.load(out / "seed4" / "samples.npy") - expected)) > 0.3

    scores = [k for k, v in per_seed[0].items() if isinstance(v, (int, float)) and k not in ("seed", "steps")]
    assert {"modes", "high_quality", "reverse_kl"} <= set(scores)
    assert set(summary["metrics"]) == set(scores)
    for k in scores:
        values = np.array([p[k] for p in per_seed], np.float64)
        entry = summary["metrics"][k]
        assert entry["values"] == pytest.approx(values.tolist())
        assert entry["mean"] == pytest.approx(values.mean(), nan_ok=True)
        if np.all(np.isfinite(values)):
            assert entry["stderr"] == pytest.approx(values.std(ddof=1) / np.sqrt(3))
        else:  # e.g. an infinite reverse KL of a seed that covers no mode
            assert entry["stderr"] is None


def test_mean_and_stderr_of_one_value_has_no_stderr():
    assert sweep.mean_and_stderr([2.5]) == (2.5, None)
    assert sweep.mean_and_stderr([1.0, float("inf")]) == (float("inf"), None)
    mean, se = sweep.mean_and_stderr([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and se == pytest.approx(np.std([1, 2, 4], ddof=1) / np.sqrt(3))


def test_seed_sweep_checkpoints_and_resumes_bitwise(tmp_path):
    """--seeds K runs through the fit loop: stacked checkpoints, and a resumed sweep equals an uninterrupted one."""
    import jax

    from gendl_jax.train import TrainConfig, checkpoints, train_and_evaluate

    config = wgan_gp.WGANGPConfig(hidden=(8, 8), n_critic=2)

    def run(name, steps, **kw):
        return train_and_evaluate(
            "wgan-gp",
            config,
            TrainConfig(
                data="ring8",
                steps=steps,
                batch_size=16,
                seed=2,
                seeds=3,
                out=str(tmp_path / name),
                log_every=5,
                checkpoint_every=5,
                sample_every=0,
                n_samples=50,
                progress=False,
                **kw,
            ),
        )

    straight = run("straight", 20)
    run("split", 10)
    with pytest.raises(FileExistsError):
        run("split", 20)
    resumed = run("split", 20, resume=True)
    assert resumed["resumed_from"] == 10 and resumed["seeds"] == [2, 3, 4]

    def final(name):
        manager = checkpoints.checkpoint_manager(tmp_path / name / "checkpoints")
        like = jax.tree_util.tree_map(np.asarray, checkpoints.restore(manager, _stacked_like(config)))
        manager.close()
        return like

    for a, b in zip(jax.tree_util.tree_leaves(final("straight")), jax.tree_util.tree_leaves(final("split"))):
        np.testing.assert_array_equal(a, b)
    assert resumed["metrics"]["high_quality"] == straight["metrics"]["high_quality"]
    for seed in (2, 3, 4):
        steps = [
            json.loads(line)["step"]
            for line in (tmp_path / "split" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == [5, 10, 15, 20]
        assert list((tmp_path / "split" / f"seed{seed}" / "tensorboard").glob("events.out.tfevents.*"))


def _stacked_like(config):
    from gendl_jax.data import BatchIterator, load_dataset
    from gendl_jax.objectives import get_objective
    from gendl_jax.train import sweep

    it = BatchIterator(load_dataset("ring8"), 16, inner_steps=config.inner_steps)
    return sweep.init_sweep(get_objective("wgan-gp"), config, it.batch_at(0), [0, 1, 2])


def test_seed_sweep_nonfinite_names_the_seed(tmp_path):
    import dataclasses

    import jax.numpy as jnp

    from gendl_jax.objectives import gan, get_objective
    from gendl_jax.train import TrainConfig, train_and_evaluate

    def step(state, batch):  # model with lr 0.5 (seed 1 below) turns non-finite at its 3rd update
        new, metrics = gan.step(state, batch)
        bad = (state.step == 2) & (state.hparams["g_learning_rate"] > 0.1)
        return new, {**metrics, "g_loss": jnp.where(bad, jnp.inf, metrics["g_loss"])}

    obj = dataclasses.replace(get_objective("gan"), step=step)
    original_init = obj.init

    def init(key, config, batch):
        state = original_init(key, config, batch)
        # seed 1's key is PRNGKey(1): give that model a different learning rate to make it the bad one
        lr = jnp.where(jnp.all(key == jax_key(1)), 0.5, 2e-4)
        return state.replace(hparams={**state.hparams, "g_learning_rate": lr.astype(jnp.float32)})

    obj = dataclasses.replace(obj, init=init)
    train = TrainConfig(
        data="ring8",
        steps=6,
        batch_size=16,
        seed=0,
        seeds=3,
        out=str(tmp_path / "nan"),
        log_every=3,
        checkpoint_every=3,
        sample_every=0,
        n_samples=20,
        progress=False,
    )
    with pytest.raises(FloatingPointError, match=r"g_loss=inf at step 3 for seed 1"):
        train_and_evaluate(obj, gan.GANConfig(hidden=(8, 8)), train)
    summary = train_and_evaluate(
        obj, gan.GANConfig(hidden=(8, 8)), dataclasses.replace(train, out=str(tmp_path / "skip"), skip_nonfinite=True)
    )
    assert summary["metrics"]["skipped_updates"]["values"] == [0, 1, 0]


def jax_key(seed):
    import jax

    return jax.random.PRNGKey(seed)
