"""PaymentService over real gRPC, PostgreSQL, Redis and the simulator PSP."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest
from google.protobuf.message import Message
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from tests.fixtures.stack import Stack

pytestmark = pytest.mark.integration


def key() -> str:
    # Letters between the hex groups: a long all-digit run could look like a card number.
    return f"test-{secrets.token_hex(4)}-k-{secrets.token_hex(4)}"


def upi_request(amount_minor: int, **overrides: object) -> ps.CreatePaymentRequest:
    request = ps.CreatePaymentRequest(
        idempotency_key=key(), amount=pb.Money(amount_minor=amount_minor, currency="INR"),
        method=pb.PaymentMethod(upi=pb.UpiMethod(flow=pb.UPI_FLOW_INTENT)),
        customer=pb.Customer(id=f"cust-{secrets.token_hex(4)}", email="asha@example.com"),
        ip_address=f"203.0.113.{secrets.randbelow(250) + 1}", country="IN",
        description="order", return_url="https://shop.example/return")
    for name, value in overrides.items():
        if isinstance(getattr(request, name), Message):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


async def create(stack: Stack, request: ps.CreatePaymentRequest,
                 api_key: str | None = None) -> pb.Payment:
    async with stack.channel() as channel:
        result: pb.Payment = await stack.payments(channel).CreatePayment(
            request, metadata=stack.metadata(api_key))
        return result


async def test_create_payment_returns_a_checkout_link_from_the_psp(stack: Stack) -> None:
    payment = await create(stack, upi_request(50_000))
    assert payment.id.startswith("pay_")
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert payment.redirect_url.startswith(stack.simulator_url)
    assert payment.connector in ("simulator_standard", "simulator_premium")
    assert payment.attempts[0].connector_payment_id == payment.connector_payment_id
    assert payment.fraud.decision == pb.FRAUD_DECISION_ALLOW


async def test_amount_above_one_lakh_is_blocked_with_the_seed_message(stack: Stack) -> None:
    payment = await create(stack, upi_request(15_000_000))  # ₹1,50,000
    assert payment.status == pb.PAYMENT_STATUS_BLOCKED
    assert payment.failure.message == "Fraud detected: High amount"
    assert payment.failure.code == "FRAUD_HIGH_AMOUNT"
    assert payment.fraud.decision == pb.FRAUD_DECISION_BLOCK
    assert not payment.attempts  # never sent to a PSP


async def test_fifteen_thousand_rupees_goes_to_the_premium_account(stack: Stack) -> None:
    payment = await create(stack, upi_request(1_500_000))
    assert payment.connector == "simulator_premium"
    assert "premium" in payment.routing.algorithm or "premium" in payment.routing.reason


async def test_small_payment_goes_to_the_standard_account_by_static_priority(stack: Stack) -> None:
    payment = await create(stack, upi_request(10_000))
    assert payment.routing.chosen in ("simulator_standard", "simulator_premium")
    assert payment.routing.candidates


async def test_same_idempotency_key_fifty_times_concurrently_yields_one_payment(
        stack: Stack) -> None:
    request = upi_request(25_000)
    results = await asyncio.gather(*(create(stack, request) for _ in range(50)))
    assert len({p.id for p in results}) == 1
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM payments WHERE merchant_id = %s AND idempotency_key = %s",
            (stack.merchant_id, request.idempotency_key))
        row = await cur.fetchone()
        assert row is not None and row["n"] == 1
        cur = await conn.execute(
            "SELECT count(*) AS n FROM payment_attempts WHERE payment_id = %s", (results[0].id,))
        row = await cur.fetchone()
        assert row is not None and row["n"] == 1
        cur = await conn.execute(
            "SELECT id FROM payment_attempts WHERE payment_id = %s", (results[0].id,))
        attempt_ids = {r["id"] for r in await cur.fetchall()}
    charges = [p for p in list(stack.simulator.payments.values()) if p.reference in attempt_ids]
    assert len(charges) == 1


async def test_reused_idempotency_key_with_different_amount_is_rejected(stack: Stack) -> None:
    request = upi_request(30_000)
    await create(stack, request)
    request.amount.amount_minor = 30_001
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(stack, request)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency_key" in (info.value.details() or "")


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.amount.__setattr__("amount_minor", 0), "amount.amount_minor"),
    (lambda r: r.amount.__setattr__("amount_minor", -5), "amount.amount_minor"),
    (lambda r: r.amount.__setattr__("currency", "usd"), "amount.currency"),
    (lambda r: r.amount.__setattr__("currency", "USD"), "amount.currency"),
    (lambda r: r.__setattr__("idempotency_key", ""), "idempotency_key"),
    (lambda r: r.method.upi.__setattr__("vpa", "not a vpa"), "method.upi.vpa"),
    (lambda r: r.method.upi.__setattr__("flow", pb.UPI_FLOW_COLLECT), "method.upi.vpa"),
    (lambda r: r.__setattr__("ip_address", "999.1.1.1"), "ip_address"),
    (lambda r: r.__setattr__("country", "XX"), "country"),
    (lambda r: r.customer.__setattr__("email", "asha@"), "customer.email"),
    (lambda r: r.customer.__setattr__("phone", "12345"), "customer.phone"),
    (lambda r: r.__setattr__("return_url", "javascript:alert(1)"), "return_url"),
    (lambda r: r.ClearField("method"), "method"),
    (lambda r: r.ClearField("amount"), "amount"),
    (lambda r: r.__setattr__("preferred_connector", "nope"), "preferred_connector"),
])
async def test_invalid_input_is_refused_naming_the_field(stack: Stack, mutate: object,
                                                         field: str) -> None:
    request = upi_request(10_000)
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(stack, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field}:")
    assert dict(info.value.trailing_metadata() or ())["triveni-field"] == field


@pytest.mark.parametrize("where", ["metadata", "description", "customer_name", "card_token"])
async def test_card_number_anywhere_is_refused_and_never_written(stack: Stack,
                                                                 where: str) -> None:
    pan = "4111 1111 1111 1111"
    request = upi_request(10_000)
    if where == "metadata":
        request.metadata["note"] = f"card {pan}"
    elif where == "description":
        request.description = f"paid with {pan}"
    elif where == "customer_name":
        request.customer.name = pan
    else:
        request.method.CopyFrom(pb.PaymentMethod(card=pb.CardMethod(token=pan.replace(" ", ""))))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(stack, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "card number" in (info.value.details() or "")
    async with stack.app.pool.connection() as conn:
        for table in ("payments", "audit_log", "idempotency_records", "outbox"):
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE {table}::text LIKE '%%4111%%1111%%'")
            row = await cur.fetchone()
            assert row is not None and row["n"] == 0, table


async def test_missing_or_wrong_api_key_is_unauthenticated(stack: Stack) -> None:
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetPayment(ps.GetPaymentRequest(id="pay_x"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetPayment(ps.GetPaymentRequest(id="pay_x"),
                                  metadata=stack.metadata("trv_test_wrong"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_another_merchants_payment_is_permission_denied(stack: Stack) -> None:
    payment = await create(stack, upi_request(11_000))
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.payments(channel).GetPayment(
                ps.GetPaymentRequest(id=payment.id), metadata=stack.metadata(stack.other_api_key))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_payment_is_not_found(stack: Stack) -> None:
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.payments(channel).GetPayment(
                ps.GetPaymentRequest(id="pay_doesnotexist"), metadata=stack.metadata())
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_payments_pages_newest_first_for_this_merchant_only(stack: Stack) -> None:
    _, other_key = await stack.app.merchants.create_merchant("lister")
    created = [await create(stack, upi_request(12_000 + i), api_key=other_key) for i in range(5)]
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListPayments(ps.ListPaymentsRequest(page_size=2, page_token=token),
                                           metadata=stack.metadata(other_key))
            seen += [p.id for p in page.payments]
            token = page.next_page_token
            if not token:
                break
        assert seen == [p.id for p in reversed(created)]
        filtered = await stub.ListPayments(ps.ListPaymentsRequest(
            status=pb.PAYMENT_STATUS_BLOCKED), metadata=stack.metadata(other_key))
        assert list(filtered.payments) == []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListPayments(ps.ListPaymentsRequest(page_token="garbage!"),
                                    metadata=stack.metadata(other_key))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_requires_action_payment_then_cancel_again_is_noop(stack: Stack) -> None:
    payment = await create(stack, upi_request(13_000))
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        cancelled = await stub.CancelPayment(ps.CancelPaymentRequest(
            id=payment.id, idempotency_key=key()), metadata=stack.metadata())
        assert cancelled.status == pb.PAYMENT_STATUS_CANCELLED
        again = await stub.CancelPayment(ps.CancelPaymentRequest(
            id=payment.id, idempotency_key=key()), metadata=stack.metadata())
        assert again.version == cancelled.version


async def test_blocked_payment_cannot_be_cancelled(stack: Stack) -> None:
    payment = await create(stack, upi_request(20_000_000))
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.payments(channel).CancelPayment(ps.CancelPaymentRequest(
                id=payment.id, idempotency_key=key()), metadata=stack.metadata())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_every_state_change_is_in_the_audit_log_once(stack: Stack) -> None:
    payment = await create(stack, upi_request(14_000))
    async with stack.channel() as channel:
        await stack.payments(channel).CancelPayment(ps.CancelPaymentRequest(
            id=payment.id, idempotency_key=key()), metadata=stack.metadata())
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, before_status, after_status FROM audit_log WHERE payment_id = %s"
            " AND before_status IS DISTINCT FROM after_status ORDER BY id", (payment.id,))
        rows = [(r["action"], r["before_status"], r["after_status"]) for r in
                await cur.fetchall()]
    assert rows == [
        ("payment.created", None, "CREATED"),
        ("payment.requires_action", "CREATED", "REQUIRES_ACTION"),
        ("payment.cancelled", "REQUIRES_ACTION", "CANCELLED"),
    ]
