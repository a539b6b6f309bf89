"""The small Kafka interface the rest of Triveni sees: messages, results, settings, two Protocols.

Two implementations sit behind it, chosen by `KafkaSettings.client` in `factory.py`:
`kafka_python.py` (the default) and `confluent.py` (librdkafka, the throughput option).
Both run their blocking client in one dedicated thread, so no call blocks the event loop.

Delivery contract of `EventProducer.publish_batch`:
- acks=all; idempotent where the client and broker allow (`KafkaSettings.idempotence`);
- messages are handed to the client in the order given, so messages with the same key reach
  their partition in that order;
- if a message fails before the client accepted it (no metadata for its topic, too large…),
  later messages of the batch with the same (topic, key) are not sent and fail too;
- a failed result never means "not written": a message that timed out may still land, so
  delivery is at least once and consumers dedupe (by the `event_id` header for our events).

`EventConsumer` is a consumer-group member with manual commits: commit only what the caller
has made durable; anything uncommitted is delivered again after a restart or rebalance. `hold`
(pause + rewind) and `resume` let a consumer wait for a delayed message without blocking the
group's heartbeats (the retry topics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Protocol

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "BatchLedger",
    "ClientName",
    "Compression",
    "EventConsumer",
    "EventProducer",
    "IncomingMessage",
    "KafkaSecurity",
    "KafkaSettings",
    "OutgoingMessage",
    "PublishResult",
    "SaslMechanism",
    "SecurityProtocol",
    "TopicPartition",
    "commit_offsets",
    "lag_by_topic",
]

EVENT_ID_HEADER: Final = "event_id"
EVENT_TYPE_HEADER: Final = "event_type"

ClientName = Literal["kafka-python", "confluent"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One record to publish; `key` (a payment id) picks the partition and so the order."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The outcome for one message: `ok` with its partition/offset, or an `error` text."""

    ok: bool
    error: str = ""
    partition: int | None = None
    offset: int | None = None

    @classmethod
    def delivered(cls, partition: int, offset: int) -> PublishResult:
        return cls(ok=True, partition=partition, offset=offset)

    @classmethod
    def failed(cls, error: str) -> PublishResult:
        return cls(ok=False, error=error or "unknown error")


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        """The first header called `name`, or None."""
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Transport security for managed Kafka (Confluent Cloud, MSK, Aiven…); PLAINTEXT by default."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Everything both clients need. Timeouts are short so that "broker down" shows in seconds."""

    bootstrap: str
    client: ClientName = "kafka-python"
    client_id: str = "triveni"
    # Producer
    linger_ms: int = 5
    batch_size: int = 128 * 1024
    compression: Compression = "none"
    idempotence: bool = True
    request_timeout_ms: int = 5_000
    # Upper bound for one publish: after it a message counts as failed (it may still land).
    delivery_timeout_ms: int = 10_000
    # How long to wait for a topic's metadata (kafka-python also blocks this long on a full
    # buffer) before declaring the broker unreachable.
    metadata_timeout_ms: int = 5_000
    # Consumer groups (the defaults suit Apache Kafka; tests use 6000 / 1000 / 5000 on Tansu).
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def bootstrap_servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]


class EventProducer(Protocol):
    """Publishes batches; never raises for a delivery failure, it reports one per message."""

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        """One result per message, in the same order."""
        ...

    async def close(self) -> None:
        """Flush what is queued (bounded by the delivery timeout) and release the client."""
        ...


class EventConsumer(Protocol):
    """A consumer-group member with manual commits."""

    async def poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        """Up to `max_records` messages (in offset order per partition); [] after `timeout_s`."""
        ...

    async def commit(self, messages: Sequence[IncomingMessage]) -> None:
        """Commit past the highest offset per partition among `messages`.

        Call it only after the work for these messages (and every earlier message of the same
        partitions) is durable. Raises `DependencyUnavailable` when the commit fails (broker
        down, partitions moved to another member): those messages will simply come again.
        """
        ...

    async def lag(self) -> dict[TopicPartition, int]:
        """Per assigned partition: log end offset minus committed offset (never negative)."""
        ...

    async def assignment(self) -> set[TopicPartition]:
        """The partitions this member holds now (empty before the first poll joins)."""
        ...

    async def hold(self, partition: TopicPartition, offset: int) -> None:
        """Pause `partition` and rewind it to `offset`: poll returns nothing from it until
        `resume`, then starts again at `offset`. Keep calling poll meanwhile (it keeps the
        membership alive). A partition no longer assigned is ignored."""
        ...

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Undo `hold` for `partitions` (those no longer assigned are ignored)."""
        ...

    async def close(self) -> None:
        """Leave the group without committing anything."""
        ...


def commit_offsets(messages: Iterable[IncomingMessage]) -> dict[TopicPartition, int]:
    """The offsets to commit for `messages`: highest offset + 1 per partition."""
    offsets: dict[TopicPartition, int] = {}
    for message in messages:
        tp = TopicPartition(message.topic, message.partition)
        offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
    return offsets


def lag_by_topic(lag: Mapping[TopicPartition, int]) -> dict[str, int]:
    """Sum per-partition lag by topic (the shape of `triveni_consumer_lag{topic,group}`)."""
    totals: dict[str, int] = {}
    for tp, behind in lag.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + behind
    return totals


class BatchLedger:
    """Per-batch bookkeeping shared by the producer implementations.

    Holds one result slot per message and enforces the ordering rule: once a message failed
    before the client accepted it, later messages with the same (topic, key) are not sent; once
    a topic's metadata could not be fetched (broker unreachable), its other messages fail
    without each waiting for the same timeout again.
    """

    def __init__(self, messages: Sequence[OutgoingMessage]) -> None:
        self.messages = list(messages)
        self._results: list[PublishResult | None] = [None] * len(self.messages)
        self._blocked_keys: dict[tuple[str, str], str] = {}
        self._dead_topics: dict[str, str] = {}

    def skip_if_blocked(self, index: int) -> bool:
        """Record a failure and return True when message `index` must not be sent."""
        message = self.messages[index]
        reason = self._dead_topics.get(message.topic)
        if reason is None:
            earlier = self._blocked_keys.get((message.topic, message.key))
            if earlier is not None:
                reason = f"not sent: an earlier message with this key failed ({earlier})"
        if reason is None:
            return False
        self._results[index] = PublishResult.failed(reason)
        return True

    def refused(self, index: int, error: str, *, topic_unreachable: bool = False) -> None:
        """Message `index` failed before the client took it."""
        message = self.messages[index]
        self._results[index] = PublishResult.failed(error)
        self._blocked_keys.setdefault((message.topic, message.key), error)
        if topic_unreachable:
            self._dead_topics[message.topic] = error

    def delivered(self, index: int, partition: int, offset: int) -> None:
        self._results[index] = PublishResult.delivered(partition, offset)

    def failed(self, index: int, error: str) -> None:
        self._results[index] = PublishResult.failed(error)

    def fail_all(self, error: str) -> list[PublishResult]:
        return [PublishResult.failed(error) for _ in self.messages]

    def finish(self, missing_error: str) -> list[PublishResult]:
        """The results; any message without an outcome yet fails with `missing_error`."""
        return [result or PublishResult.failed(missing_error) for result in self._results]
