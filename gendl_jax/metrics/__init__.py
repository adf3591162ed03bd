"""Measures of generative models (the lecture's "Evaluation of GANs", Borji 2018).

Feature-based: :func:`fid` (and :func:`per_class_fid`), :func:`kid`,
:func:`inception_score` (and :func:`inception_score_breakdown`; the variants :func:`modified_inception_score`,
:func:`mode_score`, :func:`am_score`, with :func:`mean_prediction` for their p*), :func:`mmd`,
:func:`precision_recall`, :func:`density_coverage` (both at once: :func:`prdc`), :func:`nn_two_sample`,
:func:`ndb` (bins by :func:`kmeans`); from discriminators' outputs: :func:`generative_adversarial_metric`
(two GANs battle), :func:`skill_rating` (a tournament of generators and discriminators rated by Glicko-2,
:func:`glicko2_update`, or Bradley-Terry, :func:`bradley_terry_ratings`);
class balance of a classifier's labels: :func:`class_balance` (Santurkar et al. 2018); likelihood: :func:`parzen_log_likelihood` (and the KDE's :func:`mass_coverage`);
memorisation and support size: :func:`nearest_neighbours`,
:func:`birthday_duplicates` / :func:`birthday_support_size` (Arora & Zhang's birthday paradox test); toy mixtures: :func:`mode_coverage`; topology:
:func:`geometry_score` (H1 persistence of witness complexes, Khrulkov & Oseledets 2018; :func:`relative_living_times`; :func:`geometry_score_estimates` removes its Monte Carlo bias, :func:`geometry_score_from_rlts` from RLTs already drawn); image quality: :func:`ssim`, :func:`psnr` and
:func:`ssim_diversity` (mean SSIM of sample pairs), :func:`low_level_statistics` (power spectrum, random filter
responses, intensity and contrast; Zeng et al. 2017). MNIST features and
logits come from :func:`mnist_classifier`, a LeNet the project trains and ships.

The measures that train a model of their own (two-sample classifiers, NRDS, GQI, adversarial accuracy, the
linear probe, latent reconstruction) are in :mod:`gendl_jax.learned_metrics`.

Precision: inputs are checked on the host and converted to float64; the jitted kernels run inside
``jax.enable_x64(True)`` (see :mod:`gendl_jax.metrics.common`); pairwise-distance measures work in
blocks of ``block_size`` rows and columns.
"""

from gendl_jax.metrics.battle import generative_adversarial_metric
from gendl_jax.metrics.bins import kmeans, ndb
from gendl_jax.metrics.classifier import MNIST_CLASSIFIER_CONFIG, MnistClassifier, mnist_classifier, prepare_images
from gendl_jax.metrics.fid import feature_statistics, fid, frechet_distance, per_class_fid, trace_sqrt_product
from gendl_jax.metrics.geometry import (
    geometry_score,
    geometry_score_estimates,
    geometry_score_from_rlts,
    relative_living_times,
)
from gendl_jax.metrics.image_quality import psnr, ssim, ssim_diversity
from gendl_jax.metrics.image_statistics import low_level_statistics, radial_power_spectrum
from gendl_jax.metrics.inception import (
    am_score,
    class_balance,
    inception_score,
    inception_score_breakdown,
    mean_prediction,
    mode_score,
    modified_inception_score,
)
from gendl_jax.metrics.kernel import kid, kid_subset_indices, mmd
from gendl_jax.metrics.likelihood import (
    mass_coverage,
    parzen_log_densities,
    parzen_log_likelihood,
    select_parzen_bandwidth,
)
from gendl_jax.metrics.mode_coverage import mode_coverage, mode_histogram
from gendl_jax.metrics.pairwise import (
    birthday_duplicates,
    birthday_support_size,
    density_coverage,
    kth_neighbour_distances,
    nearest_neighbour_picture,
    nearest_neighbours,
    nn_two_sample,
    prdc,
    precision_recall,
)
from gendl_jax.metrics.tournament import bradley_terry_ratings, glicko2_update, match_outcomes, skill_rating

__all__ = [
    "MNIST_CLASSIFIER_CONFIG",
    "MnistClassifier",
    "am_score",
    "birthday_duplicates",
    "birthday_support_size",
    "bradley_terry_ratings",
    "class_balance",
    "density_coverage",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "generative_adversarial_metric",
    "geometry_score",
    "geometry_score_estimates",
    "geometry_score_from_rlts",
    "glicko2_update",
    "inception_score",
    "inception_score_breakdown",
    "kid",
    "kid_subset_indices",
    "kmeans",
    "kth_neighbour_distances",
    "low_level_statistics",
    "mass_coverage",
    "match_outcomes",
    "mean_prediction",
    "mmd",
    "mnist_classifier",
    "mode_coverage",
    "mode_histogram",
    "mode_score",
    "modified_inception_score",
    "ndb",
    "nearest_neighbour_picture",
    "nearest_neighbours",
    "nn_two_sample",
    "parzen_log_densities",
    "parzen_log_likelihood",
    "per_class_fid",
    "prdc",
    "precision_recall",
    "prepare_images",
    "psnr",
    "radial_power_spectrum",
    "relative_living_times",
    "select_parzen_bandwidth",
    "skill_rating",
    "ssim",
    "ssim_diversity",
    "trace_sqrt_product",
]
