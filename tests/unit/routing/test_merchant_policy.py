"""A merchant's own routing policy: validated like the global one, platform-wide parts refused
and inherited."""

from __future__ import annotations

from typing import Any

import pytest

from server.domain.routing import RoutingPolicy, parse_policy
from server.errors import ValidationError
from server.service_layer.routing_admin import merchant_policy

KNOWN = ["razorpay_main", "cashfree_main"]
GLOBAL = parse_policy({
    "version": 1, "capacity": {"razorpay_main": {"max_in_flight": 5}},
    "health": {"failure_threshold": 9}, "scoring": {"window_size": 50, "min_samples": 7},
}, known_accounts=KNOWN)


def field_of(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        merchant_policy(document, KNOWN, GLOBAL)
    return info.value.field


def test_rules_default_scoring_and_retry_are_the_merchants_own() -> None:
    policy = merchant_policy({
        "version": 1, "premium_threshold_minor": None,
        "rules": [{"name": "upi", "when": {"method": "upi"}, "connectors": ["cashfree_main"]}],
        "scoring": {"exploration_share": 0.2}, "retry": {"max_attempts": 2},
    }, KNOWN, GLOBAL)
    assert isinstance(policy, RoutingPolicy)
    assert [r.name for r in policy.rules] == ["upi"]
    assert policy.premium_threshold_minor is None
    assert policy.scoring.exploration_share == 0.2
    assert policy.retry.max_attempts == 2


def test_circuit_capacity_and_window_settings_come_from_the_global_policy() -> None:
    policy = merchant_policy({"version": 1}, KNOWN, GLOBAL)
    assert policy.health == GLOBAL.health
    assert policy.capacity == GLOBAL.capacity
    assert policy.scoring.window_size == 50


@pytest.mark.parametrize(("document", "field"), [
    ({"health": {"failure_threshold": 1}}, "health"),
    ({"capacity": {}}, "capacity"),
    ({"scoring": {"window_size": 10}}, "scoring.window_size"),
    ({"scoring": {"window_max_age_seconds": 10}}, "scoring.window_max_age_seconds"),
    ({"rules": [{"name": "a", "connectors": ["payu_main"]}]}, "rules[0].connectors[0]"),
    ({"rules": [{"name": "a", "when": {"method": "cash"}, "connectors": ["razorpay_main"]}]},
     "rules[0].when.method"),
    ({"default": {"connectors": ["nope"]}}, "default.connectors[0]"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_documents_are_refused_naming_the_field(document: dict[str, Any],
                                                        field: str) -> None:
    assert field_of(document) == field
