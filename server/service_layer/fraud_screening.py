"""Fraud screening: gather the facts about one payment, let the pure engine decide.

Velocity comes from Redis, concurrently with the PostgreSQL look-ups (settings, blocklist,
customer history, distinct instruments, recent failures) on the caller's connection. Redis
being down never fails a payment: the velocity signals are listed as unavailable and the
merchant's `velocity_fail_mode` decides (open: skip them; closed: at least REVIEW). PostgreSQL
errors propagate: without the blocklist there is no screening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Generic, Protocol, TypeVar, runtime_checkable

from server.domain.fraud import (
    FAILURE_LOOKBACK,
    INSTRUMENT_LOOKBACK,
    SIGNAL_GEOIP,
    SIGNAL_VELOCITY,
    Assessment,
    BlocklistHit,
    CustomerHistory,
    Decision,
    FraudContext,
    FraudInput,
    FraudSettings,
    ReviewAction,
    StoredFraudSettings,
    VelocityKey,
    VelocityReadings,
    assess,
    instrument_of,
    normalize_input,
    velocity_by_kind,
    velocity_keys,
)
from server.domain.fraud.model import StoredFacts
from server.errors import DependencyUnavailable
from server.service_layer.fraud_metrics import FraudMetrics

__all__ = ["FraudFacts", "FraudScreening", "GeoLookup", "Screening", "VelocityStore"]

log = logging.getLogger(__name__)

ConnT = TypeVar("ConnT", contravariant=True)
C = TypeVar("C")


class VelocityStore(Protocol):
    """Sliding-window counters (RedisVelocityStore). Raise DependencyUnavailable when down."""

    async def read(self, keys: Sequence[VelocityKey]) -> VelocityReadings: ...

    async def record_and_read(self, keys: Sequence[VelocityKey], amount_minor: int,
                              event_id: str) -> VelocityReadings: ...


class GeoLookup(Protocol):
    """IP → ISO country (IpCountryLookup); None when unknown or not public."""

    def country_of(self, ip: str) -> str | None: ...


class FraudFacts(Protocol[ConnT]):
    """The PostgreSQL look-ups (PostgresFraudRepository), on the caller's connection."""

    async def get_settings(self, conn: ConnT, merchant_id: str) -> StoredFraudSettings: ...

    async def find_blocklist_hits(self, conn: ConnT, merchant_id: str, inp: FraudInput
                                  ) -> Sequence[BlocklistHit]: ...

    async def customer_history(self, conn: ConnT, merchant_id: str, customer_id: str, *,
                               instrument: str = "") -> CustomerHistory: ...

    async def distinct_instruments(self, conn: ConnT, merchant_id: str, *, since: timedelta,
                                   customer_id: str = "", ip: str = "", exclude: str = ""
                                   ) -> int: ...

    async def recent_failures(self, conn: ConnT, merchant_id: str, inp: FraudInput, *,
                              since: timedelta) -> int: ...


@runtime_checkable
class BatchedFraudFacts(Protocol[ConnT]):
    """A FraudFacts that can answer everything (settings included) in one round trip."""

    async def all_facts(self, conn: ConnT, merchant_id: str, inp: FraudInput, *,
                        instrument_since: timedelta, failure_since: timedelta
                        ) -> tuple[StoredFraudSettings, StoredFacts]: ...


@dataclass(frozen=True, slots=True)
class Screening:
    """An assessment with the settings it was made under."""

    assessment: Assessment
    settings: FraudSettings

    @property
    def hold(self) -> bool:
        """True when the payment must wait IN_REVIEW (REVIEW and review_action = hold)."""
        return (self.assessment.decision is Decision.REVIEW
                and self.settings.review_action is ReviewAction.HOLD)


class FraudScreening(Generic[C]):
    """Screens payments: `await screening.screen(conn, merchant_id, inp, record=True)`."""

    def __init__(self, velocity: VelocityStore | None, geo: GeoLookup | None,
                 facts: FraudFacts[C], *, metrics: FraudMetrics | None = None) -> None:
        self._velocity = velocity
        self._geo = geo
        self._facts = facts
        self._metrics = metrics

    async def screen(self, conn: C, merchant_id: str, inp: FraudInput, *, record: bool,
                     event_id: str = "", settings: FraudSettings | None = None) -> Assessment:
        """Assess one payment. `record` counts it in the velocity windows (once per
        `event_id`, e.g. the payment id); `settings` skips reading the merchant's."""
        screening = await self.screen_detailed(conn, merchant_id, inp, record=record,
                                               event_id=event_id, settings=settings)
        return screening.assessment

    async def screen_detailed(self, conn: C, merchant_id: str, inp: FraudInput, *,
                              record: bool, event_id: str = "",
                              settings: FraudSettings | None = None) -> Screening:
        """Like `screen`, also returning the settings used (for the review action)."""
        started = time.perf_counter()
        inp = normalize_input(replace(inp, merchant_id=merchant_id))
        if record and not event_id:
            event_id = "scr_" + secrets.token_hex(12)
        counters = asyncio.create_task(self._read_velocity(inp, record, event_id))
        try:
            if isinstance(self._facts, BatchedFraudFacts):
                stored, facts = await self._facts.all_facts(
                    conn, merchant_id, inp, instrument_since=INSTRUMENT_LOOKBACK,
                    failure_since=FAILURE_LOOKBACK)
                settings = settings or stored.settings
                ctx = FraudContext(
                    blocklist_hits=facts.blocklist_hits, customer_history=facts.customer_history,
                    other_instruments_for_customer=facts.other_instruments_for_customer,
                    other_instruments_for_ip=facts.other_instruments_for_ip,
                    recent_failures=facts.recent_failures)
            else:
                if settings is None:
                    settings = (await self._facts.get_settings(conn, merchant_id)).settings
                ctx = await self._stored_facts(conn, merchant_id, inp)
        except BaseException:
            counters.cancel()
            with contextlib.suppress(BaseException):
                await counters
            raise
        readings = await counters
        unavailable = set(ctx.unavailable)
        if readings is None:
            unavailable.add(SIGNAL_VELOCITY)
        ip_country = None
        if inp.ip:
            ip_country, geo_ok = self._country(inp.ip)
            if not geo_ok:
                unavailable.add(SIGNAL_GEOIP)
        ctx = replace(ctx, velocity=velocity_by_kind(readings or {}),
                      velocity_includes_current=record, ip_country=ip_country,
                      unavailable=frozenset(unavailable))
        assessment = assess(inp, ctx, settings)
        if self._metrics is not None:
            self._metrics.observe(assessment, sorted(ctx.unavailable),
                                  time.perf_counter() - started)
        return Screening(assessment, settings)

    async def _read_velocity(self, inp: FraudInput, record: bool, event_id: str
                             ) -> VelocityReadings | None:
        """The payment's counters, or None when they cannot be read (Redis down)."""
        if self._velocity is None:
            return None
        keys = velocity_keys(inp)
        if not keys:
            return {}
        try:
            if record:
                return await self._velocity.record_and_read(keys, inp.amount.amount_minor,
                                                            event_id)
            return await self._velocity.read(keys)
        except DependencyUnavailable as exc:
            log.warning("fraud velocity unavailable: %s", exc)
            return None

    async def _stored_facts(self, conn: C, merchant_id: str, inp: FraudInput) -> FraudContext:
        """What PostgreSQL knows: blocklist hits, customer history, instruments, failures."""
        hits = await self._facts.find_blocklist_hits(conn, merchant_id, inp)
        instrument = instrument_of(inp)
        history = None
        per_customer = per_ip = 0
        if inp.customer_id:
            history = await self._facts.customer_history(conn, merchant_id, inp.customer_id,
                                                         instrument=instrument)
            per_customer = await self._facts.distinct_instruments(
                conn, merchant_id, since=INSTRUMENT_LOOKBACK, customer_id=inp.customer_id,
                exclude=instrument)
        if inp.ip:
            per_ip = await self._facts.distinct_instruments(
                conn, merchant_id, since=INSTRUMENT_LOOKBACK, ip=inp.ip, exclude=instrument)
        failures = await self._facts.recent_failures(conn, merchant_id, inp,
                                                     since=FAILURE_LOOKBACK)
        return FraudContext(
            blocklist_hits=tuple(hits), customer_history=history,
            other_instruments_for_customer=per_customer, other_instruments_for_ip=per_ip,
            recent_failures=failures,
        )

    def _country(self, ip: str) -> tuple[str | None, bool]:
        """(country, lookup worked)."""
        if self._geo is None:
            return None, False
        try:
            return self._geo.country_of(ip), True
        except Exception:  # a broken geo database must not fail payments
            log.exception("geoip lookup failed")
            return None, False
