"""Success-rate scoring: the Beta prior, exploration, and reaction to a drop."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.routing.decide import decide
from server.domain.routing.memory_store import InMemoryRoutingStore
from server.domain.routing.policy import RoutingPolicy
from server.domain.routing.success_rate import (
    ScoreAlgorithm,
    ScoringConfig,
    WindowStats,
    posterior_mean,
    score_accounts,
    window_dimension,
)

from .helpers import NoExploreRandom, account, context

CONFIG = ScoringConfig()


def test_cold_window_scores_the_prior_mean_not_100_percent() -> None:
    # decision-engine seeds new windows with all 1s; a cold window here is the prior mean.
    assert posterior_mean(WindowStats(0, 0), CONFIG) == pytest.approx(0.7)
    assert posterior_mean(WindowStats(5, 5), CONFIG) == pytest.approx(0.7)


def test_warm_window_moves_toward_the_observed_rate() -> None:
    mean = posterior_mean(WindowStats(190, 200), CONFIG)
    assert mean == pytest.approx((7 + 190) / (10 + 200))
    assert 0.9 < mean < 0.95


def test_new_connector_is_not_trusted_blindly() -> None:
    stats = {"old": WindowStats(180, 200), "new": WindowStats(3, 3)}
    scores, _ = score_accounts(["old", "new"], stats, CONFIG, NoExploreRandom())
    assert scores["old"].score > scores["new"].score
    assert "cold 3/20" in scores["new"].note


def test_new_connector_is_not_starved() -> None:
    accounts = [account("old", priority=1), account("new", priority=2)]
    stats = {"old": WindowStats(180, 200), "new": WindowStats(0, 0)}
    rng = random.Random(11)
    chosen = Counter(
        decide(context(), accounts, RoutingPolicy(), stats, {}, {}, rng=rng, now=0.0).chosen
        for _ in range(2_000)
    )
    # exploration (5 %) picks uniformly, so about 2.5 % of decisions try the new account
    assert 20 <= chosen["new"] <= 100


def test_exploration_keeps_every_healthy_connector_sampled() -> None:
    accounts = [account(f"acc{i}", priority=i) for i in range(4)]
    stats = {
        "acc0": WindowStats(198, 200), "acc1": WindowStats(150, 200),
        "acc2": WindowStats(120, 200), "acc3": WindowStats(100, 200),
    }
    rng = random.Random(5)
    chosen = Counter(
        decide(context(), accounts, RoutingPolicy(), stats, {}, {}, rng=rng, now=0.0).chosen
        for _ in range(4_000)
    )
    assert set(chosen) == {"acc0", "acc1", "acc2", "acc3"}
    assert chosen["acc0"] > 3_600


def test_zero_exploration_always_takes_the_best() -> None:
    policy = RoutingPolicy(scoring=ScoringConfig(exploration_share=0.0))
    accounts = [account("a", priority=2), account("b", priority=1)]
    stats = {"a": WindowStats(190, 200), "b": WindowStats(150, 200)}
    rng = random.Random(1)
    assert {
        decide(context(), accounts, policy, stats, {}, {}, rng=rng, now=0.0).chosen
        for _ in range(200)
    } == {"a"}


def test_a_connector_whose_success_rate_drops_loses_traffic_within_the_window() -> None:
    config = ScoringConfig(window_size=200, exploration_share=0.05)
    policy = RoutingPolicy(scoring=config)
    store = InMemoryRoutingStore(config)
    accounts = [account("a", priority=1), account("b", priority=2)]
    env = random.Random(3)
    rng = random.Random(4)
    true_rate = {"a": 0.95, "b": 0.85}
    shares: list[str] = []
    for i in range(3_000):
        if i == 1_000:
            true_rate["a"] = 0.40
        now = float(i)
        stats = store.read_windows(["a", "b"], "upi", now)
        chosen = decide(context(), accounts, policy, stats, {}, {}, rng=rng, now=now).chosen
        shares.append(chosen)
        store.record_outcome(chosen, "upi", env.random() < true_rate[chosen], now)
    before = shares[500:1_000].count("a") / 500
    # a full window of 200 outcomes on "a" turns over within ~250 decisions at its share
    after = shares[1_300:1_800].count("a") / 500
    assert before > 0.9
    assert after < 0.1


def test_thompson_sampling_is_reproducible_with_the_injected_rng() -> None:
    config = ScoringConfig(algorithm=ScoreAlgorithm.THOMPSON)
    stats = {"a": WindowStats(150, 200), "b": WindowStats(140, 200)}
    first, _ = score_accounts(["a", "b"], stats, config, random.Random(9))
    second, _ = score_accounts(["a", "b"], stats, config, random.Random(9))
    assert first == second


def test_thompson_prefers_the_better_connector_most_of_the_time() -> None:
    config = ScoringConfig(algorithm=ScoreAlgorithm.THOMPSON, exploration_share=0.0)
    stats = {"a": WindowStats(190, 200), "b": WindowStats(150, 200)}
    rng = random.Random(2)
    wins = 0
    for _ in range(500):
        scores, _ = score_accounts(["a", "b"], stats, config, rng)
        wins += scores["a"].score > scores["b"].score
    assert wins > 490


def test_ucb_gives_an_uncertain_connector_a_bonus() -> None:
    config = ScoringConfig(algorithm=ScoreAlgorithm.UCB, exploration_share=0.0, min_samples=5)
    stats = {"a": WindowStats(170, 200), "b": WindowStats(5, 6)}
    scores, _ = score_accounts(["a", "b"], stats, config, NoExploreRandom())
    mean_b = posterior_mean(stats["b"], config)
    assert scores["b"].score > mean_b
    assert scores["b"].score - mean_b > scores["a"].score - posterior_mean(stats["a"], config)


def test_window_stats_reject_impossible_counts() -> None:
    with pytest.raises(ValueError, match="invalid window"):
        WindowStats(5, 4)


def test_window_dimension_is_the_method_unless_detailed() -> None:
    ctx = context(method="card", card_network="rupay")
    assert window_dimension(ctx) == "card"
    assert window_dimension(ctx, detailed=True) == "card:RUPAY"
    assert window_dimension(context(method="upi"), detailed=True) == "upi:intent"


@given(
    st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=500),
    st.floats(min_value=0.1, max_value=50), st.floats(min_value=0.1, max_value=50),
)
def test_posterior_mean_is_a_probability_and_monotone_in_successes(
    successes: int, failures: int, alpha: float, beta: float,
) -> None:
    config = ScoringConfig(prior_alpha=alpha, prior_beta=beta, min_samples=0)
    mean = posterior_mean(WindowStats(successes, successes + failures), config)
    assert 0.0 <= mean <= 1.0
    if failures:
        better = posterior_mean(WindowStats(successes + 1, successes + failures), config)
        assert better >= mean


class AlwaysExplore(random.Random):
    def random(self) -> float:
        return 0.0


def test_exploration_tries_the_least_sampled_account_first() -> None:
    stats = {"best": WindowStats(195, 200), "stale": WindowStats(8, 10), "mid": WindowStats(
        150, 200)}
    scores, explored = score_accounts(["best", "stale", "mid"], stats, CONFIG, AlwaysExplore())
    assert explored
    ranked = sorted(scores, key=lambda n: -scores[n].score)
    assert ranked[0] == "stale"
    assert scores["stale"].note.startswith("exploring")


def test_ucb_gives_no_bonus_to_a_cold_window() -> None:
    config = ScoringConfig(algorithm=ScoreAlgorithm.UCB, exploration_share=0.0)
    stats = {"warm": WindowStats(160, 200), "cold": WindowStats(0, 0)}
    scores, _ = score_accounts(["warm", "cold"], stats, config, NoExploreRandom())
    assert scores["cold"].score == pytest.approx(config.prior_mean)
    assert scores["warm"].score > scores["cold"].score
