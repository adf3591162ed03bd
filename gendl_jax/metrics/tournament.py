"""Tournaments between generators and discriminators, summarised by win rates and skill ratings
(Olsson et al. 2018, "Skill rating for generative models"; the "tournament" row of Borji 2018's table).

Every discriminator plays every generator. A *match* is one generated sample shown to one discriminator:

* ``rule="threshold"``: the discriminator wins when it calls the sample fake (logit <= 0, i.e. D(x) <= 1/2,
  the convention of :func:`gendl_jax.metrics.generative_adversarial_metric`), the generator wins otherwise.
  A discriminator that calls everything fake would win every match, so with ``real_logits`` the data itself
  joins as one more generator player ("data"), whose samples are real images: a discriminator beats it only by
  calling a real image real (logit > 0). This extra player is our addition, not the paper's.
* ``rule="pairwise"``: match k pairs the k-th generated sample with the k-th real image; the discriminator wins
  when it scores the real image higher, loses when it scores the fake higher, and a tie is a draw. No threshold,
  so a discriminator's calibration does not matter, only its ranking (the match is one draw of its AUC).

The tournament win rate of a generator is the share of its matches it won against all discriminators. Skill
ratings are on the Elo scale (a 400-point gap is 10:1 odds), in one of two ways:

* ``method="bradley-terry"`` (default): :func:`bradley_terry_ratings` fits P(i beats j) to all matches at once,
  with Glicko's starting point N(1500, 350^2) as a prior; free of the order of the games.
* ``method="glicko2"``, as Olsson et al. rate their tournaments: Glicko-2 (Glickman 2001; the step-by-step of
  Glickman's "Example of the Glicko-2 system"); all players start at rating 1500, deviation 350, volatility
  0.06, and the matches are played in rating periods of ``matches_per_period`` matches per pair, each a
  simultaneous update of every player from the period's games. Its volatility can run away (see
  :func:`skill_rating`).

Ratings are relative to the players of one tournament: two tournaments' numbers are not comparable.

:func:`glicko2_update` is one rating period for P players at once, from (P, P) counts of games and scores,
jitted in float64 (the volatility's Illinois iteration runs for all players in one ``lax.while_loop``).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import positive_int, x64

GLICKO2_SCALE = 173.7178
"""Glicko-2's conversion between the rating scale and its internal scale, mu = (r - 1500) / 173.7178 (400 / ln 10,
rounded as Glickman publishes it)."""
INITIAL_RATING, INITIAL_DEVIATION, INITIAL_VOLATILITY = 1500.0, 350.0, 0.06
"""A new player's rating, rating deviation (RD) and volatility, as Glickman recommends."""


def _g(phi):
    return 1.0 / jnp.sqrt(1.0 + 3.0 * phi**2 / jnp.pi**2)


def _glicko2_period(rating, deviation, volatility, games, scores, tau, tolerance, max_iter: int):
    mu = (rating - INITIAL_RATING) / GLICKO2_SCALE
    phi = deviation / GLICKO2_SCALE
    g = _g(phi)  # of the opponents: (P,)
    expected = 1.0 / (1.0 + jnp.exp(-g[None, :] * (mu[:, None] - mu[None, :])))  # (P, P): E of player i vs j
    played = jnp.sum(games, axis=1) > 0
    info = jnp.sum(games * g[None, :] ** 2 * expected * (1.0 - expected), axis=1)
    v = 1.0 / jnp.where(played, info, 1.0)
    surplus = jnp.sum(g[None, :] * (scores - games * expected), axis=1)  # sum over games of g (s - E)
    delta = v * surplus

    # Step 5: the new volatility solves f(x) = 0, x = ln sigma'^2, by the Illinois (regula falsi) method.
    a = jnp.log(volatility**2)

    def f(x):
        ex = jnp.exp(x)
        return ex * (delta**2 - phi**2 - v - ex) / (2.0 * (phi**2 + v + ex) ** 2) - (x - a) / tau**2

    big_delta = delta**2 > phi**2 + v
    lower = jnp.where(big_delta, jnp.log(jnp.where(big_delta, delta**2 - phi**2 - v, 1.0)), a - tau)

    def keep_lowering(carry):
        b, it = carry
        return jnp.any(~big_delta & (f(b) < 0)) & (it < max_iter)

    def lower_more(carry):
        b, it = carry
        return jnp.where(~big_delta & (f(b) < 0), b - tau, b), it + 1

    b, _ = lax.while_loop(keep_lowering, lower_more, (lower, 0))

    def unconverged(carry):
        lo, hi, _, _, it = carry
        return jnp.any(jnp.abs(hi - lo) > tolerance) & (it < max_iter)

    def illinois(carry):
        lo, hi, f_lo, f_hi, it = carry
        active = jnp.abs(hi - lo) > tolerance
        c = lo + (lo - hi) * f_lo / (f_hi - f_lo)
        f_c = f(c)
        swap = f_c * f_hi <= 0
        new_lo = jnp.where(swap, hi, lo)
        new_f_lo = jnp.where(swap, f_hi, f_lo / 2.0)
        return (
            jnp.where(active, new_lo, lo),
            jnp.where(active, c, hi),
            jnp.where(active, new_f_lo, f_lo),
            jnp.where(active, f_c, f_hi),
            it + 1,
        )

    lo, _, _, _, iterations = lax.while_loop(unconverged, illinois, (a, b, f(a), f(b), 0))
    new_volatility = jnp.where(played, jnp.exp(lo / 2.0), volatility)

    phi_star = jnp.sqrt(phi**2 + new_volatility**2)
    new_phi = jnp.where(played, 1.0 / jnp.sqrt(1.0 / phi_star**2 + 1.0 / v), phi_star)
    new_mu = jnp.where(played, mu + new_phi**2 * surplus, mu)
    return (GLICKO2_SCALE * new_mu + INITIAL_RATING, GLICKO2_SCALE * new_phi, new_volatility, iterations)


_glicko2_update = jax.jit(_glicko2_period, static_argnames=("max_iter",))


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _tournament_ratings(sizes, d_scores, tau, tolerance, max_iter: int):
    """Glicko-2 over the periods of a tournament: ``sizes`` (T,) matches per pair in each period, ``d_scores``
    (T, n_D, n_G) the discriminators' scores in them. Returns (rating, deviation, volatility) of the n_D + n_G
    players, discriminators first."""
    _, n_d, n_g = d_scores.shape
    p = n_d + n_g
    bipartite = jnp.zeros((p, p)).at[:n_d, n_d:].set(1.0).at[n_d:, :n_d].set(1.0)

    def period(carry, inputs):
        size, d = inputs
        scores = jnp.zeros((p, p)).at[:n_d, n_d:].set(d).at[n_d:, :n_d].set(size - d.T)
        r, rd, sigma, _ = _glicko2_period(*carry, size * bipartite, scores, tau, tolerance, max_iter)
        return (r, rd, sigma), None

    start = (jnp.full(p, INITIAL_RATING), jnp.full(p, INITIAL_DEVIATION), jnp.full(p, INITIAL_VOLATILITY))
    final, _ = lax.scan(period, start, (sizes, d_scores))
    return final


def _vector(x, name: str, p: int | None = None) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 1 or arr.size == 0 or (p is not None and arr.shape != (p,)):
        want = f"({p},)" if p is not None else "(P,)"
        raise ValueError(f"{name} must have shape {want}, one value per player, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _games_and_scores(games, scores, p: int) -> tuple[np.ndarray, np.ndarray]:
    games, scores = np.asarray(games, np.float64), np.asarray(scores, np.float64)
    for name, m in (("games", games), ("scores", scores)):
        if m.shape != (p, p):
            raise ValueError(f"{name} must have shape ({p}, {p}) for {p} players, got {m.shape}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ValueError(f"{name} must be finite and >= 0")
    if not np.array_equal(games, games.T) or np.any(np.diag(games) != 0):
        raise ValueError("games must be symmetric with a zero diagonal (games[i, j]: games between i and j)")
    if not np.allclose(scores + scores.T, games, rtol=0, atol=1e-9):
        raise ValueError("scores + scores.T must equal games: each game's scores add to 1 (win 1, draw 1/2, loss 0)")
    return games, scores


def _positive_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


@x64
def glicko2_update(
    rating, deviation, volatility, games, scores, *, tau: float = 0.5, tolerance: float = 1e-6, max_iter: int = 100
) -> dict[str, np.ndarray]:
    """One Glicko-2 rating period for P players at once (Glickman 2001).

    Args:
      rating, deviation, volatility: (P,) each player's rating r, rating deviation RD and volatility sigma
        before the period.
      games: (P, P) ``games[i, j]``: how many games i played against j in the period (symmetric, zero diagonal).
      scores: (P, P) ``scores[i, j]``: i's total score in those games (1 a win, 1/2 a draw, 0 a loss), so
        ``scores + scores.T == games``.
      tau: the system constant that bounds how fast volatility moves (Glickman suggests 0.3 to 1.2).
      tolerance: convergence of the volatility iteration (on ln sigma^2); ``max_iter`` bounds it.

    Returns ``{"rating", "deviation", "volatility"}``: (P,) each, after the period. A player without games keeps
    rating and volatility and its deviation grows to sqrt(RD^2 + (173.7178 sigma)^2). ``"iterations"``: the
    Illinois iterations run (for all players together).
    """
    rating = _vector(rating, "rating")
    p = rating.shape[0]
    deviation, volatility = _vector(deviation, "deviation", p), _vector(volatility, "volatility", p)
    if np.any(deviation <= 0) or np.any(volatility <= 0):
        raise ValueError("deviation and volatility must be > 0 for every player")
    games, scores = _games_and_scores(games, scores, p)
    tau, tolerance = _positive_number(tau, "tau"), _positive_number(tolerance, "tolerance")
    max_iter = positive_int(max_iter, "max_iter")
    r, rd, sigma, iterations = _glicko2_update(
        jnp.asarray(rating),
        jnp.asarray(deviation),
        jnp.asarray(volatility),
        jnp.asarray(games),
        jnp.asarray(scores),
        tau,
        tolerance,
        max_iter,
    )
    return {
        "rating": np.asarray(r),
        "deviation": np.asarray(rd),
        "volatility": np.asarray(sigma),
        "iterations": int(iterations),
    }


ELO_SCALE = 400.0 / np.log(10.0)
"""Rating points per unit of log-odds: a 400-point gap is 10:1 odds, as in Elo and Glicko."""


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _bradley_terry(games, scores, prior_deviation, max_iter: int):
    q = 1.0 / ELO_SCALE
    precision = 1.0 / prior_deviation**2

    def newton(carry):
        theta, _, it = carry
        p_win = jax.nn.sigmoid(q * (theta[:, None] - theta[None, :]))  # (P, P): P(i beats j)
        grad = q * jnp.sum(scores - games * p_win, axis=1) - precision * (theta - INITIAL_RATING)
        w = q**2 * games * p_win * (1.0 - p_win)
        hess = w - jnp.diag(jnp.sum(w, axis=1)) - precision * jnp.eye(theta.shape[0])  # negative definite
        step = jnp.linalg.solve(hess, grad)
        return theta - step, jnp.max(jnp.abs(step)), it + 1

    def not_done(carry):
        _, size, it = carry
        return (size > 1e-9) & (it < max_iter)

    theta, size, it = lax.while_loop(not_done, newton, (jnp.full(games.shape[0], INITIAL_RATING), jnp.inf, 0))
    p_win = jax.nn.sigmoid(q * (theta[:, None] - theta[None, :]))
    w = q**2 * games * p_win * (1.0 - p_win)
    hess = w - jnp.diag(jnp.sum(w, axis=1)) - precision * jnp.eye(theta.shape[0])
    deviation = jnp.sqrt(jnp.diag(jnp.linalg.inv(-hess)))
    return theta, deviation, size, it


@x64
def bradley_terry_ratings(
    games, scores, *, prior_deviation: float = INITIAL_DEVIATION, max_iter: int = 100
) -> dict[str, np.ndarray]:
    """Bradley-Terry ratings on the Elo scale, fitted to all games at once (maximum a posteriori).

    P(i beats j) = 1 / (1 + 10^((r_j - r_i) / 400)); a draw counts as half a win. Each rating has a Gaussian
    prior N(1500, ``prior_deviation``^2) (Glicko's starting point), which keeps an unbeaten or winless player
    finite. Unlike Glicko-2's period-by-period updates, the result does not depend on the order of the games.
    Fitted by Newton's method (the log posterior is strictly concave), jitted in float64.

    Args:
      games, scores: (P, P) as for :func:`glicko2_update`, over the whole tournament.

    Returns ``{"rating": (P,), "deviation": (P,) posterior standard deviations from the inverse Hessian,
    "iterations"}``.
    """
    games_arr = np.asarray(games)
    if games_arr.ndim != 2 or games_arr.shape[0] != games_arr.shape[1] or games_arr.shape[0] == 0:
        raise ValueError(f"games must be a (P, P) matrix, got shape {games_arr.shape}")
    games, scores = _games_and_scores(games, scores, games_arr.shape[0])
    prior_deviation = _positive_number(prior_deviation, "prior_deviation")
    max_iter = positive_int(max_iter, "max_iter")
    theta, deviation, size, it = _bradley_terry(jnp.asarray(games), jnp.asarray(scores), prior_deviation, max_iter)
    if not float(size) <= 1e-6:
        raise FloatingPointError(
            f"Bradley-Terry fit did not converge in {max_iter} Newton steps (last step {float(size):.3g} rating points)"
        )
    return {"rating": np.asarray(theta), "deviation": np.asarray(deviation), "iterations": int(it)}


def _logits(x, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != ndim or 0 in arr.shape:
        shape = "(n_discriminators, n_generators, m)" if ndim == 3 else "(n_discriminators, m)"
        raise ValueError(f"{name} must be a non-empty {shape} array of discriminator logits, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def match_outcomes(fake_logits, real_logits=None, *, rule: str = "threshold") -> np.ndarray:
    """The discriminators' score in each match: (n_D, n_G', m) of 1 (D won), 1/2 (draw) or 0 (G won).

    Args:
      fake_logits: (n_D, n_G, m) ``fake_logits[i, j, k]``: discriminator i's logit on generator j's k-th sample.
      real_logits: (n_D, m_real) each discriminator's logits on real images: for ``rule="threshold"``, the
        matches against the "data" player, appended as generator ``n_G`` (so n_G' = n_G + 1); for
        ``rule="pairwise"``, required, ``m_real == m``, the real image of each match.
      rule: ``"threshold"`` or ``"pairwise"`` (see the module docstring).
    """
    fake = _logits(fake_logits, "fake_logits", 3)
    real = None if real_logits is None else _logits(real_logits, "real_logits", 2)
    if real is not None and real.shape[0] != fake.shape[0]:
        raise ValueError(
            f"real_logits must have one row per discriminator: {fake.shape[0]} rows expected, got {real.shape[0]}"
        )
    if rule == "threshold":
        outcomes = (fake <= 0).astype(np.float64)
        if real is None:
            return outcomes
        if real.shape[1] != fake.shape[2]:
            raise ValueError(
                f"real_logits must hold m={fake.shape[2]} real images per discriminator (one match "
                f"each, like every generator), got {real.shape[1]}"
            )
        return np.concatenate([outcomes, (real > 0).astype(np.float64)[:, None, :]], axis=1)
    if rule == "pairwise":
        if real is None or real.shape[1] != fake.shape[2]:
            got = "none" if real is None else real.shape[1]
            raise ValueError(
                f"rule='pairwise' needs real_logits with m={fake.shape[2]} real images per "
                f"discriminator, one per match, got {got}"
            )
        diff = real[:, None, :] - fake
        return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    raise ValueError(f"rule must be 'threshold' or 'pairwise', got {rule!r}")


def skill_rating(
    fake_logits,
    real_logits=None,
    *,
    rule: str = "threshold",
    method: str = "bradley-terry",
    matches_per_period: int = 10,
    tau: float = 0.2,
    generator_names=None,
    discriminator_names=None,
) -> dict:
    """Tournament of n_D discriminators against n_G generators: win rates and skill ratings.

    Args:
      fake_logits: (n_D, n_G, m) discriminator i's logits on m samples of generator j (for a library GAN state,
        ``adversarial.discriminate(state_i, samples_j)``).
      real_logits: (n_D, m) logits on real images (see :func:`match_outcomes`; required for ``"pairwise"``).
      rule: how a match is decided, ``"threshold"`` or ``"pairwise"``.
      method: ``"bradley-terry"`` (:func:`bradley_terry_ratings` of all matches at once: order-free, and it
        cannot diverge) or ``"glicko2"`` (Olsson et al.'s choice: rating periods in order).
      matches_per_period (Glicko-2 only): matches of every pair in one rating period; the m matches are played in order, so
        there are ceil(m / matches_per_period) periods (the last may be shorter). Keep it small: Glicko-2's
        update is one Newton-like step per period, made for about 10-15 games per player (Glickman), and with
        hundreds of games per period it overshoots (5 discriminators x 4 generators, 50 matches per pair per
        period: the ratings left the scale, past 1e18, by the fourth period).
      tau (Glicko-2 only): the system constant. Glicko-2's volatility can also run away when the results do not
        fit one rating per player (a player that beats strong opponents and loses to weak ones): on a DCGAN's 16
        snapshots (``experiments/gan_tournament.py``) Glickman's tau 0.5 diverged with 1 match per period, and
        the defaults here (tau 0.2, below Glickman's suggested 0.3-1.2, and 10 matches per period) did not. A diverged run raises ``FloatingPointError``; ``"bradley-terry"`` is the robust summary.
      generator_names, discriminator_names: labels for the output (default ``"G0"``, ... and ``"D0"``, ...).

    Returns a dict of lists, generators first (with ``rule="threshold"`` and ``real_logits``, the "data" player is
    the last generator): ``"generator_rating"``, ``"generator_deviation"``, ``"generator_win_rate"`` (share of
    its matches won, draws counted 1/2), and the same for discriminators; ``"win_matrix"``: (n_D, n_G') the
    share of matches discriminator i won against generator j; names, rule, periods and matches per pair. The
    rating periods run in one jitted ``lax.scan`` in float64.
    """
    outcomes = match_outcomes(fake_logits, real_logits, rule=rule)
    n_d, n_g, m = outcomes.shape
    if method not in ("glicko2", "bradley-terry"):
        raise ValueError(f"method must be 'glicko2' or 'bradley-terry', got {method!r}")
    if method == "glicko2":
        matches_per_period = positive_int(matches_per_period, "matches_per_period")
        if matches_per_period > m:
            raise ValueError(f"matches_per_period={matches_per_period} is more than the m={m} matches of each pair")
        tau = _positive_number(tau, "tau")
    with_data = rule == "threshold" and real_logits is not None
    g_names = _names(generator_names, n_g - with_data, "G", "generator_names") + (["data"] if with_data else [])
    d_names = _names(discriminator_names, n_d, "D", "discriminator_names")
    if method == "bradley-terry":
        p = n_d + n_g
        games = np.zeros((p, p))
        games[:n_d, n_d:], games[n_d:, :n_d] = m, m
        scores = np.zeros((p, p))
        d_total = outcomes.sum(axis=2)
        scores[:n_d, n_d:], scores[n_d:, :n_d] = d_total, m - d_total.T
        fitted = bradley_terry_ratings(games, scores)
        rating, deviation, n_periods = fitted["rating"], fitted["deviation"], None
    else:
        starts = np.arange(0, m, matches_per_period)
        sizes = np.diff(np.append(starts, m)).astype(np.float64)
        d_scores = np.add.reduceat(outcomes, starts, axis=2).transpose(2, 0, 1)  # (T, n_D, n_G)
        with jax.enable_x64(True):
            rating, deviation, _ = (
                np.asarray(a) for a in _tournament_ratings(jnp.asarray(sizes), jnp.asarray(d_scores), tau, 1e-6, 100)
            )
        n_periods = len(sizes)
        if not (np.all(np.isfinite(rating)) and np.all(np.abs(rating - INITIAL_RATING) < 1e5)):
            raise FloatingPointError(
                f"Glicko-2 diverged (ratings up to {np.max(np.abs(rating)):.3g}) with tau={tau} "
                f"and {matches_per_period} matches per pair and period: lower tau, or use "
                "method='bradley-terry'"
            )
    win = outcomes.mean(axis=2)
    return {
        "generator_names": g_names,
        "generator_rating": rating[n_d:].tolist(),
        "generator_deviation": deviation[n_d:].tolist(),
        "generator_win_rate": (1.0 - win.mean(axis=0)).tolist(),
        "discriminator_names": d_names,
        "discriminator_rating": rating[:n_d].tolist(),
        "discriminator_deviation": deviation[:n_d].tolist(),
        "discriminator_win_rate": win.mean(axis=1).tolist(),
        "win_matrix": win.tolist(),
        "rule": rule,
        "method": method,
        "n_periods": n_periods,
        "matches_per_period": matches_per_period if method == "glicko2" else None,
        "matches_per_pair": m,
    }


def _names(names, n: int, prefix: str, arg: str) -> list[str]:
    if names is None:
        return [f"{prefix}{i}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"{arg} must name {n} players, got {len(names)}")
    return names
