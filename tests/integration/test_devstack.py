"""The servers the suite runs against really work: PostgreSQL, Redis, Kafka (both clients).

With no env vars these are the embedded servers from server.devstack; with POSTGRES_URL,
REDIS_URL or KAFKA_BOOTSTRAP set, the same checks run against those servers. The last tests
exercise devstack itself (restart, crash leftovers, concurrent starts) and always use it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from server.devstack import (
    FAST_CONSUMER_GROUP_SETTINGS,
    DevServices,
    DevStackError,
    start_dev_services,
)
from tests.fixtures.services import ServiceUrls, random_suffix

pytestmark = pytest.mark.integration

# Tansu joins in about 3 s with the fast settings; a real Kafka adds its initial rebalance
# delay (3 s by default). Generous, but far below the ~23 s the client defaults take on Tansu.
GROUP_JOIN_BOUND_S = 15.0


def test_postgres_answers_queries_and_is_version_18_when_embedded(
    service_urls: ServiceUrls,
) -> None:
    with psycopg.connect(service_urls.postgres_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1, current_setting('server_version')").fetchone()
    assert row is not None
    assert row[0] == 1
    if service_urls.postgres_embedded:
        assert str(row[1]).startswith("18")


def test_postgres_database_is_private_to_this_session(service_urls: ServiceUrls) -> None:
    with psycopg.connect(service_urls.postgres_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    expected_prefix = "triveni" if service_urls.postgres_embedded else "triveni_test_"
    assert str(row[0]).startswith(expected_prefix)


def test_redis_answers_ping_and_incr(service_urls: ServiceUrls) -> None:
    client = redis.Redis.from_url(service_urls.redis_url, socket_timeout=5)
    key = f"test:devstack:{random_suffix()}"
    try:
        assert client.ping()
        assert client.incr(key) == 1
        assert client.incr(key) == 2
    finally:
        client.delete(key)
        client.close()


def test_kafka_python_produces_and_consumes_a_message(
    service_urls: ServiceUrls, kafka_topic: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=service_urls.kafka_bootstrap, acks="all")
    payload = uuid.uuid4().bytes
    metadata = producer.send(kafka_topic, payload, key=b"pay_1", partition=0).get(timeout=10)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=service_urls.kafka_bootstrap,
                             enable_auto_commit=False)
    partition = TopicPartition(kafka_topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, metadata.offset)
    try:
        records = consumer.poll(timeout_ms=10_000, max_records=1)
    finally:
        consumer.close()
    assert [record.value for record in records.get(partition, [])] == [payload]


def test_kafka_python_consumer_group_joins_quickly_with_fast_settings(
    service_urls: ServiceUrls, kafka_topic: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=service_urls.kafka_bootstrap)
    payload = uuid.uuid4().bytes
    producer.send(kafka_topic, payload).get(timeout=10)
    producer.close()

    consumer = KafkaConsumer(
        kafka_topic,
        bootstrap_servers=service_urls.kafka_bootstrap,
        group_id=f"test-group-{random_suffix()}",
        auto_offset_reset="earliest",
        **FAST_CONSUMER_GROUP_SETTINGS,
    )
    started = time.monotonic()
    received: list[bytes] = []
    try:
        while not received and time.monotonic() - started < GROUP_JOIN_BOUND_S:
            for records in consumer.poll(timeout_ms=200).values():
                received.extend(record.value for record in records)
        joined_after = time.monotonic() - started
        assigned = consumer.assignment()
    finally:
        consumer.close()
    assert received == [payload], f"nothing consumed within {GROUP_JOIN_BOUND_S}s"
    assert len(assigned) == 3
    print(f"consumer group joined and consumed after {joined_after:.2f}s")


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_confluent_kafka_produces_and_consumes_a_message(
    service_urls: ServiceUrls, kafka_topic: str, idempotent: bool
) -> None:
    import confluent_kafka

    errors: list[object] = []
    producer = confluent_kafka.Producer({
        "bootstrap.servers": service_urls.kafka_bootstrap,
        "acks": "all",
        "enable.idempotence": idempotent,
    })
    payload = uuid.uuid4().bytes
    producer.produce(kafka_topic, payload, key=b"pay_1",
                     on_delivery=lambda error, _message: errors.append(error))
    assert producer.flush(10) == 0
    assert errors == [None]

    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": service_urls.kafka_bootstrap,
        "group.id": f"test-group-{random_suffix()}",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    consumer.subscribe([kafka_topic])
    received: list[bytes | None] = []
    deadline = time.monotonic() + GROUP_JOIN_BOUND_S
    try:
        while not received and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message.value())
    finally:
        consumer.close()
    assert received == [payload]


# --------------------------------------------------------------------------- devstack itself


def _postgres_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def test_restart_on_the_same_data_dir_keeps_postgres_data(devstack_dir: Path) -> None:
    table = f"kept_{random_suffix()}"
    first = start_dev_services(devstack_dir, redis=False, kafka=False, postgres_port=0)
    with first, psycopg.connect(first.postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int)")
        conn.execute(f"INSERT INTO {table} VALUES (42)")
    assert not (devstack_dir / "postgres" / "postmaster.pid").exists()

    with start_dev_services(devstack_dir, redis=False, kafka=False, postgres_port=0) as second:
        assert "postgres_prepare" in second.startup_seconds
        with psycopg.connect(second.postgres_url) as conn:
            assert conn.execute(f"SELECT id FROM {table}").fetchall() == [(42,)]


def test_start_after_a_crash_removes_stale_pid_files(devstack_dir: Path) -> None:
    crashed = start_dev_services(devstack_dir, kafka=False, postgres_port=0, redis_port=0)
    postmaster = _postgres_pid(devstack_dir)
    for child in crashed._children:  # simulate a crash: nothing gets to clean up
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
    assert (devstack_dir / "postgres" / "postmaster.pid").exists()
    assert (devstack_dir / "redis.pid").exists()
    crashed._children.clear()

    with start_dev_services(devstack_dir, kafka=False, postgres_port=0, redis_port=0) as restarted:
        assert _postgres_pid(devstack_dir) != postmaster
        with psycopg.connect(restarted.postgres_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(restarted.redis_url).ping()


def test_a_second_start_while_running_reuses_the_servers(devstack_dir: Path) -> None:
    with start_dev_services(devstack_dir, kafka=False, postgres_port=0, redis_port=0) as owner:
        with start_dev_services(devstack_dir, kafka=False) as reuser:
            assert reuser.postgres_url == owner.postgres_url
            assert reuser.redis_url == owner.redis_url
        # Stopping the second handle leaves the owner's servers running.
        assert owner.dead_services() == []
        assert redis.Redis.from_url(owner.redis_url).ping()


def test_concurrent_starts_get_distinct_ports(devstack_dir: Path) -> None:
    started: list[DevServices] = []
    failures: list[BaseException] = []

    def start(name: str) -> None:
        try:
            started.append(start_dev_services(devstack_dir / name))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("a", "b")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        first, second = started
        assert first.postgres_url != second.postgres_url
        assert first.redis_url != second.redis_url
        assert first.kafka_bootstrap != second.kafka_bootstrap
        for services in started:
            with psycopg.connect(services.postgres_url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for services in started:
            services.stop()


def test_stop_leaves_no_server_processes(devstack_dir: Path) -> None:
    services = start_dev_services(devstack_dir, postgres_port=0, redis_port=0, kafka_port=0)
    pids = [child.process.pid for child in services._children]
    services.stop()
    services.stop()  # idempotent
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_a_server_that_cannot_start_is_reported_with_its_log(devstack_dir: Path) -> None:
    with pytest.raises(DevStackError) as failure:
        start_dev_services(devstack_dir, redis=False, kafka=False, postgres_port=0,
                           postgres_settings={"shared_buffers": "not-a-size"})
    message = str(failure.value)
    assert "postgres" in message
    assert "shared_buffers" in message  # PostgreSQL's own complaint, from the log tail
    assert not (devstack_dir / "postgres" / "postmaster.pid").exists()


def test_a_requested_port_in_use_is_refused(devstack_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DevStackError, match=f"port {port}"):
            start_dev_services(devstack_dir, postgres=False, kafka=False, redis_port=port)
