"""Glicko-2 against Glickman's worked example and a game-by-game scalar implementation written from his
step-by-step (random tournaments, several periods); match outcomes against loops over the definition; a
planted ranking recovered; bad input."""

import math

import choix
import numpy as np
import pytest
from scipy.optimize import minimize

from gendl_jax.metrics import bradley_terry_ratings, glicko2_update, match_outcomes, skill_rating

SCALE = 173.7178


def _reference_glicko2(player, opponents, tau=0.5, eps=1e-6):
    """One player's Glicko-2 update, loops over its games; ``opponents``: [(rating, rd, score), ...]."""
    r, rd, sigma = player
    mu, phi = (r - 1500) / SCALE, rd / SCALE
    if not opponents:
        return r, SCALE * math.sqrt(phi**2 + sigma**2), sigma
    g = [1 / math.sqrt(1 + 3 * (rd_j / SCALE) ** 2 / math.pi**2) for _, rd_j, _ in opponents]
    e = [1 / (1 + math.exp(-gj * (mu - (r_j - 1500) / SCALE))) for gj, (r_j, _, _) in zip(g, opponents)]
    v = 1 / sum(gj**2 * ej * (1 - ej) for gj, ej in zip(g, e))
    delta = v * sum(gj * (s - ej) for gj, ej, (_, _, s) in zip(g, e, opponents))
    a = math.log(sigma**2)

    def f(x):
        return (
            math.exp(x) * (delta**2 - phi**2 - v - math.exp(x)) / (2 * (phi**2 + v + math.exp(x)) ** 2)
            - (x - a) / tau**2
        )

    big_a = a
    if delta**2 > phi**2 + v:
        big_b = math.log(delta**2 - phi**2 - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        big_b = a - k * tau
    fa, fb = f(big_a), f(big_b)
    while abs(big_b - big_a) > eps:
        c = big_a + (big_a - big_b) * fa / (fb - fa)
        fc = f(c)
        if fc * fb <= 0:
            big_a, fa = big_b, fb
        else:
            fa /= 2
        big_b, fb = c, fc
    new_sigma = math.exp(big_a / 2)
    phi_star = math.sqrt(phi**2 + new_sigma**2)
    new_phi = 1 / math.sqrt(1 / phi_star**2 + 1 / v)
    new_mu = mu + new_phi**2 * sum(gj * (s - ej) for gj, ej, (_, _, s) in zip(g, e, opponents))
    return SCALE * new_mu + 1500, SCALE * new_phi, new_sigma


def test_glickman_worked_example():
    # Glickman, "Example of the Glicko-2 system": 1500 / 200 / 0.06 beats 1400 / 30, loses to 1550 / 100 and
    # 1700 / 300 (tau 0.5) -> r' = 1464.06, RD' = 151.52, sigma' = 0.05999 (rounded as published).
    games, scores = np.zeros((4, 4)), np.zeros((4, 4))
    for j, s in zip((1, 2, 3), (1.0, 0.0, 0.0)):
        games[0, j] = games[j, 0] = 1
        scores[0, j], scores[j, 0] = s, 1 - s
    out = glicko2_update([1500, 1400, 1550, 1700], [200, 30, 100, 300], [0.06] * 4, games, scores, tau=0.5)
    assert out["rating"][0] == pytest.approx(1464.06, abs=0.015)
    assert out["deviation"][0] == pytest.approx(151.52, abs=0.005)
    assert out["volatility"][0] == pytest.approx(0.05999, abs=1e-5)  # published truncated


@pytest.mark.parametrize("tau", [0.3, 0.5, 1.2])
def test_update_matches_game_by_game_reference(tau):
    rng = np.random.default_rng()
    p = 7
    rating = rng.normal(1500, 200, p)
    deviation = rng.uniform(30, 350, p)
    volatility = rng.uniform(0.03, 0.1, p)
    games, scores = np.zeros((p, p)), np.zeros((p, p))
    game_list = {i: [] for i in range(p)}
    for _ in range(25):
        i, j = rng.choice(p - 1, 2, replace=False)  # player p-1 sits the period out
        s = rng.choice([0.0, 0.5, 1.0])
        games[i, j] += 1
        games[j, i] += 1
        scores[i, j] += s
        scores[j, i] += 1 - s
        game_list[i].append((rating[j], deviation[j], s))
        game_list[j].append((rating[i], deviation[i], 1 - s))
    out = glicko2_update(rating, deviation, volatility, games, scores, tau=tau)
    for i in range(p):
        want = _reference_glicko2((rating[i], deviation[i], volatility[i]), game_list[i], tau=tau)
        got = (out["rating"][i], out["deviation"][i], out["volatility"][i])
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=f"player {i}")
    assert out["rating"][p - 1] == rating[p - 1] and out["deviation"][p - 1] > deviation[p - 1]


def test_big_surprise_takes_the_log_branch():
    # A heavy favourite (deviation small) loses 40 games to a far weaker player: Delta^2 > phi^2 + v.
    games = np.array([[0.0, 40.0], [40.0, 0.0]])
    scores = np.array([[0.0, 0.0], [40.0, 0.0]])
    out = glicko2_update([2200, 1300], [40, 300], [0.06, 0.06], games, scores, tau=1.0)
    for i, j in ((0, 1), (1, 0)):
        opp = [(1300 if i == 0 else 2200, 300 if i == 0 else 40, float(scores[i, j] > 0))] * 40
        want = _reference_glicko2(((2200, 1300)[i], (40, 300)[i], 0.06), opp, tau=1.0)
        np.testing.assert_allclose((out["rating"][i], out["deviation"][i], out["volatility"][i]), want, rtol=1e-9)
    assert out["volatility"][0] > 0.06


def _random_games(rng, p, max_games=12):
    games = np.triu(rng.integers(0, max_games, size=(p, p)), 1).astype(float)
    games = games + games.T
    wins = np.triu(rng.binomial(games.astype(int), rng.uniform(0.1, 0.9, size=(p, p))), 1).astype(float)
    draws = np.triu(np.minimum(rng.integers(0, 3, size=(p, p)), games - wins), 1)
    scores = wins + draws / 2
    return games, scores + np.triu(games - wins - draws + draws / 2, 1).T


def test_bradley_terry_is_the_map_of_its_posterior():
    rng = np.random.default_rng()
    p = 6
    games, scores = _random_games(rng, p)
    scores[0, 1:] = games[0, 1:]  # player 0 unbeaten: the prior keeps it finite
    scores[1:, 0] = 0.0
    q = np.log(10) / 400

    def neg_log_posterior(r):
        diff = q * (r[:, None] - r[None, :])
        return -np.sum(scores * -np.logaddexp(0, -diff)) + np.sum((r - 1500) ** 2) / (2 * 350.0**2)

    # scipy's BFGS on a unit scale (u = (r - 1500) / 400)
    ref = minimize(lambda u: neg_log_posterior(1500 + 400 * u), np.zeros(p), method="BFGS", options={"gtol": 1e-12})
    out = bradley_terry_ratings(games, scores)
    np.testing.assert_allclose(out["rating"], 1500 + 400 * ref.x, atol=1e-4)
    # The posterior deviation: inverse Hessian of the negative log posterior by finite differences.
    h, eye = 1e-2, np.eye(p)
    hess = np.array(
        [
            [
                (
                    neg_log_posterior(out["rating"] + h * (eye[i] + eye[j]))
                    - neg_log_posterior(out["rating"] + h * (eye[i] - eye[j]))
                    - neg_log_posterior(out["rating"] - h * (eye[i] - eye[j]))
                    + neg_log_posterior(out["rating"] - h * (eye[i] + eye[j]))
                )
                / (4 * h * h)
                for j in range(p)
            ]
            for i in range(p)
        ]
    )
    np.testing.assert_allclose(out["deviation"], np.sqrt(np.diag(np.linalg.inv(hess))), rtol=1e-4)
    assert out["rating"][0] == max(out["rating"]) and np.isfinite(out["rating"][0])


def test_bradley_terry_equals_choix():
    """choix (an independent Bradley-Terry library) on win/loss data; its penalty alpha ||beta||^2 on natural
    log-odds beta = (r - 1500) ln 10 / 400 is our N(1500, 350^2) prior with alpha = 1 / (2 (350 ln 10 / 400)^2)."""
    rng = np.random.default_rng()
    p = 6
    strength = rng.normal(0, 1, p)
    games, scores, data = np.zeros((p, p)), np.zeros((p, p)), []
    for _ in range(200):
        i, j = rng.choice(p, 2, replace=False)
        win, lose = (i, j) if rng.random() < 1 / (1 + np.exp(strength[j] - strength[i])) else (j, i)
        data.append((win, lose))
        games[i, j] += 1
        games[j, i] += 1
        scores[win, lose] += 1
    q = np.log(10) / 400
    beta = choix.opt_pairwise(p, data, alpha=1 / (2 * (q * 350) ** 2), tol=1e-12)
    np.testing.assert_allclose(bradley_terry_ratings(games, scores)["rating"], 1500 + beta / q, atol=1e-5)


def test_bradley_terry_recovers_simulated_ratings():
    rng = np.random.default_rng()
    true = np.array([1200.0, 1400.0, 1500.0, 1650.0, 1900.0])
    p = len(true)
    games = np.full((p, p), 4000.0) - np.diag(np.full(p, 4000.0))
    p_win = 1 / (1 + 10 ** ((true[None, :] - true[:, None]) / 400))
    wins = np.triu(rng.binomial(4000, p_win), 1).astype(float)
    scores = wins + np.triu(4000 - wins, 1).T
    out = bradley_terry_ratings(games, scores, prior_deviation=1e4)  # a nearly flat prior: the MLE
    centred = out["rating"] - out["rating"].mean()
    # A rating gap's standard error here is about 400 / ln 10 / sqrt(4000 p (1 - p)) / sqrt(2) < 5 points.
    np.testing.assert_allclose(centred, true - true.mean(), atol=20)


def test_match_outcomes_follow_the_rules():
    rng = np.random.default_rng()
    fake = rng.normal(size=(3, 4, 20))
    fake[0, 0, :3] = 0.0  # logit 0: called fake, D wins
    real = rng.normal(size=(3, 20))
    real[1, 5] = fake[1, 2, 5]  # a pairwise tie
    thr = match_outcomes(fake, real, rule="threshold")
    pair = match_outcomes(fake, real, rule="pairwise")
    assert thr.shape == (3, 5, 20) and pair.shape == (3, 4, 20)
    for i in range(3):
        for k in range(20):
            assert thr[i, 4, k] == (1.0 if real[i, k] > 0 else 0.0)
            for j in range(4):
                assert thr[i, j, k] == (1.0 if fake[i, j, k] <= 0 else 0.0)
                d = real[i, k] - fake[i, j, k]
                assert pair[i, j, k] == (1.0 if d > 0 else 0.0 if d < 0 else 0.5)
    assert pair[1, 2, 5] == 0.5
    assert match_outcomes(fake).shape == (3, 4, 20)


@pytest.mark.parametrize("rule", ["threshold", "pairwise"])
def test_skill_rating_equals_period_by_period_reference(rule):
    rng = np.random.default_rng()
    n_d, n_g, m, per_period = 3, 4, 29, 3  # 10 periods, the last of 2 matches
    fake = rng.normal(rng.normal(size=(1, n_g, 1)), 1.0, size=(n_d, n_g, m))
    real = rng.normal(0.5, 1.0, size=(n_d, m))
    out = skill_rating(fake, real, rule=rule, method="glicko2", tau=0.5, matches_per_period=per_period)
    assert out["n_periods"] == 10
    outcomes = match_outcomes(fake, real, rule=rule)
    n_gp = outcomes.shape[1]
    players = [(1500.0, 350.0, 0.06)] * (n_d + n_gp)
    for chunk in np.split(np.arange(m), np.arange(per_period, m, per_period)):
        games = {q: [] for q in range(n_d + n_gp)}
        for i in range(n_d):
            for j in range(n_gp):
                for k in chunk:
                    s = outcomes[i, j, k]
                    games[i].append((players[n_d + j][0], players[n_d + j][1], s))
                    games[n_d + j].append((players[i][0], players[i][1], 1 - s))
        players = [_reference_glicko2(players[q], games[q]) for q in range(n_d + n_gp)]
    np.testing.assert_allclose(out["discriminator_rating"], [x[0] for x in players[:n_d]], rtol=1e-9)
    np.testing.assert_allclose(out["generator_rating"], [x[0] for x in players[n_d:]], rtol=1e-9)
    np.testing.assert_allclose(out["generator_deviation"], [x[1] for x in players[n_d:]], rtol=1e-9)
    np.testing.assert_allclose(out["win_matrix"], outcomes.mean(axis=2))
    np.testing.assert_allclose(out["generator_win_rate"], 1 - outcomes.mean(axis=(0, 2)))
    assert out["generator_names"][-1] == ("data" if rule == "threshold" else "G3")


def test_planted_generator_quality_is_recovered():
    rng = np.random.default_rng()
    quality = np.array([-3.0, -1.5, -0.5, 0.5])  # mean logit of the discriminators on each generator's samples
    fake = rng.normal(quality[None, :, None], 1.0, size=(5, 4, 400))
    real = rng.normal(1.0, 1.0, size=(5, 400))
    for rule in ("threshold", "pairwise"):
        for method in ("glicko2", "bradley-terry"):
            out = skill_rating(fake, real, rule=rule, method=method)
            assert np.all(np.diff(out["generator_rating"][:4]) > 0), (rule, method)
        assert np.all(np.diff(out["generator_win_rate"][:4]) > 0), rule


def test_bradley_terry_tournament_uses_all_matches_at_once():
    rng = np.random.default_rng()
    fake = rng.normal(size=(3, 2, 50))
    real = rng.normal(size=(3, 50))
    out = skill_rating(fake, real, rule="pairwise", method="bradley-terry")
    outcomes = match_outcomes(fake, real, rule="pairwise")
    games, scores = np.zeros((5, 5)), np.zeros((5, 5))
    games[:3, 3:], games[3:, :3] = 50, 50
    scores[:3, 3:] = outcomes.sum(axis=2)
    scores[3:, :3] = 50 - outcomes.sum(axis=2).T
    want = bradley_terry_ratings(games, scores)
    np.testing.assert_allclose(out["discriminator_rating"] + out["generator_rating"], want["rating"], rtol=1e-12)
    shuffled = skill_rating(fake[:, :, ::-1], real[:, ::-1], rule="pairwise", method="bradley-terry")
    np.testing.assert_allclose(shuffled["generator_rating"], out["generator_rating"], rtol=1e-12)


def test_data_player_punishes_a_discriminator_that_calls_everything_fake():
    rng = np.random.default_rng()
    fake = rng.normal(-0.5, 1.0, size=(2, 3, 200))
    real = rng.normal(1.0, 1.0, size=(2, 200))
    fake[1], real[1] = -10.0, -10.0  # D1 calls everything fake
    alone = skill_rating(fake, method="glicko2", matches_per_period=1)
    with_data = skill_rating(fake, real, method="glicko2", matches_per_period=1)
    assert alone["discriminator_rating"][1] > alone["discriminator_rating"][0]
    assert with_data["discriminator_win_rate"][1] == pytest.approx(0.75)
    assert with_data["win_matrix"][1][3] == 0.0


def test_bad_input():
    p2 = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"deviation must have shape \(2,\)"):
        glicko2_update([1500, 1500], [350], [0.06, 0.06], p2, p2 / 2)
    with pytest.raises(ValueError, match="games must be symmetric"):
        glicko2_update([1500, 1500], [350, 350], [0.06, 0.06], np.array([[0.0, 1.0], [0.0, 0.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"scores \+ scores.T must equal games"):
        glicko2_update([1500, 1500], [350, 350], [0.06, 0.06], p2, p2)
    with pytest.raises(ValueError, match="tau must be a number > 0"):
        glicko2_update([1500, 1500], [350, 350], [0.06, 0.06], p2, p2 / 2, tau=0)
    with pytest.raises(ValueError, match="deviation and volatility must be > 0"):
        glicko2_update([1500, 1500], [0, 350], [0.06, 0.06], p2, p2 / 2)
    fake = np.zeros((2, 3, 10))
    with pytest.raises(ValueError, match=r"fake_logits must be a non-empty \(n_discriminators, n_generators, m\)"):
        match_outcomes(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="fake_logits contains NaN"):
        match_outcomes(np.full((2, 3, 10), np.nan))
    with pytest.raises(ValueError, match="rule='pairwise' needs real_logits with m=10"):
        match_outcomes(fake, rule="pairwise")
    with pytest.raises(ValueError, match="real_logits must have one row per discriminator"):
        match_outcomes(fake, np.zeros((3, 10)))
    with pytest.raises(ValueError, match="rule must be 'threshold' or 'pairwise'"):
        match_outcomes(fake, rule="elo")
    rng = np.random.default_rng(1)  # the overshoot the docstring describes: 250 games per player and period
    lopsided = rng.normal(np.array([-3.0, -1.5, -0.5, 0.5])[None, :, None], 1.0, size=(5, 4, 400))
    with pytest.raises(FloatingPointError, match="Glicko-2 diverged"):
        skill_rating(
            lopsided,
            rng.normal(1.0, 1.0, size=(5, 400)),
            rule="pairwise",
            method="glicko2",
            tau=0.5,
            matches_per_period=50,
        )
    with pytest.raises(ValueError, match="matches_per_period=11 is more than the m=10 matches"):
        skill_rating(fake, method="glicko2", matches_per_period=11)
    assert skill_rating(np.zeros((2, 3, 4)))["matches_per_pair"] == 4  # Bradley-Terry has no periods to fill
    with pytest.raises(ValueError, match="method must be 'glicko2' or 'bradley-terry'"):
        skill_rating(fake, method="elo")
    with pytest.raises(ValueError, match=r"games must be a \(P, P\) matrix"):
        bradley_terry_ratings(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="prior_deviation must be a number > 0"):
        bradley_terry_ratings(p2, p2 / 2, prior_deviation=0)
    with pytest.raises(ValueError, match="generator_names must name 3 players"):
        skill_rating(fake, generator_names=["a"])
