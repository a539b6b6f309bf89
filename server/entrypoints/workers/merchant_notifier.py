"""The merchant notifier: `payments.events` → webhook deliveries → merchants' endpoints.

Two loops, run together in-process by the worker supervisor or alone with

    python -m server.entrypoints.workers.merchant_notifier

- the **fan-out loop** is a member of the `triveni-merchant-notifier` consumer group: it polls
  events, stores one delivery row per matching endpoint (unique per endpoint and event) and
  commits the Kafka offsets only after that transaction committed. A crash in between means
  the events come again and the unique index absorbs them: exactly one delivery per endpoint.
- the **delivery loop** claims due deliveries from PostgreSQL (SKIP LOCKED + lease), sends
  them and records the attempts (see `server.service_layer.merchant_notifications`). It wakes
  when the fan-out in this process stored rows, else every `poll_interval`.

Both loops survive PostgreSQL and Kafka outages (backing off up to 30 s) and return when
`stop` is set. Any number of processes can run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from psycopg_pool import AsyncConnectionPool
from triveni.v1 import events_pb2

from server.adapters.kafka.factory import build_consumer, settings_from_env
from server.adapters.kafka.ports import EventConsumer, IncomingMessage, KafkaSettings, lag_by_topic
from server.adapters.kafka.topics import PAYMENTS_EVENTS
from server.adapters.metrics import CONSUMER_LAG, MERCHANT_WEBHOOK_DELIVERIES
from server.adapters.postgres.merchant_webhooks import PostgresMerchantWebhooks
from server.adapters.webhook_payload import dead_letter_record, event_body
from server.adapters.webhook_sender import WebhookSender
from server.domain.merchant_webhooks import RetrySchedule
from server.domain.payment import utcnow
from server.errors import DependencyUnavailable
from server.service_layer.merchant_notifications import (
    DeliveryDispatcher,
    FanOut,
    PublishedEvent,
)

if TYPE_CHECKING:
    from server.config import Settings

__all__ = [
    "DEFAULT_GROUP",
    "NotifierOptions",
    "event_from_message",
    "main",
    "run_dispatcher",
    "run_fanout",
    "run_merchant_notifier",
]

log = logging.getLogger(__name__)

DEFAULT_GROUP = "triveni-merchant-notifier"
_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0
_LAG_INTERVAL = 15.0


@dataclass(frozen=True, slots=True)
class NotifierOptions:
    """Tunables; `from_settings` reads the TRIVENI_WEBHOOK_* / TRIVENI_ALLOW_* settings."""

    group: str = DEFAULT_GROUP
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    allow_private: bool = False
    timeout_seconds: float = 10.0
    # A sender that dies mid-request holds a delivery this long before another takes it.
    lease_seconds: float = 45.0
    poll_interval: float = 1.0
    batch_size: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifierOptions:
        return cls(group=settings.merchant_notifier_group, schedule=settings.webhook_schedule(),
                   allow_private=settings.allow_private_webhook_urls and not settings.production,
                   timeout_seconds=settings.webhook_timeout_seconds,
                   lease_seconds=settings.webhook_timeout_seconds + 35.0)


def event_from_message(message: IncomingMessage) -> PublishedEvent | None:
    """The event in a `payments.events` record (None, logged, when it is not one)."""
    try:
        event = events_pb2.PaymentEvent.FromString(message.value)
    except DecodeError:
        event = None
    if event is None or not event.event_id or not event.merchant_id:
        log.warning("skipping a record that is not a PaymentEvent",
                    extra={"partition": message.partition, "offset": message.offset})
        return None
    return PublishedEvent(
        event_id=event.event_id, event_type=event.type, merchant_id=event.merchant_id,
        payment_id=event.payment.id or (message.key or ""), sequence=event.sequence,
        occurred_at=event.occurred_at.ToDatetime(tzinfo=UTC),
        render_body=functools.cache(functools.partial(event_body, event)))


def _observe(result: str) -> None:
    MERCHANT_WEBHOOK_DELIVERIES.labels(result=result).inc()


async def _pause(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Sleep `seconds`, or less when `stop` (or `wake`) is set."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_fanout(fanout: FanOut, consumer: EventConsumer, stop: asyncio.Event, *,
                     wake: asyncio.Event | None = None, group: str = DEFAULT_GROUP) -> None:
    """Consume events into delivery rows until `stop`; offsets committed after the rows."""
    backoff = _BACKOFF_START
    next_lag = time.monotonic() + _LAG_INTERVAL
    while not stop.is_set():
        try:
            messages = await consumer.poll(max_records=500, timeout_s=0.5)
        except DependencyUnavailable as exc:
            log.warning("notifier cannot poll Kafka: %s", exc)
            await _pause(stop, backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
            continue
        if messages:
            events = [e for e in map(event_from_message, messages) if e is not None]
            if not await _store_until_done(fanout, events, stop):
                return  # stopping during an outage: uncommitted, so these come again
            try:
                await consumer.commit(messages)
            except DependencyUnavailable as exc:
                log.warning("notifier offset commit failed (events will repeat, deduped): %s",
                            exc)
            if wake is not None:
                wake.set()
        backoff = _BACKOFF_START
        if time.monotonic() >= next_lag:
            next_lag = time.monotonic() + _LAG_INTERVAL
            with contextlib.suppress(DependencyUnavailable):
                for topic, behind in lag_by_topic(await consumer.lag()).items():
                    CONSUMER_LAG.labels(topic=topic, group=group).set(behind)


async def _store_until_done(fanout: FanOut, events: list[PublishedEvent],
                            stop: asyncio.Event) -> bool:
    backoff = _BACKOFF_START
    while True:
        try:
            await fanout.handle(events)
            return True
        except DependencyUnavailable as exc:
            log.warning("notifier cannot store deliveries, retrying: %s", exc)
        except Exception:
            # Never skip events: retry the batch (uncommitted) until it can be stored.
            log.exception("storing webhook deliveries failed, retrying")
        if stop.is_set():
            return False
        await _pause(stop, backoff)
        backoff = min(backoff * 2, _BACKOFF_MAX)


async def run_dispatcher(dispatcher: DeliveryDispatcher, stop: asyncio.Event, *,
                         wake: asyncio.Event | None = None, poll_interval: float = 1.0) -> None:
    """Deliver due webhooks until `stop` (a round in flight finishes first)."""
    backoff = _BACKOFF_START
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        try:
            attempted = await dispatcher.run_once()
        except DependencyUnavailable as exc:
            log.warning("notifier cannot reach PostgreSQL: %s", exc)
            await _pause(stop, backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
            continue
        except Exception:
            # Leases expire, so nothing is lost; keep the loop alive and visible in the logs.
            log.exception("webhook delivery round failed")
            await _pause(stop, backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
            continue
        backoff = _BACKOFF_START
        if not attempted:
            await _pause(stop, poll_interval, wake)


def worker_id() -> str:
    """Identifies a lease holder: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_dispatcher(store: PostgresMerchantWebhooks, sender: WebhookSender,
                     options: NotifierOptions) -> DeliveryDispatcher:
    return DeliveryDispatcher(
        store, sender, owner=worker_id(), schedule=options.schedule,
        dead_letter_record=dead_letter_record, clock=utcnow,
        lease=timedelta(seconds=options.lease_seconds), batch_size=options.batch_size,
        observe=_observe)


async def run_merchant_notifier(pool: AsyncConnectionPool[Any], kafka: KafkaSettings,
                                stop: asyncio.Event, options: NotifierOptions | None = None
                                ) -> None:
    """Both loops over `pool` (dict rows) and Kafka until `stop` is set."""
    options = options or NotifierOptions()
    store = PostgresMerchantWebhooks(pool)
    consumer = build_consumer(kafka, options.group, [PAYMENTS_EVENTS])
    sender = WebhookSender(allow_private=options.allow_private,
                           timeout_seconds=options.timeout_seconds)
    wake = asyncio.Event()
    log.info("merchant notifier started (group=%s, %d attempts over %s)", options.group,
             options.schedule.max_attempts, options.schedule.total)
    try:
        await asyncio.gather(
            run_fanout(FanOut(store), consumer, stop, wake=wake, group=options.group),
            run_dispatcher(build_dispatcher(store, sender, options), stop, wake=wake,
                           poll_interval=options.poll_interval))
    finally:
        await consumer.close()
        await sender.aclose()
        log.info("merchant notifier stopped")


async def run_standalone() -> None:
    """The notifier as its own process (settings from the environment, stops on SIGTERM)."""
    from server.adapters.postgres.pool import create_pool
    from server.config import load_settings
    from server.errors import ConfigurationError

    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise ConfigurationError("KAFKA_BOOTSTRAP is not set")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    pool = await create_pool(settings.postgres_url.get_secret_value(), min_size=1, max_size=4)
    try:
        await run_merchant_notifier(
            pool, settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap), stop,
            NotifierOptions.from_settings(settings))
    finally:
        await pool.close()


def main() -> None:
    """`python -m server.entrypoints.workers.merchant_notifier`."""
    from server.logging_setup import configure_logging

    configure_logging(os.environ.get("TRIVENI_LOG_LEVEL", "INFO").upper(),
                      os.environ.get("TRIVENI_LOG_FORMAT", "json"))
    asyncio.run(run_standalone())


if __name__ == "__main__":
    main()
