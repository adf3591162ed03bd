"""AC-GAN (Odena et al. 2017): the losses against a float64 numpy transcription of eq. 1-2, one step's gradients
against PyTorch autograd on a tiny MLP with the same weights, the discriminators' classifier head, and
`gendl train acgan` / `gendl sample --label` end to end on MNIST and on a folder of 32x32 RGB images in two
classes; unlabelled data is refused in one line."""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gendl_jax import cli, models
from gendl_jax.objectives import OBJECTIVES, acgan, augment
from gendl_jax.train import load_run

# -- the losses against the equations in float64 numpy ----------------------------------------------------------


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _numpy_losses(l_real, l_fake, c_real, c_fake, y, c, w):
    """eq. 1-2: L_S = E log P(S=real|x_real) + E log P(S=fake|x_fake), L_C = E log P(C=y|x_real) + E log P(C=c|x_fake);
    D minimises -(L_S + w L_C); G minimises -log D(G) (non-saturating) or log(1 - D(G)) (saturating), minus w times
    its part of L_C."""
    l_s = _log_sigmoid(l_real).mean() + _log_sigmoid(-l_fake).mean()
    lc_real = _log_softmax(c_real)[np.arange(len(y)), y].mean()
    lc_fake = _log_softmax(c_fake)[np.arange(len(c)), c].mean()
    d = -(l_s + w * (lc_real + lc_fake))
    g_ns = -_log_sigmoid(l_fake).mean() - w * lc_fake
    g_sat = _log_sigmoid(-l_fake).mean() - w * lc_fake
    acc_real = (c_real.argmax(1) == y).mean()
    acc_fake = (c_fake.argmax(1) == c).mean()
    return d, g_ns, g_sat, -l_s, -(lc_real + lc_fake), acc_real, acc_fake


@pytest.mark.parametrize("w", [1.0, 0.3])
def test_losses_match_float64_equations(w):
    rng = np.random.default_rng(0)
    m, k = 64, 7
    l_real, l_fake = rng.normal(0, 3, m), rng.normal(0, 3, m)
    c_real, c_fake = rng.normal(0, 2, (m, k)), rng.normal(0, 2, (m, k))
    y, c = rng.integers(0, k, m), rng.integers(0, k, m)
    d, g_ns, g_sat, source, klass, acc_real, acc_fake = _numpy_losses(l_real, l_fake, c_real, c_fake, y, c, w)

    f32 = lambda a: jnp.asarray(a, jnp.float32)
    i32 = lambda a: jnp.asarray(a, jnp.int32)
    args = (f32(l_real), f32(l_fake), f32(c_real), f32(c_fake), i32(y), i32(c))
    loss, metrics = jax.jit(acgan.discriminator_loss)(*args, w)
    np.testing.assert_allclose(float(loss), d, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["d_source_loss"]), source, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["d_class_loss"]), klass, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["d_class_acc_real"]), acc_real)
    np.testing.assert_allclose(float(metrics["d_class_acc_fake"]), acc_fake)
    np.testing.assert_allclose(float(metrics["d_real"]), (1 / (1 + np.exp(-l_real))).mean(), rtol=1e-5)
    for kind, expected in (("non-saturating", g_ns), ("saturating", g_sat)):
        g, _ = jax.jit(acgan.generator_loss, static_argnums=4)(f32(l_fake), f32(c_fake), i32(c), w, kind)
        np.testing.assert_allclose(float(g), expected, rtol=1e-5, atol=1e-6)


# -- one step's gradients against PyTorch -----------------------------------------------------------------------


def _torch_step_reference(state, batch, config, new_d_params):
    """The D loss and gradient at the initial weights and the G loss and gradient at the updated D, written in
    PyTorch (float64) from the equations, on the draws the step documents for its random stream.

    Options of the config it follows: R1 / R2 ((gamma / 2) mean ||grad_x l(x)||^2 of the source logit at the reals /
    fakes, by autograd with create_graph), lazy regularisation (k x gamma on the run's discriminator updates
    divisible by k), and top-k training (G's loss averaged over the k fakes of highest l, k = floor(f m))."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = lambda a: torch.tensor(np.asarray(a, np.float64), requires_grad=True)

    def dense(x, p):  # flax kernel (in, out)
        return x @ p["kernel"] + p["bias"]

    def generator(p, z, labels):
        h = torch.cat([z, F.one_hot(labels, config.num_classes).double()], dim=1)
        return dense(torch.relu(dense(h, p["dense0"])), p["output"])

    def discriminator(p, x):
        h = torch.relu(dense(x, p["dense0"]))
        return dense(h, p["logit"])[:, 0], dense(h, p["classifier"])

    def source(logits, real):
        return -F.logsigmoid(logits if real else -logits).mean()

    w, m, k = config.class_weight, batch["x"].shape[1], config.num_classes
    z_dim = config.latent_dim
    _, d_key, g_key = jax.random.split(state.key, 3)
    z_key, c_key = jax.random.split(jax.random.split(d_key, 1)[0])
    draws = lambda zk, ck: (
        torch.tensor(np.asarray(jax.random.normal(zk, (m, z_dim)), np.float64)),
        torch.tensor(np.asarray(jax.random.randint(ck, (m,), 0, k, jnp.int32), np.int64)),
    )
    tree = lambda params: jax.tree_util.tree_map(t, jax.device_get(params))

    g = tree(state.generator.params)
    d = tree(state.discriminator.params)
    z, c = draws(z_key, c_key)
    real, y = torch.tensor(np.asarray(batch["x"][0], np.float64)), torch.tensor(np.asarray(batch["y"][0], np.int64))
    fake = generator(g, z, c).detach()
    (s_real, c_real), (s_fake, c_fake) = discriminator(d, real), discriminator(d, fake)
    d_loss = (
        source(s_real, True) + source(s_fake, False) + w * (F.cross_entropy(c_real, y) + F.cross_entropy(c_fake, c))
    )
    lazy = config.penalty_every if int(state.step) * config.d_steps % config.penalty_every == 0 else 0
    for gamma, x in ((config.r1_weight, real), (config.r2_weight, fake)):
        if gamma and lazy:
            x = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(d, x)[0].sum(), x, create_graph=True)
            d_loss = d_loss + lazy * gamma / 2 * grad.square().sum(1).mean()
    d_loss.backward()
    d_grads = jax.tree_util.tree_map(lambda a: a.grad.numpy(), d)

    d_new = tree(new_d_params)
    z, c = draws(*jax.random.split(g_key))
    s_fake, c_fake = discriminator(d_new, generator(g, z, c))
    per_sample = -F.logsigmoid(s_fake) + w * F.cross_entropy(c_fake, c, reduction="none")
    kept = max(config.top_k_fraction, config.top_k_decay ** (int(state.step) // config.top_k_period))
    top = torch.argsort(s_fake.detach(), descending=True)[: max(1, int(np.floor(kept * m + 1e-6)))]
    g_loss = per_sample[top].mean()
    g_loss.backward()
    g_grads = jax.tree_util.tree_map(lambda a: a.grad.numpy(), g)
    return float(d_loss), d_grads, float(g_loss), g_grads


def _global_norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in jax.tree_util.tree_leaves(tree))))


def _check_adam_first_update(old, new, grads, lr):
    """Adam's first update is -lr * g / (|g| + eps) (bias-corrected moments are g and g^2)."""
    for o, n, g in zip(
        jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(grads)
    ):
        expected = -lr * g / (np.abs(g) + 1e-8)
        big = np.abs(g) > 1e-5  # where float32 and float64 agree on the sign and |g| >> eps
        np.testing.assert_allclose((np.asarray(n) - np.asarray(o))[big], expected[big], rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize(
    "options,step",
    [
        ({}, 0),
        ({"r1_weight": 0.8}, 0),
        ({"r2_weight": 0.6, "r1_weight": 0.3}, 0),
        ({"r1_weight": 0.5, "penalty_every": 3}, 0),  # update 0 is regularised, with 3 x gamma
        ({"r1_weight": 0.5, "penalty_every": 3}, 1),  # update 1 is not
        ({"top_k_fraction": 0.5, "top_k_decay": 0.5, "top_k_period": 1}, 7),  # 8 of the 16 fakes
    ],
)
def test_one_step_gradients_match_pytorch(options, step):
    config = acgan.ACGANConfig(
        model="mlp", hidden=(8,), latent_dim=3, num_classes=4, class_weight=0.7, d_learning_rate=1e-3, **options
    )
    rng = np.random.default_rng(1 + step)
    batch = {"x": jnp.asarray(rng.normal(size=(1, 16, 5)), jnp.float32), "y": jnp.asarray(rng.integers(0, 4, (1, 16)))}
    state = acgan.init(jax.random.PRNGKey(3), config, batch)
    state = state.replace(step=jnp.asarray(step, state.step.dtype))
    new, metrics = jax.jit(acgan.step)(state, batch)
    if "r1_weight" in options:
        assert ("r1" in metrics) and (float(metrics["r1"]) > 0) == (step * config.d_steps % config.penalty_every == 0)
    if "top_k_fraction" in options:
        assert float(metrics["g_top_k_fraction"]) == 0.5
    d_loss, d_grads, g_loss, g_grads = _torch_step_reference(state, batch, config, new.discriminator.params)

    np.testing.assert_allclose(float(metrics["d_loss"]), d_loss, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["g_loss"]), g_loss, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["d_grad_norm"]), _global_norm(d_grads), rtol=1e-4)
    np.testing.assert_allclose(float(metrics["g_grad_norm"]), _global_norm(g_grads), rtol=1e-4)
    _check_adam_first_update(state.discriminator.params, new.discriminator.params, d_grads, 1e-3)
    _check_adam_first_update(state.generator.params, new.generator.params, g_grads, 2e-4)
    assert 0.0 <= float(metrics["d_class_acc_real"]) <= 1.0 and 0.0 <= float(metrics["d_class_acc_fake"]) <= 1.0


# -- DiffAugment and bfloat16 --------------------------------------------------------------------------------------


def _labelled_images(rng, m, shape, classes):
    return {
        "x": jnp.asarray(rng.uniform(-1, 1, size=(1, m, *shape)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, classes, (1, m)), jnp.int32),
    }


def test_both_networks_see_the_augmented_images():
    """D's loss at its update and G's loss at its update, recomputed from the documented keys: reals augmented with
    fold_in(update key, 1), D's fakes with fold_in(update key, 2), G's fakes with fold_in(generator key, 1)."""
    config = acgan.ACGANConfig(
        model="mlp", hidden=(16,), latent_dim=3, num_classes=3, class_weight=0.6, augment="translation,color"
    )
    batch = _labelled_images(np.random.default_rng(0), 6, (8, 8, 1), 3)
    state = acgan.init(jax.random.PRNGKey(3), config, batch)
    new, metrics = jax.jit(acgan.step)(state, batch)
    _, d_key, g_key = jax.random.split(state.key, 3)
    step_key = jax.random.split(d_key, 1)[0]

    def fakes(key):
        z_key, c_key = jax.random.split(key)
        c = jax.random.randint(c_key, (6,), 0, 3, jnp.int32)
        return acgan.generate(state, jax.random.normal(z_key, (6, 3)), labels=c), c  # the MLP G has no BatchNorm

    fake, c = fakes(step_key)
    real = augment.augment(jax.random.fold_in(step_key, 1), batch["x"][0], config.augment)
    fake = augment.augment(jax.random.fold_in(step_key, 2), fake, config.augment)
    (l_real, c_real), (l_fake, c_fake) = acgan.discriminate(state, real), acgan.discriminate(state, fake)
    d_loss, _ = acgan.discriminator_loss(l_real, l_fake, c_real, c_fake, batch["y"][0], c, 0.6)
    np.testing.assert_allclose(metrics["d_loss"], d_loss, rtol=1e-5)

    fake, c = fakes(g_key)
    fake = augment.augment(jax.random.fold_in(g_key, 1), fake, config.augment)
    logits, class_logits = acgan.discriminate(state.replace(discriminator=new.discriminator), fake)
    g_loss, _ = acgan.generator_loss(logits, class_logits, c, 0.6)
    np.testing.assert_allclose(metrics["g_loss"], g_loss, rtol=1e-5)
    plain, _ = jax.jit(acgan.step)(state.replace(config=dataclasses.replace(config, augment="")), batch)
    np.testing.assert_array_equal(plain.key, new.key)  # the other draws are those of a run without it


def test_bfloat16_step_computes_in_bfloat16_and_stays_close_to_float32():
    config = acgan.ACGANConfig(model="dcgan", base_features=4, latent_dim=8, num_classes=3, r1_weight=1.0)
    batch = _labelled_images(np.random.default_rng(1), 8, (28, 28, 1), 3)
    state = acgan.init(jax.random.PRNGKey(0), config, batch)
    bf16 = state.replace(config=dataclasses.replace(config, precision="bfloat16"))
    hlo = jax.jit(acgan.step).lower(bf16, batch).as_text()
    assert any("bf16" in line for line in hlo.splitlines() if "stablehlo.convolution" in line)
    assert "bf16" not in jax.jit(acgan.step).lower(state, batch).as_text()
    new16, m16 = jax.jit(acgan.step)(bf16, batch)
    _, m32 = jax.jit(acgan.step)(state, batch)
    floats = [a for a in jax.tree_util.tree_leaves(new16) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert {str(a.dtype) for a in floats} == {"float32"}  # parameters, optimiser and BatchNorm states stay float32
    for name in ("d_loss", "g_loss", "d_source_loss", "d_class_loss"):
        np.testing.assert_allclose(m16[name], m32[name], rtol=3e-2, err_msg=name)


# -- the networks and the declaration ---------------------------------------------------------------------------


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_discriminators_have_a_classifier_head(spectral_norm):
    key = jax.random.PRNGKey(0)
    for disc, x in (
        (models.MLPDiscriminator(hidden=(8,), aux_classes=5, spectral_norm=spectral_norm), jnp.ones((3, 4))),
        (
            models.DCGANDiscriminator(base_features=4, aux_classes=5, spectral_norm=spectral_norm),
            jnp.ones((3, 28, 28, 1)),
        ),
    ):
        variables = disc.init(key, x, train=False)
        logits, class_logits = disc.apply(variables, x, train=False)
        assert logits.shape == (3,) and class_logits.shape == (3, 5)
        assert "classifier" in variables["params"] and "projection" not in variables["params"]
        assert disc.clone(aux_classes=0).apply(variables, x, train=False).shape == (3,)  # the head is optional
    with pytest.raises(ValueError, match="aux_classes"):
        models.MLPDiscriminator(aux_classes=-1)


def test_declaration_and_config_errors():
    obj = OBJECTIVES["acgan"]
    config = obj.config_cls()
    assert obj.family == "adversarial" and obj.num_classes(config) == 10 and obj.conditional(config)
    assert obj.samplers(config) == ("plain", "truncation") and not obj.density_ratio_discriminator(config)
    for bad, match in (
        (dict(num_classes=0), "num_classes must be >= 2 for acgan"),
        (dict(class_weight=-1.0), "class_weight"),
        (dict(r1_weight=-1.0), r"r1_weight \(--r1-weight\)"),
        (dict(augment="flip"), "flip"),
    ):
        with pytest.raises(ValueError, match=match):
            acgan.ACGANConfig(**bad).validate()


# -- the command line -------------------------------------------------------------------------------------------


def _train(args, capsys):
    cli.main(["train", "acgan", *args, "--no-progress"])
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_on_mnist_then_sample_a_label(tmp_path, capsys, mnist_dir):
    run = tmp_path / "run"
    summary, _ = _train(
        [
            "--data",
            "mnist",
            "--data-dir",
            str(mnist_dir),
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--base-features",
            "8",
            "--latent-dim",
            "16",
        ]
        + ["--class-weight", "0.5", "--n-samples", "16", "--sample-every", "0", "--log-every", "1", "--out", str(run)]
        + ["--r1-weight", "1.0", "--penalty-every", "2", "--augment", "translation,cutout", "--precision", "bfloat16"],
        capsys,
    )
    assert summary["steps"] == 2
    rows = _metrics(run)
    assert {"d_class_acc_real", "d_class_acc_fake", "d_class_loss", "g_class_loss"} <= set(rows[-1])
    samples = np.load(run / "samples.npy")
    assert samples.shape == (16, 28, 28, 1) and np.isfinite(samples).all() and np.abs(samples).max() <= 1.0

    cli.main(["sample", str(run), "-n", "8", "--label", "3", "--no-progress"])
    capsys.readouterr()
    drawn = np.load(run / "samples_n8_seed0.npy")
    assert drawn.shape == (8, 28, 28, 1) and np.isfinite(drawn).all()
    assert json.loads((run / "samples_n8_seed0.json").read_text())["label"] == 3
    objective, state, _ = load_run(run)
    expected = objective.sample(state, jax.random.PRNGKey(0), 8, labels=jnp.full((8,), 3, jnp.int32))
    np.testing.assert_allclose(drawn, np.asarray(expected), atol=1e-6)  # class 3's generator, not uniform labels
    other = objective.sample(state, jax.random.PRNGKey(0), 8, labels=jnp.full((8,), 5, jnp.int32))
    assert not np.allclose(drawn, np.asarray(other))

    with pytest.raises(SystemExit):
        cli.main(["sample", str(run), "-n", "8", "--label", "10", "--no-progress"])
    assert "the run's classes are 0..9" in capsys.readouterr().err


def _folder(root, n=16, seed=0):
    """32..59 px RGB images, PNG and JPEG, in two class sub-folders (as tests/test_cli_data.py makes them)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(32, 60)), int(rng.integers(32, 60))
        path = root / ("cats", "dogs")[i % 2] / f"{i}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return root


def test_train_on_a_folder_of_two_classes(tmp_path, capsys):
    folder, run = _folder(tmp_path / "photos"), tmp_path / "run"
    common = ["--data", str(folder), "--image-size", "32", "--steps", "2", "--batch-size", "8", "--base-features", "8"]
    summary, _ = _train(
        [*common, "--num-classes", "2", "--n-samples", "16", "--sample-every", "0", "--out", str(run)], capsys
    )
    assert summary["steps"] == 2
    samples = np.load(run / "samples.npy")
    assert samples.shape == (16, 32, 32, 3) and np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    assert json.loads((run / "config.json").read_text())["config"]["num_classes"] == 2

    with pytest.raises(SystemExit) as info:  # the default 10 classes do not match the folder's 2
        cli.main(["train", "acgan", *common, "--out", str(tmp_path / "bad"), "--no-progress"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"acgan: num_classes=10, but .* \(2 classes\); pass --num-classes 2", err), err


@pytest.mark.parametrize("data", ["grid25", "unlabelled-folder"])
def test_unlabelled_data_is_refused_in_one_line(tmp_path, capsys, data):
    if data == "unlabelled-folder":
        folder = tmp_path / "flat"
        folder.mkdir()
        for i in range(4):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
        data = [str(folder), "--image-size", "32"]
    else:
        data = [data]
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "acgan", "--data", *data, "--steps", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gendl train: error: acgan needs labelled data") and "\n" not in err, err
    assert not (tmp_path / "r" / "checkpoints").exists()
