"""Routing policy: rules, the built-in premium rule, splits and dict parsing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.routing.policy import (
    DEFAULT_PREMIUM_THRESHOLD_MINOR,
    Order,
    RoutingPolicy,
    parse_policy,
    split_bucket,
)
from server.errors import ValidationError

from .helpers import account, context

ACCOUNTS = [
    account("std_a", priority=1),
    account("std_b", priority=2),
    account("prem", tier="premium", priority=3),
]


def test_amount_strictly_above_10000_rupees_prefers_premium_accounts() -> None:
    selection = RoutingPolicy().select(context(1_000_001), ACCOUNTS)
    assert selection.algorithm == "rule:premium_above_10000"
    assert selection.groups == (("prem",), ("std_a", "std_b"))


def test_amount_of_exactly_10000_rupees_uses_the_default() -> None:
    selection = RoutingPolicy().select(context(DEFAULT_PREMIUM_THRESHOLD_MINOR), ACCOUNTS)
    assert selection.algorithm == "default"
    assert selection.groups == (("std_a", "std_b", "prem"),)


def test_premium_threshold_is_configurable_and_can_be_switched_off() -> None:
    lower = parse_policy({"premium_threshold_minor": 500_000})
    assert lower.select(context(500_001), ACCOUNTS).algorithm == "rule:premium_above_5000"
    off = parse_policy({"premium_threshold_minor": None})
    assert off.select(context(9_000_000), ACCOUNTS).algorithm == "default"


def test_premium_rule_without_premium_accounts_keeps_the_others() -> None:
    selection = RoutingPolicy().select(context(2_000_000), ACCOUNTS[:2])
    assert selection.groups == (("std_a", "std_b"),)
    assert selection.note == "no eligible premium account"


def test_first_matching_user_rule_wins_over_the_premium_rule() -> None:
    policy = parse_policy({"rules": [
        {"name": "cards", "when": {"method": "card"}, "connectors": ["std_b"]},
        {"name": "big", "when": {"amount": {"gt": 100}}, "connectors": ["std_a"]},
    ]})
    assert policy.select(context(2_000_000, method="card"), ACCOUNTS).algorithm == "rule:cards"
    assert policy.select(context(2_000_000, method="upi"), ACCOUNTS).algorithm == "rule:big"


@pytest.mark.parametrize(
    ("when", "ctx_kwargs", "matches"),
    [
        ({"amount": {"gte": 100, "lt": 200}}, {"amount_minor": 100}, True),
        ({"amount": {"gte": 100, "lt": 200}}, {"amount_minor": 200}, False),
        ({"amount": {"lte": 100}}, {"amount_minor": 100}, True),
        ({"method": ["upi", "wallet"]}, {"method": "wallet"}, True),
        ({"method": "upi"}, {"method": "card"}, False),
        ({"currency": "inr"}, {}, True),
        ({"currency": "USD"}, {}, False),
        ({"card_network": "rupay"}, {"method": "card", "card_network": "RUPAY"}, True),
        ({"card_network": "VISA"}, {"method": "card", "card_network": "RUPAY"}, False),
        ({"upi_flow": "intent"}, {"upi_flow": ""}, True),
        ({"upi_flow": "collect"}, {"upi_flow": "intent"}, False),
        ({"metadata": {"segment": "gold"}}, {"metadata": {"segment": "gold", "x": "y"}}, True),
        ({"metadata": {"segment": "gold"}}, {"metadata": {"segment": "silver"}}, False),
        ({"metadata": {"segment": "gold"}}, {}, False),
    ],
)
def test_rule_conditions(when: dict[str, Any], ctx_kwargs: dict[str, Any], matches: bool) -> None:
    policy = parse_policy({"premium_threshold_minor": None, "rules": [
        {"name": "r", "when": when, "connectors": ["std_b"]},
    ]})
    kwargs = {"amount_minor": 150, **ctx_kwargs}
    amount = kwargs.pop("amount_minor")
    selection = policy.select(context(amount, **kwargs), ACCOUNTS)
    assert (selection.algorithm == "rule:r") is matches


def test_split_is_deterministic_per_payment_id() -> None:
    policy = parse_policy({"rules": [{"name": "s", "split": [
        {"connector": "std_a", "weight": 70}, {"connector": "std_b", "weight": 30}]}]})
    first = policy.select(context(payment_id="pay_fixed"), ACCOUNTS)
    for _ in range(5):
        assert policy.select(context(payment_id="pay_fixed"), ACCOUNTS) == first


def test_split_distribution_is_within_tolerance() -> None:
    policy = parse_policy({"rules": [{"name": "s", "split": [
        {"connector": "std_a", "weight": 70}, {"connector": "std_b", "weight": 20},
        {"connector": "prem", "weight": 10}]}]})
    counts = Counter(
        policy.select(context(payment_id=f"pay_{i:06d}"), ACCOUNTS).groups[0][0]
        for i in range(10_000)
    )
    assert abs(counts["std_a"] / 10_000 - 0.70) < 0.02
    assert abs(counts["std_b"] / 10_000 - 0.20) < 0.02
    assert abs(counts["prem"] / 10_000 - 0.10) < 0.02


def test_split_keeps_the_other_members_as_fallbacks_by_weight() -> None:
    policy = parse_policy({"rules": [{"name": "s", "split": [
        {"connector": "std_a", "weight": 1}, {"connector": "std_b", "weight": 5},
        {"connector": "prem", "weight": 3}]}]})
    selection = policy.select(context(), ACCOUNTS)
    chosen = selection.groups[0][0]
    rest = [n for n in ("std_b", "prem", "std_a") if n != chosen]
    assert selection.groups[1] == tuple(rest)


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=10_000))
def test_split_bucket_is_in_range_and_stable(payment_id: str, total: int) -> None:
    bucket = split_bucket("rule", payment_id, total)
    assert 0 <= bucket < total
    assert bucket == split_bucket("rule", payment_id, total)


def test_prefer_tier_rule_and_static_order() -> None:
    policy = parse_policy({"rules": [
        {"name": "t", "prefer_tier": "premium", "order": "static", "exclusive": True}]})
    selection = policy.select(context(), ACCOUNTS)
    assert selection.groups == (("prem",), ("std_a", "std_b"))
    assert selection.order is Order.STATIC
    assert selection.exclusive


def test_default_connectors_restrict_the_default() -> None:
    policy = parse_policy({"default": {"connectors": ["std_b"], "order": "static"}})
    selection = policy.select(context(), ACCOUNTS)
    assert selection.groups == (("std_b",),)
    assert selection.order is Order.STATIC


def test_the_documented_example_parses() -> None:
    known = ["payu_main", "razorpay_main", "cashfree_main"]
    policy = parse_policy({
        "version": 1,
        "premium_threshold_minor": 1000000,
        "rules": [
            {"name": "rupay_to_payu", "when": {"method": "card", "card_network": ["RUPAY"]},
             "connectors": ["payu_main", "razorpay_main"], "order": "static"},
            {"name": "upi_split",
             "when": {"method": "upi", "amount": {"lte": 500000},
                      "metadata": {"segment": "retail"}},
             "split": [{"connector": "razorpay_main", "weight": 70},
                       {"connector": "cashfree_main", "weight": 30}]},
            {"name": "big_tickets", "when": {"amount": {"gt": 5000000}},
             "prefer_tier": "premium", "exclusive": True},
        ],
        "default": {"order": "success_rate"},
        "capacity": {"razorpay_main": {"max_in_flight": 200, "max_tps": 100}},
        "scoring": {"algorithm": "mean", "exploration_share": 0.05, "min_samples": 20},
        "health": {"failure_threshold": 5, "cooldown_seconds": 30},
        "retry": {"max_attempts": 3},
    }, known_accounts=known)
    assert [r.name for r in policy.rules] == ["rupay_to_payu", "upi_split", "big_tickets"]
    assert policy.capacity["razorpay_main"].max_tps == 100
    assert policy.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rules": [{"name": "s", "split": [{"connector": "a", "weight": 1},
                                            {"connector": "b", "weight": 0}]}]},
         "rules[0].split[1].weight"),
        ({"rules": [{"name": "s", "split": [{"connector": "a", "weight": 1}]}]},
         "rules[0].split"),
        ({"rules": [{"name": "m", "when": {"method": "cheque"}, "connectors": ["a"]}]},
         "rules[0].when.method"),
        ({"rules": [{"name": "m", "when": {"amount": {"gt": 500, "lt": 100}},
                     "connectors": ["a"]}]}, "rules[0].when.amount"),
        ({"rules": [{"name": "m", "when": {"amount": {"gt": "big"}}, "connectors": ["a"]}]},
         "rules[0].when.amount.gt"),
        ({"rules": [{"name": "m", "when": {"colour": "red"}, "connectors": ["a"]}]},
         "rules[0].when.colour"),
        ({"rules": [{"name": "m"}]}, "rules[0]"),
        ({"rules": [{"connectors": ["a"]}]}, "rules[0].name"),
        ({"rules": [{"name": "m", "connectors": ["a", "a"]}]}, "rules[0].connectors[1]"),
        ({"rules": [{"name": "m", "connectors": ["a"]}, {"name": "m", "connectors": ["a"]}]},
         "rules[1].name"),
        ({"rules": [{"name": "m", "connectors": ["nope"]}]}, "rules[0].connectors[0]"),
        ({"rules": [{"name": "m", "connectors": ["a"], "order": "random"}]}, "rules[0].order"),
        ({"rules": "all"}, "rules"),
        ({"premium_threshold_minor": -1}, "premium_threshold_minor"),
        ({"version": 2}, "version"),
        ({"surprise": 1}, "surprise"),
        ({"capacity": {"a": {}}}, "capacity.a"),
        ({"capacity": {"a": {"max_tps": 0}}}, "capacity.a.max_tps"),
        ({"scoring": {"exploration_share": 0.9}}, "scoring.exploration_share"),
        ({"scoring": {"algorithm": "greedy"}}, "scoring.algorithm"),
        ({"health": {"failure_threshold": 0}}, "health.failure_threshold"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"default": {"connectors": []}}, "default.connectors"),
    ],
)
def test_invalid_policies_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_policy(data, known_accounts=["a", "b"])
    assert excinfo.value.field == field


def test_policy_must_be_an_object() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_policy([1, 2])
    assert excinfo.value.field == "policy"


def test_empty_policy_is_the_seed_behaviour() -> None:
    assert parse_policy(None) == RoutingPolicy()
    assert parse_policy({}).premium_threshold_minor == DEFAULT_PREMIUM_THRESHOLD_MINOR
