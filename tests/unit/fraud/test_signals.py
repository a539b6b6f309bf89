"""Each signal at its boundary: exactly at the limit passes, one step over fires."""

from __future__ import annotations

import pytest

from server.domain.fraud import (
    BlocklistHit,
    BlocklistKind,
    CustomerHistory,
    VelocityKind,
    Window,
    WindowStats,
    normalize_input,
)
from server.domain.fraud import signals as s
from tests.unit.fraud.helpers import SETTINGS, codes, facts, payment, velocity

# --- high amount ----------------------------------------------------------------------------


def test_exactly_one_lakh_rupees_is_not_a_high_amount() -> None:
    assert s.high_amount(payment(10_000_000), facts(), SETTINGS) == []


def test_one_paisa_above_one_lakh_is_hard_blocked_with_the_seed_message() -> None:
    [reason] = s.high_amount(payment(10_000_001), facts(), SETTINGS)
    assert reason.code == "HIGH_AMOUNT"
    assert reason.message == "Fraud detected: High amount"
    assert reason.hard_block


# --- location -------------------------------------------------------------------------------


def test_declared_country_outside_allowed_countries_is_an_unusual_location() -> None:
    [reason] = s.unusual_location(payment(country="US"), facts(ip_country=None), SETTINGS)
    assert reason.code == "UNUSUAL_LOCATION"
    assert "unusual location" in reason.message
    assert "US" in reason.message
    assert reason.score == SETTINGS.unusual_location_score


def test_ip_country_counts_when_no_country_is_declared() -> None:
    [reason] = s.unusual_location(payment(country=""), facts(ip_country="RU"), SETTINGS)
    assert "IP address in RU" in reason.message


def test_allowed_country_is_not_unusual() -> None:
    assert s.unusual_location(payment(country="IN"), facts(ip_country="IN"), SETTINGS) == []


def test_ip_country_different_from_declared_country_is_a_geo_mismatch() -> None:
    [reason] = s.geo_mismatch(payment(country="IN"), facts(ip_country="SG"), SETTINGS)
    assert reason.code == "GEO_MISMATCH"
    assert "SG" in reason.message and "IN" in reason.message


@pytest.mark.parametrize(("declared", "ip_country"), [("IN", "IN"), ("IN", None), ("", "SG")])
def test_no_geo_mismatch_without_two_known_and_different_countries(
        declared: str, ip_country: str | None) -> None:
    assert s.geo_mismatch(payment(country=declared), facts(ip_country=ip_country),
                          SETTINGS) == []


# --- IP velocity ----------------------------------------------------------------------------


def test_ten_payments_per_ip_in_a_minute_are_allowed() -> None:
    assert s.ip_velocity(payment(), velocity(VelocityKind.IP, minute=(10, 0)), SETTINGS) == []


def test_the_eleventh_payment_per_ip_in_a_minute_fires() -> None:
    [reason] = s.ip_velocity(payment(), velocity(VelocityKind.IP, minute=(11, 0)), SETTINGS)
    assert reason.code == "IP_VELOCITY"
    assert "11 payments in the last minute (limit 10)" in reason.message


def test_a_dry_run_counts_the_screened_payment_itself() -> None:
    at_limit = velocity(VelocityKind.IP, includes_current=False, minute=(9, 0))
    over = velocity(VelocityKind.IP, includes_current=False, minute=(10, 0))
    assert s.ip_velocity(payment(), at_limit, SETTINGS) == []
    assert codes(s.ip_velocity(payment(), over, SETTINGS)) == ["IP_VELOCITY"]


def test_ip_velocity_per_hour_fires_above_its_own_limit() -> None:
    assert s.ip_velocity(payment(), velocity(VelocityKind.IP, hour=(100, 0)), SETTINGS) == []
    [reason] = s.ip_velocity(payment(), velocity(VelocityKind.IP, hour=(101, 0)), SETTINGS)
    assert "in the last hour (limit 100)" in reason.message


def test_no_counters_no_velocity_reason() -> None:
    assert s.ip_velocity(payment(), facts(), SETTINGS) == []


# --- identifier velocity --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "code"), [
    (VelocityKind.VPA, "VPA_VELOCITY"), (VelocityKind.EMAIL, "EMAIL_VELOCITY"),
    (VelocityKind.PHONE, "PHONE_VELOCITY"), (VelocityKind.CUSTOMER, "CUSTOMER_VELOCITY"),
    (VelocityKind.CARD_TOKEN, "CARD_TOKEN_VELOCITY"),
])
def test_each_identifier_has_its_own_velocity_code(kind: VelocityKind, code: str) -> None:
    assert s.identifier_velocity(payment(), velocity(kind, minute=(5, 0)), SETTINGS) == []
    [reason] = s.identifier_velocity(payment(), velocity(kind, minute=(6, 0)), SETTINGS)
    assert reason.code == code
    assert reason.score == SETTINGS.instrument_velocity_score


@pytest.mark.parametrize(("window", "limit"), [("hour", 20), ("day", 50)])
def test_identifier_count_limits_per_hour_and_day(window: str, limit: int) -> None:
    at = facts(velocity={VelocityKind.VPA: {Window[window.upper()]: WindowStats(limit, 0)}},
               velocity_includes_current=True)
    over = facts(velocity={VelocityKind.VPA: {Window[window.upper()]: WindowStats(limit + 1, 0)}},
                 velocity_includes_current=True)
    assert s.identifier_velocity(payment(), at, SETTINGS) == []
    assert codes(s.identifier_velocity(payment(), over, SETTINGS)) == ["VPA_VELOCITY"]


def test_identifier_amount_per_day_fires_one_paisa_above_the_limit() -> None:
    limit = SETTINGS.instrument_amount_per_day_minor
    at = velocity(VelocityKind.CARD_TOKEN, day=(3, limit))
    over = velocity(VelocityKind.CARD_TOKEN, day=(3, limit + 1))
    assert s.identifier_velocity(payment(), at, SETTINGS) == []
    [reason] = s.identifier_velocity(payment(), over, SETTINGS)
    assert "₹200000.01 in the last day (limit ₹200000.00)" in reason.message


def test_one_large_payment_alone_is_not_amount_velocity() -> None:
    single = velocity(VelocityKind.VPA, hour=(1, SETTINGS.instrument_amount_per_hour_minor + 1))
    assert s.identifier_velocity(payment(), single, SETTINGS) == []


def test_identifier_amount_per_hour_fires_above_the_limit() -> None:
    limit = SETTINGS.instrument_amount_per_hour_minor
    assert s.identifier_velocity(payment(), velocity(VelocityKind.VPA, hour=(2, limit)),
                                 SETTINGS) == []
    assert codes(s.identifier_velocity(
        payment(), velocity(VelocityKind.VPA, hour=(2, limit + 1)), SETTINGS)) == [
        "VPA_VELOCITY"]


def test_one_burst_seen_through_several_identifiers_is_not_counted_in_full_twice() -> None:
    burst = {Window.MINUTE: WindowStats(9, 0)}
    ctx = facts(velocity={VelocityKind.VPA: burst, VelocityKind.EMAIL: burst},
                velocity_includes_current=True)
    reasons = s.identifier_velocity(payment(), ctx, SETTINGS)
    assert [(r.code, r.score) for r in reasons] == [
        ("VPA_VELOCITY", SETTINGS.instrument_velocity_score),
        ("EMAIL_VELOCITY", SETTINGS.instrument_velocity_extra_score),
    ]


# --- blocklist ------------------------------------------------------------------------------


def test_blocklisted_vpa_is_a_hard_block_naming_kind_and_value() -> None:
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.VPA, "fraud@ybl"),))
    [reason] = s.blocklisted(payment(vpa="fraud@ybl"), ctx, SETTINGS)
    assert (reason.code, reason.message, reason.hard_block) == (
        "BLOCKLISTED_VPA", "Blocklisted VPA: fraud@ybl", True)


def test_blocklisted_card_token_is_masked_in_the_message() -> None:
    token = "tok_live_9f8e7d6c5b4a3210"
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.CARD_TOKEN, token),))
    [reason] = s.blocklisted(payment(card_token=token), ctx, SETTINGS)
    assert reason.code == "BLOCKLISTED_CARD_TOKEN"
    assert token not in reason.message
    assert reason.message == "Blocklisted card token: tok_…3210"


def test_blocklisted_ip_range_names_the_address_and_the_range() -> None:
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.IP, "203.0.113.0/24"),))
    [reason] = s.blocklisted(normalize_input(payment(ip="203.0.113.7")), ctx, SETTINGS)
    assert reason.message == "Blocklisted IP: 203.0.113.7 (in 203.0.113.0/24)"


def test_several_hits_of_one_kind_give_one_reason() -> None:
    ctx = facts(blocklist_hits=(BlocklistHit(BlocklistKind.IP, "203.0.113.0/24"),
                                BlocklistHit(BlocklistKind.IP, "203.0.0.0/16"),
                                BlocklistHit(BlocklistKind.EMAIL, "ravi@example.com")))
    assert codes(s.blocklisted(payment(ip="203.0.113.7"), ctx, SETTINGS)) == [
        "BLOCKLISTED_IP", "BLOCKLISTED_EMAIL"]


# --- amount anomaly -------------------------------------------------------------------------


def test_exactly_five_times_the_median_is_not_an_anomaly() -> None:
    ctx = facts(customer_history=CustomerHistory(10, 100_000))
    assert s.amount_anomaly(payment(500_000), ctx, SETTINGS) == []


def test_one_paisa_above_five_times_the_median_is_an_anomaly() -> None:
    ctx = facts(customer_history=CustomerHistory(10, 100_000))
    [reason] = s.amount_anomaly(payment(500_001), ctx, SETTINGS)
    assert reason.code == "AMOUNT_ANOMALY"
    assert "₹1000.00" in reason.message


def test_too_little_history_is_never_an_anomaly() -> None:
    ctx = facts(customer_history=CustomerHistory(2, 100_000))
    assert s.amount_anomaly(payment(5_000_000), ctx, SETTINGS) == []


def test_small_amounts_are_never_anomalies() -> None:
    ctx = facts(customer_history=CustomerHistory(10, 1_000))  # median ₹10
    assert s.amount_anomaly(payment(99_999), ctx, SETTINGS) == []
    assert codes(s.amount_anomaly(payment(100_000), ctx, SETTINGS)) == ["AMOUNT_ANOMALY"]


# --- new instrument -------------------------------------------------------------------------


def test_an_established_customer_with_a_never_seen_instrument_fires() -> None:
    ctx = facts(customer_history=CustomerHistory(3, 10_000, knows_instrument=False))
    [reason] = s.new_instrument(payment(), ctx, SETTINGS)
    assert reason.code == "NEW_INSTRUMENT"
    assert reason.score == SETTINGS.new_instrument_score


@pytest.mark.parametrize("history", [
    CustomerHistory(3, 10_000, knows_instrument=True),
    CustomerHistory(2, 10_000, knows_instrument=False),  # not established yet
    CustomerHistory(9, 10_000, knows_instrument=None),  # no identifiable instrument
])
def test_known_instruments_and_young_customers_do_not_fire(history: CustomerHistory) -> None:
    assert s.new_instrument(payment(), facts(customer_history=history), SETTINGS) == []


# --- many instruments -----------------------------------------------------------------------


def test_customer_instruments_count_includes_this_payments_own() -> None:
    at = facts(other_instruments_for_customer=2)  # + this VPA = 3 = limit
    over = facts(other_instruments_for_customer=3)
    assert s.many_instruments(payment(), at, SETTINGS) == []
    [reason] = s.many_instruments(payment(), over, SETTINGS)
    assert reason.code == "MANY_INSTRUMENTS_CUSTOMER"
    assert "4 different payment instruments" in reason.message


def test_ip_instruments_limit() -> None:
    assert s.many_instruments(payment(), facts(other_instruments_for_ip=4), SETTINGS) == []
    assert codes(s.many_instruments(payment(), facts(other_instruments_for_ip=5),
                                    SETTINGS)) == ["MANY_INSTRUMENTS_IP"]


def test_a_payment_without_an_identifiable_instrument_adds_none() -> None:
    anonymous = payment(vpa="", card_token="", method_type="netbanking")
    assert s.many_instruments(anonymous, facts(other_instruments_for_customer=3),
                              SETTINGS) == []


# --- failed attempts ------------------------------------------------------------------------


def test_failed_attempts_fire_above_the_hourly_limit() -> None:
    assert s.failed_attempts(payment(), facts(recent_failures=3), SETTINGS) == []
    [reason] = s.failed_attempts(payment(), facts(recent_failures=4), SETTINGS)
    assert reason.code == "FAILED_ATTEMPTS"


# --- new customer ---------------------------------------------------------------------------


def test_new_customer_first_amount_above_the_limit_fires() -> None:
    new = facts(customer_history=CustomerHistory(0, None))
    assert s.new_customer_high_amount(payment(2_500_000), new, SETTINGS) == []
    [reason] = s.new_customer_high_amount(payment(2_500_001), new, SETTINGS)
    assert reason.code == "NEW_CUSTOMER_HIGH_AMOUNT"


def test_returning_customer_or_unknown_customer_is_not_new() -> None:
    returning = facts(customer_history=CustomerHistory(1, 2_000_000))
    assert s.new_customer_high_amount(payment(5_000_000), returning, SETTINGS) == []
    assert s.new_customer_high_amount(payment(5_000_000), facts(customer_history=None),
                                      SETTINGS) == []
