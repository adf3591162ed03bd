"""Better samples from a trained GAN without retraining it: the truncation trick, discriminator
rejection sampling and discriminator-driven latent sampling.

* **Truncation** (Brock et al. 2019, BigGAN, section 3.1): latents from N(0, I) restricted to
  ``|z_i| <= threshold`` in every coordinate. Smaller thresholds trade diversity for fidelity.
* **Discriminator rejection sampling** (DRS; Azadi et al. 2019). A discriminator ``D = sigmoid(l)``
  that is optimal between p_data and p_g has ``l(x) = log p_data(x) / p_g(x)`` (lecture: the optimal
  D is ``p_data / (p_data + p_g)``). Accepting a generator sample with probability ``exp(l(x) - M)``,
  ``M = max_x l(x)``, is then rejection sampling with proposal p_g and target p_data: the accepted
  samples follow p_data exactly. In practice M is estimated on a burn-in set of proposals (and raised
  when a larger logit turns up), and acceptance is raised by a shift ``gamma``: a sample is accepted
  with probability ``sigmoid(F(x))``, ``F = l - M - log(1 - exp(l - M - eps)) - gamma``. With
  ``gamma = 0`` and ``eps -> 0``, ``sigmoid(F) = exp(l - M)``, the exact scheme; a fixed ``gamma``
  gives accepted samples with density proportional to ``p_g(x) sigmoid(F(x))``.
* **Platt scaling** (Platt 1999): ``a * l + b`` fitted by logistic regression between held-out real
  and generated logits, with both classes weighted equally, so that the calibrated logit estimates
  ``log p_data / p_g``. A GAN's discriminator at the end of training need not be calibrated.

* **Discriminator-driven latent sampling** (DDLS; Che et al. 2020). With ``l(x) = log p_data / p_g``,
  the density ``p_g(x) exp(l(x))`` is p_data; pulled back to the latent space it is
  ``p(z) ∝ N(z; 0, I) exp(l(G(z)))``, i.e. the energy ``E(z) = |z|^2 / 2 - l(G(z))``. Sampling it by
  Langevin dynamics in z moves every latent towards what D finds real, at the cost of gradient steps
  through G and D instead of discarded proposals. :func:`latent_langevin` runs the chains, unadjusted
  (ULA, as in the paper) or Metropolis-adjusted (MALA, exact for any step size).

Pure parts (:func:`truncated_latents`, :func:`drs_log_acceptance`, :func:`latent_langevin`) run under
``jit``; the sampler
:func:`rejection_sample` is a host loop over the user's jitted ``propose`` and ``log_ratio``, since the
number of proposals it needs is not known in advance.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

Array = jax.Array

__all__ = [
    "DiscriminatorCalibration",
    "GanSamples",
    "LangevinChains",
    "RejectionSamples",
    "calibrate_discriminator",
    "check_sampler_options",
    "drs_log_acceptance",
    "gamma_for_acceptance",
    "latent_langevin",
    "latent_langevin_in_batches",
    "platt_scaling",
    "rejection_sample",
    "roc_auc",
    "sample_gan",
    "truncated_latents",
]


def _positive_finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def truncated_latents(key: Array, n: int, dim: int, threshold: float | None = None, dtype=jnp.float32) -> Array:
    """(n, dim) latents from N(0, I), each coordinate restricted to [-threshold, threshold].

    The density is the standard normal's renormalised on the box (what redrawing every coordinate
    that falls outside gives). ``threshold=None`` draws plain N(0, I) latents.
    """
    for name, value in (("n", n), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if threshold is None:
        return jax.random.normal(key, (n, dim), dtype)
    t = _positive_finite("threshold", threshold)
    return jax.random.truncated_normal(key, -t, t, (n, dim), dtype)


def drs_log_acceptance(logits, max_logit, gamma=0.0, eps: float = 1e-6) -> Array:
    """Log of DRS's acceptance probability, ``log sigmoid(F)``: (n,) logits -> (n,).

    ``F = l - M - log(1 - exp(l - M - eps)) - gamma`` (Azadi et al. 2019, section 3.2). Args:
      logits: (n,) discriminator logits, estimates of ``log p_data / p_g``.
      max_logit: M, which must be >= every logit (on concrete inputs this is checked).
      gamma: the shift; larger gamma accepts less. ``gamma=0`` with a small ``eps`` is the exact
        rejection sampler, acceptance ``exp(l - M)``.
      eps: > 0, keeps ``log(1 - exp(.))`` finite at ``l = M``.
    """
    if not isinstance(eps, jax.core.Tracer):
        _positive_finite("eps", eps)
    logits = jnp.asarray(logits)
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (n,), got {tuple(logits.shape)}")
    if not isinstance(logits, jax.core.Tracer) and not isinstance(max_logit, jax.core.Tracer):
        concrete = np.asarray(logits)
        if not np.all(np.isfinite(concrete)):
            raise ValueError("logits must be finite, got NaN or inf")
        if concrete.size and concrete.max() > float(max_logit):
            raise ValueError(
                f"max_logit must be >= every logit, got max_logit={float(max_logit)} < max(logits)={concrete.max()}"
            )
    return -jnp.logaddexp(0.0, -_drs_f(jnp, logits, max_logit, eps, gamma))  # log sigmoid(F)


def _drs_f(xp, logits, max_logit, eps, gamma=0.0):
    """DRS's F with array namespace ``xp`` (jax.numpy in the pure function, numpy in float64 on the host)."""
    d = logits - max_logit
    return d - xp.log(-xp.expm1(d - eps)) - gamma


def gamma_for_acceptance(logits, max_logit: float, acceptance: float, eps: float = 1e-6) -> float:
    """The shift gamma at which the mean DRS acceptance probability over ``logits`` is ``acceptance``.

    ``logits``: (n,) logits of proposals (a burn-in set); ``acceptance`` in (0, 1). Solved in
    float64 by bisection (the mean acceptance decreases strictly with gamma).
    """
    if isinstance(acceptance, bool) or not isinstance(acceptance, (int, float, np.floating)) or not 0 < acceptance < 1:
        raise ValueError(f"acceptance must be a number in (0, 1), got {acceptance!r}")
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 1 or logits.size == 0 or not np.all(np.isfinite(logits)):
        raise ValueError(f"logits must be a non-empty finite (n,) array, got shape {logits.shape}")
    if logits.max() > max_logit:
        raise ValueError(f"max_logit must be >= every logit, got {max_logit} < {logits.max()}")
    f = _drs_f(np, logits, max_logit, _positive_finite("eps", eps))

    def mean_acceptance(gamma):
        return np.mean(0.5 * (1.0 + np.tanh(0.5 * (f - gamma))))  # sigmoid without overflow

    lo, hi = f.min() - 50.0, f.max() + 50.0  # mean acceptance ~1 at lo, ~0 at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mean_acceptance(mid) > acceptance:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def platt_scaling(logits_real, logits_fake, *, max_iter: int = 100, tol: float = 1e-10) -> tuple[float, float]:
    """Calibrates a discriminator: ``(a, b)`` such that ``a * l + b`` estimates ``log p_data / p_g``.

    Minimises the class-balanced logistic loss ``-mean log sigmoid(a l_r + b) - mean log sigmoid(-(a l_f + b))``
    over (n_r,) real and (n_f,) generated logits of held-out data, in float64 by Newton's method
    (the loss is convex in (a, b)). Raises ValueError when the two sets are separable (no finite
    minimiser) or when the inputs are empty or not finite.
    """
    groups = []
    for name, values in (("logits_real", logits_real), ("logits_fake", logits_fake)):
        v = np.asarray(values, np.float64)
        if v.ndim != 1 or v.size < 2:
            raise ValueError(f"{name} must have shape (n,) with n >= 2, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite, got NaN or inf")
        groups.append(v)
    real, fake = groups
    if real.min() > fake.max() or fake.min() > real.max():
        raise ValueError(
            "logits_real and logits_fake are perfectly separated: the calibrating logistic "
            "regression has no finite solution; use more (or harder) held-out samples"
        )
    x = np.concatenate([real, fake])
    y = np.concatenate([np.ones_like(real), np.zeros_like(fake)])
    w = np.concatenate([np.full(real.size, 0.5 / real.size), np.full(fake.size, 0.5 / fake.size)])
    design = np.stack([x, np.ones_like(x)], 1)
    params = np.zeros(2)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * design @ params))
        grad = design.T @ (w * (p - y))
        hess = (design * (w * p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hess, grad)
        params = params - step
        if np.max(np.abs(step)) < tol * (1.0 + np.max(np.abs(params))):
            break
    else:
        raise ValueError(
            f"the calibrating logistic regression did not converge in {max_iter} Newton steps "
            f"(last step {step}); the logits may be nearly separable"
        )
    return float(params[0]), float(params[1])


@dataclasses.dataclass(frozen=True)
class RejectionSamples:
    """What :func:`rejection_sample` returns."""

    samples: Any
    """(n, ...) accepted samples, in the order they were accepted (a pytree of such arrays when the proposals are
    one, e.g. ``(images, labels)``)."""
    proposals: int
    """Proposals drawn after the burn-in."""
    accepted: int
    """Proposals accepted (>= n: the surplus of the last batch is dropped from ``samples``)."""
    burn_in: int
    """Proposals drawn to estimate M (and gamma), then discarded."""
    max_logit: float
    """M at the end (the burn-in maximum, raised by any larger logit seen later)."""
    gamma: float
    """The shift at the end (with ``acceptance``, solved again after each raise of M)."""

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposals


def rejection_sample(
    key: Array,
    propose: Callable[[Array, int], Array],
    log_ratio: Callable[[Array], Array],
    n: int,
    *,
    gamma: float | None = None,
    acceptance: float | None = None,
    burn_in: int = 10000,
    batch_size: int = 1000,
    eps: float = 1e-6,
    max_proposals: int | None = None,
    progress: bool = False,
) -> RejectionSamples:
    """Discriminator rejection sampling: ``n`` proposals of ``propose`` kept with DRS's acceptance.

    Args:
      key: PRNG key (proposals, and the uniforms of the accept test).
      propose: ``(key, m) -> (m, ...)`` samples of the generator (jit it; ``m`` is always ``batch_size``), or a
        pytree of such arrays, e.g. ``(images, labels)`` of a class-conditional generator.
      log_ratio: ``(m, ...) -> (m,)`` (of what ``propose`` returns) estimates of ``log p_data / p_g``, e.g. the
        discriminator's logits, Platt-scaled (:func:`platt_scaling`).
      n: samples to return.
      gamma: DRS's shift, fixed for the whole run. Give ``gamma`` or ``acceptance``, not both;
        neither means ``gamma = 0``, the exact rejection sampler.
      acceptance: the mean acceptance probability wanted, in (0, 1); gamma is solved for it on the
        burn-in proposals (:func:`gamma_for_acceptance`), and solved again whenever M is raised.
        With a fixed ``gamma`` instead, a raised M lowers the acceptance of every later proposal.
      burn_in: proposals used to estimate M (rounded up to whole batches), then discarded.
      max_proposals: stop with RuntimeError after this many proposals (default ``1000 * n``).
      progress: show a progress bar of accepted samples.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 1:
        raise ValueError(f"burn_in must be a positive int, got {burn_in!r}")
    if gamma is not None and acceptance is not None:
        raise ValueError(f"give gamma or acceptance, not both (got gamma={gamma}, acceptance={acceptance})")
    if gamma is not None and not np.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma!r}")
    max_proposals = 1000 * n if max_proposals is None else max_proposals
    _positive_finite("eps", eps)

    def logits_of(x):
        logits = np.asarray(log_ratio(x), np.float64)
        m = jax.tree_util.tree_leaves(x)[0].shape[0]
        if logits.shape != (m,):
            raise ValueError(f"log_ratio must map ({m}, ...) samples to ({m},) logits, got shape {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise ValueError("log_ratio returned NaN or inf")
        return logits

    key, burn_key = jax.random.split(key)
    burn_batches = -(-burn_in // batch_size)
    burn_logits = np.concatenate([logits_of(propose(k, batch_size)) for k in jax.random.split(burn_key, burn_batches)])
    max_logit = float(burn_logits.max())
    if acceptance is not None:
        gamma = gamma_for_acceptance(burn_logits, max_logit, acceptance, eps)
    gamma = 0.0 if gamma is None else float(gamma)

    accepted, count, proposals = [], 0, 0
    bar = tqdm(total=n, desc="rejection sampling", disable=not progress)
    while count < n:
        if proposals >= max_proposals:
            bar.close()
            raise RuntimeError(
                f"rejection_sample accepted {count} of {proposals} proposals, short of n={n} "
                f"within max_proposals={max_proposals}; lower gamma or ask for a larger acceptance"
            )
        key, k_prop, k_accept = jax.random.split(key, 3)
        x = propose(k_prop, batch_size)
        logits = logits_of(x)
        if logits.max() > max_logit:
            max_logit = float(logits.max())
            if acceptance is not None:  # keep the mean acceptance asked for under the raised M
                gamma = gamma_for_acceptance(burn_logits, max_logit, acceptance, eps)
        f = _drs_f(np, logits, max_logit, eps, gamma)
        log_u = np.log1p(-np.asarray(jax.random.uniform(k_accept, (batch_size,)), np.float64))  # 1 - u in (0, 1]
        keep = log_u < -np.logaddexp(0.0, -f)  # log sigmoid(F)
        accepted.append(jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[keep], x))
        count += int(keep.sum())
        proposals += batch_size
        bar.update(min(int(keep.sum()), n - bar.n))
    bar.close()
    samples = jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves)[:n], *accepted)
    return RejectionSamples(
        samples=samples,
        proposals=proposals,
        accepted=count,
        burn_in=burn_batches * batch_size,
        max_logit=max_logit,
        gamma=gamma,
    )


class LangevinChains(NamedTuple):
    """What :func:`latent_langevin` returns (a pytree, so it passes through ``jit``)."""

    z: Array
    """(n, ...) the chains' states after the last step."""
    mean_log_ratio: Array
    """(n_steps + 1,) mean of ``log_ratio`` over the chains, at the start and after each step."""
    acceptance: Array
    """(n_steps,) share of chains whose move was accepted at each step (all ones without ``metropolis``)."""


def latent_langevin(
    key: Array,
    z0: Array,
    log_ratio: Callable[[Array], Array],
    *,
    n_steps: int,
    step_size: float,
    metropolis: bool = False,
) -> LangevinChains:
    """Langevin chains on ``p(z) ∝ N(z; 0, I) exp(log_ratio(z))``, one per row of ``z0``.

    Each step moves ``z <- z + (step_size / 2) grad log p(z) + sqrt(step_size) xi``, ``xi ~ N(0, I)``.
    For DDLS (Che et al. 2020) ``log_ratio(z)`` is the (calibrated) discriminator logit of ``G(z)``, an
    estimate of ``log p_data / p_g`` at ``G(z)``. Pure and traceable: ``jit`` it with ``log_ratio``,
    ``n_steps`` and ``metropolis`` static (e.g. through ``functools.partial``).

    Args:
      key: PRNG key of the chains' noise (and of the accept tests).
      z0: (n, ...) starting latents, usually draws of the prior N(0, I).
      log_ratio: ``(n, ...) -> (n,)``. Each chain's gradient is taken through the sum over chains, so
        row i of the output must depend on row i of the input only (a discriminator whose BatchNorm
        uses batch statistics couples the chains and breaks this).
      n_steps: Langevin steps, >= 1.
      step_size: epsilon > 0. Unadjusted chains are biased by O(epsilon): for a Gaussian target with
        precision lam their stationary variance is ``1 / (lam (1 - epsilon lam / 4))``.
      metropolis: accept each move with the Metropolis-Hastings probability of the Langevin proposal
        (MALA), which makes ``p`` the exact stationary law at any step size; moves to a point where
        ``log_ratio`` is not finite are rejected.
    """
    z0 = jnp.asarray(z0)
    if z0.ndim < 2 or not jnp.issubdtype(z0.dtype, jnp.floating):
        raise ValueError(
            f"z0 must be a float array of shape (n, ...) with at least 2 dims, got {z0.dtype} {tuple(z0.shape)}"
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if not isinstance(step_size, jax.core.Tracer):
        _positive_finite("step_size", step_size)
    out = jax.eval_shape(log_ratio, z0)
    if not hasattr(out, "shape") or out.shape != (z0.shape[0],):
        raise ValueError(
            f"log_ratio must map z0 of shape {tuple(z0.shape)} to shape ({z0.shape[0]},), got "
            f"{getattr(out, 'shape', out)}"
        )
    axes = tuple(range(1, z0.ndim))

    def log_target_and_grad(z):
        def total(z):
            ratio = log_ratio(z).astype(z.dtype)
            log_p = ratio - 0.5 * jnp.sum(z * z, axis=axes)
            return jnp.sum(log_p), (log_p, ratio)

        (_, (log_p, ratio)), grad = jax.value_and_grad(total, has_aux=True)(z)
        return log_p, ratio, grad

    def log_proposal(to, frm, grad_frm):  # log q(to | frm) up to a constant shared by both directions
        diff = to - frm - 0.5 * step_size * grad_frm
        return -jnp.sum(diff * diff, axis=axes) / (2.0 * step_size)

    def step(carry, k):
        z, log_p, ratio, grad = carry
        k_noise, k_accept = jax.random.split(k)
        new = z + 0.5 * step_size * grad + jnp.sqrt(step_size) * jax.random.normal(k_noise, z.shape, z.dtype)
        new_log_p, new_ratio, new_grad = log_target_and_grad(new)
        if metropolis:
            log_alpha = new_log_p - log_p + log_proposal(z, new, new_grad) - log_proposal(new, z, grad)
            log_alpha = jnp.where(jnp.isfinite(log_alpha), log_alpha, -jnp.inf)
            accept = jnp.log(jax.random.uniform(k_accept, log_alpha.shape, z.dtype)) < log_alpha
        else:
            accept = jnp.ones(z.shape[0], bool)

        def pick(a, b):
            return jnp.where(accept.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

        carry = (pick(new, z), pick(new_log_p, log_p), pick(new_ratio, ratio), pick(new_grad, grad))
        return carry, (jnp.mean(carry[2]), jnp.mean(accept.astype(z.dtype)))

    log_p, ratio, grad = log_target_and_grad(z0)
    (z, *_), (means, accepted) = jax.lax.scan(step, (z0, log_p, ratio, grad), jax.random.split(key, n_steps))
    return LangevinChains(z=z, mean_log_ratio=jnp.concatenate([jnp.mean(ratio)[None], means]), acceptance=accepted)


def latent_langevin_in_batches(
    key: Array,
    z0,
    log_ratio: Callable[[Array], Array],
    *,
    n_steps: int,
    step_size: float,
    metropolis: bool = False,
    batch_size: int = 1000,
    progress: bool = False,
) -> LangevinChains:
    """:func:`latent_langevin` on the host, ``batch_size`` chains per jitted call (bounds memory).

    Same arguments and result as :func:`latent_langevin`, with ``z`` as numpy and the traces averaged
    over all chains. Calling it again on the returned ``z`` (with another key) continues the chains.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    z0 = np.asarray(z0)
    if z0.ndim < 2 or len(z0) == 0:
        raise ValueError(f"z0 must have shape (n, ...) with n >= 1, got {z0.shape}")
    chains = jax.jit(
        functools.partial(
            latent_langevin, log_ratio=log_ratio, n_steps=n_steps, step_size=step_size, metropolis=metropolis
        )
    )
    parts = [
        chains(jax.random.fold_in(key, j), jnp.asarray(z0[start : start + batch_size]))
        for j, start in enumerate(
            tqdm(range(0, len(z0), batch_size), desc=f"Langevin, {n_steps} steps", disable=not progress)
        )
    ]
    weights = [len(p.z) / len(z0) for p in parts]
    return LangevinChains(
        z=np.concatenate([np.asarray(p.z) for p in parts]),
        mean_log_ratio=sum(w * np.asarray(p.mean_log_ratio, np.float64) for w, p in zip(weights, parts)),
        acceptance=sum(w * np.asarray(p.acceptance, np.float64) for w, p in zip(weights, parts)),
    )


def roc_auc(scores_positive, scores_negative) -> float:
    """Area under the ROC curve of scores that should rank (n_p,) positives above (n_n,) negatives.

    The Mann-Whitney U statistic over ``n_p * n_n``, ties counted one half; 0.5 is chance, 1 perfect.
    """
    from scipy.stats import rankdata

    pos, neg = (np.asarray(v, np.float64) for v in (scores_positive, scores_negative))
    if pos.ndim != 1 or neg.ndim != 1 or pos.size == 0 or neg.size == 0:
        raise ValueError(f"scores must be non-empty (n,) arrays, got shapes {pos.shape} and {neg.shape}")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


@dataclasses.dataclass(frozen=True)
class DiscriminatorCalibration:
    """A GAN discriminator Platt-scaled on held-out data (:func:`calibrate_discriminator`)."""

    a: float
    b: float
    """The calibrated log ratio is ``a * logit + b``."""
    batch_statistics: bool
    """Whether D's BatchNorm normalised each batch by its own statistics (see ``adversarial.discriminate``)."""
    auc: float
    """How well the raw logits separate the held-out real from the generated examples (ROC AUC)."""
    d_real_mean: float
    d_fake_mean: float
    """Mean ``sigmoid(logit)`` on the real and generated sets."""
    n_real: int
    n_fake: int

    def log_ratio(self, state) -> Callable[[Array], Array]:
        """Pure ``x -> a * D(x) + b`` of ``state``'s discriminator: (m, *data_shape) -> (m,), jittable; a
        class-conditional GAN's takes ``labels=`` (m,) too."""
        from gendl_jax.objectives import adversarial

        def log_ratio(x, labels=None):
            return (
                self.a * adversarial.discriminate(state, x, batch_statistics=self.batch_statistics, labels=labels)
                + self.b
            )

        return log_ratio


def calibrate_discriminator(
    state, real, fake, *, batch_statistics: bool = False, batch_size: int = 1000, real_labels=None, fake_labels=None
) -> DiscriminatorCalibration:
    """Platt-scales the discriminator of a trained GAN ``state`` (:func:`platt_scaling`).

    Args:
      state: an ``AdversarialState`` trained with the GAN objective (a WGAN critic is no estimate of
        a log density ratio).
      real: (n_r, *data_shape) held-out real examples, scaled as in training (not the examples the
        samples will be scored against).
      fake: (n_f, *data_shape) fresh samples of the sampler DRS / DDLS will start from.
      batch_statistics: evaluate D's BatchNorm on each batch's own statistics (batches of
        ``batch_size`` all-real or all-fake examples, as D saw them in training).
      real_labels, fake_labels: (n_r,) and (n_f,) int labels, for a class-conditional GAN (each sample scored
        with its label; the fakes' are those they were drawn for).
    """
    from gendl_jax.data import map_in_batches
    from gendl_jax.objectives import adversarial

    shape = tuple(state.data_shape)
    for name, x in (("real", real), ("fake", fake)):
        if np.ndim(x) != 1 + len(shape) or tuple(np.shape(x)[1:]) != shape:
            raise ValueError(f"{name} must have shape (n, {', '.join(map(str, shape))}), got {np.shape(x)}")
    conditional = state.config.num_classes > 0
    if conditional != (real_labels is not None and fake_labels is not None):
        raise ValueError(
            "a class-conditional GAN's calibration needs real_labels and fake_labels, an unconditional "
            f"one neither (num_classes={state.config.num_classes})"
        )
    logits = jax.jit(functools.partial(adversarial.discriminate, state, batch_statistics=batch_statistics))
    if conditional:
        pairs = [(x, np.asarray(y, np.int32)) for x, y in ((real, real_labels), (fake, fake_labels))]
        for (x, y), name in zip(pairs, ("real", "fake")):
            if y.shape != (len(x),):
                raise ValueError(f"{name}_labels must have shape ({len(x)},), got {y.shape}")
        real_logits, fake_logits = (
            np.concatenate(
                [
                    np.asarray(logits(jnp.asarray(x[i : i + batch_size]), labels=jnp.asarray(y[i : i + batch_size])))
                    for i in range(0, len(x), batch_size)
                ]
            ).astype(np.float64)
            for x, y in pairs
        )
    else:
        real_logits, fake_logits = (map_in_batches(logits, x, batch_size).astype(np.float64) for x in (real, fake))
    a, b = platt_scaling(real_logits, fake_logits)
    sig = lambda v: float(np.mean(0.5 * (1.0 + np.tanh(0.5 * v))))
    return DiscriminatorCalibration(
        a=a,
        b=b,
        batch_statistics=batch_statistics,
        auc=roc_auc(real_logits, fake_logits),
        d_real_mean=sig(real_logits),
        d_fake_mean=sig(fake_logits),
        n_real=len(real_logits),
        n_fake=len(fake_logits),
    )


@dataclasses.dataclass(frozen=True)
class GanSamples:
    """What :func:`sample_gan` returns."""

    samples: np.ndarray
    """(n, *data_shape)."""
    info: dict
    """How they were drawn: the sampler's settings and statistics (share of proposals kept, gamma, M, the
    Langevin log-ratio trace's ends), JSON-ready."""
    labels: np.ndarray | None = None
    """(n,) the labels the samples were drawn for (class-conditional GANs; DRS keeps each sample's own)."""


def check_sampler_options(
    *, truncation=None, drs_acceptance=None, ddls_steps: int = 0, ddls_step_size: float = 0.01
) -> None:
    """Raises ValueError for options :func:`sample_gan` cannot use (before any costly calibration)."""
    if truncation is not None:
        _positive_finite("truncation", truncation)
    if drs_acceptance is not None and (isinstance(drs_acceptance, bool) or not 0 < drs_acceptance < 1):
        raise ValueError(f"drs_acceptance must be a number in (0, 1), got {drs_acceptance!r}")
    if isinstance(ddls_steps, bool) or not isinstance(ddls_steps, (int, np.integer)) or ddls_steps < 0:
        raise ValueError(f"ddls_steps must be an int >= 0, got {ddls_steps!r}")
    if ddls_steps:
        _positive_finite("ddls_step_size", ddls_step_size)
    if ddls_steps and (drs_acceptance is not None or truncation is not None):
        raise ValueError(
            "ddls_steps is not combined with drs_acceptance or truncation: DDLS starts from N(0, I) "
            f"latents and targets N(z; 0, I) exp(l(G(z))) (got drs_acceptance={drs_acceptance}, "
            f"truncation={truncation})"
        )


def sample_gan(
    state,
    key: Array,
    n: int,
    *,
    truncation: float | None = None,
    calibration: DiscriminatorCalibration | None = None,
    drs_acceptance: float | None = None,
    ddls_steps: int = 0,
    ddls_step_size: float = 0.01,
    ddls_metropolis: bool = False,
    batch_size: int = 1000,
    progress: bool = False,
    label: int | None = None,
) -> GanSamples:
    """``n`` samples of a trained GAN (or WGAN) ``state`` with one of the samplers of this module.

    * plain: ``G(z)``, ``z ~ N(0, I)`` (the generator's average when the state keeps one);
    * ``truncation=T``: latents truncated to ``|z_i| <= T``;
    * ``drs_acceptance=A``: discriminator rejection sampling of the (truncated) proposals, gamma solved
      for a mean acceptance A (:func:`rejection_sample`); needs ``calibration``;
    * ``ddls_steps=K``: K Langevin steps of size ``ddls_step_size`` from N(0, I) latents on
      ``N(z; 0, I) exp(l(G(z)))``, ``l`` the calibrated logit (:func:`latent_langevin`); needs
      ``calibration``. Not combined with DRS or truncation (its target fixes the latent prior). With a
      calibration on batch statistics, D normalises each batch of ``batch_size`` chains by its own
      statistics, which couples those chains slightly (the gradients also flow through the batch moments).

    A class-conditional GAN (``config.num_classes > 0``) draws its labels uniformly
    (:func:`~gendl_jax.objectives.adversarial.sample_labels`), or every sample of class ``label``, and returns the
    labels (DRS scores each proposal with its own label, from a calibration with labels); DDLS is for
    unconditional GANs.
    """
    from gendl_jax.objectives import adversarial

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    check_sampler_options(
        truncation=truncation, drs_acceptance=drs_acceptance, ddls_steps=ddls_steps, ddls_step_size=ddls_step_size
    )
    if (drs_acceptance is not None or ddls_steps) and calibration is None:
        raise ValueError("DRS and DDLS need calibration= (calibrate_discriminator on held-out real data)")
    num_classes = state.config.num_classes
    if label is not None and not (num_classes and isinstance(label, (int, np.integer)) and 0 <= label < num_classes):
        raise ValueError(
            f"label must be a class in [0, num_classes={num_classes}) of a class-conditional GAN, got {label!r}"
        )
    if ddls_steps and num_classes:
        raise ValueError(
            f"DDLS is implemented for unconditional GANs; this one is class-conditional "
            f"(num_classes={state.config.num_classes}): draw plain, truncated or DRS samples"
        )
    dim = adversarial.latent_dim(state.config, state.data_shape)
    generate = jax.jit(functools.partial(adversarial.generate, state))
    info: dict = {"sampler": "plain", "truncation": truncation}
    if calibration is not None and (drs_acceptance is not None or ddls_steps):
        info["calibration"] = dataclasses.asdict(calibration)

    if ddls_steps:
        x_log_ratio = calibration.log_ratio(state)
        chains = latent_langevin_in_batches(
            key,
            truncated_latents(jax.random.fold_in(key, 0), n, dim),
            lambda z: x_log_ratio(adversarial.generate(state, z)),
            n_steps=ddls_steps,
            step_size=ddls_step_size,
            metropolis=ddls_metropolis,
            batch_size=batch_size,
            progress=progress,
        )
        if not np.all(np.isfinite(chains.z)):
            raise FloatingPointError(
                f"the Langevin chains diverged (non-finite latents); lower ddls_step_size (got {ddls_step_size})"
            )
        info.update(
            sampler="ddls",
            ddls_steps=ddls_steps,
            ddls_step_size=ddls_step_size,
            metropolis=ddls_metropolis,
            mean_log_ratio_start=float(chains.mean_log_ratio[0]),
            mean_log_ratio_end=float(chains.mean_log_ratio[-1]),
            mh_acceptance=float(np.mean(chains.acceptance)),
        )
        from gendl_jax.data import map_in_batches

        return GanSamples(map_in_batches(generate, chains.z, batch_size), info)

    def labels_of(k, m):
        return adversarial.sample_labels(state, k, m) if label is None else jnp.full((m,), label, jnp.int32)

    def propose_fn(k, m):  # (images, labels) of a class-conditional generator
        labels = labels_of(k, m)
        x = adversarial.generate(state, truncated_latents(k, m, dim, truncation), labels=labels)
        return (x, labels) if num_classes else x

    propose = jax.jit(propose_fn, static_argnums=1)
    if drs_acceptance is None:
        keys = jax.random.split(key, -(-n // batch_size))
        drawn = jax.tree_util.tree_map(
            lambda *leaves: np.concatenate(leaves)[:n], *[propose(k, batch_size) for k in keys]
        )
        return GanSamples(drawn[0], info, labels=drawn[1]) if num_classes else GanSamples(drawn, info)
    log_ratio = calibration.log_ratio(state)
    ratio = jax.jit(lambda xy: log_ratio(xy[0], labels=xy[1])) if num_classes else jax.jit(log_ratio)
    drawn = rejection_sample(
        key, propose, ratio, n, acceptance=drs_acceptance, batch_size=batch_size, progress=progress
    )
    info.update(
        sampler="drs",
        drs_acceptance=drs_acceptance,
        kept=drawn.acceptance_rate,
        gamma=drawn.gamma,
        max_logit=drawn.max_logit,
        proposals=drawn.proposals,
        burn_in=drawn.burn_in,
    )
    if num_classes:
        return GanSamples(drawn.samples[0], info, labels=drawn.samples[1])
    return GanSamples(drawn.samples, info)
