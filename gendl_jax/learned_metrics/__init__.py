"""Measures that train a model of their own to score samples (Borji 2018's "learned" measures).

Two-sample classifiers: :func:`classifier_two_sample` (accuracy of an MLP telling real from fake),
:func:`critic_wasserstein` (a WGAN-GP critic trained on the two sets: an estimate of W1); NRDS
(:func:`nrds`: how long one classifier takes to tell each model's samples from the data); classifiers trained
on samples: :func:`adversarial_accuracy` (a conditional model's labelled samples against real data) and
:func:`gan_quality_index` (GQI: an unconditional model's samples labelled by a real-data classifier);
:func:`linear_probe` (logistic regression on a representation, e.g. a discriminator's features);
memorisation: :func:`latent_reconstruction` (min_z |G(z) - x|^2 by jitted Adam from several starts).

They sit above the closed-form :mod:`gendl_jax.metrics` (whose checks they share) and below
:mod:`gendl_jax.evaluation`, which scores run folders with both.
"""

from gendl_jax.learned_metrics.nrds import nrds
from gendl_jax.learned_metrics.reconstruction import latent_reconstruction
from gendl_jax.learned_metrics.two_sample import (
    adversarial_accuracy,
    classifier_two_sample,
    critic_wasserstein,
    gan_quality_index,
    linear_probe,
)

__all__ = [
    "adversarial_accuracy",
    "classifier_two_sample",
    "critic_wasserstein",
    "gan_quality_index",
    "latent_reconstruction",
    "linear_probe",
    "nrds",
]
