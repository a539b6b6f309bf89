"""The throughput option: confluent-kafka (librdkafka), run in one dedicated thread per client.

Selected with `KAFKA_CLIENT=confluent`. confluent-kafka is an optional dependency (the `dev`
extra, or install it in production images that choose it); `factory.py` imports this module only
when it is selected.

Keys are partitioned with librdkafka's `murmur2_random`, the Java / kafka-python partitioner,
so switching clients never moves a payment's events to another partition (librdkafka's own
default, CRC32, would).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition

from server.adapters.kafka.ports import (
    BatchLedger,
    IncomingMessage,
    KafkaSettings,
    OutgoingMessage,
    PublishResult,
    TopicPartition,
)
from server.adapters.kafka.threaded import ThreadedConsumer, ThreadWorker
from server.errors import DependencyUnavailable

__all__ = [
    "ConfluentConsumer",
    "ConfluentProducer",
    "consumer_config",
    "producer_config",
    "security_config",
]

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection refused, broker down…) go to Python logging here.
librdkafka_log = logging.getLogger("triveni.kafka.librdkafka")

_IDEMPOTENCE_UNSUPPORTED = {KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION}


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka's names for the SASL / SSL settings (only those that are set)."""
    security = settings.security
    config: dict[str, Any] = {"security.protocol": security.protocol.lower()}
    optional = {
        "sasl.mechanism": security.sasl_mechanism,
        "sasl.username": security.sasl_username,
        "sasl.password": security.sasl_password,
        "ssl.ca.location": security.ssl_cafile,
        "ssl.certificate.location": security.ssl_certfile,
        "ssl.key.location": security.ssl_keyfile,
    }
    config.update({name: value for name, value in optional.items() if value is not None})
    return config


def _common_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap,
        "client.id": settings.client_id,
        "socket.connection.setup.timeout.ms": max(settings.metadata_timeout_ms, 1_000),
        "reconnect.backoff.max.ms": 1_000,
        "log.connection.close": False,
        "logger": librdkafka_log,
        **security_config(settings),
    }


def producer_config(settings: KafkaSettings, *, idempotence: bool) -> dict[str, Any]:
    """librdkafka producer configuration for `settings` (callbacks are added by the producer)."""
    return {
        **_common_config(settings),
        "acks": "all",
        "enable.idempotence": idempotence,
        "max.in.flight.requests.per.connection": 5 if idempotence else 1,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.batch_size,
        "compression.type": settings.compression,
        "request.timeout.ms": settings.request_timeout_ms,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "partitioner": "murmur2_random",
    }


def consumer_config(settings: KafkaSettings, group: str) -> dict[str, Any]:
    """librdkafka consumer configuration for `settings` and `group` (manual commits)."""
    return {
        **_common_config(settings),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": settings.auto_offset_reset,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        # librdkafka insists on max.poll.interval.ms >= session.timeout.ms.
        "max.poll.interval.ms": max(settings.max_poll_interval_ms, settings.session_timeout_ms),
        "allow.auto.create.topics": False,
    }


def _describe(error: Any) -> str:
    if isinstance(error, KafkaException) and error.args:
        error = error.args[0]
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return f"{type(error).__name__}: {error}"


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """librdkafka headers (a list of pairs; values bytes, str or None) as (str, bytes) pairs."""
    pairs = raw.items() if isinstance(raw, dict) else raw or ()
    return tuple(
        (name, value.encode() if isinstance(value, str) else value or b"")
        for name, value in pairs
    )


class ConfluentProducer:
    """`EventProducer` on librdkafka (acks=all, idempotent unless disabled or unsupported)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._idempotence = settings.idempotence
        self._producer: Producer | None = None
        self._fatal: KafkaError | None = None
        self._worker = ThreadWorker("kafka-producer")
        self._closed = False

    @property
    def idempotent(self) -> bool:
        """Whether the producer is (still) configured idempotent."""
        return self._idempotence

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        if self._closed:
            raise RuntimeError("producer is closed")
        if not messages:
            return []
        results: list[PublishResult] = await self._worker.run(self._publish, list(messages))
        return results

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._worker.run(self._discard, self._settings.delivery_timeout_ms / 1000)
        self._worker.shutdown()

    # --- in the producer thread ------------------------------------------------------------
    def _client(self) -> Producer:
        if self._producer is None:
            self._fatal = None
            config = producer_config(self._settings, idempotence=self._idempotence)
            self._producer = Producer({**config, "error_cb": self._on_error})
        return self._producer

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("Kafka producer fatal error: %s", _describe(error))
        else:
            # Broker-down and transport errors: the deliveries report the effect per message.
            log.debug("Kafka producer error: %s", _describe(error))

    def _discard(self, timeout_s: float = 0.0) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            if timeout_s > 0:
                producer.flush(timeout_s)
            # Whatever is still queued belongs to batches already reported as failed.
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
        except KafkaException as exc:
            log.debug("closing the Kafka producer failed: %s", _describe(exc))

    def _publish(self, messages: list[OutgoingMessage]) -> list[PublishResult]:
        ledger = BatchLedger(messages)
        producer = self._client()
        deadline = time.monotonic() + self._settings.delivery_timeout_ms / 1000
        for index, message in enumerate(messages):
            if ledger.skip_if_blocked(index):
                continue
            self._produce(producer, ledger, index, message, deadline)
        try:
            producer.flush(self._settings.delivery_timeout_ms / 1000 + 1)
        except KafkaException as exc:
            log.warning("Kafka flush did not complete: %s", _describe(exc))
        results = ledger.finish(
            f"producer failed: {_describe(self._fatal)}" if self._fatal else "delivery timed out"
        )
        fatal = self._fatal
        if fatal is not None and fatal.code() in _IDEMPOTENCE_UNSUPPORTED and self._idempotence:
            log.warning(
                "Kafka broker refuses idempotent producers (%s); publishing without idempotence "
                "(one request in flight, duplicates possible on retry). Set "
                "KAFKA_IDEMPOTENCE=false to choose this explicitly.", _describe(fatal),
            )
            self._idempotence = False
        if fatal is not None or any(not result.ok for result in results):
            # A fresh client next time: no stale producer id, sequence numbers or metadata.
            self._discard()
        return results

    def _produce(self, producer: Producer, ledger: BatchLedger, index: int,
                 message: OutgoingMessage, deadline: float) -> None:
        on_delivery = functools.partial(self._on_delivery, ledger, index)
        while True:
            try:
                producer.produce(
                    message.topic, value=message.value, key=message.key.encode(),
                    headers=list(message.headers), on_delivery=on_delivery,
                )
                producer.poll(0)
                return
            except BufferError:
                # Local queue full: serve delivery callbacks to make room, within the deadline.
                if time.monotonic() > deadline:
                    ledger.refused(index, "local producer queue full", topic_unreachable=True)
                    return
                producer.poll(0.05)
            except KafkaException as exc:
                ledger.refused(index, _describe(exc))
                return

    @staticmethod
    def _on_delivery(ledger: BatchLedger, index: int, error: KafkaError | None,
                     message: Any) -> None:
        if error is not None:
            ledger.failed(index, _describe(error))
        else:
            ledger.delivered(index, message.partition(), message.offset())


class ConfluentConsumer(ThreadedConsumer):
    """`EventConsumer` on librdkafka: a group member, manual commits, lag from watermarks."""

    def __init__(self, settings: KafkaSettings, group: str, topics: Sequence[str]) -> None:
        super().__init__(settings, group, topics)
        self._consumer: Consumer | None = None

    # --- in the consumer thread ------------------------------------------------------------
    def _hold(self, partition: TopicPartition, offset: int) -> None:
        consumer = self._client()
        if partition not in self._assignment():
            return
        try:
            consumer.pause([ConfluentTopicPartition(partition.topic, partition.partition)])
            consumer.seek(ConfluentTopicPartition(partition.topic, partition.partition, offset))
        except KafkaException as exc:
            raise DependencyUnavailable("kafka", _describe(exc)) from exc

    def _resume(self, partitions: list[TopicPartition]) -> None:
        consumer = self._client()
        assigned = self._assignment()
        held = [ConfluentTopicPartition(p.topic, p.partition) for p in partitions
                if p in assigned]
        if held:
            try:
                consumer.resume(held)
            except KafkaException as exc:
                raise DependencyUnavailable("kafka", _describe(exc)) from exc

    def _client(self) -> Consumer:
        if self._consumer is None:
            consumer = Consumer({
                **consumer_config(self._settings, self._group),
                "error_cb": self._on_error,
            })
            consumer.subscribe(self._topics)
            self._consumer = consumer
        return self._consumer

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        log.log(logging.ERROR if error.fatal() else logging.DEBUG,
                "Kafka consumer error: %s", _describe(error))

    def _poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        consumer = self._client()
        try:
            records = consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as exc:
            raise DependencyUnavailable("kafka", _describe(exc)) from exc
        messages: list[IncomingMessage] = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise DependencyUnavailable("kafka", _describe(error))
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer error: %s", _describe(error))
                continue
            key = record.key()
            _, timestamp = record.timestamp()
            messages.append(IncomingMessage(
                topic=record.topic() or "",
                partition=record.partition() or 0,
                offset=record.offset() or 0,
                key=None if key is None else key.decode("utf-8", "replace"),
                value=record.value() or b"",
                headers=_headers(record.headers()),
                timestamp_ms=timestamp if timestamp >= 0 else None,
            ))
        return messages

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._client()
        try:
            committed = consumer.commit(
                offsets=[
                    ConfluentTopicPartition(tp.topic, tp.partition, offset)
                    for tp, offset in offsets.items()
                ],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise DependencyUnavailable("kafka", f"offset commit failed: {_describe(exc)}") from exc
        for tp in committed or ():
            if tp.error is not None:
                raise DependencyUnavailable("kafka", f"offset commit failed: {_describe(tp.error)}")

    def _lag(self) -> dict[TopicPartition, int]:
        consumer = self._client()
        assigned = consumer.assignment()
        if not assigned:
            return {}
        timeout_s = self._settings.request_timeout_ms / 1000
        try:
            committed = consumer.committed(assigned, timeout=timeout_s)
            lag: dict[TopicPartition, int] = {}
            for tp in committed:
                low, high = consumer.get_watermark_offsets(
                    ConfluentTopicPartition(tp.topic, tp.partition), timeout=timeout_s,
                    cached=False,
                )
                position = tp.offset if tp.offset >= 0 else low
                lag[TopicPartition(tp.topic, tp.partition)] = max(0, high - position)
        except KafkaException as exc:
            raise DependencyUnavailable("kafka", _describe(exc)) from exc
        return lag

    def _close_client(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except KafkaException as exc:
                log.debug("closing the Kafka consumer failed: %s", _describe(exc))
