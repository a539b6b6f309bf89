"""Merchant notifications: fan events out to endpoints, then deliver them on a durable schedule.

1. **Fan-out** (`FanOut.handle`): for each payment event, one delivery row per enabled endpoint
   of the event's merchant that subscribes to its type and existed when it occurred. The rows
   are unique per (endpoint, event), so an event handed over twice (Kafka redelivers after a
   crash or rebalance) still yields one delivery per endpoint.
2. **Delivery** (`DeliveryDispatcher.run_once`): lease due deliveries, sign each body at send
   time with every live secret of its endpoint, POST it, record the attempt, and either mark
   it DELIVERED, schedule the next attempt (RETRYING) or, when the schedule is exhausted, mark
   it DEAD_LETTERED and queue the dead-letter record for `merchant.webhooks.dlq` in the same
   transaction. Within one endpoint, a payment's sequence N+1 is not sent before N is
   delivered or dead-lettered (the store's claim enforces it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from triveni.webhooks import EVENT_ID_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER, sign

from server.domain.merchant_webhooks import (
    DeliveryAttempt,
    DeliveryStatus,
    RetrySchedule,
    SendOutcome,
    WebhookDelivery,
    WebhookEndpoint,
)
from server.domain.payment import utcnow

__all__ = [
    "DELIVERY_ID_HEADER",
    "ClaimedDelivery",
    "DeliveryDispatcher",
    "DispatchStore",
    "FanOut",
    "FanOutStore",
    "NewDelivery",
    "PublishedEvent",
    "Sender",
]

log = logging.getLogger(__name__)

DELIVERY_ID_HEADER = "Triveni-Delivery-Id"

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """A payment event as read from `payments.events`. Its webhook body is built on first use
    (cached by `render_body`): most events belong to merchants without endpoints."""

    event_id: str
    event_type: str
    merchant_id: str
    payment_id: str
    sequence: int
    occurred_at: datetime
    render_body: Callable[[], bytes]

    @property
    def body(self) -> bytes:
        return self.render_body()


@dataclass(frozen=True, slots=True)
class NewDelivery:
    endpoint_id: str
    merchant_id: str
    event_id: str
    event_type: str
    payment_id: str
    sequence: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    body: bytes
    lease_owner: str


class FanOutStore(Protocol):
    async def endpoints_for_merchants(self, merchant_ids: Sequence[str]
                                      ) -> dict[str, list[WebhookEndpoint]]: ...

    async def insert_deliveries(self, deliveries: Sequence[NewDelivery], now: datetime) -> int: ...


class DispatchStore(Protocol):
    async def claim_due(self, *, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> Sequence[ClaimedDelivery]: ...

    async def finish_attempt(self, claim: ClaimedDelivery, attempt: DeliveryAttempt, *,
                             status: DeliveryStatus, next_attempt_at: datetime | None,
                             now: datetime, dead_letter: bytes | None = None) -> bool: ...


class Sender(Protocol):
    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome: ...


class FanOut:
    """Turns payment events into delivery rows (idempotently)."""

    def __init__(self, store: FanOutStore, *, clock: Clock = utcnow) -> None:
        self._store = store
        self._clock = clock

    async def handle(self, events: Sequence[PublishedEvent]) -> int:
        """Store the deliveries for `events`; returns how many rows were new."""
        if not events:
            return 0
        endpoints = await self._store.endpoints_for_merchants(
            sorted({event.merchant_id for event in events}))
        rows = [
            NewDelivery(endpoint_id=endpoint.id, merchant_id=event.merchant_id,
                        event_id=event.event_id, event_type=event.event_type,
                        payment_id=event.payment_id, sequence=event.sequence, body=event.body)
            for event in events
            for endpoint in endpoints.get(event.merchant_id, ())
            if endpoint.wants(event.event_type, event.occurred_at)
        ]
        if not rows:
            return 0
        return await self._store.insert_deliveries(rows, self._clock())


DeadLetterRecord = Callable[[WebhookDelivery, str, bytes, datetime], bytes]
Observe = Callable[[str], None]


class DeliveryDispatcher:
    """One round = claim due deliveries, send them concurrently, record every result."""

    def __init__(self, store: DispatchStore, sender: Sender, *, owner: str,
                 schedule: RetrySchedule, dead_letter_record: DeadLetterRecord,
                 clock: Clock = utcnow, lease: timedelta = timedelta(seconds=60),
                 batch_size: int = 50, observe: Observe | None = None) -> None:
        self._store = store
        self._sender = sender
        self._owner = owner
        self._schedule = schedule
        self._dead_letter_record = dead_letter_record
        self._clock = clock
        self._lease = lease
        self._batch_size = batch_size
        self._observe = observe or (lambda result: None)

    async def run_once(self) -> int:
        """Deliveries attempted in this round (0 = nothing was due)."""
        now = self._clock()
        claims = await self._store.claim_due(owner=self._owner, now=now,
                                             lease_until=now + self._lease,
                                             limit=self._batch_size)
        if claims:
            await asyncio.gather(*(self._deliver(claim) for claim in claims))
        return len(claims)

    def headers(self, claim: ClaimedDelivery, now: datetime) -> dict[str, str]:
        """The Triveni-* headers for one attempt, signed with every live secret."""
        delivery = claim.delivery
        return {
            SIGNATURE_HEADER: sign(claim.body, claim.endpoint.signing_secrets(now),
                                   int(now.timestamp())),
            EVENT_ID_HEADER: delivery.event_id,
            SEQUENCE_HEADER: str(delivery.sequence),
            DELIVERY_ID_HEADER: delivery.id,
        }

    async def _deliver(self, claim: ClaimedDelivery) -> None:
        delivery = claim.delivery
        started = self._clock()
        outcome = await self._sender.send(claim.endpoint.url, claim.body,
                                          self.headers(claim, started))
        number = delivery.attempt_count + 1
        attempt = DeliveryAttempt(number=number, at=started, http_status=outcome.http_status,
                                  error=outcome.error, latency_ms=outcome.latency_ms)
        now = self._clock()
        next_at: datetime | None = None
        dead_letter: bytes | None = None
        if outcome.delivered:
            status = DeliveryStatus.DELIVERED
        else:
            self._observe("failed")
            delay = self._schedule.delay_after(number)
            if delay is None:
                status = DeliveryStatus.DEAD_LETTERED
                final = replace(delivery, attempt_count=number, last_error=outcome.error,
                                status=status)
                dead_letter = self._dead_letter_record(final, claim.endpoint.url, claim.body,
                                                       now)
            else:
                status = DeliveryStatus.RETRYING
                next_at = now + timedelta(seconds=delay)
        recorded = await self._store.finish_attempt(
            claim, attempt, status=status, next_attempt_at=next_at, now=now,
            dead_letter=dead_letter)
        if not recorded:
            # Our lease expired and another worker took the delivery over; its attempt counts.
            log.warning("webhook delivery lease lost", extra={"delivery_id": delivery.id})
            return
        self._observe({DeliveryStatus.DELIVERED: "delivered",
                       DeliveryStatus.RETRYING: "retried",
                       DeliveryStatus.DEAD_LETTERED: "dead_lettered"}[status])
        log.info("webhook delivery attempt", extra={
            "delivery_id": delivery.id, "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id, "attempt": number, "status": status.value,
            "http_status": outcome.http_status, "error": outcome.error})
