"""The signals: small pure functions, each turning (payment, looked-up facts, settings) into
zero or more reasons. They expect a normalised `FraudInput` (see `normalize_input`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from server.domain.fraud.model import (
    HARD_BLOCK_SCORE,
    BlocklistHit,
    BlocklistKind,
    FraudContext,
    FraudInput,
    Reason,
    VelocityKind,
    Window,
    WindowStats,
)
from server.domain.fraud.normalize import instrument_of, mask_token
from server.domain.fraud.settings import FraudSettings
from server.domain.money import Money

__all__ = [
    "ALL_SIGNALS",
    "FAILURE_LOOKBACK",
    "HISTORY_LIMIT",
    "INSTRUMENT_LOOKBACK",
    "SEED_SIGNALS",
    "Signal",
    "amount_anomaly",
    "blocklisted",
    "failed_attempts",
    "geo_mismatch",
    "high_amount",
    "identifier_velocity",
    "ip_velocity",
    "many_instruments",
    "new_customer_high_amount",
    "new_instrument",
    "unusual_location",
]

Signal = Callable[[FraudInput, FraudContext, FraudSettings], Sequence[Reason]]

# How far back the PostgreSQL-backed facts look.
INSTRUMENT_LOOKBACK = timedelta(hours=24)
FAILURE_LOOKBACK = timedelta(hours=1)
HISTORY_LIMIT = 100  # the customer's median is taken over at most this many recent payments

HIGH_AMOUNT_MESSAGE = "Fraud detected: High amount"


def _rupees(amount_minor: int) -> str:
    return "₹" + Money(amount_minor).to_major_string()


def high_amount(inp: FraudInput, ctx: FraudContext, settings: FraudSettings) -> list[Reason]:
    """Hard block above the merchant's ceiling (seed rule: above ₹1,00,000)."""
    if inp.amount.amount_minor > settings.block_amount_minor:
        return [Reason("HIGH_AMOUNT", HIGH_AMOUNT_MESSAGE, HARD_BLOCK_SCORE, hard_block=True)]
    return []


def unusual_location(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                     ) -> list[Reason]:
    """Declared country (or, when none is declared, the IP's) outside the allowed countries."""
    allowed = settings.allowed_countries
    allowed_text = ", ".join(allowed)
    if inp.country and inp.country not in allowed:
        where = f"declared country {inp.country}"
    elif ctx.ip_country and ctx.ip_country not in allowed:
        where = f"IP address in {ctx.ip_country}"
    else:
        return []
    message = f"Payment from an unusual location: {where} (allowed: {allowed_text})"
    return [Reason("UNUSUAL_LOCATION", message, settings.unusual_location_score)]


def geo_mismatch(inp: FraudInput, ctx: FraudContext, settings: FraudSettings) -> list[Reason]:
    """The IP's country differs from the declared one."""
    if inp.country and ctx.ip_country and inp.country != ctx.ip_country:
        message = (f"Geo mismatch: IP address in {ctx.ip_country}, "
                   f"declared country {inp.country}")
        return [Reason("GEO_MISMATCH", message, settings.geo_mismatch_score)]
    return []


def _stats(inp: FraudInput, ctx: FraudContext, kind: VelocityKind, window: Window
           ) -> WindowStats | None:
    """The window's figures including this payment (added here on a dry run)."""
    stats = ctx.velocity.get(kind, {}).get(window)
    if stats is None or ctx.velocity_includes_current:
        return stats
    return WindowStats(stats.count + 1, stats.amount_minor + inp.amount.amount_minor)


def _breaches(inp: FraudInput, ctx: FraudContext, kind: VelocityKind,
              count_limits: Sequence[tuple[Window, int]],
              amount_limits: Sequence[tuple[Window, int]]) -> list[str]:
    found: list[str] = []
    for window, limit in count_limits:
        stats = _stats(inp, ctx, kind, window)
        if stats is not None and stats.count > limit:
            found.append(f"{stats.count} payments in the last {window.label} (limit {limit})")
    for window, limit in amount_limits:
        stats = _stats(inp, ctx, kind, window)
        # One large payment is not velocity (HIGH_AMOUNT and the history signals judge it).
        if stats is not None and stats.count >= 2 and stats.amount_minor > limit:
            found.append(f"{_rupees(stats.amount_minor)} in the last {window.label} "
                         f"(limit {_rupees(limit)})")
    return found


def ip_velocity(inp: FraudInput, ctx: FraudContext, settings: FraudSettings) -> list[Reason]:
    """More payments from one IP (IPv6: one /64) than allowed per minute or hour."""
    found = _breaches(inp, ctx, VelocityKind.IP,
                      ((Window.MINUTE, settings.ip_velocity_per_minute),
                       (Window.HOUR, settings.ip_velocity_per_hour)), ())
    if not found:
        return []
    message = "Velocity per IP exceeded: " + "; ".join(found)
    return [Reason("IP_VELOCITY", message, settings.ip_velocity_score)]


# Strongest identifier first: it takes the full score, the others of the same burst less.
_IDENTIFIERS: tuple[tuple[VelocityKind, str, str], ...] = (
    (VelocityKind.CARD_TOKEN, "CARD_TOKEN_VELOCITY", "card token"),
    (VelocityKind.VPA, "VPA_VELOCITY", "VPA"),
    (VelocityKind.CUSTOMER, "CUSTOMER_VELOCITY", "customer"),
    (VelocityKind.EMAIL, "EMAIL_VELOCITY", "email"),
    (VelocityKind.PHONE, "PHONE_VELOCITY", "phone"),
)


def identifier_velocity(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                        ) -> list[Reason]:
    """Too many payments, or too much money, per card token / VPA / customer / email / phone."""
    counts = ((Window.MINUTE, settings.instrument_velocity_per_minute),
              (Window.HOUR, settings.instrument_velocity_per_hour),
              (Window.DAY, settings.instrument_velocity_per_day))
    amounts = ((Window.HOUR, settings.instrument_amount_per_hour_minor),
               (Window.DAY, settings.instrument_amount_per_day_minor))
    reasons: list[Reason] = []
    for kind, code, label in _IDENTIFIERS:
        found = _breaches(inp, ctx, kind, counts, amounts)
        if found:
            score = (settings.instrument_velocity_extra_score if reasons
                     else settings.instrument_velocity_score)
            reasons.append(Reason(code, f"Velocity per {label} exceeded: " + "; ".join(found),
                                  score))
    return reasons


_BLOCKLIST_LABELS: Mapping[BlocklistKind, str] = {
    BlocklistKind.IP: "IP",
    BlocklistKind.VPA: "VPA",
    BlocklistKind.EMAIL: "email",
    BlocklistKind.PHONE: "phone",
    BlocklistKind.CARD_TOKEN: "card token",
    BlocklistKind.CARD_BIN: "card BIN",
    BlocklistKind.CUSTOMER_ID: "customer",
}


def _shown(inp: FraudInput, hit: BlocklistHit) -> str:
    if hit.kind is BlocklistKind.CARD_TOKEN:
        return mask_token(hit.value)
    if hit.kind is BlocklistKind.IP and inp.ip and hit.value != inp.ip:
        return f"{inp.ip} (in {hit.value})"
    return hit.value


def blocklisted(inp: FraudInput, ctx: FraudContext, settings: FraudSettings) -> list[Reason]:
    """Hard block for each kind of identifier found on the merchant's blocklist."""
    order = list(BlocklistKind)
    reasons: list[Reason] = []
    seen: set[BlocklistKind] = set()
    for hit in sorted(ctx.blocklist_hits, key=lambda h: (order.index(h.kind), h.value)):
        if hit.kind in seen:
            continue
        seen.add(hit.kind)
        message = f"Blocklisted {_BLOCKLIST_LABELS[hit.kind]}: {_shown(inp, hit)}"
        reasons.append(Reason(f"BLOCKLISTED_{hit.kind}", message, HARD_BLOCK_SCORE,
                              hard_block=True))
    return reasons


def amount_anomaly(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                   ) -> list[Reason]:
    """Amount far above the customer's own median (once there is enough history)."""
    history = ctx.customer_history
    if (history is None or not history.median_amount_minor
            or history.successful_payments < settings.amount_anomaly_min_history):
        return []
    amount = inp.amount.amount_minor
    if (amount > history.median_amount_minor * settings.amount_anomaly_multiplier
            and amount >= settings.amount_anomaly_min_amount_minor):
        message = (f"Amount {_rupees(amount)} is more than "
                   f"{settings.amount_anomaly_multiplier}x this customer's median "
                   f"{_rupees(history.median_amount_minor)}")
        return [Reason("AMOUNT_ANOMALY", message, settings.amount_anomaly_score)]
    return []


def new_instrument(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                   ) -> list[Reason]:
    """An established customer paying with an instrument none of their payments used: the
    usual shape of an account takeover (together with an anomalous amount or a new IP)."""
    history = ctx.customer_history
    if (history is not None and history.knows_instrument is False
            and history.successful_payments >= settings.amount_anomaly_min_history):
        message = (f"New payment instrument for a customer with "
                   f"{history.successful_payments} earlier payments")
        return [Reason("NEW_INSTRUMENT", message, settings.new_instrument_score)]
    return []


def many_instruments(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                     ) -> list[Reason]:
    """Many different VPAs / card tokens for one customer or one IP in 24 hours."""
    current = 1 if instrument_of(inp) else 0
    reasons: list[Reason] = []
    for given, others, limit, code, whom in (
        (inp.customer_id, ctx.other_instruments_for_customer,
         settings.max_instruments_per_customer, "MANY_INSTRUMENTS_CUSTOMER", "customer"),
        (inp.ip, ctx.other_instruments_for_ip,
         settings.max_instruments_per_ip, "MANY_INSTRUMENTS_IP", "IP address"),
    ):
        total = others + current
        if given and total > limit:
            message = (f"{total} different payment instruments for this {whom} "
                       f"in 24 hours (limit {limit})")
            reasons.append(Reason(code, message, settings.many_instruments_score))
    return reasons


def failed_attempts(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                    ) -> list[Reason]:
    """A burst of failed payments from the same customer, IP or instrument."""
    limit = settings.max_failed_attempts_per_hour
    if ctx.recent_failures > limit:
        message = (f"{ctx.recent_failures} failed payments in the last hour from this "
                   f"customer, IP or instrument (limit {limit})")
        return [Reason("FAILED_ATTEMPTS", message, settings.failed_attempts_score)]
    return []


def new_customer_high_amount(inp: FraudInput, ctx: FraudContext, settings: FraudSettings
                             ) -> list[Reason]:
    """A known customer id with no successful payment yet, starting with a large amount."""
    history = ctx.customer_history
    amount = inp.amount.amount_minor
    if (history is not None and history.successful_payments == 0
            and amount > settings.new_customer_amount_minor):
        message = (f"First payment of a new customer is {_rupees(amount)} "
                   f"(above {_rupees(settings.new_customer_amount_minor)})")
        return [Reason("NEW_CUSTOMER_HIGH_AMOUNT", message, settings.new_customer_score)]
    return []


# The original project's three rules: high amount, unusual location, velocity per IP.
SEED_SIGNALS: tuple[Signal, ...] = (high_amount, unusual_location, ip_velocity)

ALL_SIGNALS: tuple[Signal, ...] = (
    high_amount,
    blocklisted,
    unusual_location,
    geo_mismatch,
    ip_velocity,
    identifier_velocity,
    amount_anomaly,
    new_instrument,
    many_instruments,
    failed_attempts,
    new_customer_high_amount,
)
