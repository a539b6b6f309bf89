"""decide(): eligibility, rules, health, capacity, ordering, preferred override, degraded mode."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.decide import RoutingDecision, decide
from server.domain.routing.health import CircuitState, HealthState, Override
from server.domain.routing.policy import RoutingPolicy, parse_policy
from server.domain.routing.success_rate import WindowStats

from .helpers import NoExploreRandom, account, context

NOW = 1_000.0
A = account("alpha", priority=1)
B = account("beta", priority=2)
P = account("prem", tier="premium", priority=3)
ACCOUNTS = [A, B, P]
GOOD = WindowStats(190, 200)
FAIR = WindowStats(160, 200)
POOR = WindowStats(100, 200)
OPEN = HealthState(state=CircuitState.OPEN, opened_at=NOW - 5)


def run(
    ctx: object = None, accounts: list[object] | None = None, policy: RoutingPolicy | None = None,
    stats: dict[str, WindowStats] | None = None, health: dict[str, HealthState] | None = None,
    capacity: dict[str, CapacityState] | None = None, **flags: bool,
) -> RoutingDecision:
    return decide(
        ctx or context(),  # type: ignore[arg-type]
        accounts or ACCOUNTS,  # type: ignore[arg-type]
        policy or RoutingPolicy(),
        None if flags.get("no_stats") else (stats if stats is not None else {}),
        None if flags.get("no_health") else (health if health is not None else {}),
        None if flags.get("no_capacity") else (capacity if capacity is not None else {}),
        rng=NoExploreRandom(), now=NOW,
    )


def note(decision: RoutingDecision, name: str) -> str:
    return next(c.note for c in decision.candidates if c.connector == name)


def test_orders_by_success_rate_and_lists_fallbacks() -> None:
    decision = run(stats={"alpha": FAIR, "beta": GOOD, "prem": POOR})
    assert decision.chosen == "beta"
    assert decision.fallbacks == ("alpha", "prem")
    assert decision.algorithm == "default"
    assert "by success rate" in decision.reason
    assert not decision.degraded
    assert [c.connector for c in decision.candidates] == ["beta", "alpha", "prem"]
    assert decision.candidates[0].score > decision.candidates[1].score


def test_amount_above_account_maximum_is_excluded_with_a_note() -> None:
    small = account("small", priority=0, max_amount_minor=10_000)
    decision = run(context(50_000), accounts=[small, A])
    assert decision.chosen == "alpha"
    assert note(decision, "small") == "amount above account maximum"
    assert not next(c for c in decision.candidates if c.connector == "small").usable


def test_unsupported_method_is_excluded_with_a_note() -> None:
    cards_only = account("cards", priority=0, methods=frozenset({"card"}))
    decision = run(context(method="upi"), accounts=[cards_only, A])
    assert note(decision, "cards") == "method upi not supported"


def test_accounts_already_tried_for_the_payment_are_skipped() -> None:
    decision = run(context(already_tried=frozenset({"alpha"})))
    assert "alpha" not in decision.attempt_order
    assert note(decision, "alpha") == "already tried for this payment"


def test_premium_rule_puts_premium_first_even_with_a_lower_success_rate() -> None:
    decision = run(context(1_500_000), stats={"alpha": GOOD, "beta": GOOD, "prem": FAIR})
    assert decision.algorithm == "rule:premium_above_10000"
    assert decision.chosen == "prem"
    assert decision.fallbacks == ("alpha", "beta")


def test_exclusive_rule_drops_unlisted_accounts() -> None:
    policy = parse_policy({"rules": [
        {"name": "only_beta", "connectors": ["beta"], "exclusive": True}]})
    decision = run(policy=policy)
    assert decision.attempt_order == ("beta",)
    assert note(decision, "alpha") == "not in rule:only_beta (exclusive)"


def test_circuit_open_account_is_excluded_with_a_note() -> None:
    decision = run(stats={"alpha": GOOD, "beta": FAIR}, health={"alpha": OPEN})
    assert decision.chosen == "beta"
    assert "alpha" not in decision.attempt_order
    assert note(decision, "alpha") == "unhealthy: circuit open"


def test_forced_down_account_is_excluded() -> None:
    decision = run(health={"alpha": HealthState(override=Override.FORCED_DOWN)})
    assert note(decision, "alpha") == "unhealthy: forced down"
    assert "alpha" not in decision.attempt_order


def test_when_every_account_is_unhealthy_the_least_bad_is_used_and_said() -> None:
    health = {
        "alpha": HealthState(state=CircuitState.OPEN, opened_at=NOW - 2),
        "beta": HealthState(state=CircuitState.OPEN, opened_at=NOW - 20),
        "prem": HealthState(override=Override.FORCED_DOWN),
    }
    decision = run(health=health)
    assert decision.chosen == "beta"
    assert decision.fallbacks == ("alpha",)
    assert "every account unhealthy" in decision.reason
    assert "least-bad beta" in decision.reason
    assert "prem" not in decision.attempt_order


def test_every_account_forced_down_means_no_route() -> None:
    down = HealthState(override=Override.FORCED_DOWN)
    decision = run(health={n.name: down for n in ACCOUNTS})
    assert decision.chosen == ""
    assert decision.attempt_order == ()
    assert "forced down" in decision.reason


def test_half_open_account_is_offered_first_as_a_probe() -> None:
    cooled = HealthState(state=CircuitState.OPEN, opened_at=NOW - 31)
    decision = run(stats={"alpha": GOOD, "beta": POOR}, health={"beta": cooled})
    assert decision.chosen == "beta"
    assert decision.probes == frozenset({"beta"})
    assert "half-open probe" in decision.reason
    assert decision.fallbacks == ("alpha", "prem")


def test_account_at_capacity_is_skipped() -> None:
    full = CapacityState(in_flight=5, limit=CapacityLimit(max_in_flight=5))
    decision = run(stats={"alpha": GOOD}, capacity={"alpha": full})
    assert decision.chosen != "alpha"
    assert note(decision, "alpha") == "at capacity (5/5 in flight)"


def test_tps_cap_reached_is_skipped() -> None:
    busy = CapacityState(this_second=100, limit=CapacityLimit(max_tps=100))
    decision = run(capacity={"alpha": busy})
    assert note(decision, "alpha") == "at capacity (100/100 per second)"


def test_everything_at_capacity_means_no_route() -> None:
    full = CapacityState(in_flight=1, limit=CapacityLimit(max_in_flight=1))
    decision = run(capacity={n.name: full for n in ACCOUNTS})
    assert decision.chosen == ""
    assert decision.reason.startswith("every eligible account is at capacity")


def test_preferred_connector_is_honoured_when_eligible_and_healthy() -> None:
    decision = run(context(preferred="prem"), stats={"alpha": GOOD, "prem": POOR})
    assert decision.chosen == "prem"
    assert decision.algorithm == "preferred_connector"
    assert "policy: default" in decision.reason
    assert decision.fallbacks == ("alpha", "beta")


def test_preferred_connector_is_ignored_when_unhealthy() -> None:
    decision = run(context(preferred="alpha"), health={"alpha": OPEN})
    assert decision.chosen != "alpha"
    assert "preferred connector alpha not used: unhealthy: circuit open" in decision.reason


def test_unknown_preferred_connector_is_explained() -> None:
    decision = run(context(preferred="nobody"))
    assert "preferred connector nobody not used: unknown connector account" in decision.reason


def test_without_stats_routing_is_static_priority_and_degraded() -> None:
    decision = run(stats=None, no_stats=True)
    assert decision.degraded
    assert decision.attempt_order == ("alpha", "beta", "prem")
    assert decision.algorithm == "default+static_priority"
    assert "degraded: stats unavailable" in decision.reason


def test_without_health_everything_counts_as_healthy_and_degraded() -> None:
    decision = run(no_health=True, no_stats=True, no_capacity=True)
    assert decision.degraded
    assert decision.chosen == "alpha"
    assert "stats, health, capacity unavailable" in decision.reason


def test_static_order_rule_ignores_scores() -> None:
    policy = parse_policy({"rules": [{"name": "fixed", "connectors": ["prem", "alpha"],
                                      "order": "static"}]})
    decision = run(policy=policy, stats={"alpha": GOOD, "prem": POOR})
    assert decision.attempt_order[:2] == ("prem", "alpha")
    assert not decision.degraded


def test_no_eligible_account_is_explained() -> None:
    decision = run(context(500_000_000))
    assert decision.chosen == ""
    assert decision.reason.startswith("no connector account can take this payment")


names = st.sampled_from(["alpha", "beta", "prem"])
health_states = st.sampled_from([
    HealthState(),
    HealthState(state=CircuitState.OPEN, opened_at=NOW - 1),
    HealthState(state=CircuitState.OPEN, opened_at=NOW - 100),
    HealthState(state=CircuitState.HALF_OPEN, opened_at=NOW - 100, probes_in_flight=1,
                probe_started_at=NOW),
    HealthState(override=Override.FORCED_DOWN),
    HealthState(override=Override.FORCED_UP, state=CircuitState.OPEN, opened_at=NOW),
])
windows = st.builds(
    lambda s, f: WindowStats(s, s + f),
    st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300),
)


@settings(max_examples=200)
@given(
    st.dictionaries(names, health_states),
    st.dictionaries(names, windows),
    st.integers(min_value=100, max_value=5_000_000),
    st.one_of(st.just(""), names),
    st.integers(min_value=0, max_value=2**32),
)
def test_decision_invariants(
    health: dict[str, HealthState], stats: dict[str, WindowStats], amount: int,
    preferred: str, seed: int,
) -> None:
    decision = decide(
        context(amount, preferred=preferred), ACCOUNTS, RoutingPolicy(), stats, health, {},
        rng=random.Random(seed), now=NOW,
    )
    order = decision.attempt_order
    assert len(set(order)) == len(order)
    assert sorted(c.connector for c in decision.candidates) == ["alpha", "beta", "prem"]
    assert [c.connector for c in decision.candidates if c.usable] == list(order)
    for name in order:
        assert health.get(name, HealthState()).override is not Override.FORCED_DOWN
    everyone_down = all(
        health.get(n, HealthState()).override is Override.FORCED_DOWN for n in
        ("alpha", "beta", "prem")
    )
    assert bool(decision.chosen) is not everyone_down
    if preferred and decision.chosen != preferred:
        assert f"preferred connector {preferred} not used" in decision.reason


def test_non_exclusive_rule_keeps_unlisted_accounts_as_last_fallbacks() -> None:
    policy = parse_policy({"rules": [{"name": "beta_first", "connectors": ["beta"]}]})
    decision = run(policy=policy, stats={"alpha": GOOD, "beta": POOR})
    assert decision.attempt_order == ("beta", "alpha", "prem")
    assert decision.algorithm == "rule:beta_first"
    assert "fallback: outside rule:beta_first" in note(decision, "alpha")
