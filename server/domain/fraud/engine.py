"""The risk engine: runs the signals, adds up their scores and decides ALLOW / REVIEW / BLOCK."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from server.domain.fraud.model import (
    SIGNAL_VELOCITY,
    Assessment,
    Decision,
    FraudContext,
    FraudInput,
    Reason,
    VelocityKey,
    VelocityKind,
    VelocityReadings,
    Window,
    WindowStats,
)
from server.domain.fraud.normalize import normalize_input, velocity_ip
from server.domain.fraud.settings import FraudSettings, VelocityFailMode
from server.domain.fraud.signals import ALL_SIGNALS, Signal

__all__ = [
    "IDENTIFIER_WINDOWS",
    "IP_WINDOWS",
    "assess",
    "combine",
    "velocity_by_kind",
    "velocity_keys",
]

IP_WINDOWS = (Window.MINUTE, Window.HOUR)
IDENTIFIER_WINDOWS = (Window.MINUTE, Window.HOUR, Window.DAY)

VELOCITY_UNAVAILABLE_MESSAGE = (
    "Velocity checks were unavailable (counters could not be read); "
    "treated as REVIEW (velocity_fail_mode=closed)"
)


def assess(inp: FraudInput, ctx: FraudContext, settings: FraudSettings, *,
           signals: Sequence[Signal] = ALL_SIGNALS) -> Assessment:
    """Score one payment against the merchant's settings, explaining every point."""
    inp = normalize_input(inp)
    reasons = [reason for signal in signals for reason in signal(inp, ctx, settings)]
    minimum = Decision.ALLOW
    unavailable: list[str] = []
    for name in sorted(ctx.unavailable):
        if name == SIGNAL_VELOCITY and settings.velocity_fail_mode is VelocityFailMode.CLOSED:
            reasons.append(Reason("VELOCITY_UNAVAILABLE", VELOCITY_UNAVAILABLE_MESSAGE, 0))
            minimum = Decision.REVIEW
            unavailable.append(f"{name}: treated as REVIEW (fail-closed)")
        elif name == SIGNAL_VELOCITY:
            unavailable.append(f"{name}: skipped (fail-open)")
        else:
            unavailable.append(f"{name}: skipped")
    return combine(reasons, settings, unavailable_signals=unavailable, minimum=minimum)


def combine(reasons: Iterable[Reason], settings: FraudSettings, *,
            unavailable_signals: Iterable[str] = (),
            minimum: Decision = Decision.ALLOW) -> Assessment:
    """Reasons → assessment. Hard blocks win whatever the score; `minimum` is a floor."""
    # Stable sort: equal contributions keep the signals' order (high amount first).
    ordered = tuple(sorted(reasons, key=lambda r: (not r.hard_block, -r.score)))
    score = max(0, min(100, sum(r.score for r in ordered)))
    if any(r.hard_block for r in ordered) or score >= settings.block_score:
        decision = Decision.BLOCK
    elif score >= settings.review_score:
        decision = Decision.REVIEW
    else:
        decision = Decision.ALLOW
    if minimum.severity > decision.severity:
        decision = minimum
    return Assessment(decision, score, ordered, tuple(unavailable_signals))


def velocity_keys(inp: FraudInput) -> list[VelocityKey]:
    """The counters to read (and, when recording, increment) for this payment."""
    inp = normalize_input(inp)
    merchant = inp.merchant_id
    keys: list[VelocityKey] = []
    if inp.ip:
        keys.append(VelocityKey(merchant, VelocityKind.IP, velocity_ip(inp.ip), IP_WINDOWS))
    for kind, value in ((VelocityKind.VPA, inp.vpa), (VelocityKind.EMAIL, inp.email),
                        (VelocityKind.PHONE, inp.phone),
                        (VelocityKind.CUSTOMER, inp.customer_id),
                        (VelocityKind.CARD_TOKEN, inp.card_token)):
        if value:
            keys.append(VelocityKey(merchant, kind, value, IDENTIFIER_WINDOWS))
    return keys


def velocity_by_kind(readings: VelocityReadings
                     ) -> dict[VelocityKind, Mapping[Window, WindowStats]]:
    """A velocity store's readings in the shape `FraudContext.velocity` takes."""
    return {key.kind: stats for key, stats in readings.items()}
