"""The Kafka status-sync path end to end, with a compressed ladder (0.2 s, 0.5 s, 1 s, 1 s …)
and an 8 s tail: a second server whose payments schedule retry messages through the outbox and
whose consumer groups act on them — no SyncPayment call anywhere."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kafka import KafkaConsumer, TopicPartition
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from server.adapters.kafka.topics import PAYMENTS_DLQ
from tests.fixtures.stack import RunningServer, Stack, running_server
from tests.integration.test_failure_modes import attempt_ids, charges_for
from tests.integration.test_payments_grpc import upi_request

pytestmark = pytest.mark.integration

TAIL_SECONDS = 8.0


@pytest_asyncio.fixture(scope="module")
async def retrying(stack: Stack) -> AsyncIterator[RunningServer]:
    """A server with Kafka retries on, a compressed ladder and fast consumer-group joins."""
    settings = stack.settings_with(
        kafka_retries=True, sync_retry_delays="0.2,0.5,1,1",
        sync_retry_tail_seconds=TAIL_SECONDS, sync_retry_grace_seconds=60.0,
        sync_retry_group=f"test-retry-{secrets.token_hex(4)}",
        kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=1000,
        kafka_max_poll_interval_ms=5000)
    async with running_server(settings) as server:
        yield server


async def create_on(stack: Stack, server: RunningServer, amount: int) -> pb.Payment:
    async with stack.channel(server.grpc_target) as channel:
        payment: pb.Payment = await stack.payments(channel).CreatePayment(
            upi_request(amount), metadata=stack.metadata())
        return payment


async def wait_for(stack: Stack, payment_id: str, status: int, within: float) -> pb.Payment:
    deadline = time.monotonic() + within
    async with stack.channel() as channel:
        while True:
            payment: pb.Payment = await stack.payments(channel).GetPayment(
                ps.GetPaymentRequest(id=payment_id), metadata=stack.metadata())
            if payment.status == status or time.monotonic() > deadline:
                return payment
            await asyncio.sleep(0.05)


async def audit(stack: Stack, payment_id: str) -> list[tuple[str, str, dict[str, object]]]:
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, actor, details FROM audit_log WHERE payment_id = %s ORDER BY id",
            (payment_id,))
        return [(str(r["action"]), str(r["actor"]), dict(r["details"]))
                for r in await cur.fetchall()]


def dead_letters(bootstrap: str, key: str, timeout_s: float) -> list[dict[str, object]]:
    """payments.dlq messages keyed `key` (partitions assigned by hand: no group join)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    found: list[dict[str, object]] = []
    try:
        partitions = [TopicPartition(PAYMENTS_DLQ, p)
                      for p in consumer.partitions_for_topic(PAYMENTS_DLQ) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not found:
            for records in consumer.poll(timeout_ms=300).values():
                found += [json.loads(r.value) for r in records
                          if r.key is not None and r.key.decode() == key]
    finally:
        consumer.close()
    return found


async def test_a_timed_out_create_is_resolved_by_the_retry_consumer_with_one_charge(
        stack: Stack, retrying: RunningServer, simulator: object) -> None:
    # Every try of the create is recorded by the PSP, then hangs past our 1 s timeout.
    stack.simulator.configure({"failure_mode": "timeout", "failure_count": 0,
                               "hang_seconds": 1.5})
    payment = await create_on(stack, retrying, 25_000)
    assert payment.status == pb.PAYMENT_STATUS_PROCESSING
    assert [a.status for a in payment.attempts] == ["UNKNOWN"]
    stack.simulator.configure({"failure_mode": "none"})
    resolved = await wait_for(stack, payment.id, pb.PAYMENT_STATUS_REQUIRES_ACTION, 15)
    assert resolved.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert len(resolved.attempts) == 1  # no failover: the outcome was found, not guessed
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 1
    moved = [(action, actor) for action, actor, _ in await audit(stack, payment.id)
             if action == "payment.requires_action"]
    assert moved == [("payment.requires_action", "worker:retry")]


async def test_a_checkout_still_open_after_the_tail_is_expired_and_dead_lettered(
        stack: Stack, retrying: RunningServer, simulator: object) -> None:
    payment = await create_on(stack, retrying, 26_000)
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    expired = await wait_for(stack, payment.id, pb.PAYMENT_STATUS_EXPIRED, TAIL_SECONDS + 15)
    assert expired.status == pb.PAYMENT_STATUS_EXPIRED
    assert expired.failure.code == "CHECKOUT_EXPIRED"
    rows = await audit(stack, payment.id)
    assert ("sync.dead_lettered", "worker:retry") in [(a, actor) for a, actor, _ in rows]
    letters = await asyncio.to_thread(dead_letters, stack.settings.kafka_bootstrap,
                                      payment.id, 15)
    assert letters and "tail" in str(letters[0]["reason"])
    assert letters[0]["status"] == "REQUIRES_ACTION"
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT attempt FROM payment_sync_schedule WHERE payment_id = %s", (payment.id,))
        row = await cur.fetchone()
    assert row is not None and int(row["attempt"]) >= 3  # it climbed the ladder first
