"""Contract tests: the real CashfreeConnector, sent through the real HttpExecutor, against the
fake Cashfree over loopback HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.connectors.base import (
    ConnectorAccount,
    CreatePaymentInput,
    Declined,
    Misconfigured,
    PspStatus,
    RateLimited,
    RefundInput,
    TransientError,
    Transport,
    UnknownOutcome,
    WebhookRejected,
)
from server.connectors.cashfree import CashfreeConnector
from server.connectors.cashfree.webhooks import compute_signature
from server.connectors.http import HttpExecutor, RetryPolicy
from server.domain.money import Money
from tests.fakes.cashfree import CashfreeFake, Delivery
from tests.fakes.server import serve_app

CHECKOUT_BASE = "https://pay.triveni.test"
RS_1500 = Money(150_000)
# The real executor, with its real retry rules, only quicker backoff.
FAST_RETRIES = RetryPolicy(initial_backoff_seconds=0.01, max_backoff_seconds=0.05)
TIMEOUT = 1.0
SLOW = 2.0  # longer than the account timeout


@dataclass
class Receiver:
    """A merchant-side endpoint that records webhook deliveries."""

    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.deliveries.append(({k: v for k, v in request.headers.items()},
                                await request.body()))
        return Response("ok")


@pytest.fixture
def fake() -> Iterator[CashfreeFake]:
    yield CashfreeFake()


@pytest.fixture
def base_url(fake: CashfreeFake) -> Iterator[str]:
    with serve_app(fake.app) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    sink = Receiver()
    app = Starlette(routes=[Route("/webhooks/cashfree_test", sink.handle, methods=["POST"])])
    with serve_app(app) as url:
        yield sink, f"{url}/webhooks/cashfree_test"


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    executor = HttpExecutor(retry_policy=FAST_RETRIES)
    yield executor
    await executor.aclose()


@pytest.fixture
def account(fake: CashfreeFake, base_url: str) -> ConnectorAccount:
    return ConnectorAccount(
        name="cashfree_test", psp="cashfree", base_url=f"{base_url}/pg",
        credentials={"client_id": fake.client_id, "client_secret": fake.client_secret},
        timeout_seconds=TIMEOUT, options={"checkout_base_url": CHECKOUT_BASE},
    )


connector = CashfreeConnector()


def payment_input(amount: Money = RS_1500, attempt_id: str = "") -> CreatePaymentInput:
    suffix = uuid.uuid4().hex[:12]
    return CreatePaymentInput(
        payment_id=f"pay_{suffix}", attempt_id=attempt_id or f"att_{suffix}", amount=amount,
        method="upi", method_details={}, customer_id=f"cust_{suffix}",
        customer_name="Asha Rao", customer_email="asha@example.in",
        customer_phone="+91 98765 43210", description="Order #42 at Triveni Tea",
        return_url="https://merchant.example/return", webhook_url=f"{CHECKOUT_BASE}/webhooks/cf",
    )


def refund_input(order_id: str, amount: Money, total: Money = RS_1500) -> RefundInput:
    return RefundInput(refund_id=f"rfnd_{uuid.uuid4().hex[:12]}", payment_id="pay_x",
                       connector_payment_id=order_id, amount=amount, total_amount=total,
                       reason="customer returned the item")


async def paid_order(transport: Transport, account: ConnectorAccount, fake: CashfreeFake,
                     amount: Money = RS_1500) -> str:
    created = await connector.create_payment(transport, account, payment_input(amount))
    fake.pay(created.connector_payment_id, "SUCCESS")
    return created.connector_payment_id


def now() -> datetime:
    return datetime.now(UTC)


# ---- known answers ------------------------------------------------------------------------

def test_webhook_signature_matches_known_answer() -> None:
    body = (b'{"data":{"order":{"order_id":"att_kat_1","order_amount":170.00}},'
            b'"type":"PAYMENT_SUCCESS_WEBHOOK"}')
    expected = "4hxidbUebLAkRMdAG/ouVCALpdy64JDLnDWQc24Uhkk="  # openssl dgst -sha256 -hmac
    by_hand = base64.b64encode(
        hmac.new(b"cf_kat_secret", b"1746427759733" + body, hashlib.sha256).digest()).decode()
    assert by_hand == expected
    assert compute_signature("cf_kat_secret", "1746427759733", body) == expected


# ---- create -------------------------------------------------------------------------------

async def test_create_sends_documented_order_and_returns_checkout_redirect(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    data = payment_input(Money(150_050))
    created = await connector.create_payment(transport, account, data)

    (sent,) = fake.requests_for("create_order")
    assert sent.headers["x-api-version"] == "2023-08-01"
    assert sent.headers["x-client-id"] == fake.client_id
    assert sent.headers["x-client-secret"] == fake.client_secret
    assert uuid.UUID(sent.headers["x-idempotency-key"])
    assert b'"order_amount":1500.50' in sent.body  # rupees, as a JSON number, 2 decimals
    body = json.loads(sent.body, parse_float=Decimal)
    assert body["order_id"] == data.attempt_id
    assert body["order_currency"] == "INR"
    assert body["customer_details"] == {
        "customer_id": data.customer_id, "customer_phone": "9876543210",
        "customer_email": "asha@example.in", "customer_name": "Asha Rao"}
    assert body["order_meta"]["return_url"] == data.return_url
    assert body["order_meta"]["notify_url"] == data.webhook_url
    assert body["order_meta"]["payment_methods"] == "upi"

    session = fake.orders[data.attempt_id].entity["payment_session_id"]
    assert created.status is PspStatus.REQUIRES_ACTION
    assert created.connector_payment_id == data.attempt_id
    assert created.raw_status == "ACTIVE"
    assert created.references["payment_session_id"] == session
    assert created.redirect_url == (f"{CHECKOUT_BASE}/checkout/cashfree/{data.attempt_id}"
                                    f"?payment_session_id={session}&mode=sandbox")


async def test_checkout_base_defaults_to_the_webhook_url_origin(
    transport: Transport, account: ConnectorAccount
) -> None:
    bare = ConnectorAccount(name=account.name, psp="cashfree", base_url=account.base_url,
                            credentials=account.credentials, timeout_seconds=TIMEOUT)
    created = await connector.create_payment(transport, bare, payment_input())
    assert created.redirect_url.startswith(f"{CHECKOUT_BASE}/checkout/cashfree/")


async def test_create_answered_late_is_retried_into_the_same_order(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    data = payment_input()
    fake.inject("create_order", delay=SLOW, after=True)  # Cashfree acts, the answer is late
    created = await connector.create_payment(transport, account, data)
    assert created.status is PspStatus.REQUIRES_ACTION
    assert len(fake.requests_for("create_order")) == 2  # the executor retried the safe POST
    assert fake.orders_created[data.attempt_id] == 1


async def test_create_that_keeps_timing_out_is_unknown_and_a_later_retry_finds_one_order(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    data = payment_input()
    fake.inject("create_order", delay=SLOW, after=True, times=3)
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(transport, account, data)
    again = await connector.create_payment(transport, account, data)
    assert again.connector_payment_id == data.attempt_id
    assert again.status is PspStatus.REQUIRES_ACTION
    assert fake.orders_created[data.attempt_id] == 1


async def test_duplicate_order_id_is_resolved_by_reading_the_existing_order(
    transport: Transport, account: ConnectorAccount
) -> None:
    fake = CashfreeFake(honour_idempotency_keys=False)  # only the order_id guards now
    with serve_app(fake.app) as url:
        acct = ConnectorAccount(name="cf", psp="cashfree", base_url=f"{url}/pg",
                                credentials=account.credentials, options=account.options)
        data = payment_input()
        first = await connector.create_payment(transport, acct, data)
        second = await connector.create_payment(transport, acct, data)
        assert [r.status for r in [first, second]] == [PspStatus.REQUIRES_ACTION] * 2
        assert second.references["payment_session_id"] == first.references[
            "payment_session_id"]
        assert fake.orders_created[data.attempt_id] == 1

        fake.pay(data.attempt_id, "SUCCESS")
        third = await connector.create_payment(transport, acct, data)
        assert third.status is PspStatus.SUCCEEDED
        assert third.redirect_url == ""
        assert fake.charges(data.attempt_id) == 1


async def test_paid_order_cannot_be_charged_twice_by_the_customer(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    with pytest.raises(ValueError, match="PAID"):
        fake.pay(order_id, "SUCCESS")
    assert fake.charges(order_id) == 1


async def test_one_create_5xx_is_retried_into_one_order(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    data = payment_input()
    fake.inject("create_order", status=502)
    created = await connector.create_payment(transport, account, data)
    assert created.status is PspStatus.REQUIRES_ACTION
    assert fake.orders_created[data.attempt_id] == 1


async def test_create_5xx_that_persists_is_unknown_outcome(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    # A 5xx on a POST may come after Cashfree acted: status sync first, never a blind failover.
    fake.inject("create_order", status=500, times=3)
    with pytest.raises(UnknownOutcome) as caught:
        await connector.create_payment(transport, account, payment_input())
    assert caught.value.http_status == 500


async def test_create_429_with_long_retry_is_rate_limited(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    fake.inject("create_order", status=429, retry_after=11)
    with pytest.raises(RateLimited) as caught:
        await connector.create_payment(transport, account, payment_input())
    assert caught.value.retry_after_seconds == 11
    assert caught.value.http_status == 429
    assert len(fake.requests_for("create_order")) == 1


async def test_create_429_with_short_retry_is_retried(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    fake.inject("create_order", status=429, retry_after=0)
    created = await connector.create_payment(transport, account, payment_input())
    assert created.status is PspStatus.REQUIRES_ACTION
    assert len(fake.requests_for("create_order")) == 2


async def test_wrong_credentials_are_misconfigured(
    transport: Transport, account: ConnectorAccount
) -> None:
    wrong = ConnectorAccount(name="cf", psp="cashfree", base_url=account.base_url,
                             credentials={"client_id": "cf_app_test", "client_secret": "nope"},
                             options=account.options)
    with pytest.raises(Misconfigured) as caught:
        await connector.create_payment(transport, wrong, payment_input())
    assert caught.value.http_status == 401


async def test_missing_credential_is_misconfigured_before_any_call(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    empty = ConnectorAccount(name="cf", psp="cashfree", base_url=account.base_url,
                             options=account.options)
    with pytest.raises(Misconfigured):
        await connector.create_payment(transport, empty, payment_input())
    assert fake.requests == []


async def test_invalid_order_is_declined(
    transport: Transport, account: ConnectorAccount
) -> None:
    bad = dataclasses.replace(payment_input(), customer_phone="12345")
    with pytest.raises(Declined) as caught:
        await connector.create_payment(transport, account, bad)
    assert caught.value.http_status == 400


async def test_create_timing_out_before_cashfree_acts_is_unknown_then_one_order(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    data = payment_input()
    fake.inject("create_order", delay=SLOW, times=3)  # slow before acting; acts anyway
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(transport, account, data)
    again = await connector.create_payment(transport, account, data)
    assert again.connector_payment_id == data.attempt_id
    assert fake.orders_created[data.attempt_id] == 1


# ---- status -------------------------------------------------------------------------------

async def test_unpaid_order_still_requires_action(
    transport: Transport, account: ConnectorAccount
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    status = await connector.get_payment(transport, account, created.connector_payment_id,
                                         created.references)
    assert status.status is PspStatus.REQUIRES_ACTION
    assert status.redirect_url == created.redirect_url


async def test_paid_order_is_succeeded_with_captured_amount(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake, Money(99_999))
    status = await connector.get_payment(transport, account, order_id, {})
    assert status.status is PspStatus.SUCCEEDED
    assert status.raw_status == "PAID"
    assert status.amount_captured == Money(99_999)
    assert status.references["cf_payment_id"] == str(fake.orders[order_id].payments[0][
        "cf_payment_id"])


async def test_failed_payment_is_failed_with_the_psp_error(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.pay(created.connector_payment_id, "FAILED")
    status = await connector.get_payment(transport, account, created.connector_payment_id, {})
    assert status.status is PspStatus.FAILED
    assert status.error_code == "TRANSACTION_DECLINED"
    assert "declined" in status.error_message
    assert status.amount_captured is None


async def test_success_after_a_failed_attempt_on_the_same_order_is_succeeded(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.pay(created.connector_payment_id, "FAILED")
    fake.pay(created.connector_payment_id, "SUCCESS")
    status = await connector.get_payment(transport, account, created.connector_payment_id, {})
    assert status.status is PspStatus.SUCCEEDED


async def test_pending_payment_is_pending(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.pay(created.connector_payment_id, "PENDING")
    status = await connector.get_payment(transport, account, created.connector_payment_id, {})
    assert status.status is PspStatus.PENDING


async def test_expired_order_is_expired(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.expire(created.connector_payment_id)
    status = await connector.get_payment(transport, account, created.connector_payment_id, {})
    assert status.status is PspStatus.EXPIRED


async def test_unknown_order_is_failed_as_never_created(
    transport: Transport, account: ConnectorAccount
) -> None:
    status = await connector.get_payment(transport, account, "att_never_sent", {})
    assert status.status is PspStatus.FAILED
    assert status.error_code == "ORDER_NOT_FOUND"


async def test_status_read_5xx_429_and_timeout_are_classified(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    order_id = created.connector_payment_id
    fake.inject("get_order", status=500, times=3)
    with pytest.raises(TransientError) as failed:
        await connector.get_payment(transport, account, order_id, {})
    assert not isinstance(failed.value, RateLimited)
    fake.inject("get_order", status=429, retry_after=30)
    with pytest.raises(RateLimited) as limited:
        await connector.get_payment(transport, account, order_id, {})
    assert limited.value.retry_after_seconds == 30
    fake.inject("get_order", delay=SLOW, times=3)
    with pytest.raises(TransientError) as slow:  # a read that timed out moved nothing
        await connector.get_payment(transport, account, order_id, {})
    assert not isinstance(slow.value, RateLimited)


async def test_one_failed_status_read_is_retried(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.inject("get_order", status=503)
    status = await connector.get_payment(transport, account, created.connector_payment_id, {})
    assert status.status is PspStatus.REQUIRES_ACTION


# ---- refunds ------------------------------------------------------------------------------

async def test_full_refund_is_pending_then_succeeded(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    data = refund_input(order_id, Money(150_000))
    refund = await connector.refund(transport, account, data)
    (sent,) = fake.requests_for("create_refund")
    assert b'"refund_amount":1500.00' in sent.body
    assert json.loads(sent.body)["refund_id"] == data.refund_id
    assert refund.status is PspStatus.PENDING
    assert refund.connector_refund_id == data.refund_id

    fake.settle_refund(order_id, data.refund_id, "SUCCESS")
    settled = await connector.get_refund(transport, account, data, refund.connector_refund_id)
    assert settled.status is PspStatus.SUCCEEDED
    assert settled.raw_status == "SUCCESS"


async def test_partial_refunds_add_up_and_over_refund_is_declined(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    first = await connector.refund(transport, account, refund_input(order_id, Money(50_000)))
    second = await connector.refund(transport, account, refund_input(order_id, Money(60_000)))
    assert first.status is second.status is PspStatus.PENDING
    with pytest.raises(Declined) as caught:
        await connector.refund(transport, account, refund_input(order_id, Money(40_001)))
    assert caught.value.code == "refund_amount_invalid"
    assert len(fake.orders[order_id].refunds) == 2


async def test_failed_refund_is_failed(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    data = refund_input(order_id, Money(1_000))
    await connector.refund(transport, account, data)
    fake.settle_refund(order_id, data.refund_id, "CANCELLED")
    refund = await connector.get_refund(transport, account, data, data.refund_id)
    assert refund.status is PspStatus.FAILED
    assert refund.error_code == "CANCELLED"


async def test_retried_refund_never_refunds_twice(
    transport: Transport, account: ConnectorAccount
) -> None:
    fake = CashfreeFake(honour_idempotency_keys=False)
    with serve_app(fake.app) as url:
        acct = ConnectorAccount(name="cf", psp="cashfree", base_url=f"{url}/pg",
                                credentials=account.credentials, options=account.options)
        order_id = await paid_order(transport, acct, fake)
        data = refund_input(order_id, Money(10_000))
        first = await connector.refund(transport, acct, data)
        again = await connector.refund(transport, acct, data)  # 409 → read the existing one
        assert again.connector_refund_id == first.connector_refund_id
        assert len(fake.orders[order_id].refunds) == 1


async def test_refund_of_unpaid_order_is_declined(
    transport: Transport, account: ConnectorAccount
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    with pytest.raises(Declined):
        await connector.refund(transport, account,
                               refund_input(created.connector_payment_id, Money(100)))


async def test_refund_5xx_is_unknown_and_the_retry_refunds_once(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    data = refund_input(order_id, Money(100))
    fake.inject("create_refund", status=500, times=3)
    with pytest.raises(UnknownOutcome):
        await connector.refund(transport, account, data)
    refund = await connector.refund(transport, account, data)
    assert refund.status is PspStatus.PENDING
    assert len(fake.orders[order_id].refunds) == 1


async def test_unknown_refund_is_declined(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    data = refund_input(order_id, Money(100))
    with pytest.raises(Declined):
        await connector.get_refund(transport, account, data, data.refund_id)


# ---- webhooks -----------------------------------------------------------------------------

async def delivered(fake: CashfreeFake, receiver: tuple[Receiver, str],
                    delivery: Delivery | list[Delivery],
                    **options: bool) -> list[tuple[dict[str, str], bytes]]:
    sink, url = receiver
    statuses = await fake.deliver(url, delivery, **options)
    assert set(statuses) == {200}
    return sink.deliveries


async def test_success_webhook_is_verified_and_parsed(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake,
    receiver: tuple[Receiver, str],
) -> None:
    order_id = await paid_order(transport, account, fake, Money(17_000))
    ((headers, body),) = await delivered(fake, receiver, fake.payment_webhook(order_id))
    assert b"170.00" in body  # the raw body keeps Cashfree's decimals
    event = connector.parse_webhook(account, headers, body, now())
    assert event.kind == "payment"
    assert event.status is PspStatus.SUCCEEDED
    assert event.connector_payment_id == event.payment_ref == order_id
    assert event.amount == Money(17_000)
    assert event.raw_status == "SUCCESS"
    assert event.occurred_at is not None
    cf_payment_id = fake.orders[order_id].payments[0]["cf_payment_id"]
    assert event.dedupe_id == f"cashfree:PAYMENT_SUCCESS_WEBHOOK:{cf_payment_id}"


async def test_failure_webhook_carries_the_error(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake,
    receiver: tuple[Receiver, str],
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.pay(created.connector_payment_id, "FAILED")
    ((headers, body),) = await delivered(
        fake, receiver, fake.payment_webhook(created.connector_payment_id))
    event = connector.parse_webhook(account, headers, body, now())
    assert event.status is PspStatus.FAILED
    assert event.error_code == "TRANSACTION_DECLINED"
    assert event.dedupe_id.startswith("cashfree:PAYMENT_FAILED_WEBHOOK:")


async def test_user_dropped_webhook_is_failed(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    fake.pay(created.connector_payment_id, "USER_DROPPED")
    delivery = fake.payment_webhook(created.connector_payment_id)
    event = connector.parse_webhook(account, delivery.headers, delivery.body, now())
    assert event.status is PspStatus.FAILED
    assert event.raw_status == "USER_DROPPED"


async def test_refund_webhooks_out_of_order_keep_distinct_ids(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake,
    receiver: tuple[Receiver, str],
) -> None:
    order_id = await paid_order(transport, account, fake)
    data = refund_input(order_id, Money(5_000))
    await connector.refund(transport, account, data)
    pending = fake.refund_webhook(order_id, data.refund_id)
    fake.settle_refund(order_id, data.refund_id, "SUCCESS")
    success = fake.refund_webhook(order_id, data.refund_id)
    received = await delivered(fake, receiver, [pending, success], reverse=True)
    events = [connector.parse_webhook(account, h, b, now()) for h, b in received]
    assert [e.status for e in events] == [PspStatus.SUCCEEDED, PspStatus.PENDING]
    assert {e.kind for e in events} == {"refund"}
    assert {e.connector_refund_id for e in events} == {data.refund_id}
    assert events[0].amount == Money(5_000)
    assert events[0].dedupe_id != events[1].dedupe_id


async def test_duplicate_delivery_has_the_same_dedupe_id(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake,
    receiver: tuple[Receiver, str],
) -> None:
    order_id = await paid_order(transport, account, fake)
    received = await delivered(fake, receiver, fake.payment_webhook(order_id), duplicate=True)
    assert len(received) == 2
    assert received[0][0]["x-webhook-attempt"] == "1"
    assert received[1][0]["x-webhook-attempt"] == "2"
    first, second = (connector.parse_webhook(account, h, b, now()) for h, b in received)
    assert first.dedupe_id == second.dedupe_id


async def test_forged_signature_is_rejected(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    forged = fake.payment_webhook(order_id, secret="not-the-client-secret")
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, forged.headers, forged.body, now())
    assert caught.value.reason == "bad_signature"


async def test_tampered_body_is_rejected(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake, Money(17_000))
    delivery = fake.payment_webhook(order_id)
    tampered = delivery.body.replace(b"170.00", b"1.00")
    assert tampered != delivery.body
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, delivery.headers, tampered, now())
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_rejected(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake, skew: timedelta
) -> None:
    order_id = await paid_order(transport, account, fake)
    sent_at = int((now() + skew).timestamp() * 1000)
    delivery = fake.payment_webhook(order_id, timestamp_ms=sent_at)  # correctly signed
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, delivery.headers, delivery.body, now())
    assert caught.value.reason == "stale"


async def test_timestamp_inside_the_window_is_accepted(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    sent_at = int((now() - timedelta(minutes=4)).timestamp() * 1000)
    delivery = fake.payment_webhook(order_id, timestamp_ms=sent_at)
    event = connector.parse_webhook(account, delivery.headers, delivery.body, now())
    assert event.status is PspStatus.SUCCEEDED


async def test_webhooks_are_verified_with_the_client_secret_not_webhook_secret(
    transport: Transport, account: ConnectorAccount, fake: CashfreeFake
) -> None:
    order_id = await paid_order(transport, account, fake)
    delivery = fake.payment_webhook(order_id)
    other = dataclasses.replace(account, webhook_secret="something-else")
    event = connector.parse_webhook(other, delivery.headers, delivery.body, now())
    assert event.status is PspStatus.SUCCEEDED


def test_unsigned_delivery_is_rejected(account: ConnectorAccount) -> None:
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, {"content-type": "application/json"}, b"{}", now())
    assert caught.value.reason == "unsigned"


def test_signed_garbage_is_malformed(account: ConnectorAccount, fake: CashfreeFake) -> None:
    timestamp = str(int(time.time() * 1000))
    for body in (b"not json", b'{"type":"PAYMENT_SUCCESS_WEBHOOK"}',
                 b'{"type":"SOMETHING_NEW","data":{}}'):
        headers = {"X-Webhook-Signature": fake.sign(timestamp, body),
                   "X-Webhook-Timestamp": timestamp}
        with pytest.raises(WebhookRejected) as caught:
            connector.parse_webhook(account, headers, body, now())
        assert caught.value.reason == "malformed"
