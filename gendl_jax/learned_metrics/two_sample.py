"""Learned two-sample measures: a classifier two-sample test and a Wasserstein critic.

* :func:`classifier_two_sample` (C2ST; Lopez-Paz & Oquab 2017): train a small MLP to tell real
  from fake on half of each set, report its accuracy on the other half. 0.5 means the classifier
  cannot tell them apart. The p-value is that of the accuracy under the null (accuracy ~
  N(1/2, 1/(4 n_test))).
* :func:`critic_wasserstein` (Arjovsky et al. 2017; the "Wasserstein critic" row of Borji 2018):
  train a critic with a gradient penalty (Gulrajani et al. 2017) on half of each set, then report
  ``E_real f - E_fake f`` on the held-out halves, an estimate (a lower bound at the optimum) of
  W1(real, fake).
* :func:`adversarial_accuracy` (Yang et al. 2017; "Adversarial Accuracy" and "Adversarial Divergence" in
  Borji 2018): a classifier trained on a class-conditional model's labelled samples and one trained on real
  labelled data, scored on a real test set; and the mean KL between their predictions.
* :func:`gan_quality_index` (GQI, Ye et al. 2018; Santurkar et al. 2018's covariate-shift test): a classifier
  trained on real labelled data labels an unconditional model's samples, a second one learns from those labels,
  and the ratio of their accuracies on real test data says how much of the classes' layout the samples convey.
* :func:`linear_probe` (the "quality of unsupervised representations" row of Borji 2018; Radford et al. 2016
  classify CIFAR-10 with a linear model on the DCGAN discriminator's features): test accuracy of multinomial
  logistic regression on given features.

All train in float32 in one compiled ``lax.scan`` (a learned estimate, not an exact quantity).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendl_jax.metrics.common import as_samples, flatten_samples, positive_int, same_dim, split_indices
from gendl_jax.models.mlp import MLPDiscriminator


def _prepare(real, fake, test_fraction):
    real, fake = (
        as_samples(flatten_samples(real, "real"), "real", min_n=2),
        as_samples(flatten_samples(fake, "fake"), "fake", min_n=2),
    )
    same_dim(real, fake, "real", "fake")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    return real.astype(np.float32), fake.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("model", "steps", "batch_size", "lr"))
def _train_classifier(key, x_real, x_fake, model, steps, batch_size, lr):
    k_init, k_steps = jax.random.split(key)
    params = model.init(k_init, x_real[:1])
    opt = optax.adam(lr)

    def loss_fn(p, xr, xf):
        return (
            jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xr), 1.0))
            + jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply(p, xf), 0.0))
        ) / 2

    def step(carry, k):
        p, s = carry
        kr, kf = jax.random.split(k)
        xr = x_real[jax.random.randint(kr, (batch_size,), 0, x_real.shape[0])]
        xf = x_fake[jax.random.randint(kf, (batch_size,), 0, x_fake.shape[0])]
        g = jax.grad(loss_fn)(p, xr, xf)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params


def classifier_two_sample(
    real,
    fake,
    key,
    *,
    hidden: tuple[int, ...] = (128, 128),
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-3,
    test_fraction: float = 0.5,
) -> dict[str, float]:
    """Classifier two-sample test between ``real`` (n, ...) and ``fake`` (m, ...) (samples are flattened).

    Returns ``{"accuracy": held-out accuracy (balanced over the two sets), "p_value": one-sided
    p-value of accuracy > 0.5, "n_test": held-out samples}``.
    """
    real, fake = _prepare(real, fake, test_fraction)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    k_real, k_fake, k_train = jax.random.split(key, 3)
    r_train, r_test = split_indices(k_real, len(real), test_fraction, "real")
    f_train, f_test = split_indices(k_fake, len(fake), test_fraction, "fake")
    model = MLPDiscriminator(hidden=tuple(hidden), activation="relu")
    params = _train_classifier(k_train, real[r_train], fake[f_train], model, steps, batch_size, float(lr))
    acc_real = float(jnp.mean(model.apply(params, real[r_test]) > 0))
    acc_fake = float(jnp.mean(model.apply(params, fake[f_test]) <= 0))
    accuracy = (acc_real + acc_fake) / 2
    n_test = len(r_test) + len(f_test)
    z = (accuracy - 0.5) / math.sqrt(0.25 / n_test)
    return {"accuracy": accuracy, "p_value": 0.5 * math.erfc(z / math.sqrt(2)), "n_test": n_test}


@functools.partial(jax.jit, static_argnames=("model", "steps", "batch_size", "lr", "gp_weight"))
def _train_critic(key, x_real, x_fake, model, steps, batch_size, lr, gp_weight):
    k_init, k_steps = jax.random.split(key)
    params = model.init(k_init, x_real[:1])
    opt = optax.adam(lr, b1=0.5, b2=0.9)

    def loss_fn(p, xr, xf, eps):
        xhat = eps[:, None] * xr + (1 - eps[:, None]) * xf
        grads = jax.vmap(jax.grad(lambda x: model.apply(p, x[None])[0]))(xhat)
        penalty = jnp.mean((jnp.linalg.norm(grads, axis=1) - 1.0) ** 2)
        return jnp.mean(model.apply(p, xf)) - jnp.mean(model.apply(p, xr)) + gp_weight * penalty

    def step(carry, k):
        p, s = carry
        kr, kf, ke = jax.random.split(k, 3)
        xr = x_real[jax.random.randint(kr, (batch_size,), 0, x_real.shape[0])]
        xf = x_fake[jax.random.randint(kf, (batch_size,), 0, x_fake.shape[0])]
        g = jax.grad(loss_fn)(p, xr, xf, jax.random.uniform(ke, (batch_size,)))
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params


def critic_wasserstein(
    real,
    fake,
    key,
    *,
    hidden: tuple[int, ...] = (128, 128),
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    gp_weight: float = 10.0,
    test_fraction: float = 0.5,
) -> dict[str, float]:
    """Held-out Wasserstein-critic estimate of W1 between ``real`` (n, ...) and ``fake`` (m, ...).

    Returns ``{"w1": E_real f - E_fake f on the held-out halves, "n_test_real", "n_test_fake"}``.
    """
    real, fake = _prepare(real, fake, test_fraction)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    if not gp_weight > 0:
        raise ValueError(f"gp_weight must be > 0, got {gp_weight}")
    k_real, k_fake, k_train = jax.random.split(key, 3)
    r_train, r_test = split_indices(k_real, len(real), test_fraction, "real")
    f_train, f_test = split_indices(k_fake, len(fake), test_fraction, "fake")
    model = MLPDiscriminator(hidden=tuple(hidden), activation="relu")
    params = _train_critic(k_train, real[r_train], fake[f_train], model, steps, batch_size, float(lr), float(gp_weight))
    w1 = float(jnp.mean(model.apply(params, real[r_test])) - jnp.mean(model.apply(params, fake[f_test])))
    return {"w1": w1, "n_test_real": len(r_test), "n_test_fake": len(f_test)}


class _SoftmaxMLP(nn.Module):
    """Flattened input -> ``Dense -> ReLU`` per hidden width -> ``Dense(num_classes)`` logits; with no hidden
    width, multinomial logistic regression."""

    hidden: tuple[int, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x):
        h = x
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.num_classes)(h)


def _kernel_norm2(params) -> jax.Array:
    """Sum of squares of the Dense kernels (biases are not penalised)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(jnp.sum(leaf**2) for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel")


@functools.partial(jax.jit, static_argnames=("model", "steps", "batch_size", "lr", "l2"))
def _train_softmax(key, x, y, model, steps, batch_size, lr, l2=0.0):
    k_init, k_steps = jax.random.split(key)
    params = model.init(k_init, x[:1])
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))  # decayed to 0: the last iterate settles

    def loss_fn(q, idx):
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply(q, x[idx]), y[idx]))
        return loss + 0.5 * l2 * _kernel_norm2(q) if l2 else loss

    def step(carry, k):
        p, s = carry
        idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
        g = jax.grad(loss_fn)(p, idx)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    return params


def _labelled(
    x, labels, name: str, num_classes: int | None, labels_name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    labels_name = labels_name or f"{name}_labels"
    x = as_samples(flatten_samples(x, name), name, min_n=2).astype(np.float32)
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{labels_name} must be ({len(x)},) ints, one per row of {name}, got shape {y.shape} and dtype {y.dtype}"
        )
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        raise ValueError(f"{labels_name} must lie in [0, num_classes={num_classes}), got [{y.min()}, {y.max()}]")
    return x, y.astype(np.int32)


def adversarial_accuracy(
    fake,
    fake_labels,
    real,
    real_labels,
    test,
    test_labels,
    key,
    *,
    num_classes: int | None = None,
    hidden: tuple[int, ...] = (256,),
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> dict[str, float]:
    """Adversarial accuracy and adversarial divergence (Yang et al. 2017; Borji 2018's table).

    Two classifiers of the same kind (a softmax MLP on the flattened inputs, ``hidden`` widths; ``()`` is
    multinomial logistic regression), trained with the same initialisation and minibatch draws (Adam,
    ``steps`` x ``batch_size``, learning rate ``lr`` with a cosine decay to 0), one on the generated pairs ``(fake, fake_labels)`` (a class-conditional model's
    samples and the labels they were drawn for), one on real pairs ``(real, real_labels)``, approximate
    ``P_g(y|x)`` and ``P_r(y|x)``. Both are scored on a labelled real test set.

    Args:
      fake, real, test: (n, ...) samples of one shape; flattened.
      fake_labels, real_labels, test_labels: (n,) ints in ``[0, num_classes)``.
      key: PRNG key of the initialisation and the minibatches (shared by the two classifiers).
      num_classes: default ``1 + max`` of all labels.

    Returns ``{"accuracy_fake": test accuracy of the classifier trained on generated data, "accuracy_real":
    that of the classifier trained on real data, "adversarial_divergence": mean over the test set of
    KL(P_g(y|x) || P_r(y|x)) (nats, float64 from the logits), "n_test"}``. Like
    :func:`classifier_two_sample`, a learned estimate: it depends on the classifier and its budget.
    """
    fake, fake_labels = _labelled(fake, fake_labels, "fake", num_classes)
    real, real_labels = _labelled(real, real_labels, "real", num_classes)
    test, test_labels = _labelled(test, test_labels, "test", num_classes)
    same_dim(fake, real, "fake", "real")
    same_dim(real, test, "real", "test")
    if num_classes is None:
        num_classes = 1 + int(max(fake_labels.max(), real_labels.max(), test_labels.max()))
    num_classes = positive_int(num_classes, "num_classes", minimum=2)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    model = _SoftmaxMLP(hidden=tuple(hidden), num_classes=num_classes)
    logits = {}
    for name, x, y in (("fake", fake, fake_labels), ("real", real, real_labels)):
        params = _train_softmax(key, jnp.asarray(x), jnp.asarray(y), model, steps, batch_size, float(lr))
        logits[name] = np.asarray(model.apply(params, jnp.asarray(test)), np.float64)
    log_p = {name: v - _logsumexp(v) for name, v in logits.items()}
    divergence = np.sum(np.exp(log_p["fake"]) * (log_p["fake"] - log_p["real"]), axis=1)
    return {
        "accuracy_fake": float(np.mean(np.argmax(logits["fake"], 1) == test_labels)),
        "accuracy_real": float(np.mean(np.argmax(logits["real"], 1) == test_labels)),
        "adversarial_divergence": float(np.mean(divergence)),
        "n_test": len(test),
    }


def _logsumexp(v: np.ndarray) -> np.ndarray:
    top = v.max(axis=1, keepdims=True)
    return top + np.log(np.sum(np.exp(v - top), axis=1, keepdims=True))


def gan_quality_index(
    fake,
    real,
    real_labels,
    test,
    test_labels,
    key,
    *,
    num_classes: int | None = None,
    hidden: tuple[int, ...] = (256,),
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> dict:
    """GAN Quality Index (Ye et al. 2018, "GAN Quality Index (GQI) by GAN-induced Classifier"), for unlabelled samples.

    A classifier ``C_real`` (the softmax MLP of :func:`adversarial_accuracy`: ``hidden`` widths, Adam for ``steps``
    x ``batch_size`` with a cosine decay of ``lr``) learns the real pairs ``(real, real_labels)``; its argmax
    labels the generated ``fake`` samples; a second classifier ``C_gan`` of the same kind, with the same
    initialisation and minibatch draws, learns those induced pairs. Both are scored on the labelled real ``test``
    set and ``GQI = 100 acc(C_gan) / acc(C_real)``. 100 means the samples carry all that the real training set
    tells the classifier about where the classes lie; samples missing a class, or missing the regions near the
    class boundaries, give less (Santurkar et al. 2018 read the same drop as covariate shift of the GAN's
    distribution).

    Args:
      fake: (m, ...) generated samples; flattened. ``real``, ``test``: (n, ...) of the same size.
      real_labels, test_labels: (n,) ints in ``[0, num_classes)`` (default ``1 + max`` of both).
      key: PRNG key of the initialisation and minibatches (shared by the two classifiers).

    Returns ``{"gqi", "accuracy_gan": test accuracy of C_gan, "accuracy_real": that of C_real,
    "induced_label_counts": (num_classes,) how many samples C_real put in each class (the class balance of the
    samples, see :func:`~gendl_jax.metrics.class_balance`), "n_test"}``.
    """
    fake = as_samples(flatten_samples(fake, "fake"), "fake", min_n=2).astype(np.float32)
    real, real_labels = _labelled(real, real_labels, "real", num_classes)
    test, test_labels = _labelled(test, test_labels, "test", num_classes)
    same_dim(fake, real, "fake", "real")
    same_dim(real, test, "real", "test")
    if num_classes is None:
        num_classes = 1 + int(max(real_labels.max(), test_labels.max()))
    num_classes = positive_int(num_classes, "num_classes", minimum=2)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    model = _SoftmaxMLP(hidden=tuple(hidden), num_classes=num_classes)
    real_params = _train_softmax(key, jnp.asarray(real), jnp.asarray(real_labels), model, steps, batch_size, float(lr))
    induced = np.asarray(jnp.argmax(model.apply(real_params, jnp.asarray(fake)), axis=1), np.int32)
    gan_params = _train_softmax(key, jnp.asarray(fake), jnp.asarray(induced), model, steps, batch_size, float(lr))
    x_test = jnp.asarray(test)
    accuracy = {
        name: float(np.mean(np.asarray(jnp.argmax(model.apply(p, x_test), axis=1)) == test_labels))
        for name, p in (("real", real_params), ("gan", gan_params))
    }
    return {
        "gqi": 100.0 * accuracy["gan"] / accuracy["real"] if accuracy["real"] > 0 else float("nan"),
        "accuracy_gan": accuracy["gan"],
        "accuracy_real": accuracy["real"],
        "induced_label_counts": np.bincount(induced, minlength=num_classes).tolist(),
        "n_test": len(test),
    }


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    key,
    *,
    num_classes: int | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-2,
    l2: float = 0.0,
    standardize: bool = True,
) -> dict:
    """Test accuracy of multinomial logistic regression on fixed features: how linearly the classes separate in a
    representation (e.g. a GAN discriminator's last hidden layer, :func:`gendl_jax.objectives.adversarial.discriminator_features`).

    The model is trained by Adam (``steps`` x ``batch_size``, ``lr`` with a cosine decay to 0) on the mean
    cross-entropy plus ``l2 / 2`` times the squared norm of the weights (not the biases): scikit-learn's
    ``LogisticRegression(C=1 / (l2 n))`` for n training rows. With ``standardize`` each feature is first centred
    and scaled by its mean and standard deviation on the training set (a constant feature is only centred).

    Args:
      train_features, test_features: (n, F) and (m, F) (or (n, ...), flattened).
      train_labels, test_labels: (n,) and (m,) ints in ``[0, num_classes)`` (default ``1 + max`` of both).
      key: PRNG key of the initialisation and minibatches.

    Returns ``{"accuracy": test accuracy, "train_accuracy", "test_log_loss": mean cross-entropy on the test set
    (nats), "n_train", "n_test"}``.
    """
    x, y = _labelled(train_features, train_labels, "train_features", num_classes, "train_labels")
    x_test, y_test = _labelled(test_features, test_labels, "test_features", num_classes, "test_labels")
    same_dim(x, x_test, "train_features", "test_features")
    if num_classes is None:
        num_classes = 1 + int(max(y.max(), y_test.max()))
    num_classes = positive_int(num_classes, "num_classes", minimum=2)
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    if standardize:
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        x, x_test = (x - mean) / std, (x_test - mean) / std
    model = _SoftmaxMLP(hidden=(), num_classes=num_classes)
    params = _train_softmax(key, jnp.asarray(x), jnp.asarray(y), model, steps, batch_size, float(lr), float(l2))

    def accuracy(features, labels):
        return float(np.mean(np.asarray(jnp.argmax(model.apply(params, jnp.asarray(features)), axis=1)) == labels))

    test_logits = np.asarray(model.apply(params, jnp.asarray(x_test)), np.float64)
    log_p = test_logits - _logsumexp(test_logits)
    return {
        "accuracy": accuracy(x_test, y_test),
        "train_accuracy": accuracy(x, y),
        "test_log_loss": float(-np.mean(log_p[np.arange(len(y_test)), y_test])),
        "n_train": len(x),
        "n_test": len(x_test),
    }
