"""The decision: thresholds, hard blocks, ordering, degraded velocity, counter keys."""

from __future__ import annotations

import pytest

from server.domain.fraud import (
    SEED_SIGNALS,
    SIGNAL_GEOIP,
    SIGNAL_VELOCITY,
    BlocklistHit,
    BlocklistKind,
    Decision,
    FraudSettings,
    Reason,
    VelocityFailMode,
    VelocityKind,
    Window,
    assess,
    combine,
    velocity_keys,
)
from tests.unit.fraud.helpers import SETTINGS, codes, facts, payment


def _reason(score: int, *, hard: bool = False, code: str = "TEST") -> Reason:
    return Reason(code, "test", score, hard)


def test_a_quiet_payment_is_allowed_with_score_zero() -> None:
    result = assess(payment(), facts(), SETTINGS)
    assert (result.decision, result.score, result.reasons) == (Decision.ALLOW, 0, ())


@pytest.mark.parametrize(("score", "decision"), [
    (49, Decision.ALLOW), (50, Decision.REVIEW), (79, Decision.REVIEW), (80, Decision.BLOCK),
])
def test_review_and_block_start_at_their_thresholds(score: int, decision: Decision) -> None:
    assert combine([_reason(score)], SETTINGS).decision is decision


def test_hard_block_wins_even_with_a_zero_score() -> None:
    result = combine([_reason(0, hard=True)], SETTINGS)
    assert (result.decision, result.score) == (Decision.BLOCK, 0)


def test_score_is_clamped_to_one_hundred() -> None:
    assert combine([_reason(70), _reason(70)], SETTINGS).score == 100


def test_reasons_are_sorted_hard_blocks_first_then_by_contribution() -> None:
    result = combine([_reason(10, code="SMALL"), _reason(40, code="BIG"),
                      _reason(0, hard=True, code="HARD")], SETTINGS)
    assert codes(result.reasons) == ["HARD", "BIG", "SMALL"]


def test_high_amount_is_the_primary_reason_of_a_seed_block() -> None:
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.VPA, "ravi@okaxis"),))
    result = assess(payment(10_000_001), ctx, SETTINGS)
    assert result.decision is Decision.BLOCK
    assert result.primary_reason is not None
    assert result.primary_reason.message == "Fraud detected: High amount"


def test_unusual_location_alone_is_flagged_for_review() -> None:
    result = assess(payment(country="US"), facts(ip_country="US"), SETTINGS)
    assert result.decision is Decision.REVIEW
    assert codes(result.reasons) == ["UNUSUAL_LOCATION"]


def test_velocity_fail_open_skips_velocity_and_says_so() -> None:
    result = assess(payment(), facts(unavailable=frozenset({SIGNAL_VELOCITY})), SETTINGS)
    assert result.decision is Decision.ALLOW
    assert result.unavailable_signals == ("velocity: skipped (fail-open)",)


def test_velocity_fail_closed_is_at_least_review_with_a_reason() -> None:
    closed = FraudSettings(velocity_fail_mode=VelocityFailMode.CLOSED)
    result = assess(payment(), facts(unavailable=frozenset({SIGNAL_VELOCITY})), closed)
    assert result.decision is Decision.REVIEW
    [reason] = result.reasons
    assert reason.code == "VELOCITY_UNAVAILABLE"
    assert "Velocity checks were unavailable" in reason.message
    assert result.unavailable_signals == ("velocity: treated as REVIEW (fail-closed)",)


def test_velocity_fail_closed_does_not_soften_a_block() -> None:
    closed = FraudSettings(velocity_fail_mode=VelocityFailMode.CLOSED)
    result = assess(payment(10_000_001), facts(unavailable=frozenset({SIGNAL_VELOCITY})),
                    closed)
    assert result.decision is Decision.BLOCK


def test_missing_geoip_is_listed_as_skipped() -> None:
    result = assess(payment(), facts(ip_country=None, unavailable=frozenset({SIGNAL_GEOIP})),
                    SETTINGS)
    assert result.unavailable_signals == ("geoip: skipped",)


def test_merchant_thresholds_change_the_decision() -> None:
    strict = FraudSettings(review_score=10, block_score=20)
    result = assess(payment(country="IN"), facts(ip_country="SG"), strict)  # geo mismatch 20
    assert result.decision is Decision.BLOCK


def test_seed_signal_set_ignores_the_newer_signals() -> None:
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.VPA, "ravi@okaxis"),))
    assert assess(payment(), ctx, SETTINGS, signals=SEED_SIGNALS).decision is Decision.ALLOW
    assert assess(payment(), ctx, SETTINGS).decision is Decision.BLOCK


def test_assess_normalises_identifiers_before_judging() -> None:
    result = assess(payment(country=" us "), facts(ip_country="US"), SETTINGS)
    assert codes(result.reasons) == ["UNUSUAL_LOCATION"]


# --- velocity keys --------------------------------------------------------------------------


def test_velocity_keys_cover_every_given_identifier_normalised() -> None:
    keys = velocity_keys(payment(vpa="Ravi@OKAXIS", email="Ravi@Example.com",
                                 phone="098765 43210", card_token="tok_1"))
    assert [(k.kind, k.value) for k in keys] == [
        (VelocityKind.IP, "49.36.10.20"),
        (VelocityKind.VPA, "ravi@okaxis"),
        (VelocityKind.EMAIL, "ravi@example.com"),
        (VelocityKind.PHONE, "+919876543210"),
        (VelocityKind.CUSTOMER, "cust_1"),
        (VelocityKind.CARD_TOKEN, "tok_1"),
    ]
    assert all(k.merchant_id == "mer_test" for k in keys)
    assert keys[0].windows == (Window.MINUTE, Window.HOUR)
    assert keys[1].windows == (Window.MINUTE, Window.HOUR, Window.DAY)


def test_velocity_keys_skip_missing_identifiers() -> None:
    keys = velocity_keys(payment(vpa="", email="", phone="", customer_id="", ip=""))
    assert keys == []


def test_ipv6_velocity_counts_per_slash_64() -> None:
    [first] = velocity_keys(payment(ip="2409:4040:1:2::1", vpa="", email="", phone="",
                                    customer_id=""))
    [second] = velocity_keys(payment(ip="2409:4040:1:2:ffff::9", vpa="", email="", phone="",
                                     customer_id=""))
    assert first.value == "2409:4040:1:2::/64"
    assert first.digest == second.digest


def test_velocity_key_digest_hides_the_identifier() -> None:
    [key] = velocity_keys(payment(ip="", vpa="ravi@okaxis", email="", phone="",
                                  customer_id=""))
    assert "ravi" not in key.digest
    assert len(key.digest) == 32
