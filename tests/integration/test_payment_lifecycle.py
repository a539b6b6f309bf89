"""Checkout → signed webhook → SUCCEEDED → refunds; WatchPayment; events on Kafka."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import httpx
import pytest
from kafka import KafkaConsumer
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2
from triveni.v1 import payment_service_pb2 as ps

from server.devstack import FAST_CONSUMER_GROUP_SETTINGS
from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, key, upi_request

pytestmark = pytest.mark.integration


async def complete_checkout(stack: Stack, payment: pb.Payment) -> None:
    """What the customer's browser does: open the PSP's checkout page."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        response = await client.get(payment.redirect_url)
        assert response.status_code in (200, 302, 303), response.text


async def wait_for_status(stack: Stack, payment_id: str, status: int,
                          within: float = 10.0) -> pb.Payment:
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            payment: pb.Payment = await stub.GetPayment(ps.GetPaymentRequest(id=payment_id),
                                                        metadata=stack.metadata())
            if payment.status == status:
                return payment
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"status {payment.status} != {status}")
            await asyncio.sleep(0.05)


async def succeeded_payment(stack: Stack, amount_minor: int = 100_000) -> pb.Payment:
    payment = await create(stack, upi_request(amount_minor))
    await complete_checkout(stack, payment)
    return await wait_for_status(stack, payment.id, pb.PAYMENT_STATUS_SUCCEEDED)


async def test_signed_webhook_after_checkout_marks_the_payment_succeeded(stack: Stack) -> None:
    payment = await succeeded_payment(stack)
    assert payment.attempts[0].status == "SUCCEEDED"


async def test_failed_checkout_marks_the_payment_failed(stack: Stack, simulator: object) -> None:
    stack.simulator.configure({"success_rate": 0.0})
    payment = await create(stack, upi_request(100_000))
    await complete_checkout(stack, payment)
    failed = await wait_for_status(stack, payment.id, pb.PAYMENT_STATUS_FAILED)
    assert failed.failure.code


async def test_duplicate_webhooks_are_applied_once(stack: Stack, simulator: object) -> None:
    stack.simulator.configure({"duplicate_webhooks": 3})
    payment = await succeeded_payment(stack)
    await asyncio.sleep(0.5)
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE payment_id = %s"
            " AND action = 'payment.succeeded'", (payment.id,))
        row = await cur.fetchone()
    assert row is not None and row["n"] == 1


async def test_forged_webhook_is_rejected_and_changes_nothing(stack: Stack) -> None:
    payment = await create(stack, upi_request(100_000))
    body = (b'{"type":"payment.succeeded","data":{"id":"' + payment.connector_payment_id.encode()
            + b'","status":"succeeded"}}')
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{stack.http_url}/webhooks/{payment.connector}", content=body,
            headers={"x-simulator-signature": "0" * 64, "x-simulator-timestamp": "1",
                     "x-simulator-event-id": "evt_forged"})
        assert response.status_code == 401
        unknown = await client.post(f"{stack.http_url}/webhooks/no_such_account", content=body)
        assert unknown.status_code == 404
        huge = await client.post(f"{stack.http_url}/webhooks/{payment.connector}",
                                 content=b"x" * (300 * 1024))
        assert huge.status_code == 413
    current = await wait_for_status(stack, payment.id, pb.PAYMENT_STATUS_REQUIRES_ACTION)
    assert current.version == payment.version


async def test_watch_payment_streams_current_state_then_changes(stack: Stack) -> None:
    payment = await create(stack, upi_request(100_000))
    seen: list[int] = []
    async with stack.channel() as channel:
        stream = stack.payments(channel).WatchPayment(ps.WatchPaymentRequest(id=payment.id),
                                                      metadata=stack.metadata())

        async def read() -> None:
            async for update in stream:
                seen.append(update.status)
                if update.status == pb.PAYMENT_STATUS_SUCCEEDED:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        await complete_checkout(stack, payment)
        await asyncio.wait_for(reader, timeout=10)
        stream.cancel()
    assert seen[0] == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert seen[-1] == pb.PAYMENT_STATUS_SUCCEEDED


async def test_partial_then_full_refund_never_exceeds_captured(stack: Stack) -> None:
    payment = await succeeded_payment(stack, 100_000)
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        first = await stub.RefundPayment(ps.RefundPaymentRequest(
            payment_id=payment.id, idempotency_key="r1-" + key(),
            amount=pb.Money(amount_minor=40_000, currency="INR")), metadata=stack.metadata())
        assert first.status == pb.REFUND_STATUS_SUCCEEDED
        partial = await stub.GetPayment(ps.GetPaymentRequest(id=payment.id),
                                        metadata=stack.metadata())
        assert partial.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED
        assert partial.amount_refunded.amount_minor == 40_000
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RefundPayment(ps.RefundPaymentRequest(
                payment_id=payment.id, idempotency_key=key(),
                amount=pb.Money(amount_minor=60_001, currency="INR")), metadata=stack.metadata())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        rest_key = key()
        rest = await stub.RefundPayment(ps.RefundPaymentRequest(
            payment_id=payment.id, idempotency_key=rest_key), metadata=stack.metadata())
        assert rest.amount.amount_minor == 60_000
        again = await stub.RefundPayment(ps.RefundPaymentRequest(
            payment_id=payment.id, idempotency_key=rest_key), metadata=stack.metadata())
        assert again.id == rest.id
        final = await stub.GetPayment(ps.GetPaymentRequest(id=payment.id),
                                      metadata=stack.metadata())
        assert final.status == pb.PAYMENT_STATUS_REFUNDED
        assert final.amount_refunded.amount_minor == 100_000
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RefundPayment(ps.RefundPaymentRequest(
                payment_id=payment.id, idempotency_key=key()), metadata=stack.metadata())
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_refund_of_unpaid_payment_is_failed_precondition(stack: Stack) -> None:
    payment = await create(stack, upi_request(100_000))
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.payments(channel).RefundPayment(ps.RefundPaymentRequest(
                payment_id=payment.id, idempotency_key=key()), metadata=stack.metadata())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _consume_events(bootstrap: str, payment_id: str, want: set[str],
                    timeout_s: float = 30.0) -> list[events_pb2.PaymentEvent]:
    consumer = KafkaConsumer(
        "payments.events", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=f"test-{secrets.token_hex(4)}", enable_auto_commit=False,
        **FAST_CONSUMER_GROUP_SETTINGS)
    found: list[events_pb2.PaymentEvent] = []
    try:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not want <= {e.type for e in found}:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = events_pb2.PaymentEvent.FromString(record.value)
                    if event.payment.id == payment_id:
                        assert record.key == payment_id.encode()
                        found.append(event)
    finally:
        consumer.close()
    return found


async def test_every_state_change_is_published_to_kafka(stack: Stack) -> None:
    payment = await succeeded_payment(stack)
    want = {"payment.created", "payment.requires_action", "payment.succeeded"}
    events = await asyncio.to_thread(_consume_events, stack.settings.kafka_bootstrap,
                                     payment.id, want)
    types = [e.type for e in events]
    assert want <= set(types)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)
    assert len({e.event_id for e in events}) == len(set(types))  # dedupe by event_id works


async def test_seed_unsigned_webhook_works_only_with_the_dev_flag(stack: Stack) -> None:
    payment = await create(stack, upi_request(100_000))
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{stack.http_url}/webhook", json={
            "payment_request_id": payment.connector_payment_id, "status": "success"})
        assert response.status_code == 200, response.text
        unknown = await client.post(f"{stack.http_url}/webhook", json={
            "payment_request_id": "12345", "status": "success"})
        assert unknown.status_code == 404
        bad = await client.post(f"{stack.http_url}/webhook", json={"status": "success"})
        assert bad.status_code == 400
    await wait_for_status(stack, payment.id, pb.PAYMENT_STATUS_SUCCEEDED)


async def test_metrics_count_created_and_succeeded_payments(stack: Stack) -> None:
    def sample(text: str, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    created = "triveni_payments_created_total{"  # whichever account routing chose
    succeeded = "triveni_payment_final_success_total"
    async with httpx.AsyncClient() as client:
        before = (await client.get(f"{stack.http_url}/metrics")).text
        await succeeded_payment(stack)
        # Counted right after the webhook's commit, which GetPayment may see a moment earlier.
        for _ in range(50):
            after = (await client.get(f"{stack.http_url}/metrics")).text
            if sample(after, succeeded) > sample(before, succeeded):
                break
            await asyncio.sleep(0.05)
    assert sample(after, created) == sample(before, created) + 1
    assert sample(after, succeeded) == sample(before, succeeded) + 1
    assert 'triveni_grpc_requests_total{code="OK",method="/triveni.v1.PaymentService/' \
        'CreatePayment"}' in after


async def test_pending_refund_is_settled_by_status_sync(stack: Stack, simulator: object) -> None:
    payment = await succeeded_payment(stack, 50_000)
    stack.simulator.configure({"refund_delay_ms": 300})
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        refund = await stub.RefundPayment(ps.RefundPaymentRequest(
            payment_id=payment.id, idempotency_key=key()), metadata=stack.metadata())
        assert refund.status == pb.REFUND_STATUS_PENDING
        pending = await stub.GetPayment(ps.GetPaymentRequest(id=payment.id),
                                        metadata=stack.metadata())
        assert pending.status == pb.PAYMENT_STATUS_SUCCEEDED
        await asyncio.sleep(0.5)
        synced = await stub.SyncPayment(ps.SyncPaymentRequest(id=payment.id),
                                        metadata=stack.metadata())
    assert synced.status == pb.PAYMENT_STATUS_REFUNDED
    assert synced.refunds[0].status == pb.REFUND_STATUS_SUCCEEDED


async def test_webhook_racing_the_create_response_leaves_every_payment_consistent(
        stack: Stack, simulator: object) -> None:
    # The PSP completes at once and its webhook can land before our own write of the create
    # response: either order must end SUCCEEDED, once, with the PSP reference recorded.
    stack.simulator.configure({"auto_complete": True, "auto_complete_ms": 0})
    payments = await asyncio.gather(*(create(stack, upi_request(30_000 + i))
                                      for i in range(20)))
    for payment in payments:
        final = await wait_for_status(stack, payment.id, pb.PAYMENT_STATUS_SUCCEEDED)
        assert final.attempts[0].connector_payment_id == final.connector_payment_id != ""
        assert final.attempts[0].status == "SUCCEEDED"
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payment_id, count(*) AS n FROM audit_log WHERE payment_id = ANY(%s)"
            " AND action = 'payment.succeeded' GROUP BY payment_id", ([p.id for p in payments],))
        counts = {r["payment_id"]: r["n"] for r in await cur.fetchall()}
    assert counts == {p.id: 1 for p in payments}
