"""Both Kafka clients behind the EventProducer / EventConsumer ports, against a real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from server.adapters.kafka.factory import build_consumer, build_producer, settings_from_env
from server.adapters.kafka.ports import (
    EVENT_ID_HEADER,
    ClientName,
    EventConsumer,
    IncomingMessage,
    KafkaSettings,
    OutgoingMessage,
    TopicPartition,
)
from server.adapters.kafka.topics import TopicSpec, ensure_topics
from server.errors import ConfigurationError
from tests.fakes.server import free_port
from tests.fixtures.services import ServiceUrls, random_suffix

pytestmark = pytest.mark.integration

CLIENTS: tuple[ClientName, ...] = ("kafka-python", "confluent")


def settings_for(bootstrap: str, client: ClientName, **overrides: int) -> KafkaSettings:
    # Consumer-group timings that let a group form in ~3 s on Tansu (ARCHITECTURE §4).
    fields: dict[str, int] = {
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 5000,
        **overrides,
    }
    return KafkaSettings(bootstrap=bootstrap, client=client, **fields)  # type: ignore[arg-type]


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"adapters-{random_suffix()}"
    ensure_topics(bootstrap, [TopicSpec(name, partitions=partitions)])
    return name


def message(topic: str, key: str, n: int) -> OutgoingMessage:
    return OutgoingMessage(topic, key, f"{key}:{n}".encode(),
                           headers=((EVENT_ID_HEADER, f"evt_{key}_{n}".encode()),))


async def consume(consumer: EventConsumer, count: int, timeout_s: float = 30.0,
                  ) -> list[IncomingMessage]:
    """Poll until `count` messages arrived (fails after `timeout_s`)."""
    received: list[IncomingMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count:
        assert time.monotonic() < deadline, f"got {len(received)} of {count} messages"
        received.extend(await consumer.poll(max_records=500, timeout_s=0.5))
    return received


@pytest.fixture
async def consumers() -> AsyncIterator[list[EventConsumer]]:
    """Consumers a test creates are closed afterwards, even when it fails."""
    created: list[EventConsumer] = []
    yield created
    await asyncio.gather(*(consumer.close() for consumer in created), return_exceptions=True)


@pytest.fixture
def bootstrap(service_urls: ServiceUrls) -> Iterator[str]:
    yield service_urls.kafka_bootstrap


@pytest.mark.parametrize("client", CLIENTS)
async def test_producer_reports_partition_and_offset_for_every_message(
    bootstrap: str, client: ClientName
) -> None:
    topic = new_topic(bootstrap, partitions=3)
    producer = build_producer(settings_for(bootstrap, client))
    try:
        results = await producer.publish_batch([message(topic, "pay_a", n) for n in range(5)])
    finally:
        await producer.close()
    assert all(result.ok for result in results), results
    assert len({result.partition for result in results}) == 1
    assert [result.offset for result in results] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("producer_client", "consumer_client"),
                         [(p, c) for p in CLIENTS for c in CLIENTS])
async def test_messages_of_one_key_are_consumed_in_publish_order(
    bootstrap: str, producer_client: ClientName, consumer_client: ClientName,
    consumers: list[EventConsumer],
) -> None:
    topic = new_topic(bootstrap, partitions=3)
    keys = [f"pay_{random_suffix()}" for _ in range(4)]
    outgoing = [message(topic, keys[n % 4], n) for n in range(40)]
    producer = build_producer(settings_for(bootstrap, producer_client))
    try:
        assert all(result.ok for result in await producer.publish_batch(outgoing))
    finally:
        await producer.close()

    consumer = build_consumer(settings_for(bootstrap, consumer_client), f"g-{topic}", [topic])
    consumers.append(consumer)
    received = await consume(consumer, len(outgoing))

    for key in keys:
        sent = [m.value for m in outgoing if m.key == key]
        got = [m for m in received if m.key == key]
        assert [m.value for m in got] == sent
        assert len({m.partition for m in got}) == 1
        assert [m.header(EVENT_ID_HEADER) for m in got] == [
            m.headers[0][1] for m in outgoing if m.key == key
        ]


async def test_both_clients_send_a_key_to_the_same_partition(bootstrap: str) -> None:
    topic = new_topic(bootstrap, partitions=12)
    keys = [f"pay_{random_suffix()}" for _ in range(20)]
    partitions: dict[ClientName, list[int | None]] = {}
    for client in CLIENTS:
        producer = build_producer(settings_for(bootstrap, client))
        try:
            results = await producer.publish_batch([message(topic, key, 0) for key in keys])
        finally:
            await producer.close()
        partitions[client] = [result.partition for result in results]
    assert partitions["kafka-python"] == partitions["confluent"]
    assert len(set(partitions["confluent"])) > 1


@pytest.mark.parametrize("client", CLIENTS)
async def test_uncommitted_messages_are_redelivered_after_a_consumer_restart(
    bootstrap: str, client: ClientName, consumers: list[EventConsumer]
) -> None:
    topic = new_topic(bootstrap, partitions=1)
    settings = settings_for(bootstrap, client)
    producer = build_producer(settings)
    try:
        await producer.publish_batch([message(topic, "pay_x", n) for n in range(10)])
    finally:
        await producer.close()
    group = f"g-{topic}"

    first = build_consumer(settings, group, [topic])
    consumers.append(first)
    received = await consume(first, 10)
    await first.commit(received[:4])  # only the first four were "made durable"
    await first.close()

    second = build_consumer(settings, group, [topic])
    consumers.append(second)
    redelivered = await consume(second, 6)
    assert [m.offset for m in redelivered] == [4, 5, 6, 7, 8, 9]
    assert [m.value for m in redelivered] == [f"pay_x:{n}".encode() for n in range(4, 10)]


@pytest.mark.parametrize("client", CLIENTS)
async def test_lag_is_log_end_minus_committed_offset(
    bootstrap: str, client: ClientName, consumers: list[EventConsumer]
) -> None:
    topic = new_topic(bootstrap, partitions=1)
    settings = settings_for(bootstrap, client)
    producer = build_producer(settings)
    try:
        # One message per produce request: Tansu 0.6 reports the log end as the last *batch*'s
        # base offset + 1, so multi-record batches would make its end offsets look short.
        for n in range(6):
            assert (await producer.publish_batch([message(topic, "pay_l", n)]))[0].ok
    finally:
        await producer.close()
    consumer = build_consumer(settings, f"g-{topic}", [topic])
    consumers.append(consumer)
    received = await consume(consumer, 6)

    assert await consumer.lag() == {TopicPartition(topic, 0): 6}  # nothing committed yet
    await consumer.commit(received[:2])
    assert await consumer.lag() == {TopicPartition(topic, 0): 4}
    await consumer.commit(received)
    assert await consumer.lag() == {TopicPartition(topic, 0): 0}


@pytest.mark.parametrize("client", CLIENTS)
async def test_unreachable_broker_fails_every_message_within_seconds(client: ClientName) -> None:
    settings = settings_for(f"127.0.0.1:{free_port()}", client, metadata_timeout_ms=1000,
                            request_timeout_ms=1000, delivery_timeout_ms=2000)
    producer = build_producer(settings)
    started = time.monotonic()
    try:
        results = await producer.publish_batch([message("payments.events", "pay_d", n)
                                                for n in range(3)])
    finally:
        await producer.close()
    assert [result.ok for result in results] == [False, False, False]
    assert all(result.error for result in results)
    assert time.monotonic() - started < 6


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_refused_message_stops_later_messages_of_its_key_only(
    bootstrap: str, client: ClientName
) -> None:
    topic = new_topic(bootstrap, partitions=3)
    too_large = OutgoingMessage(topic, "pay_a", b"x" * 2_000_000)
    batch = [message(topic, "pay_a", 0), too_large, message(topic, "pay_a", 2),
             message(topic, "pay_b", 0)]
    producer = build_producer(settings_for(bootstrap, client))
    try:
        results = await producer.publish_batch(batch)
    finally:
        await producer.close()
    assert [result.ok for result in results] == [True, False, False, True]
    assert "earlier message with this key failed" in results[2].error


async def test_ensure_topics_creates_missing_topics_once_and_reports_configs(
    bootstrap: str,
) -> None:
    spec = TopicSpec(f"ensure-{random_suffix()}", partitions=4, retention_ms=3_600_000)
    first = ensure_topics(bootstrap, [spec])
    second = ensure_topics(bootstrap, [spec])
    assert first.created == [spec.name] and first.existing == []
    assert second.created == [] and second.existing == [spec.name]
    assert second.applied_configs == {spec.name: {"retention.ms": "3600000"}}
    assert second.too_few_partitions == {}


def test_settings_from_env_reads_the_client_and_security_fields() -> None:
    settings = settings_from_env({
        "KAFKA_BOOTSTRAP": "b1:9092,b2:9092", "KAFKA_CLIENT": "confluent",
        "KAFKA_COMPRESSION": "zstd", "KAFKA_IDEMPOTENCE": "false",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "triveni", "KAFKA_SASL_PASSWORD": "s3cret",
    })
    assert settings.client == "confluent"
    assert settings.bootstrap_servers() == ["b1:9092", "b2:9092"]
    assert (settings.compression, settings.idempotence) == ("zstd", False)
    assert settings.security.sasl_mechanism == "SCRAM-SHA-512"
    assert "s3cret" not in repr(settings)


def test_settings_from_env_refuses_an_unknown_client() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_CLIENT"):
        settings_from_env({"KAFKA_BOOTSTRAP": "b:9092", "KAFKA_CLIENT": "aiokafka"})
