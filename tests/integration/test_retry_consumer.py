"""The retry consumer against the real broker and database: a message for a final payment is
acknowledged and dropped, a handler that keeps failing sends its message to payments.dlq, and
both Kafka clients hold (pause + rewind) and resume a partition."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from server.adapters.kafka.factory import build_consumer, build_producer
from server.adapters.kafka.ports import KafkaSettings, OutgoingMessage
from server.adapters.kafka.ports import TopicPartition as PortTopicPartition
from server.adapters.kafka.topics import PAYMENTS_RETRY_5S, TopicSpec, ensure_topics
from server.devstack import FAST_CONSUMER_GROUP_SETTINGS
from server.domain.payment import utcnow
from server.entrypoints.workers.sync_retry import RetryTopicWorker, RetryWorkerOptions
from server.service_layer.sync_schedule import ScheduledSync, SyncMessage
from tests.fixtures.stack import Stack
from tests.integration.test_kafka_sync_retry import audit, dead_letters
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration


async def schedule_now(stack: Stack, payment_id: str) -> None:
    """Put a due retry message for the payment on payments.retry.5s (through the outbox)."""
    async with stack.app.payments.deps.uow_factory() as uow:
        uow.sync_schedule.schedule(ScheduledSync(payment_id, 0, utcnow() - timedelta(seconds=1),
                                                 "test"))
        await uow.commit()


async def consume_until(stack: Stack, handler: Callable[[SyncMessage], Awaitable[str]],
                        done: Callable[[], bool], *, max_failures: int = 5,
                        within: float = 30) -> None:
    """Run one retry-topic worker (a fresh group, fast join) until `done()`, at most
    `within` seconds."""
    kafka = KafkaSettings(stack.settings.kafka_bootstrap, **FAST_CONSUMER_GROUP_SETTINGS)
    group = f"test-retry-consumer-{secrets.token_hex(4)}"
    options = RetryWorkerOptions(max_failures=max_failures, failure_backoff_seconds=0.1,
                                 poll_timeout_seconds=0.2)

    async def dead_letter(key: str, body: dict[str, object]) -> None:
        await stack.app.payments.dead_letter_sync(key, body, actor="worker:retry")

    worker = RetryTopicWorker(build_consumer(kafka, group, [PAYMENTS_RETRY_5S]),
                              PAYMENTS_RETRY_5S, group, handler, dead_letter, options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if done() or task.done():
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=15)


async def test_a_message_for_a_payment_already_final_is_acknowledged_and_dropped(
        stack: Stack) -> None:
    payment = await create(stack, upi_request(27_000))
    async with stack.channel() as channel:
        cancelled = await stack.payments(channel).CancelPayment(ps.CancelPaymentRequest(
            id=payment.id, idempotency_key=f"c-{secrets.token_hex(6)}"),
            metadata=stack.metadata())
    assert cancelled.status == pb.PAYMENT_STATUS_CANCELLED
    await schedule_now(stack, payment.id)
    outcomes: list[str] = []

    async def handler(message: SyncMessage) -> str:
        if message.payment_id != payment.id:
            return "dropped_stale"  # other tests' messages on the shared topic
        outcome = await stack.app.payments.run_scheduled_sync(message, actor="worker:retry")
        outcomes.append(outcome)
        return outcome

    await consume_until(stack, handler, lambda: bool(outcomes))
    assert outcomes == ["dropped_final"]
    actors = {actor for _, actor, _ in await audit(stack, payment.id)}
    assert "worker:retry" not in actors  # nothing was synced or changed
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM payment_sync_schedule WHERE payment_id = %s",
            (payment.id,))
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0  # its schedule is forgotten


async def test_a_handler_that_keeps_failing_lands_in_the_dlq_with_the_reason(
        stack: Stack) -> None:
    payment = await create(stack, upi_request(28_000))
    await schedule_now(stack, payment.id)
    tries: list[int] = []

    async def handler(message: SyncMessage) -> str:
        if message.payment_id != payment.id:
            return "dropped_stale"
        tries.append(message.ticket)
        raise RuntimeError("the PSP adapter is broken")

    async def dead_lettered() -> bool:
        return any(a == "sync.dead_lettered" for a, _, _ in await audit(stack, payment.id))

    noted: list[bool] = []

    def done() -> bool:
        return bool(noted) and noted[-1]

    async def watch() -> None:
        while not done():
            noted.append(await dead_lettered())
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        await consume_until(stack, handler, done, max_failures=3)
    finally:
        watcher.cancel()
    assert len(tries) == 3
    letters = await asyncio.to_thread(dead_letters, stack.settings.kafka_bootstrap,
                                      payment.id, 15)
    assert letters, "nothing reached payments.dlq"
    reason = str(letters[0]["reason"])
    assert "handler failed 3 times" in reason and "the PSP adapter is broken" in reason
    assert letters[0]["topic"] == PAYMENTS_RETRY_5S


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
async def test_a_held_partition_stays_quiet_while_polling_and_replays_from_the_held_offset(
        stack: Stack, client: str) -> None:
    bootstrap = stack.settings.kafka_bootstrap
    topic = f"hold-{secrets.token_hex(4)}"
    await asyncio.to_thread(ensure_topics, bootstrap, [TopicSpec(topic, partitions=1)])
    settings = KafkaSettings(bootstrap, client=client,  # type: ignore[arg-type]
                             **FAST_CONSUMER_GROUP_SETTINGS)
    producer = build_producer(settings)
    results = await producer.publish_batch(
        [OutgoingMessage(topic, "k", f"m{n}".encode()) for n in range(3)])
    await producer.close()
    assert all(r.ok for r in results)
    consumer = build_consumer(settings, f"hold-{secrets.token_hex(4)}", [topic])
    try:
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline:
            received += [m.value for m in await consumer.poll(10, 0.5)]
        assert received == [b"m0", b"m1", b"m2"]
        tp = PortTopicPartition(topic, 0)
        assert tp in await consumer.assignment()
        await consumer.hold(tp, 1)
        quiet = [m for _ in range(4) for m in await consumer.poll(10, 0.5)]
        assert quiet == []  # paused, yet the member keeps polling (no rebalance)
        await consumer.resume([tp])
        again: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(again) < 2 and time.monotonic() < deadline:
            again += [m.value for m in await consumer.poll(10, 0.5)]
        assert again == [b"m1", b"m2"]
    finally:
        await consumer.close()
