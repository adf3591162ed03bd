"""The contract every registered objective keeps (and the fine-tuning objective with them).

For each declaration of ``OBJECTIVES``: init (traced in its key) and step under ``jax.jit``, a few steps stay finite; a run
stopped half way and resumed ends bitwise identical to one that was not stopped; samples have the data's
shape and lie in the declared range; ``gendl eval`` writes eval.json or refuses with a clear message; and
what the declaration says (class-conditional, density-ratio discriminator, samplers, hyper-parameters) is
what the objective does. A new objective is covered by adding it to the registry.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from gendl_jax import evaluation
from gendl_jax.data import TOY_DISTRIBUTIONS, load_dataset, make_iterator
from gendl_jax.finetune import FINETUNE
from gendl_jax.metrics.classifier import ASSET_DIR
from gendl_jax.objectives import OBJECTIVES, Objective
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

# Tiny networks per family, so that each objective's contract runs in seconds.
TINY = {
    "adversarial": {"hidden": (32, 32)},
    "generator": {"hidden": (32, 32)},
    "autoencoder": {"hidden": (32,), "latent_dim": 4},
    "vae": {"hidden": (32,), "latent_dim": 2, "eval_importance_samples": 20, "eval_examples": 50},
    "classifier": {"backbone": str(ASSET_DIR)},
}
# The data each family is checked on: the toy ring for the adversarial and generator objectives (gendl eval scores it),
# scikit-learn's 8x8 digits for the autoencoders and the VAE, digits for fine-tuning (resized to 28x28).
DATA = {"adversarial": "ring8", "generator": "ring8", "autoencoder": "digits", "vae": "digits", "classifier": "digits"}
# Objectives that need labelled data (AC-GAN's auxiliary classifier) run on the digits instead.
LABELLED = {"acgan": "digits"}
ALL = {**OBJECTIVES, FINETUNE.name: FINETUNE}


def tiny_config(obj: Objective):
    values = {k: v for k, v in TINY[obj.family].items() if k in {f.name for f in dataclasses.fields(obj.config_cls)}}
    return obj.config_cls(**values)


def data_of(obj: Objective) -> str:
    return LABELLED.get(obj.name, DATA[obj.family])


def example(obj: Objective, config, data: str, seed: int = 0):
    dataset = load_dataset(data, split="train")
    if obj.prepare_dataset is not None:
        dataset = obj.prepare_dataset(dataset, config)
    it = make_iterator(dataset, 16, seed, config.inner_steps, obj.value_range)
    return dataset, it


@pytest.fixture(params=sorted(ALL), scope="module")
def obj(request) -> Objective:
    return ALL[request.param]


def test_registry_names_match_declarations():
    assert all(name == o.name for name, o in OBJECTIVES.items())
    assert FINETUNE.name not in OBJECTIVES  # gendl train trains from scratch; gendl finetune runs it
    for o in ALL.values():
        assert o.family in TINY and o.config_cls is not None
        o.config_cls() if o.family != "classifier" else o.config_cls(backbone="x")  # defaults construct


def test_init_and_step_under_jit_stay_finite(obj):
    config = tiny_config(obj)
    config.validate()
    _, it = example(obj, config, data_of(obj))
    batch = it.batch_at(0)
    # init checks its concrete example batch on the host; it is traced in its key (as --seeds vmaps it),
    # except fine-tuning's, which reads the backbone from disk
    init = (
        (lambda key: obj.init(key, config, batch))
        if obj is FINETUNE
        else jax.jit(lambda key: obj.init(key, config, batch))
    )
    state = init(jax.random.PRNGKey(0))
    step = jax.jit(obj.step)
    for s in range(3):
        state, metrics = step(state, it.batch_at(s))
        assert metrics, "a step reports its metrics"
        bad = {k: float(v) for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v)))}
        assert not bad, f"non-finite metrics at step {s}: {bad}"
    assert int(np.asarray(state.step)) == 3


def test_samples_have_the_data_shape_and_declared_range(obj):
    config = tiny_config(obj)
    if obj.sample is None:
        assert obj.samplers(config) == ()
        return
    for data in sorted({data_of(obj), "digits"}):  # a toy mixture and images, where the family trains on both
        _, it = example(obj, config, data)
        state = obj.init(jax.random.PRNGKey(1), config, it.batch_at(0))
        x = np.asarray(jax.jit(obj.sample, static_argnums=2)(state, jax.random.PRNGKey(2), 7))
        assert x.shape == (7, *state.data_shape)
        assert np.all(np.isfinite(x))
        if data not in TOY_DISTRIBUTIONS:  # images lie in the range the objective declares
            lo, hi = obj.value_range
            assert x.min() >= lo and x.max() <= hi, (data, x.min(), x.max())


def test_declarations_match_behaviour(obj):
    config = tiny_config(obj)
    samplers = obj.samplers(config)
    assert set(samplers) <= {"plain", "truncation", "drs", "ddls"}
    if obj.family == "adversarial":
        conditional = dataclasses.replace(config, num_classes=3)
        assert obj.num_classes(conditional) == 3 and obj.conditional(conditional)
        assert "ddls" not in obj.samplers(conditional)
        assert obj.hparams is not None
        _, it = example(obj, config, data_of(obj))
        state = obj.init(jax.random.PRNGKey(0), config, it.batch_at(0))
        names = set(obj.hparams(state))
        assert {"g_learning_rate", "d_learning_rate"} <= names
        changed = obj.with_hparams(state, d_learning_rate=0.5)
        assert float(obj.hparams(changed)["d_learning_rate"]) == 0.5
        with pytest.raises(ValueError, match="d_learning_rate"):
            obj.with_hparams(state, d_learning_rate=-1.0)
    else:
        assert obj.num_classes(config) == 0 and obj.hparams is None
    # Only a discriminator trained by cross-entropy estimates log p_data / p_g (Goodfellow et al.'s optimum).
    expected = obj.name == "gan" and getattr(config, "discriminator_loss", None) == "cross-entropy"
    assert obj.density_ratio_discriminator(config) == expected
    if obj.name == "gan":
        hinge = dataclasses.replace(config, discriminator_loss="hinge", generator_loss="hinge")
        assert not obj.density_ratio_discriminator(hinge) and "drs" not in obj.samplers(hinge)


def _leaves(state):
    return jax.tree_util.tree_leaves(jax.device_get(state))


def test_stopped_run_resumes_bitwise_and_eval_writes_or_refuses(obj, tmp_path):
    config = tiny_config(obj)
    data = data_of(obj)
    common = dict(
        data=data, batch_size=16, log_every=1, checkpoint_every=2, sample_every=0, n_samples=64, progress=False
    )
    train_and_evaluate(obj, config, TrainConfig(steps=4, out=str(tmp_path / "straight"), **common))
    train_and_evaluate(obj, config, TrainConfig(steps=2, out=str(tmp_path / "stopped"), **common))
    summary = train_and_evaluate(
        obj, config, TrainConfig(steps=4, out=str(tmp_path / "stopped"), resume=True, **common)
    )
    assert summary["resumed_from"] == 2
    if obj is FINETUNE:
        from gendl_jax.finetune import run_variables

        a, b = run_variables(tmp_path / "straight"), run_variables(tmp_path / "stopped")
    else:
        _, a, _ = load_run(tmp_path / "straight")
        _, b, _ = load_run(tmp_path / "stopped")
        assert int(a.step) == int(b.step) == 4
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(line) for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # each step logged once across the stop

    if obj is FINETUNE:
        return  # not a generative model: gendl eval is not its command (gendl finetune reports accuracies)
    if obj.sample is None or data not in TOY_DISTRIBUTIONS:
        with pytest.raises(ValueError) as err:
            evaluation.evaluate_run(tmp_path / "straight", n=64, geometry_iterations=0)
        message = str(err.value)
        assert ("no prior to sample from" in message and obj.name in message) or "no evaluation protocol" in message
        assert not (tmp_path / "straight" / "eval.json").exists()
    else:
        result = evaluation.evaluate_run(tmp_path / "straight", n=64, geometry_iterations=0)
        written = json.loads((tmp_path / "straight" / "eval.json").read_text())
        assert written["objective"] == obj.name and written["n"] == 64
        assert 0 <= written["modes"] <= 8 and np.isfinite(written["w1_to_true_mixture"]), written
        assert result == written
