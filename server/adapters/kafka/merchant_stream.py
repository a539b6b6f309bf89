"""WatchPayments' source: a merchant's events read from `payments.events`, resumable by cursor.

Why Kafka and not the outbox table: outbox ids are assigned at INSERT but transactions commit
in any order, so "every row after id N" read from PostgreSQL can skip a row with a smaller id
that commits later. Kafka offsets are assigned when a record is appended and never change, so
"every record after offset N in partition P" is exact. A stream therefore reads every
partition of the topic without a consumer group (manually assigned, no commits), keeps the
next offset to read per partition, and hands out that map as the cursor. Any server process
can resume any cursor: the log is shared.

Guarantee: after a reconnect with the last cursor received, a stream delivers every event of
the merchant appended after that point exactly once, and a payment's events in order (one
payment, one partition). The relay publishes at least once, so the log itself can hold a
re-published copy of an event; within one connection a copy (a sequence not newer than the
last one sent for its payment) is skipped, and across reconnects it is rare but possible, so
consumers keep deduplicating on event_id. A cursor whose records Kafka has already deleted
(retention) is refused with FAILED_PRECONDITION rather than silently skipping. Events of
different payments have no order between them.

The cursor is `c1.` + base64url("partition:offset,…"): opaque to clients; it reveals only
offsets, never another merchant's data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as kafka_errors
from triveni.v1 import events_pb2

from server.adapters.kafka.kafka_python import security_config
from server.adapters.kafka.ports import IncomingMessage, KafkaSettings
from server.errors import DependencyUnavailable, IllegalTransition, RateLimited, ValidationError

__all__ = [
    "CURSOR_PREFIX",
    "EventTail",
    "KafkaEventTail",
    "MerchantEventStream",
    "decode_cursor",
    "encode_cursor",
]

log = logging.getLogger(__name__)

CURSOR_PREFIX: Final = "c1."
_METADATA_WAIT_S: Final = 10.0
_REMEMBERED_PAYMENTS: Final = 10_000
_SHUTTING_DOWN: Final = "shutting down; reconnect with the last cursor"
_EXPIRED: Final = ("after_cursor is older than the events Kafka still keeps; reconnect without "
                   "a cursor (and reconcile with ListPayments)")


def encode_cursor(positions: Mapping[int, int]) -> str:
    """The cursor for "next offset to read" per partition."""
    text = ",".join(f"{partition}:{offset}" for partition, offset in sorted(positions.items()))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[int, int]:
    """Partition → next offset; ValidationError("after_cursor", …) when it is not ours."""
    if not cursor.startswith(CURSOR_PREFIX):
        raise ValidationError("after_cursor", "is not a cursor returned by WatchPayments")
    body = cursor[len(CURSOR_PREFIX):]
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        positions: dict[int, int] = {}
        for item in filter(None, text.split(",")):
            partition, offset = item.split(":")
            positions[int(partition)] = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("after_cursor",
                              "is not a cursor returned by WatchPayments") from None
    if not positions or any(p < 0 or o < 0 for p, o in positions.items()):
        raise ValidationError("after_cursor", "is not a cursor returned by WatchPayments")
    return positions


class EventTail(Protocol):
    """Reads every partition of one topic from chosen offsets."""

    async def start(self, cursor: Mapping[int, int] | None) -> dict[int, int]:
        """Position the reader (at the end when `cursor` is None); the starting positions."""
        ...

    async def poll(self, timeout_s: float, max_records: int) -> list[IncomingMessage]: ...

    def close(self) -> None:
        """Release the reader without waiting."""
        ...


class KafkaEventTail:
    """`EventTail` on kafka-python, its blocking client confined to one thread."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-watch")
        self._consumer: KafkaConsumer | None = None

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def start(self, cursor: Mapping[int, int] | None) -> dict[int, int]:
        positions: dict[int, int] = await self._run(self._start, dict(cursor or {}),
                                                    cursor is None)
        return positions

    async def poll(self, timeout_s: float, max_records: int) -> list[IncomingMessage]:
        messages: list[IncomingMessage] = await self._run(self._poll, timeout_s, max_records)
        return messages

    def close(self) -> None:
        self._executor.submit(self._close)
        self._executor.shutdown(wait=False)

    # --- in the reader thread ---------------------------------------------------------------
    def _start(self, cursor: dict[int, int], from_end: bool) -> dict[int, int]:
        settings = self._settings
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=settings.bootstrap_servers(),
                client_id=f"{settings.client_id}-watch", group_id=None,
                enable_auto_commit=False, auto_offset_reset="none", fetch_max_wait_ms=100,
                request_timeout_ms=max(settings.request_timeout_ms, 1_000),
                bootstrap_timeout_ms=settings.metadata_timeout_ms,
                reconnect_backoff_max_ms=1_000, **security_config(settings))
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", f"{type(exc).__name__}: {exc}") from exc
        self._consumer = consumer
        try:
            deadline = time.monotonic() + _METADATA_WAIT_S
            partitions = consumer.partitions_for_topic(self._topic)
            while not partitions and time.monotonic() < deadline:
                time.sleep(0.2)
                partitions = consumer.partitions_for_topic(self._topic)
            if not partitions:
                raise DependencyUnavailable("kafka", f"topic {self._topic} has no partitions")
            unknown = set(cursor) - set(partitions)
            if unknown:
                raise ValidationError("after_cursor", "names partitions this topic lacks")
            tps = [KafkaTopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            timeout_ms = settings.request_timeout_ms
            begin = consumer.beginning_offsets(tps, timeout_ms=timeout_ms)
            end = consumer.end_offsets(tps, timeout_ms=timeout_ms) if from_end else {}
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", f"{type(exc).__name__}: {exc}") from exc
        positions: dict[int, int] = {}
        for tp in tps:
            start = end[tp] if from_end else cursor.get(tp.partition, begin[tp])
            if start < begin[tp]:
                raise IllegalTransition(_EXPIRED)
            consumer.seek(tp, start)
            positions[tp.partition] = start
        return positions

    def _poll(self, timeout_s: float, max_records: int) -> list[IncomingMessage]:
        consumer = self._consumer
        assert consumer is not None, "start() first"
        try:
            batches = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except kafka_errors.OffsetOutOfRangeError:
            raise IllegalTransition(_EXPIRED) from None
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", f"{type(exc).__name__}: {exc}") from exc
        messages = [
            IncomingMessage(
                topic=record.topic, partition=record.partition, offset=record.offset,
                key=None if record.key is None else record.key.decode("utf-8", "replace"),
                value=record.value if record.value is not None else b"",
                headers=tuple((name, value or b"") for name, value in record.headers or ()),
                timestamp_ms=record.timestamp)
            for records in batches.values() for record in records
        ]
        return messages

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("closing the watch consumer failed: %s", exc)


class MerchantEventStream:
    """Yields (event, cursor) for one merchant; (None, cursor) is a heartbeat.

    The first item is always a heartbeat carrying the starting cursor, so a client that
    disconnects before any event can still resume without a gap. Heartbeats follow every
    `heartbeat_seconds` without an event; their cursor moves past other merchants' events.
    """

    def __init__(self, open_tail: Callable[[], EventTail], *, heartbeat_seconds: float = 15.0,
                 poll_seconds: float = 0.5, max_streams: int = 64) -> None:
        self._open_tail = open_tail
        self._heartbeat_seconds = heartbeat_seconds
        self._poll_seconds = poll_seconds
        self._max_streams = max_streams
        self._active = 0
        self._closing = False

    def shutdown(self) -> None:
        """End every open stream with UNAVAILABLE within a poll; clients resume elsewhere."""
        self._closing = True

    @property
    def active_streams(self) -> int:
        return self._active

    async def watch(self, merchant_id: str, after_cursor: str
                    ) -> AsyncIterator[tuple[events_pb2.PaymentEvent | None, str]]:
        cursor = decode_cursor(after_cursor) if after_cursor else None
        if self._closing:
            raise DependencyUnavailable("server", _SHUTTING_DOWN)
        if self._active >= self._max_streams:
            raise RateLimited("too many WatchPayments streams on this server; retry shortly", 1.0)
        self._active += 1
        tail = self._open_tail()
        try:
            positions = await tail.start(cursor)
            yield None, encode_cursor(positions)
            last_sent = time.monotonic()
            # The relay publishes at least once: a re-published event repeats an earlier
            # sequence of its payment. Skip those (per connection, bounded memory).
            sequences: OrderedDict[str, int] = OrderedDict()
            while True:
                if self._closing:
                    raise DependencyUnavailable("server", _SHUTTING_DOWN)
                for message in await tail.poll(self._poll_seconds, 500):
                    positions[message.partition] = message.offset + 1
                    try:
                        event = events_pb2.PaymentEvent.FromString(message.value)
                    except DecodeError:
                        log.warning("undecodable record on the events topic",
                                    extra={"partition": message.partition,
                                           "offset": message.offset})
                        continue
                    if event.merchant_id != merchant_id:
                        continue
                    payment_id = event.payment.id
                    if sequences.get(payment_id, 0) >= event.sequence:
                        continue
                    sequences[payment_id] = event.sequence
                    sequences.move_to_end(payment_id)
                    if len(sequences) > _REMEMBERED_PAYMENTS:
                        sequences.popitem(last=False)
                    yield event, encode_cursor(positions)
                    last_sent = time.monotonic()
                if time.monotonic() - last_sent >= self._heartbeat_seconds:
                    yield None, encode_cursor(positions)
                    last_sent = time.monotonic()
        finally:
            self._active -= 1
            tail.close()
