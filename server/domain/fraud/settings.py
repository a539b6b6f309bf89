"""A merchant's fraud rule settings: the proto's `FraudSettings` plus the weights of every signal.

Limits read as "the most allowed": a signal fires when a value goes *above* its limit.
Scores are the points a signal adds to the 0-100 risk score when it fires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from server.errors import ValidationError

__all__ = ["FraudSettings", "ReviewAction", "VelocityFailMode"]

_COUNTRY = re.compile(r"^[A-Z]{2}$")


class ReviewAction(StrEnum):
    """What CreatePayment does with a REVIEW decision."""

    HOLD = "hold"  # keep the payment IN_REVIEW until ApproveReview / RejectReview
    PROCEED_AND_FLAG = "proceed_and_flag"  # send it to the PSP, keep the flag on the assessment


class VelocityFailMode(StrEnum):
    """What the engine does when the velocity counters (Redis) cannot be read."""

    OPEN = "open"  # skip the velocity signals, list them as unavailable
    CLOSED = "closed"  # treat the payment as at least REVIEW


@dataclass(frozen=True, slots=True)
class FraudSettings:
    """Thresholds and weights of the risk engine for one merchant. Validate with `validate()`."""

    # --- mirrored from triveni.v1.FraudSettings ---
    block_amount_minor: int = 10_000_000  # ₹1,00,000: above it, hard block ("High amount")
    review_score: int = 50
    block_score: int = 80
    ip_velocity_per_minute: int = 10
    allowed_countries: tuple[str, ...] = ("IN",)
    review_action: ReviewAction = ReviewAction.PROCEED_AND_FLAG
    velocity_fail_mode: VelocityFailMode = VelocityFailMode.OPEN
    # --- location ---
    unusual_location_score: int = 50  # "flag unusual locations": alone it reaches review
    geo_mismatch_score: int = 20
    # --- velocity per IP (IPv6: per /64) ---
    ip_velocity_per_hour: int = 100
    ip_velocity_score: int = 50
    # --- velocity per VPA, email, phone, customer id, card token ---
    instrument_velocity_per_minute: int = 5
    instrument_velocity_per_hour: int = 20
    instrument_velocity_per_day: int = 50
    instrument_amount_per_hour_minor: int = 5_000_000  # ₹50,000
    instrument_amount_per_day_minor: int = 20_000_000  # ₹2,00,000
    instrument_velocity_score: int = 35  # the first identifier over its limit
    instrument_velocity_extra_score: int = 10  # each further identifier of the same burst
    # --- amount against the customer's own history ---
    amount_anomaly_multiplier: int = 5  # amount > multiplier x the customer's median
    amount_anomaly_min_history: int = 3  # successful payments needed before judging
    amount_anomaly_min_amount_minor: int = 100_000  # ₹1,000: small amounts are never anomalies
    amount_anomaly_score: int = 30
    new_instrument_score: int = 20  # an established customer paying with a never-seen instrument
    # --- distinct instruments (VPAs, card tokens) in the last 24 hours ---
    max_instruments_per_customer: int = 3
    max_instruments_per_ip: int = 5
    many_instruments_score: int = 30
    # --- failed payments in the last hour (same customer, IP or instrument) ---
    max_failed_attempts_per_hour: int = 3
    failed_attempts_score: int = 30
    # --- a customer's first payment ---
    new_customer_amount_minor: int = 2_500_000  # ₹25,000
    new_customer_score: int = 50  # alone it reaches review

    def validate(self, field_prefix: str = "") -> None:
        """Raise ValidationError naming the first offending field (prefixed by `field_prefix`)."""
        for name, problem in self._problems():
            raise ValidationError(f"{field_prefix}{name}", problem)

    def _problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type != "int":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append((f.name, "must be an integer"))
            elif f.name.endswith("_score") and not 0 <= value <= 100:
                problems.append((f.name, "must be between 0 and 100"))
            elif not f.name.endswith("_score") and value < 1:
                problems.append((f.name, "must be at least 1"))
        if problems:
            return problems
        if self.review_score >= self.block_score:
            problems.append(("review_score", "must be less than block_score"))
        if self.ip_velocity_per_hour < self.ip_velocity_per_minute:
            problems.append(("ip_velocity_per_hour", "must be at least ip_velocity_per_minute"))
        if self.instrument_velocity_per_hour < self.instrument_velocity_per_minute:
            problems.append(("instrument_velocity_per_hour",
                             "must be at least instrument_velocity_per_minute"))
        if self.instrument_velocity_per_day < self.instrument_velocity_per_hour:
            problems.append(("instrument_velocity_per_day",
                             "must be at least instrument_velocity_per_hour"))
        if self.instrument_amount_per_day_minor < self.instrument_amount_per_hour_minor:
            problems.append(("instrument_amount_per_day_minor",
                             "must be at least instrument_amount_per_hour_minor"))
        if self.amount_anomaly_multiplier < 2:
            problems.append(("amount_anomaly_multiplier", "must be at least 2"))
        if not isinstance(self.allowed_countries, tuple) or not self.allowed_countries:
            problems.append(("allowed_countries", "must list at least one country"))
        else:
            for i, country in enumerate(self.allowed_countries):
                if not isinstance(country, str) or not _COUNTRY.match(country):
                    problems.append((f"allowed_countries[{i}]",
                                     "must be an upper-case ISO 3166-1 alpha-2 code, e.g. IN"))
        if not isinstance(self.review_action, ReviewAction):
            problems.append(("review_action", "must be one of: hold, proceed_and_flag"))
        if not isinstance(self.velocity_fail_mode, VelocityFailMode):
            problems.append(("velocity_fail_mode", "must be one of: open, closed"))
        return problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the fraud_settings table stores)."""
        data = asdict(self)
        data["allowed_countries"] = list(self.allowed_countries)
        data["review_action"] = str(self.review_action)
        data["velocity_fail_mode"] = str(self.velocity_fail_mode)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field_prefix: str = "") -> FraudSettings:
        """Parse and validate; missing keys take their defaults, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        if "allowed_countries" in values:
            countries = values["allowed_countries"]
            if isinstance(countries, str) or not isinstance(countries, list | tuple):
                raise ValidationError(f"{field_prefix}allowed_countries", "must be a list")
            values["allowed_countries"] = tuple(countries)
        for name, enum in (("review_action", ReviewAction),
                           ("velocity_fail_mode", VelocityFailMode)):
            if name in values:
                try:
                    values[name] = enum(values[name])
                except ValueError as exc:
                    choices = ", ".join(e.value for e in enum)
                    raise ValidationError(f"{field_prefix}{name}",
                                          f"must be one of: {choices}") from exc
        settings = cls(**values)
        settings.validate(field_prefix)
        return settings
