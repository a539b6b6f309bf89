"""The Kafka status-sync retry worker: one consumer group per retry topic.

Each `payments.retry.<rung>` topic has its own group (`<prefix>.5s`, `<prefix>.30s`, ...), so a
partition waiting an hour never delays the five-second rung. For every message, in offset
order per partition:

- not due yet → the partition is held (paused and rewound to the message) until the due time,
  while polling continues, so the group's heartbeats and poll interval are never missed;
- due → `PaymentService.run_scheduled_sync` (actor `worker:retry`): dropped when the payment is
  final or the message's ticket is stale (superseded, or a redelivery), else the PSP is asked
  and, while the payment stays pending, the next rung is scheduled in the same transaction as
  the result; past the 3-day tail the message goes to `payments.dlq` and a checkout nobody
  completed is EXPIRED (server/service_layer/sync_schedule.py);
- the offset is committed only after that PostgreSQL transaction committed, so a crash means a
  redelivery, which the ticket check turns into a no-op;
- a handler error holds the partition and retries with backoff; after `max_failures` errors
  (or at once for a malformed message or an unknown payment) the message goes to
  `payments.dlq` with the reason. PostgreSQL or Redis being down is not the message's fault:
  those errors back off without counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from server.adapters.kafka.factory import build_consumer, settings_from_env
from server.adapters.kafka.ports import (
    EventConsumer,
    IncomingMessage,
    KafkaSettings,
    TopicPartition,
)
from server.adapters.kafka.topics import PAYMENTS_RETRY
from server.adapters.metrics import CONSUMER_LAG, SYNC_RETRY_MESSAGES
from server.config import Settings
from server.errors import DependencyUnavailable, NotFound
from server.service_layer.payments import PaymentService
from server.service_layer.sync_schedule import SyncMessage

__all__ = [
    "RETRY_TOPICS",
    "RetryTopicWorker",
    "RetryWorkerOptions",
    "retry_kafka_settings",
    "run_sync_retry",
    "run_sync_retry_for",
]

log = logging.getLogger(__name__)

RETRY_TOPICS: Final = tuple(topic for _, topic in PAYMENTS_RETRY)
ACTOR: Final = "worker:retry"

Handler = Callable[[SyncMessage], Awaitable[str]]
DeadLetter = Callable[[str, dict[str, object]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryWorkerOptions:
    group_prefix: str = "triveni-payments-retry"
    topics: tuple[str, ...] = RETRY_TOPICS
    max_records: int = 100
    concurrency: int = 16  # due messages handled at once per topic
    max_failures: int = 5
    failure_backoff_seconds: float = 2.0  # doubles per failure of the same message
    max_backoff_seconds: float = 60.0
    dependency_backoff_seconds: float = 1.0
    poll_timeout_seconds: float = 0.5
    lag_interval_seconds: float = 15.0

    def group_for(self, topic: str) -> str:
        return f"{self.group_prefix}.{topic.rsplit('.', 1)[-1]}"


@dataclass(frozen=True, slots=True)
class _Hold:
    until: float  # epoch seconds


class RetryTopicWorker:
    """One member of one retry topic's group (see the module docstring)."""

    def __init__(self, consumer: EventConsumer, topic: str, group: str, handler: Handler,
                 dead_letter: DeadLetter, options: RetryWorkerOptions | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._consumer = consumer
        self.topic = topic
        self.group = group
        self._handler = handler
        self._dead_letter = dead_letter
        self._options = options or RetryWorkerOptions()
        self._clock = clock
        self._held: dict[TopicPartition, float] = {}
        self._failures: dict[tuple[TopicPartition, int], int] = {}
        self._slots = asyncio.Semaphore(self._options.concurrency)
        self._lag_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; never raises (errors are logged and backed off)."""
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                    await self._report_lag()
                except DependencyUnavailable as exc:
                    log.warning("retry worker: dependency unavailable",
                                extra={"topic": self.topic, "error": str(exc)})
                    await _wait(stop, self._options.dependency_backoff_seconds)
                except Exception:
                    log.exception("retry worker round failed", extra={"topic": self.topic})
                    await _wait(stop, self._options.dependency_backoff_seconds)
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.close()

    async def run_once(self) -> int:
        """Resume partitions whose hold ended, poll once, handle what is due; returns the
        number of messages finished (committed)."""
        now = self._clock()
        ended = [tp for tp, until in self._held.items() if until <= now]
        if ended:
            await self._consumer.resume(ended)
            for tp in ended:
                del self._held[tp]
        timeout = self._options.poll_timeout_seconds
        if self._held:
            timeout = max(0.01, min(timeout, min(self._held.values()) - now))
        messages = await self._consumer.poll(self._options.max_records, timeout)
        if not messages:
            return 0
        by_partition: dict[TopicPartition, list[IncomingMessage]] = defaultdict(list)
        for message in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
            by_partition[TopicPartition(message.topic, message.partition)].append(message)
        finished = await asyncio.gather(*(self._partition(tp, batch)
                                          for tp, batch in by_partition.items()))
        done = [message for prefix in finished for message in prefix]
        if done:
            try:
                await self._consumer.commit(done)
            except DependencyUnavailable as exc:
                # Redelivered later; the ticket check makes the repeat a no-op.
                log.warning("retry worker: offset commit failed",
                            extra={"topic": self.topic, "error": str(exc)})
        return len(done)

    async def _partition(self, tp: TopicPartition, batch: Sequence[IncomingMessage]
                         ) -> list[IncomingMessage]:
        """Handle the due prefix of one partition's batch; hold the partition at the first
        message not finished. Returns the finished prefix (safe to commit)."""
        now = self._clock()
        due: list[tuple[IncomingMessage, SyncMessage | None]] = []
        hold_at: tuple[IncomingMessage, float] | None = None
        for message in batch:
            try:
                parsed: SyncMessage | None = SyncMessage.decode(message.value)
            except (ValueError, UnicodeDecodeError):
                parsed = None
            if parsed is not None and parsed.due_at.timestamp() > now:
                hold_at = (message, parsed.due_at.timestamp())
                break
            due.append((message, parsed))
        results = await asyncio.gather(*(self._guarded(tp, m, p) for m, p in due))
        finished: list[IncomingMessage] = []
        for (message, _), retry_at in zip(due, results, strict=True):
            if retry_at is not None:
                hold_at = (message, retry_at)
                break
            finished.append(message)
        if hold_at is not None:
            message, until = hold_at
            await self._consumer.hold(tp, message.offset)
            self._held[tp] = until
        return finished

    async def _guarded(self, tp: TopicPartition, message: IncomingMessage,
                       parsed: SyncMessage | None) -> float | None:
        async with self._slots:
            return await self._handle(tp, message, parsed)

    async def _handle(self, tp: TopicPartition, message: IncomingMessage,
                      parsed: SyncMessage | None) -> float | None:
        """None when the message is finished; else the time to try it again."""
        key = (tp, message.offset)
        try:
            if parsed is None:
                await self._dead(message, None, "malformed retry message", 1)
                return None
            try:
                outcome = await self._handler(parsed)
            except NotFound as exc:
                await self._dead(message, parsed, f"no such payment: {exc}", 1)
                return None
        except DependencyUnavailable as exc:
            SYNC_RETRY_MESSAGES.labels(topic=self.topic, outcome="failed").inc()
            log.warning("retry message postponed: dependency unavailable",
                        extra={"topic": self.topic, "error": str(exc)})
            return self._clock() + self._options.dependency_backoff_seconds
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            SYNC_RETRY_MESSAGES.labels(topic=self.topic, outcome="failed").inc()
            log.warning("retry message failed", extra={
                "topic": self.topic, "offset": message.offset, "failures": failures,
                "error": f"{type(exc).__name__}: {exc}"})
            if failures < self._options.max_failures:
                backoff = min(self._options.failure_backoff_seconds * 2.0 ** (failures - 1),
                              self._options.max_backoff_seconds)
                return self._clock() + backoff
            try:
                await self._dead(message, parsed, f"handler failed {failures} times: "
                                                  f"{type(exc).__name__}: {exc}", failures)
            except DependencyUnavailable:
                return self._clock() + self._options.dependency_backoff_seconds
            return None
        self._failures.pop(key, None)
        SYNC_RETRY_MESSAGES.labels(topic=self.topic, outcome=outcome).inc()
        return None

    async def _dead(self, message: IncomingMessage, parsed: SyncMessage | None, reason: str,
                    failures: int) -> None:
        body: dict[str, object] = {
            "payment_id": parsed.payment_id if parsed else (message.key or ""),
            "reason": reason[:1000], "topic": message.topic, "partition": message.partition,
            "offset": message.offset, "failures": failures, "group": self.group,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        if parsed is not None:
            body.update(ticket=parsed.ticket, attempt=parsed.attempt,
                        due_at=parsed.due_at.isoformat())
        else:
            body["value"] = message.value[:500].decode("utf-8", "replace")
        await self._dead_letter(str(body["payment_id"]), body)
        self._failures.pop((TopicPartition(message.topic, message.partition), message.offset),
                           None)
        SYNC_RETRY_MESSAGES.labels(topic=self.topic, outcome="dead_lettered").inc()
        log.warning("retry message dead-lettered", extra={
            "topic": self.topic, "payment_id": body["payment_id"], "reason": reason})

    async def _report_lag(self) -> None:
        now = self._clock()
        if now - self._lag_at < self._options.lag_interval_seconds:
            return
        self._lag_at = now
        with contextlib.suppress(DependencyUnavailable):
            behind = sum((await self._consumer.lag()).values())
            CONSUMER_LAG.labels(topic=self.topic, group=self.group).set(behind)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_sync_retry(handler: Handler, dead_letter: DeadLetter, kafka: KafkaSettings,
                         stop: asyncio.Event, options: RetryWorkerOptions | None = None) -> None:
    """One worker (consumer group member) per retry topic, until `stop` is set."""
    options = options or RetryWorkerOptions()
    workers = [
        RetryTopicWorker(build_consumer(kafka, options.group_for(topic), [topic]), topic,
                         options.group_for(topic), handler, dead_letter, options)
        for topic in options.topics
    ]
    await asyncio.gather(*(worker.run(stop) for worker in workers))


def retry_kafka_settings(settings: Settings) -> KafkaSettings:
    """KAFKA_* from the environment, with the consumer-group timings of `settings` on top."""
    kafka = settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap)
    return dataclasses.replace(
        kafka,
        session_timeout_ms=settings.kafka_session_timeout_ms or kafka.session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms or kafka.heartbeat_interval_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms or kafka.max_poll_interval_ms,
    )


async def run_sync_retry_for(settings: Settings, payments: PaymentService,
                             stop: asyncio.Event) -> None:
    """The retry worker as configured by `settings` (TRIVENI_SYNC_RETRY_*)."""

    async def dead_letter(key: str, body: dict[str, object]) -> None:
        await payments.dead_letter_sync(key, body, actor=ACTOR)

    async def handle(message: SyncMessage) -> str:
        return await payments.run_scheduled_sync(message, actor=ACTOR)

    options = RetryWorkerOptions(group_prefix=settings.sync_retry_group,
                                 max_failures=settings.sync_retry_max_failures)
    await run_sync_retry(handle, dead_letter, retry_kafka_settings(settings), stop, options)
