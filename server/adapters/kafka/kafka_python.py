"""The default Kafka client: kafka-python, run in one dedicated thread per producer / consumer.

The clients are created lazily (in that thread) so that a process can start while the broker
is down; a producer is discarded after any delivery failure and rebuilt for the next batch,
which also clears an idempotent producer's state after the broker lost it (Tansu forgets
producer ids on restart; Apache Kafka after a long outage can too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka import codec as kafka_codec
from kafka import errors as kafka_errors
from kafka.structs import OffsetAndMetadata

from server.adapters.kafka.ports import (
    BatchLedger,
    IncomingMessage,
    KafkaSettings,
    OutgoingMessage,
    PublishResult,
    TopicPartition,
)
from server.adapters.kafka.threaded import ThreadedConsumer, ThreadWorker
from server.errors import ConfigurationError, DependencyUnavailable

__all__ = [
    "KafkaPythonConsumer",
    "KafkaPythonProducer",
    "consumer_config",
    "producer_config",
    "security_config",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_CODEC_AVAILABLE = {
    "gzip": kafka_codec.has_gzip,
    "snappy": kafka_codec.has_snappy,
    "lz4": kafka_codec.has_lz4,
    "zstd": kafka_codec.has_zstd,
}


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python's names for the SASL / SSL settings (only those that are set)."""
    security = settings.security
    config: dict[str, Any] = {"security_protocol": security.protocol}
    optional = {
        "sasl_mechanism": security.sasl_mechanism,
        "sasl_plain_username": security.sasl_username,
        "sasl_plain_password": security.sasl_password,
        "ssl_cafile": security.ssl_cafile,
        "ssl_certfile": security.ssl_certfile,
        "ssl_keyfile": security.ssl_keyfile,
    }
    config.update({name: value for name, value in optional.items() if value is not None})
    return config


def producer_config(settings: KafkaSettings, *, idempotence: bool) -> dict[str, Any]:
    """KafkaProducer keyword arguments for `settings`."""
    compression = None if settings.compression == "none" else settings.compression
    if compression is not None and not _CODEC_AVAILABLE[compression]():
        raise ConfigurationError(
            f"kafka-python cannot compress with {compression}: its codec library is not "
            "installed (gzip always works; or use KAFKA_CLIENT=confluent)"
        )
    return {
        "bootstrap_servers": settings.bootstrap_servers(),
        "client_id": settings.client_id,
        "acks": "all",
        "enable_idempotence": idempotence,
        # Without idempotence only one request in flight keeps retries from reordering a key.
        "max_in_flight_requests_per_connection": 5 if idempotence else 1,
        "linger_ms": settings.linger_ms,
        "batch_size": settings.batch_size,
        "compression_type": compression,
        "request_timeout_ms": settings.request_timeout_ms,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "max_block_ms": settings.metadata_timeout_ms,
        "bootstrap_timeout_ms": settings.metadata_timeout_ms,
        "reconnect_backoff_max_ms": 1_000,
        "allow_auto_create_topics": False,
        **security_config(settings),
    }


def consumer_config(settings: KafkaSettings, group: str) -> dict[str, Any]:
    """KafkaConsumer keyword arguments for `settings` and `group` (manual commits)."""
    return {
        "bootstrap_servers": settings.bootstrap_servers(),
        "client_id": settings.client_id,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": settings.auto_offset_reset,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        # kafka-python needs fetch_max_wait_ms (500) < request_timeout_ms.
        "request_timeout_ms": max(settings.request_timeout_ms, 1_000),
        "bootstrap_timeout_ms": settings.metadata_timeout_ms,
        "reconnect_backoff_max_ms": 1_000,
        "allow_auto_create_topics": False,
        **security_config(settings),
    }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class KafkaPythonProducer:
    """`EventProducer` on kafka-python (acks=all, idempotent unless disabled or unsupported)."""

    def __init__(self, settings: KafkaSettings) -> None:
        producer_config(settings, idempotence=settings.idempotence)  # fail fast on bad settings
        self._settings = settings
        self._idempotence = settings.idempotence
        self._producer: KafkaProducer | None = None
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
        timeout_s = self._settings.delivery_timeout_ms / 1000
        await self._worker.run(self._discard, timeout_s)
        self._worker.shutdown()

    # --- in the producer thread ------------------------------------------------------------
    def _client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    **producer_config(self._settings, idempotence=self._idempotence)
                )
            except (kafka_errors.KafkaConfigurationError,
                    kafka_errors.UnsupportedVersionError) as exc:
                if not self._idempotence:
                    raise
                self._fall_back_to_non_idempotent(exc)
                self._producer = KafkaProducer(
                    **producer_config(self._settings, idempotence=False)
                )
        return self._producer

    def _fall_back_to_non_idempotent(self, exc: BaseException) -> None:
        log.warning(
            "Kafka broker refuses idempotent producers (%s); publishing without idempotence "
            "(one request in flight, duplicates possible on retry). Set KAFKA_IDEMPOTENCE=false "
            "to choose this explicitly.", _describe(exc),
        )
        self._idempotence = False

    def _discard(self, timeout_s: float = 0.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except Exception as exc:  # closing a broken client must not hide the real error
                log.debug("closing the Kafka producer failed: %s", _describe(exc))

    def _publish(self, messages: list[OutgoingMessage]) -> list[PublishResult]:
        ledger = BatchLedger(messages)
        try:
            producer = self._client()
        except Exception as exc:
            return ledger.fail_all(f"broker unreachable: {_describe(exc)}")
        pending: list[tuple[int, Any]] = []
        for index, message in enumerate(messages):
            if ledger.skip_if_blocked(index):
                continue
            try:
                future = producer.send(
                    message.topic, value=message.value, key=message.key.encode(),
                    headers=list(message.headers),
                )
            except kafka_errors.KafkaTimeoutError as exc:
                # No metadata for the topic within max_block_ms: broker down or topic missing.
                ledger.refused(index, _describe(exc), topic_unreachable=True)
                continue
            except (kafka_errors.KafkaError, ValueError, TypeError) as exc:
                ledger.refused(index, _describe(exc))
                continue
            if future.is_done and future.failed():
                ledger.refused(index, _describe(future.exception), topic_unreachable=True)
                continue
            pending.append((index, future))
        try:
            producer.flush(timeout=self._settings.delivery_timeout_ms / 1000 + 1)
        except kafka_errors.KafkaError as exc:
            log.warning("Kafka flush did not complete: %s", _describe(exc))
        for index, future in pending:
            if not future.is_done:
                ledger.failed(index, "delivery timed out")
            elif future.succeeded():
                ledger.delivered(index, future.value.partition, future.value.offset)
            else:
                ledger.failed(index, _describe(future.exception))
                if isinstance(future.exception, kafka_errors.UnsupportedVersionError) and (
                    self._idempotence
                ):
                    self._fall_back_to_non_idempotent(future.exception)
        results = ledger.finish("not sent")
        if any(not result.ok for result in results):
            # A fresh client next time: no stale producer id, sequence numbers or metadata.
            self._discard()
        return results


class KafkaPythonConsumer(ThreadedConsumer):
    """`EventConsumer` on kafka-python: a group member, manual commits, lag from end offsets."""

    def __init__(self, settings: KafkaSettings, group: str, topics: Sequence[str]) -> None:
        super().__init__(settings, group, topics)
        self._consumer: KafkaConsumer | None = None

    # --- in the consumer thread ------------------------------------------------------------
    def _hold(self, partition: TopicPartition, offset: int) -> None:
        consumer = self._client()
        tp = KafkaTopicPartition(partition.topic, partition.partition)
        if tp not in consumer.assignment():
            return
        consumer.pause(tp)
        consumer.seek(tp, offset)

    def _resume(self, partitions: list[TopicPartition]) -> None:
        consumer = self._client()
        assigned = consumer.assignment()
        held = [tp for tp in (KafkaTopicPartition(p.topic, p.partition) for p in partitions)
                if tp in assigned]
        if held:
            consumer.resume(*held)

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                consumer = KafkaConsumer(**consumer_config(self._settings, self._group))
            except kafka_errors.KafkaError as exc:
                raise DependencyUnavailable("kafka", _describe(exc)) from exc
            consumer.subscribe(self._topics)
            self._consumer = consumer
        return self._consumer

    def _poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        consumer = self._client()
        try:
            batches = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", _describe(exc)) from exc
        messages: list[IncomingMessage] = []
        for records in batches.values():
            for record in records:
                messages.append(IncomingMessage(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=None if record.key is None else record.key.decode("utf-8", "replace"),
                    value=record.value if record.value is not None else b"",
                    headers=tuple((name, value or b"") for name, value in record.headers or ()),
                    timestamp_ms=record.timestamp,
                ))
        return messages

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._client()
        try:
            consumer.commit(
                offsets={
                    KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "", -1)
                    for tp, offset in offsets.items()
                },
                timeout_ms=self._settings.request_timeout_ms,
            )
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", f"offset commit failed: {_describe(exc)}") from exc

    def _lag(self) -> dict[TopicPartition, int]:
        consumer = self._client()
        assigned = list(consumer.assignment())
        if not assigned:
            return {}
        timeout_ms = self._settings.request_timeout_ms
        try:
            end = consumer.end_offsets(assigned, timeout_ms=timeout_ms)
            start = consumer.beginning_offsets(assigned, timeout_ms=timeout_ms)
            lag: dict[TopicPartition, int] = {}
            for tp in assigned:
                committed = consumer.committed(tp, timeout_ms=timeout_ms)
                position = start[tp] if committed is None else committed
                lag[TopicPartition(tp.topic, tp.partition)] = max(0, end[tp] - position)
        except kafka_errors.KafkaError as exc:
            raise DependencyUnavailable("kafka", _describe(exc)) from exc
        return lag

    def _close_client(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("closing the Kafka consumer failed: %s", _describe(exc))
