"""Replay simulated payments against shifting PSPs and compare routing strategies.

    scripts/simulate-routing [--payments 20000] [--seed 1] [--algorithm ucb|mean|thompson]

Three simulated connector accounts (two standard, one premium) whose success rates, error
rates and latencies change over time, including a soft degradation (more declines, no errors)
and a hard outage (errors and timeouts) of the static favourite. Each payment is routed by:

- static:        static priority + the premium rule, failover on errors (the seed's behaviour)
- success_rate:  `decide()` with success-rate windows, circuit breakers and probes, fed by an
                 in-memory store that implements the Redis store's semantics
- oracle:        the same rules, ordered by the true current success probability

Every strategy sees the same customers and the same luck (common random numbers per payment
and account), retries by the error taxonomy and `decide_retry`, and resolves timeouts by a
status sync before any failover. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.domain.money import Money
from server.domain.routing.context import RoutingContext
from server.domain.routing.decide import RoutingDecision, decide
from server.domain.routing.health import Outcome
from server.domain.routing.memory_store import InMemoryRoutingStore
from server.domain.routing.policy import RoutingPolicy
from server.domain.routing.retry import ErrorCategory, RetryAction, decide_retry
from server.domain.routing.success_rate import ScoreAlgorithm, ScoringConfig
from server.domain.routing.taxonomy import default_taxonomy

__all__ = ["SimAccount", "SimulationResult", "main", "run_simulation"]

STRATEGIES = ("static", "success_rate", "oracle")
METHODS = (("upi", 0.7), ("card", 0.3))
DECLINE_CODES = ("insufficient_funds", "declined", "Z9", "ZA", "U30")
TIMEOUT_SECONDS = 10.0
SHARE_WINDOW = 100  # payments; traffic share is measured over the next SHARE_WINDOW payments
DETECTION_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class _Capabilities:
    def supports(self, method: str, amount: Money) -> str | None:
        return None if method in ("upi", "card") else f"method {method} not supported"


@dataclass(frozen=True, slots=True)
class SimAccount:
    name: str
    psp: str
    tier: str
    priority: int
    capabilities: _Capabilities = field(default_factory=_Capabilities)


@dataclass(frozen=True, slots=True)
class Conditions:
    """The truth about one account at one moment."""

    success: float  # P(success | the PSP processed it)
    error: float  # P(technical failure or timeout)
    timeout_share: float  # share of technical failures that are timeouts (unknown outcome)
    latency_ms: float


ACCOUNTS = (
    SimAccount("razorpay_sim", "simulator", "standard", 1),
    SimAccount("cashfree_sim", "simulator", "standard", 2),
    SimAccount("payu_premium", "simulator", "premium", 3),
)
OUTAGE_ACCOUNT = "razorpay_sim"


@dataclass(frozen=True, slots=True)
class Scenario:
    payments: int
    rate_per_second: float = 10.0
    degradation: tuple[float, float] = (0.20, 0.30)  # fractions of the run
    outage: tuple[float, float] = (0.50, 0.60)
    improvement_at: float = 0.70

    def window(self, span: tuple[float, float]) -> tuple[int, int]:
        return int(span[0] * self.payments), int(span[1] * self.payments)

    def conditions(self, account: str, method: str, index: int) -> Conditions:
        degraded = _inside(index, self.window(self.degradation))
        down = _inside(index, self.window(self.outage))
        improved = index >= int(self.improvement_at * self.payments)
        if account == "razorpay_sim":
            success = {"upi": 0.90, "card": 0.85}[method] - (0.20 if degraded else 0.0)
            if down:
                return Conditions(success, 0.97, 0.5, 9_000.0)
            return Conditions(success, 0.01, 0.3, 900.0)
        if account == "cashfree_sim":
            success = {"upi": 0.84, "card": 0.88}[method] + (0.08 if improved else 0.0)
            return Conditions(success, 0.01, 0.3, 700.0 if improved else 1_100.0)
        success = {"upi": 0.86, "card": 0.87}[method]
        return Conditions(success, 0.02, 0.3, 1_500.0)


def _inside(index: int, span: tuple[int, int]) -> bool:
    return span[0] <= index < span[1]


@dataclass
class StrategyStats:
    successes: int = 0
    first_attempt_successes: int = 0
    attempts: int = 0
    syncs: int = 0
    latency_ms_total: float = 0.0
    expected_regret: float = 0.0  # sum of (best true probability - chosen's) on first attempts
    first_choice: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    scenario: Scenario
    seed: int
    stats: dict[str, StrategyStats]

    def share(self, strategy: str, account: str, start: int, length: int) -> float:
        window = self.stats[strategy].first_choice[start:start + length]
        return window.count(account) / len(window) if window else 0.0

    def detection(self, strategy: str) -> int | None:
        """Payments after the outage began until the account's share fell below 10 %."""
        start, end = self.scenario.window(self.scenario.outage)
        for index in range(start, end):
            if self.share(strategy, OUTAGE_ACCOUNT, index, SHARE_WINDOW) < DETECTION_SHARE:
                return index - start
        return None

    def recovery(self, strategy: str) -> tuple[int | None, float]:
        """Payments after the outage ended until the share was back to half its old level."""
        start, end = self.scenario.window(self.scenario.outage)
        before = self.share(strategy, OUTAGE_ACCOUNT, max(start - 1_000, 0), min(1_000, start))
        target = max(before / 2, DETECTION_SHARE)
        for index in range(end, self.scenario.payments - SHARE_WINDOW):
            if self.share(strategy, OUTAGE_ACCOUNT, index, SHARE_WINDOW) >= target:
                return index - end, target
        return None, target

    def outage_hits(self, strategy: str) -> int:
        """First attempts sent to the failing account while it was down."""
        start, end = self.scenario.window(self.scenario.outage)
        return self.stats[strategy].first_choice[start:end].count(OUTAGE_ACCOUNT)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"payments": self.scenario.payments, "seed": self.seed}
        oracle = self.stats["oracle"].successes
        for name, stats in self.stats.items():
            n = self.scenario.payments
            recovery, _ = self.recovery(name)
            out[name] = {
                "success_rate": stats.successes / n,
                "first_attempt_success_rate": stats.first_attempt_successes / n,
                "attempts_per_payment": stats.attempts / n,
                "status_syncs": stats.syncs,
                "mean_latency_ms": stats.latency_ms_total / n,
                "regret_payments": oracle - stats.successes,
                "expected_first_attempt_regret": stats.expected_regret,
                "outage_detection_payments": self.detection(name),
                "outage_first_attempts_to_failing_account": self.outage_hits(name),
                "outage_recovery_payments": recovery,
            }
        return out


@dataclass(frozen=True, slots=True)
class _Payment:
    index: int
    ctx: RoutingContext
    now: float


def _payment(seed: int, index: int, rate: float) -> _Payment:
    draw = random.Random(f"{seed}:payment:{index}")
    method = "upi" if draw.random() < METHODS[0][1] else "card"
    rupees = math.exp(draw.uniform(math.log(50), math.log(50_000)))
    ctx = RoutingContext(
        payment_id=f"pay_sim_{seed}_{index:07d}",
        amount=Money(int(rupees * 100)),
        method=method,
    )
    return _Payment(index, ctx, index / rate)


@dataclass(frozen=True, slots=True)
class _Attempt:
    success: bool
    outcome: Outcome
    error_class: str
    code: str
    latency_ms: float
    charged_despite_timeout: bool = False


def _attempt(seed: int, scenario: Scenario, payment: _Payment, account: str) -> _Attempt:
    """What happens when `account` is called for this payment (the same for every strategy)."""
    truth = scenario.conditions(account, payment.ctx.method, payment.index)
    draw = random.Random(f"{seed}:attempt:{payment.index}:{account}")
    latency = truth.latency_ms * math.exp(draw.gauss(0.0, 0.3))
    if draw.random() < truth.error:
        if draw.random() < truth.timeout_share:
            # The request was sent and no answer came; sometimes the PSP did charge.
            charged = draw.random() < 0.2 and draw.random() < truth.success
            return _Attempt(False, Outcome.TIMEOUT, "UnknownOutcome", "timeout",
                            TIMEOUT_SECONDS * 1000, charged)
        return _Attempt(False, Outcome.FAILURE, "TransientError", "unavailable", latency)
    if draw.random() < truth.success:
        return _Attempt(True, Outcome.SUCCESS, "", "", latency)
    code = DECLINE_CODES[int(draw.random() * len(DECLINE_CODES))]
    return _Attempt(False, Outcome.DECLINED, "Declined", code, latency)


def _true_probability(scenario: Scenario, account: str, method: str, index: int) -> float:
    truth = scenario.conditions(account, method, index)
    return (1 - truth.error) * truth.success


def _oracle_decision(
    policy: RoutingPolicy, scenario: Scenario, payment: _Payment, tried: frozenset[str],
) -> list[str]:
    eligible = [a for a in ACCOUNTS if a.name not in tried]
    selection = policy.select(payment.ctx, eligible)
    listed = {n for g in selection.groups for n in g}
    groups = [list(g) for g in selection.groups]
    groups.append([a.name for a in eligible if a.name not in listed])
    order: list[str] = []
    for group in groups:
        order += sorted(group, key=lambda n: -_true_probability(
            scenario, n, payment.ctx.method, payment.index))
    return order


def run_simulation(
    payments: int = 20_000, seed: int = 1, *, algorithm: ScoreAlgorithm = ScoreAlgorithm.UCB,
    exploration_share: float = 0.05, rate_per_second: float = 10.0,
) -> SimulationResult:
    """Run every strategy over the same payments; see the module docstring."""
    scenario = Scenario(payments, rate_per_second)
    scoring = ScoringConfig(algorithm=algorithm, exploration_share=exploration_share)
    policy = RoutingPolicy(scoring=scoring)
    taxonomy = default_taxonomy()
    results: dict[str, StrategyStats] = {}
    for strategy in STRATEGIES:
        store = InMemoryRoutingStore(scoring, policy.health)
        router_rng = random.Random(f"{seed}:router:{strategy}")
        stats = StrategyStats()
        for index in range(payments):
            payment = _payment(seed, index, rate_per_second)
            _route_payment(strategy, payment, scenario, policy, store, router_rng, taxonomy,
                           seed, stats)
        results[strategy] = stats
    return SimulationResult(scenario, seed, results)


def _route_payment(
    strategy: str, payment: _Payment, scenario: Scenario, policy: RoutingPolicy,
    store: InMemoryRoutingStore, rng: random.Random, taxonomy: Any, seed: int,
    stats: StrategyStats,
) -> None:
    tried: set[str] = set()
    attempts = 0
    now = payment.now
    method = payment.ctx.method
    names = [a.name for a in ACCOUNTS]
    while attempts < policy.retry.max_attempts:
        ctx = RoutingContext(payment.ctx.payment_id, payment.ctx.amount, method,
                             attempt=attempts + 1, already_tried=frozenset(tried))
        if strategy == "oracle":
            order = _oracle_decision(policy, scenario, payment, frozenset(tried))
        else:
            decision: RoutingDecision = decide(
                ctx, ACCOUNTS, policy,
                store.read_windows(names, method, now) if strategy == "success_rate" else None,
                store.read_health(names) if strategy == "success_rate" else None,
                {} if strategy == "success_rate" else None,
                rng=rng, now=now,
            )
            order = list(decision.attempt_order)
        account = ""
        probe = False
        for candidate in order:
            if strategy != "success_rate":
                account = candidate
                break
            admission = store.admit(candidate, now)
            if admission.admitted:
                account, probe = candidate, admission.probe
                break
        if not account:
            break
        if attempts == 0:
            stats.first_choice.append(account)
            # Regret against the oracle's choice, which obeys the same rules (premium first).
            best = _oracle_decision(policy, scenario, payment, frozenset())[0]
            stats.expected_regret += _true_probability(
                scenario, best, method, payment.index) - _true_probability(
                scenario, account, method, payment.index)
        attempts += 1
        tried.add(account)
        result = _attempt(seed, scenario, payment, account)
        stats.attempts += 1
        stats.latency_ms_total += result.latency_ms
        success = result.success
        if result.outcome is Outcome.TIMEOUT:
            stats.syncs += 1  # status sync before anything else: never a second charge
            success = result.charged_despite_timeout
        if strategy == "success_rate":
            # A probe's outcome speaks to availability, not to the account's success rate.
            if not probe:
                store.record_outcome(account, method, success, now)
            store.record_health(account, result.outcome, now)
        if success:
            stats.successes += 1
            stats.first_attempt_successes += attempts == 1
            return
        category = taxonomy.classify("simulator", result.code,
                                     error_class=result.error_class).category
        if category is ErrorCategory.UNKNOWN_OUTCOME:
            # The sync said "failed, nothing charged": now it is an ordinary connector failure.
            assert decide_retry(category, attempts).action is RetryAction.SYNC_FIRST
            category = ErrorCategory.RETRY_OTHER
        others = any(n not in tried for n in names)
        verdict = decide_retry(category, attempts, policy=policy.retry,
                               other_connectors_available=others)
        if verdict.action is not RetryAction.RETRY_OTHER_CONNECTOR:
            return
    if attempts == 0:
        stats.first_choice.append("")


def format_report(result: SimulationResult) -> str:
    """The human-readable summary printed by the script."""
    s = result.scenario
    deg, out = s.window(s.degradation), s.window(s.outage)
    lines = [
        f"Routing simulation: {s.payments:,} payments at {s.rate_per_second:g}/s, "
        f"seed {result.seed}",
        f"  accounts: {', '.join(f'{a.name} ({a.tier}, priority {a.priority})' for a in ACCOUNTS)}",
        f"  {OUTAGE_ACCOUNT}: success -20 pp (declines, no errors) for payments "
        f"{deg[0]:,}-{deg[1]:,}; outage (97 % errors/timeouts) for payments {out[0]:,}-{out[1]:,}",
        f"  cashfree_sim improves (+8 pp, faster) from payment "
        f"{int(s.improvement_at * s.payments):,}",
        "",
        f"{'strategy':<14}{'success':>9}{'1st try':>9}{'attempts':>10}{'syncs':>7}"
        f"{'latency':>10}{'regret':>9}{'exp.regret':>12}{'detect':>8}{'hits':>6}{'recover':>9}",
    ]
    oracle = result.stats["oracle"].successes
    for name in STRATEGIES:
        st = result.stats[name]
        n = s.payments
        detect = result.detection(name)
        recover, _ = result.recovery(name)
        lines.append(
            f"{name:<14}{st.successes / n:>9.2%}{st.first_attempt_successes / n:>9.2%}"
            f"{st.attempts / n:>10.3f}{st.syncs:>7}{st.latency_ms_total / n:>8.0f}ms"
            f"{oracle - st.successes:>9}{st.expected_regret:>12.1f}"
            f"{'never' if detect is None else detect:>8}{result.outage_hits(name):>6}"
            f"{'never' if recover is None else recover:>9}"
        )
    _, target = result.recovery("success_rate")
    lines += [
        "",
        "success = paid after retries; regret = payments the oracle collected and this strategy",
        "did not; exp.regret = sum over first attempts of (true success probability of the",
        "oracle's choice - that of the strategy's choice).",
        f"detect = payments after the outage began until {OUTAGE_ACCOUNT}'s share of first",
        f"attempts (next {SHARE_WINDOW} payments) fell below {DETECTION_SHARE:.0%}; hits = first",
        "attempts sent to it during the outage (probes included); recover = payments after it",
        f"ended until its share was back to half its pre-outage share ({target:.0%} for",
        "success_rate).",
        "",
        f"{OUTAGE_ACCOUNT} share of first attempts by phase:",
    ]
    phases = [
        ("before", 0, deg[0]), ("degraded", deg[0], deg[1]), ("between", deg[1], out[0]),
        ("outage", out[0], out[1]), ("after", out[1], s.payments),
    ]
    header = "".join(f"{label:>10}" for label, _, _ in phases)
    lines.append(f"{'':<14}{header}")
    for name in STRATEGIES:
        cells = "".join(
            f"{result.share(name, OUTAGE_ACCOUNT, a, b - a):>10.1%}" for _, a, b in phases
        )
        lines.append(f"{name:<14}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulate-routing", description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--algorithm", choices=[a.value for a in ScoreAlgorithm],
                        default=ScoreAlgorithm.UCB.value)
    parser.add_argument("--exploration", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=10.0, help="payments per second")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.payments < 1_000:
        parser.error("--payments must be at least 1000")
    result = run_simulation(
        args.payments, args.seed, algorithm=ScoreAlgorithm(args.algorithm),
        exploration_share=args.exploration, rate_per_second=args.rate,
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
