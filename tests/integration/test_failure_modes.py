"""Breaking things on purpose: PSP errors and hangs, Redis down, PostgreSQL down, Kafka down."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2
from triveni.v1 import payment_service_pb2 as ps

from server.adapters.postgres.migrate import apply_migrations
from server.devstack import FAST_CONSUMER_GROUP_SETTINGS, start_dev_services
from tests.fakes.server import free_port
from tests.fixtures.services import ServiceUrls
from tests.fixtures.stack import Stack, running_server
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration


async def sync(stack: Stack, payment_id: str, target: str | None = None) -> pb.Payment:
    async with stack.channel(target) as channel:
        result: pb.Payment = await stack.payments(channel).SyncPayment(
            ps.SyncPaymentRequest(id=payment_id), metadata=stack.metadata())
        return result


async def attempt_ids(stack: Stack, payment_id: str) -> set[str]:
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM payment_attempts WHERE payment_id = %s",
                                 (payment_id,))
        return {str(r["id"]) for r in await cur.fetchall()}


def charges_for(stack: Stack, references: set[str]) -> int:
    return sum(1 for p in list(stack.simulator.payments.values()) if p.reference in references)


async def test_psp_rate_limit_fails_over_to_the_next_account(stack: Stack,
                                                             simulator: object) -> None:
    # The executor's 3 safe retries all meet 429, so the premium account is given up on.
    stack.simulator.configure({"failure_mode": "rate_limit", "failure_count": 3,
                               "retry_after_seconds": 0})
    payment = await create(stack, upi_request(1_500_000))
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert [a.connector for a in payment.attempts] == ["simulator_premium",
                                                       "simulator_standard"]
    assert payment.attempts[0].status == "FAILED"
    assert payment.connector == "simulator_standard"


async def test_psp_decline_fails_the_payment_without_failover(stack: Stack,
                                                              simulator: object) -> None:
    stack.simulator.configure({"failure_mode": "decline", "failure_count": 1})
    payment = await create(stack, upi_request(1_500_000))
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert len(payment.attempts) == 1
    assert payment.failure.code == "PSP_DECLINED"


async def test_psp_503_on_create_is_retried_safely_with_one_charge(stack: Stack,
                                                                   simulator: object) -> None:
    stack.simulator.configure({"failure_mode": "unavailable", "failure_count": 1})
    payment = await create(stack, upi_request(60_000))
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 1


async def test_psp_timeouts_never_charge_twice_and_sync_resolves_every_payment(
        stack: Stack, simulator: object) -> None:
    # Every create is recorded by the PSP and then hangs past our 1 s timeout (retries of the
    # same reference included), so each outcome is unknown to us.
    stack.simulator.configure({"failure_mode": "timeout", "failure_rate": 1.0,
                               "hang_seconds": 3.0})
    payments = await asyncio.gather(*(create(stack, upi_request(20_000 + i))
                                      for i in range(10)))
    unknown = [p for p in payments if p.status == pb.PAYMENT_STATUS_PROCESSING]
    assert unknown, "expected some creates to time out"
    for payment in unknown:
        assert payment.attempts[-1].status == "UNKNOWN"
        assert len(payment.attempts) == 1  # no failover before the outcome is known
    stack.simulator.configure({"failure_mode": "none"})
    resolved = await asyncio.gather(*(sync(stack, p.id) for p in unknown))
    for payment in resolved:
        assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    for payment in payments:
        charges = charges_for(stack, await attempt_ids(stack, payment.id))
        if payment.status == pb.PAYMENT_STATUS_CREATED:
            # Enough timeouts open the account's circuit: later creates are not sent at all
            # (no charge) and wait for a retry that is scheduled, never lost.
            assert charges == 0, payment.id
            assert payment.attempts[-1].status == "PENDING"
            async with stack.app.pool.connection() as conn:
                cur = await conn.execute("SELECT next_sync_at FROM payments WHERE id = %s",
                                         (payment.id,))
                row = await cur.fetchone()
            assert row is not None and row["next_sync_at"] is not None, payment.id
        else:
            assert charges == 1, payment.id


async def test_create_that_never_reached_the_psp_is_resent_after_sync(
        stack: Stack, simulator: object) -> None:
    # The PSP refuses with a bare 503 before recording anything, on every try: unknown to us.
    stack.simulator.configure({"failure_mode": "unavailable", "failure_count": 0})
    payment = await create(stack, upi_request(70_000))
    assert payment.status == pb.PAYMENT_STATUS_PROCESSING
    stack.simulator.configure({"failure_mode": "none"})
    synced = await sync(stack, payment.id)
    assert synced.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert len(synced.attempts) == 1  # the same attempt id was re-sent, not a new attempt
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 1


async def test_redis_down_routes_by_static_rules_and_skips_velocity(stack: Stack) -> None:
    settings = stack.settings_with(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   run_workers=False)
    async with running_server(settings) as server, stack.channel(server.grpc_target) as channel:
        payment: pb.Payment = await stack.payments(channel).CreatePayment(
            upi_request(1_500_000), metadata=stack.metadata())
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert payment.routing.degraded
    assert payment.connector == "simulator_premium"  # the seed rule still applies
    assert any("velocity" in s for s in payment.fraud.unavailable_signals)


async def test_postgres_down_gives_unavailable_and_not_serving(stack: Stack) -> None:
    settings = stack.settings_with(
        postgres_url=f"postgresql://postgres@127.0.0.1:{free_port()}/triveni",
        run_workers=False)
    async with running_server(settings) as server, stack.channel(server.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.payments(channel).CreatePayment(upi_request(10_000),
                                                        metadata=stack.metadata())
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            status = (await health.Check(health_pb2.HealthCheckRequest())).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest_asyncio.fixture
async def scratch_database(service_urls: ServiceUrls) -> AsyncIterator[str]:
    """A database of its own, so only this test's relay reads its outbox."""
    name = f"triveni_scratch_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(service_urls.postgres_url,
                                                     autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(service_urls.postgres_url, dbname=name)
    await apply_migrations(url)
    yield url
    async with await psycopg.AsyncConnection.connect(service_urls.postgres_url,
                                                     autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _read_events(bootstrap: str, payment_id: str, timeout_s: float) -> list[str]:
    consumer = KafkaConsumer("payments.events", bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", group_id=secrets.token_hex(4),
                             **FAST_CONSUMER_GROUP_SETTINGS)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and "payment.requires_action" not in seen:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = events_pb2.PaymentEvent.FromString(record.value)
                    if event.payment.id == payment_id:
                        seen.append(event.type)
    finally:
        consumer.close()
    return seen


async def test_changes_made_while_kafka_is_down_are_published_when_it_returns(
        stack: Stack, scratch_database: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("kafka-outage")
    port = free_port()
    broker = await asyncio.to_thread(start_dev_services, data_dir, postgres=False, redis=False,
                                     kafka=True, kafka_port=port)
    settings = stack.settings_with(postgres_url=scratch_database,
                                   kafka_bootstrap=broker.kafka_bootstrap)
    async with running_server(settings) as server:
        merchant, key = await server.app.merchants.create_merchant("outage")
        broker.stop()
        async with stack.channel(server.grpc_target) as channel:
            payment: pb.Payment = await stack.payments(channel).CreatePayment(
                upi_request(10_000), metadata=stack.metadata(key))
        await asyncio.sleep(2)
        async with server.app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM outbox WHERE key = %s AND published_at IS NULL",
                (payment.id,))
            row = await cur.fetchone()
        assert row is not None and row["n"] >= 2  # created + requires_action wait in the outbox
        broker = await asyncio.to_thread(start_dev_services, data_dir, postgres=False,
                                         redis=False, kafka=True, kafka_port=port)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with server.app.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
                    row = await cur.fetchone()
                if row is not None and row["n"] == 0:
                    break
                await asyncio.sleep(0.5)
            assert row is not None and row["n"] == 0, "outbox did not drain"
            seen = await asyncio.to_thread(_read_events, broker.kafka_bootstrap, payment.id, 30)
            assert seen[:2] == ["payment.created", "payment.requires_action"]
        finally:
            broker.stop()
    assert merchant


async def test_processor_marked_down_in_redis_is_skipped(stack: Stack) -> None:
    key = "processor:simulator_premium:health"
    await stack.app.redis.set(key, "down")
    try:
        payment = await create(stack, upi_request(1_500_000))
    finally:
        await stack.app.redis.delete(key)
    assert payment.connector == "simulator_standard"
    notes = {c.connector: c.note for c in payment.routing.candidates}
    assert "down" in notes["simulator_premium"]
    after = await create(stack, upi_request(1_500_000))
    assert after.connector == "simulator_premium"


async def test_payment_left_behind_by_a_crash_before_the_psp_call_is_sent_by_sync(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # The process "dies" right after committing the payment and its attempt, before the PSP
    # call: the attempt stays PENDING and the PSP has never heard of it.
    async def crash(merchant_id: str, payment_id: str, committed: object = None) -> object:
        return committed

    with monkeypatch.context() as patch:
        patch.setattr(stack.app.payments, "_run_attempts", crash)
        payment = await create(stack, upi_request(45_000))
    assert payment.status == pb.PAYMENT_STATUS_CREATED
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 0
    synced = await sync(stack, payment.id)
    assert synced.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert len(synced.attempts) == 1  # the same attempt id, sent now
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 1
