"""Success-rate scoring of connector accounts from sliding windows of outcomes.

Why a Beta prior instead of an empty-or-100% window: Juspay's decision-engine seeds a new
window with all "1"s, so a connector that was just added (or whose key expired) scores 100 % and
takes the traffic until enough failures push it down -- it is trusted blindly; the opposite
choice (start at 0 %) starves it forever. Here every window is read through a Beta(alpha, beta)
prior: the posterior mean (alpha + successes) / (alpha + beta + attempts) starts at the prior mean
(0.7 by default, worth 10 observations) and moves toward the observed rate as evidence arrives.
Below `min_samples` attempts the window is not trusted at all and the account scores the prior
mean, so two lucky or unlucky payments cannot move traffic.

New and recovering accounts still get data: an `exploration_share` (default 5 %, as in
decision-engine's "hedging") of decisions ignore the scores and try the least-sampled healthy
candidate first (directed, so a cold or long-avoided account is refreshed quickly), and the UCB
(default) and Thompson-sampling algorithms favour warm windows in proportion to their
uncertainty. Scores never leave a rule's group: exploration does not override tier preference.
The random source is injected, so every decision is reproducible in tests and the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from server.domain.routing._fields import as_mapping, check_keys, opt_float, opt_int, opt_str
from server.domain.routing.context import RoutingContext

__all__ = [
    "RandomSource",
    "ScoreAlgorithm",
    "ScoredAccount",
    "ScoringConfig",
    "WindowStats",
    "parse_scoring",
    "posterior_mean",
    "score_accounts",
    "window_dimension",
]


class RandomSource(Protocol):
    """What routing needs from a random generator; `random.Random` satisfies it."""

    def random(self) -> float: ...

    def betavariate(self, alpha: float, beta: float) -> float: ...


class ScoreAlgorithm(StrEnum):
    MEAN = "mean"  # posterior mean: deterministic apart from the exploration share
    THOMPSON = "thompson"  # one draw from Beta(alpha + s, beta + f) per account and decision
    UCB = "ucb"  # posterior mean + ucb_c * sqrt(ln(N) / n)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Outcomes in one sliding window: last `window_size` attempts, none older than max age."""

    successes: int
    attempts: int

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.successes < 0 or self.successes > self.attempts:
            raise ValueError(f"invalid window: {self.successes}/{self.attempts}")

    @property
    def failures(self) -> int:
        return self.attempts - self.successes

    @property
    def observed_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None


EMPTY_WINDOW = WindowStats(0, 0)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    # UCB had the lowest regret in scripts/simulate-routing (seeds 1-5); MEAN and THOMPSON
    # remain one setting away.
    algorithm: ScoreAlgorithm = ScoreAlgorithm.UCB
    prior_alpha: float = 7.0
    prior_beta: float = 3.0
    exploration_share: float = 0.05
    min_samples: int = 20
    # The stores keep at most `window_size` outcomes, none older than `window_max_age_seconds`,
    # so a connector that recovered is not judged forever on the outage's failures.
    window_size: int = 200
    window_max_age_seconds: int = 300
    ucb_c: float = 0.5

    @property
    def prior_mean(self) -> float:
        return self.prior_alpha / (self.prior_alpha + self.prior_beta)


@dataclass(frozen=True, slots=True)
class ScoredAccount:
    name: str
    score: float
    note: str


def posterior_mean(stats: WindowStats, config: ScoringConfig) -> float:
    """Posterior mean of the success probability; the prior mean until `min_samples`."""
    if stats.attempts < config.min_samples:
        return config.prior_mean
    return (config.prior_alpha + stats.successes) / (
        config.prior_alpha + config.prior_beta + stats.attempts
    )


def window_dimension(ctx: RoutingContext, *, detailed: bool = False) -> str:
    """The window key's dimension for this payment: the method, optionally refined.

    Coarse by default: finer windows (card network, UPI flow) fill more slowly, so they are
    opt-in for merchants with enough volume.
    """
    if not detailed:
        return ctx.method
    if ctx.method == "card" and ctx.card_network:
        return f"card:{ctx.card_network.upper()}"
    if ctx.method == "upi":
        return f"upi:{(ctx.upi_flow or 'intent').lower()}"
    if ctx.method == "netbanking" and ctx.bank_code:
        return f"netbanking:{ctx.bank_code.upper()}"
    return ctx.method


def score_accounts(
    names: list[str], stats: Mapping[str, WindowStats], config: ScoringConfig, rng: RandomSource,
) -> tuple[dict[str, ScoredAccount], bool]:
    """Score each account; returns (scores by name, explored).

    `explored` is True when this decision fell in the exploration share: the scores then rank
    the least-sampled account first (ties broken at random) instead of the best.
    """
    explored = len(names) > 1 and rng.random() < config.exploration_share
    total_attempts = sum(stats.get(name, EMPTY_WINDOW).attempts for name in names)
    scored: dict[str, ScoredAccount] = {}
    for name in names:
        window = stats.get(name, EMPTY_WINDOW)
        mean = posterior_mean(window, config)
        warm = window.attempts >= config.min_samples
        basis = (
            f"sr {window.successes}/{window.attempts}"
            if warm
            else f"cold {window.attempts}/{config.min_samples} samples, prior {mean:.2f}"
        )
        if explored:
            # Directed exploration: the least-sampled account first (a random tie-break), so
            # a cold or long-avoided account is refreshed instead of waiting for luck.
            fewest = 1.0 / (1.0 + window.attempts)
            scored[name] = ScoredAccount(name, fewest + rng.random() * 1e-6,
                                         f"exploring ({basis})")
            continue
        if config.algorithm is ScoreAlgorithm.THOMPSON:
            alpha = config.prior_alpha + (window.successes if warm else 0)
            beta = config.prior_beta + (window.failures if warm else 0)
            score = rng.betavariate(alpha, beta)
        elif config.algorithm is ScoreAlgorithm.UCB:
            # Optimism only for windows we trust: a cold account would otherwise get the
            # largest bonus and all the traffic, decision-engine's "new window = 100 %" again.
            bonus = (
                config.ucb_c * math.sqrt(math.log(max(total_attempts, 2)) / window.attempts)
                if warm and window.attempts else 0.0
            )
            score = mean + bonus
        else:
            score = mean
        scored[name] = ScoredAccount(name, score, basis)
    return scored, explored


def parse_scoring(data: Any, path: str = "scoring") -> ScoringConfig:
    """Build a ScoringConfig from a plain dict; raises ValidationError naming the field."""
    if data is None:
        return ScoringConfig()
    section = as_mapping(data, path)
    check_keys(section, set(ScoringConfig.__dataclass_fields__), path)
    base = ScoringConfig()
    algorithm = opt_str(section, "algorithm", path, base.algorithm.value,
                        choices=[a.value for a in ScoreAlgorithm])
    return ScoringConfig(
        algorithm=ScoreAlgorithm(algorithm),
        prior_alpha=opt_float(section, "prior_alpha", path, base.prior_alpha,
                              minimum=0.0, exclusive_minimum=True),
        prior_beta=opt_float(section, "prior_beta", path, base.prior_beta,
                             minimum=0.0, exclusive_minimum=True),
        exploration_share=opt_float(section, "exploration_share", path,
                                    base.exploration_share, minimum=0.0, maximum=0.5),
        min_samples=opt_int(section, "min_samples", path, base.min_samples, minimum=0)
        or 0,
        window_size=opt_int(section, "window_size", path, base.window_size,
                            minimum=10, maximum=10_000) or base.window_size,
        window_max_age_seconds=opt_int(section, "window_max_age_seconds", path,
                                       base.window_max_age_seconds, minimum=10)
        or base.window_max_age_seconds,
        ucb_c=opt_float(section, "ucb_c", path, base.ucb_c, minimum=0.0),
    )
