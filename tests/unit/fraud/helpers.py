"""Builders for fraud engine tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from server.domain.fraud import (
    FraudContext,
    FraudInput,
    FraudSettings,
    VelocityKind,
    Window,
    WindowStats,
)
from server.domain.money import Money

SETTINGS = FraudSettings()


def payment(amount_minor: int = 50_000, **fields: Any) -> FraudInput:
    """An ordinary UPI payment from India unless told otherwise."""
    base = FraudInput(amount=Money(amount_minor), method_type="upi", vpa="ravi@okaxis",
                      email="ravi@example.com", phone="9876543210", customer_id="cust_1",
                      ip="49.36.10.20", country="IN", merchant_id="mer_test")
    return replace(base, **fields)


def facts(**fields: Any) -> FraudContext:
    """Looked-up facts of a quiet, known Indian customer unless told otherwise."""
    return replace(FraudContext(ip_country="IN"), **fields)


def velocity(kind: VelocityKind, *, includes_current: bool = True,
             **windows: tuple[int, int]) -> FraudContext:
    """Facts with one identifier's counters, e.g. velocity(IP, minute=(11, 5000))."""
    stats: Mapping[Window, WindowStats] = {
        Window[name.upper()]: WindowStats(count, amount) for name, (count, amount) in
        windows.items()
    }
    return facts(velocity={kind: stats}, velocity_includes_current=includes_current)


def codes(reasons: Any) -> list[str]:
    return [r.code for r in reasons]
