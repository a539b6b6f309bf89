from __future__ import annotations

import pytest

from server.domain.fraud import FraudSettings, ReviewAction, VelocityFailMode
from server.errors import ValidationError


def test_defaults_mirror_the_seed_rules_and_validate() -> None:
    settings = FraudSettings()
    settings.validate()
    assert settings.block_amount_minor == 10_000_000  # ₹1,00,000 in paise
    assert (settings.review_score, settings.block_score) == (50, 80)
    assert settings.ip_velocity_per_minute == 10
    assert settings.allowed_countries == ("IN",)
    assert settings.review_action is ReviewAction.PROCEED_AND_FLAG
    assert settings.velocity_fail_mode is VelocityFailMode.OPEN


@pytest.mark.parametrize(("changes", "field"), [
    ({"review_score": 80}, "review_score"),
    ({"review_score": 90, "block_score": 85}, "review_score"),
    ({"block_score": 101}, "block_score"),
    ({"review_score": -1}, "review_score"),
    ({"block_amount_minor": 0}, "block_amount_minor"),
    ({"ip_velocity_per_minute": 0}, "ip_velocity_per_minute"),
    ({"ip_velocity_per_hour": 5}, "ip_velocity_per_hour"),
    ({"instrument_velocity_per_day": 10}, "instrument_velocity_per_day"),
    ({"instrument_amount_per_day_minor": 1}, "instrument_amount_per_day_minor"),
    ({"allowed_countries": ()}, "allowed_countries"),
    ({"allowed_countries": ("IN", "in")}, "allowed_countries[1]"),
    ({"allowed_countries": ("IND",)}, "allowed_countries[0]"),
    ({"geo_mismatch_score": 150}, "geo_mismatch_score"),
    ({"amount_anomaly_multiplier": 1}, "amount_anomaly_multiplier"),
])
def test_invalid_settings_name_the_offending_field(changes: dict[str, object],
                                                   field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FraudSettings(**changes).validate()  # type: ignore[arg-type]
    assert caught.value.field == field


def test_validation_field_can_be_prefixed_with_the_request_path() -> None:
    with pytest.raises(ValidationError) as caught:
        FraudSettings(review_score=80).validate("settings.")
    assert caught.value.field == "settings.review_score"


def test_score_thresholds_at_the_edges_are_accepted() -> None:
    FraudSettings(review_score=0, block_score=100).validate()
    FraudSettings(review_score=99, block_score=100).validate()


def test_a_boolean_is_not_an_integer_setting() -> None:
    with pytest.raises(ValidationError) as caught:
        FraudSettings(ip_velocity_per_minute=True).validate()
    assert caught.value.field == "ip_velocity_per_minute"


def test_dict_round_trip_keeps_every_field() -> None:
    settings = FraudSettings(review_score=40, allowed_countries=("IN", "NP"),
                             review_action=ReviewAction.HOLD,
                             velocity_fail_mode=VelocityFailMode.CLOSED)
    data = settings.to_dict()
    assert data["review_action"] == "hold"
    assert data["velocity_fail_mode"] == "closed"
    assert data["allowed_countries"] == ["IN", "NP"]
    assert FraudSettings.from_dict(data) == settings


def test_from_dict_fills_missing_keys_with_defaults_and_ignores_unknown_ones() -> None:
    settings = FraudSettings.from_dict({"block_score": 90, "future_knob": 1})
    assert settings == FraudSettings(block_score=90)


@pytest.mark.parametrize(("data", "field"), [
    ({"review_action": "later"}, "review_action"),
    ({"velocity_fail_mode": "sometimes"}, "velocity_fail_mode"),
    ({"allowed_countries": "IN"}, "allowed_countries"),
    ({"review_score": "50"}, "review_score"),
])
def test_from_dict_refuses_bad_values_naming_the_field(data: dict[str, object],
                                                       field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FraudSettings.from_dict(data)
    assert caught.value.field == field
