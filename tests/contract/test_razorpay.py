"""RazorpayConnector (payment links and orders) against the fake Razorpay over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from server.connectors.base import (
    ConnectorAccount,
    ConnectorError,
    CreatePaymentInput,
    Declined,
    Misconfigured,
    PspStatus,
    RateLimited,
    RefundInput,
    TransientError,
    UnknownOutcome,
    WebhookEvent,
    WebhookRejected,
)
from server.connectors.http import HttpExecutor
from server.connectors.razorpay import RazorpayConnector
from server.domain.money import Money
from tests.fakes.razorpay import FakeRazorpay
from tests.fakes.server import serve_app

WEBHOOK_SECRET = "fake_webhook_secret"
connector = RazorpayConnector()


# ---- fixtures ----------------------------------------------------------------------------

@dataclass
class Receiver:
    url: str = ""
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while len(self.deliveries) < count:
            assert time.monotonic() < deadline, f"got {len(self.deliveries)} deliveries"
            await asyncio.sleep(0.01)

    def events(self, account: ConnectorAccount) -> list[tuple[str, WebhookEvent]]:
        parsed = []
        for headers, body in self.deliveries:
            event = connector.parse_webhook(account, headers, body, datetime.now(UTC))
            parsed.append((json.loads(body)["event"], event))
        return parsed


@dataclass
class Env:
    fake: FakeRazorpay
    base_url: str
    receiver: Receiver


@pytest.fixture
def env() -> Iterator[Env]:
    receiver = Receiver()

    async def hook(request: Request) -> Response:
        receiver.deliveries.append((dict(request.headers), await request.body()))
        return PlainTextResponse("ok")

    fake = FakeRazorpay(webhook_secret=WEBHOOK_SECRET)
    with serve_app(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_base, \
            serve_app(fake.app) as base:
        receiver.url = fake.webhook_url = f"{hook_base}/hook"
        yield Env(fake, base, receiver)


def account(env: Env, **overrides: object) -> ConnectorAccount:
    values: dict[str, object] = {
        "name": "razorpay_contract", "psp": "razorpay", "base_url": env.base_url,
        "credentials": {"key_id": "rzp_test_fakekey", "key_secret": "fake_key_secret"},
        "webhook_secret": WEBHOOK_SECRET, "timeout_seconds": 2.0}
    values.update(overrides)
    return ConnectorAccount(**values)  # type: ignore[arg-type]


def order_account(env: Env, **overrides: object) -> ConnectorAccount:
    return account(env, options={"checkout": "order"}, **overrides)


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def executor() -> AsyncIterator[HttpExecutor]:
    ex = HttpExecutor(sleep=no_sleep)
    yield ex
    await ex.aclose()


def payment_input(amount_minor: int = 150_000) -> CreatePaymentInput:
    suffix = uuid.uuid4().hex[:16]
    return CreatePaymentInput(
        payment_id=f"pay_{suffix}", attempt_id=f"att_{suffix}",
        amount=Money(amount_minor, "INR"), method="upi", method_details={},
        customer_id="cus_1", customer_name="Asha Rao", customer_email="asha@example.com",
        customer_phone="+919876543210", description="Order 42",
        return_url="https://merchant.example/return",
        webhook_url="https://triveni.example/webhooks/razorpay_contract")


def refund_input(connector_payment_id: str, amount_minor: int,
                 references: dict[str, str] | None = None) -> RefundInput:
    return RefundInput(
        refund_id=f"rfnd_{uuid.uuid4().hex[:16]}", payment_id="pay_x",
        connector_payment_id=connector_payment_id, amount=Money(amount_minor),
        total_amount=Money(150_000), reason="customer asked", references=references or {})


# ---- create ------------------------------------------------------------------------------

async def test_create_makes_a_payment_link_in_paise_keyed_by_the_attempt(
        env: Env, executor: HttpExecutor) -> None:
    data = payment_input()
    payment = await connector.create_payment(executor, account(env), data)
    assert payment.status == PspStatus.REQUIRES_ACTION
    assert payment.connector_payment_id.startswith("plink_")
    link = env.fake.links[payment.connector_payment_id]
    assert payment.redirect_url == link["short_url"]
    sent = env.fake.logged("/v1/payment_links")[0]
    expected_auth = base64.b64encode(b"rzp_test_fakekey:fake_key_secret").decode()
    assert sent.headers["authorization"] == f"Basic {expected_auth}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.json()
    assert body["amount"] == 150_000 and isinstance(body["amount"], int)
    assert body["reference_id"] == data.attempt_id
    assert body["callback_url"] == "https://merchant.example/return"
    assert body["notify"] == {"sms": False, "email": False}
    assert body["notes"] == {"triveni_payment_id": data.payment_id,
                             "triveni_attempt_id": data.attempt_id}


async def test_order_mode_creates_an_order_with_the_attempt_as_receipt(
        env: Env, executor: HttpExecutor) -> None:
    data = payment_input()
    payment = await connector.create_payment(executor, order_account(env), data)
    assert payment.connector_payment_id.startswith("order_")
    assert payment.status == PspStatus.REQUIRES_ACTION
    assert payment.redirect_url == ""
    assert env.fake.orders[payment.connector_payment_id]["receipt"] == data.attempt_id
    assert payment.references["razorpay_order_id"] == payment.connector_payment_id


async def test_base_url_with_v1_suffix_is_accepted(env: Env, executor: HttpExecutor) -> None:
    payment = await connector.create_payment(
        executor, account(env, base_url=f"{env.base_url}/v1"), payment_input())
    assert payment.connector_payment_id in env.fake.links


async def test_bad_keys_are_misconfigured(env: Env, executor: HttpExecutor) -> None:
    bad = account(env, credentials={"key_id": "rzp_test_fakekey", "key_secret": "wrong"})
    with pytest.raises(Misconfigured) as info:
        await connector.create_payment(executor, bad, payment_input())
    assert info.value.http_status == 401


async def test_amount_below_one_rupee_is_declined(env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(Declined) as info:
        await connector.create_payment(executor, account(env), payment_input(amount_minor=50))
    assert "atleast" in info.value.message


async def test_unknown_checkout_mode_is_misconfigured(env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(Misconfigured):
        await connector.create_payment(executor, account(env, options={"checkout": "qr"}),
                                       payment_input())


# ---- status ------------------------------------------------------------------------------

async def test_paid_link_is_succeeded_with_payment_and_order_ids(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    pay_id = await env.fake.pay_link(created.connector_payment_id)
    status = await connector.get_payment(executor, account(env), created.connector_payment_id,
                                         created.references)
    assert status.status == PspStatus.SUCCEEDED
    assert status.amount_captured == Money(150_000)
    assert status.references["razorpay_payment_id"] == pay_id
    assert status.references["razorpay_order_id"] == env.fake.payments[pay_id]["order_id"]


async def test_failed_try_on_a_link_is_failed_with_razorpays_reason(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, success=False)
    status = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert status.status == PspStatus.FAILED
    assert status.error_code == "incorrect_pin"
    assert "UPI PIN" in status.error_message


async def test_link_without_a_payments_summary_is_read_through_its_order(
        env: Env, executor: HttpExecutor) -> None:
    env.fake.link_payments_summary = False
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, success=False)
    failed = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert (failed.status, failed.error_code) == (PspStatus.FAILED, "incorrect_pin")
    env.fake.links[created.connector_payment_id]["status"] = "created"
    pay_id = await env.fake.pay_link(created.connector_payment_id)
    paid = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert paid.status == PspStatus.SUCCEEDED
    assert paid.references["razorpay_payment_id"] == pay_id
    refund = await connector.refund(executor, account(env),
                                    refund_input(created.connector_payment_id, 500))
    assert env.fake.refunds[refund.connector_refund_id]["payment_id"] == pay_id


async def test_unpaid_link_requires_action(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    status = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert (status.status, status.raw_status) == (PspStatus.REQUIRES_ACTION, "created")


async def test_expired_link_is_expired(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    env.fake.links[created.connector_payment_id]["status"] = "expired"
    status = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert status.status == PspStatus.EXPIRED


async def test_order_status_follows_its_payments(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, order_account(env), payment_input())
    await env.fake.pay_order(created.connector_payment_id, success=False)
    failed = await connector.get_payment(executor, order_account(env),
                                         created.connector_payment_id, {})
    assert (failed.status, failed.raw_status) == (PspStatus.FAILED, "attempted")
    pay_id = await env.fake.pay_order(created.connector_payment_id, success=True)
    paid = await connector.get_payment(executor, order_account(env),
                                       created.connector_payment_id, {})
    assert paid.status == PspStatus.SUCCEEDED
    assert paid.references["razorpay_payment_id"] == pay_id


async def test_status_reads_retry_on_5xx(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    env.fake.fail("get_link", status=503, count=2)
    status = await connector.get_payment(executor, account(env), created.connector_payment_id, {})
    assert status.status == PspStatus.REQUIRES_ACTION
    assert len(env.fake.logged(f"/v1/payment_links/{created.connector_payment_id}", "GET")) == 3


async def test_unknown_link_id_is_a_404(env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(ConnectorError) as info:
        await connector.get_payment(executor, account(env), "plink_doesnotexist00", {})
    assert info.value.http_status == 404


# ---- failure classification and no double charge ----------------------------------------

async def test_timeout_on_link_create_is_unknown_and_sync_finds_the_one_link(
        env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_link", "timeout", count=0, delay=2.0)
    data = payment_input()
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(executor, account(env, timeout_seconds=0.5), data)
    assert len(env.fake.links) == 1
    found = await connector.get_payment(executor, account(env), data.attempt_id,
                                        {"attempt_id": data.attempt_id})
    assert found.connector_payment_id in env.fake.links
    env.fake.faults.clear()
    again = await connector.create_payment(executor, account(env), data)
    assert again.connector_payment_id == found.connector_payment_id
    assert len(env.fake.links) == 1
    await env.fake.pay_link(again.connector_payment_id)
    assert sum(p["status"] == "captured" for p in env.fake.payments.values()) == 1


async def test_lost_create_response_is_recovered_by_the_executors_retry(
        env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_link", status=502, after_commit=True)
    data = payment_input()
    payment = await connector.create_payment(executor, account(env), data)
    assert list(env.fake.links) == [payment.connector_payment_id]
    assert len(env.fake.logged("/v1/payment_links")) == 2  # the retry hit "already exists"


async def test_sync_for_an_attempt_razorpay_never_saw_is_a_404(
        env: Env, executor: HttpExecutor) -> None:
    data = payment_input()
    with pytest.raises(ConnectorError) as info:
        await connector.get_payment(executor, account(env), data.attempt_id,
                                    {"attempt_id": data.attempt_id})
    assert info.value.http_status == 404


async def test_order_create_timeout_is_unknown_not_resent_and_found_by_receipt(
        env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_order", "timeout", delay=2.0)
    data = payment_input()
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(executor, order_account(env, timeout_seconds=0.5), data)
    assert len(env.fake.logged("/v1/orders")) == 1
    found = await connector.get_payment(executor, order_account(env), "",
                                        {"attempt_id": data.attempt_id})
    assert found.connector_payment_id in env.fake.orders
    assert len(env.fake.orders) == 1


async def test_5xx_on_order_create_is_unknown(env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_order", status=500)
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(executor, order_account(env), payment_input())


async def test_429_is_retried_after_retry_after(env: Env) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    env.fake.fail("create_link", "rate_limit", retry_after=2)
    async with HttpExecutor(sleep=sleep) as executor:
        payment = await connector.create_payment(executor, account(env), payment_input())
    assert waits == [2.0]
    assert payment.status == PspStatus.REQUIRES_ACTION


async def test_429_on_order_create_is_rate_limited(env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_order", "rate_limit", retry_after=4)
    with pytest.raises(RateLimited) as info:
        await connector.create_payment(executor, order_account(env), payment_input())
    assert info.value.retry_after_seconds == 4.0


async def test_gateway_error_answer_is_transient(env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_order", status=400)  # the fake answers a 4xx GATEWAY_ERROR body
    with pytest.raises(TransientError) as info:
        await connector.create_payment(executor, order_account(env), payment_input())
    assert not isinstance(info.value, UnknownOutcome)


async def test_slow_but_timely_answer_succeeds(env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_link", "slow", delay=0.2)
    payment = await connector.create_payment(executor, account(env), payment_input())
    assert payment.status == PspStatus.REQUIRES_ACTION


# ---- refunds -------------------------------------------------------------------------------

async def _paid_link(env: Env, executor: HttpExecutor) -> tuple[str, str]:
    created = await connector.create_payment(executor, account(env), payment_input())
    return created.connector_payment_id, await env.fake.pay_link(created.connector_payment_id)


async def test_full_refund_sends_paise_and_the_idempotency_header(
        env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    data = refund_input(link_id, 150_000, {"razorpay_payment_id": pay_id,
                                           "attempt_id": "att_1"})
    refund = await connector.refund(executor, account(env), data)
    assert refund.status == PspStatus.PENDING
    sent = env.fake.logged(f"/v1/payments/{pay_id}/refund")[0]
    assert sent.headers["x-refund-idempotency"] == data.refund_id
    assert sent.json()["amount"] == 150_000
    assert sent.json()["receipt"] == data.refund_id
    await env.fake.settle_refund(refund.connector_refund_id)
    settled = await connector.get_refund(executor, account(env), data, refund.connector_refund_id)
    assert (settled.status, settled.raw_status) == (PspStatus.SUCCEEDED, "processed")


async def test_partial_refunds_then_over_refund_is_declined(
        env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    refs = {"razorpay_payment_id": pay_id}
    await connector.refund(executor, account(env), refund_input(link_id, 100_000, refs))
    await connector.refund(executor, account(env), refund_input(link_id, 50_000, refs))
    with pytest.raises(Declined):
        await connector.refund(executor, account(env), refund_input(link_id, 100, refs))
    assert env.fake.payments[pay_id]["refund_status"] == "full"


async def test_refund_finds_the_captured_payment_when_references_lack_it(
        env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    refund = await connector.refund(executor, account(env), refund_input(link_id, 1_000))
    assert env.fake.refunds[refund.connector_refund_id]["payment_id"] == pay_id


async def test_refund_retry_after_a_lost_response_refunds_once(
        env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    env.fake.fail("create_refund", "timeout", delay=2.5)
    data = refund_input(link_id, 20_000, {"razorpay_payment_id": pay_id})
    refund = await connector.refund(executor, account(env, timeout_seconds=1.0), data)
    assert list(env.fake.refunds) == [refund.connector_refund_id]
    assert env.fake.payments[pay_id]["amount_refunded"] == 20_000


async def test_refund_whose_id_we_never_learnt_is_found_by_receipt(
        env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    env.fake.fail("create_refund", "timeout", count=0, delay=2.0)
    data = refund_input(link_id, 20_000, {"razorpay_payment_id": pay_id})
    with pytest.raises(UnknownOutcome):
        await connector.refund(executor, account(env, timeout_seconds=0.5), data)
    found = await connector.get_refund(executor, account(env), data, "")
    assert list(env.fake.refunds) == [found.connector_refund_id]


async def test_failed_refund_is_failed(env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    data = refund_input(link_id, 1_000, {"razorpay_payment_id": pay_id})
    refund = await connector.refund(executor, account(env), data)
    await env.fake.settle_refund(refund.connector_refund_id, success=False)
    assert (await connector.get_refund(executor, account(env), data,
                                       refund.connector_refund_id)).status == PspStatus.FAILED


async def test_refund_of_an_unpaid_link_is_declined(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    with pytest.raises(Declined) as info:
        await connector.refund(executor, account(env),
                               refund_input(created.connector_payment_id, 1_000))
    assert info.value.code == "NOT_REFUNDABLE"


# ---- webhooks ----------------------------------------------------------------------------

async def test_paid_link_webhooks_all_say_succeeded_and_point_at_the_attempt(
        env: Env, executor: HttpExecutor) -> None:
    data = payment_input()
    created = await connector.create_payment(executor, account(env), data)
    await env.fake.pay_link(created.connector_payment_id)
    await env.receiver.wait_for(4)
    events = dict(env.receiver.events(account(env)))
    assert set(events) == {"payment.authorized", "payment.captured", "order.paid",
                           "payment_link.paid"}
    assert events["payment.authorized"].status == PspStatus.PENDING
    for name in ("payment.captured", "order.paid", "payment_link.paid"):
        event = events[name]
        assert event.status == PspStatus.SUCCEEDED
        assert event.payment_ref == data.attempt_id
        assert event.amount == Money(150_000)
    link_event = events["payment_link.paid"]
    assert link_event.connector_payment_id == created.connector_payment_id


async def test_order_mode_webhooks_match_on_the_order_id(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, order_account(env), payment_input())
    await env.fake.pay_order(created.connector_payment_id)
    await env.receiver.wait_for(2)
    for _, event in env.receiver.events(order_account(env)):
        assert event.connector_payment_id == created.connector_payment_id
        assert event.status == PspStatus.SUCCEEDED


async def test_payment_failed_webhook_carries_the_reason(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, success=False)
    await env.receiver.wait_for(1)
    ((name, event),) = env.receiver.events(account(env))
    assert name == "payment.failed"
    assert event.status == PspStatus.FAILED
    assert event.error_code == "incorrect_pin"


async def test_refund_webhooks_are_refund_events(env: Env, executor: HttpExecutor) -> None:
    link_id, pay_id = await _paid_link(env, executor)
    await env.receiver.wait_for(4)
    ok = await connector.refund(executor, account(env),
                                refund_input(link_id, 1_000, {"razorpay_payment_id": pay_id,
                                                              "attempt_id": "att_r"}))
    bad = await connector.refund(executor, account(env),
                                 refund_input(link_id, 1_000, {"razorpay_payment_id": pay_id}))
    await env.fake.settle_refund(ok.connector_refund_id)
    await env.fake.settle_refund(bad.connector_refund_id, success=False)
    await env.receiver.wait_for(6)
    refunds = [e for name, e in env.receiver.events(account(env)) if name.startswith("refund")]
    assert [(e.kind, e.connector_refund_id, e.status) for e in refunds] == [
        ("refund", ok.connector_refund_id, PspStatus.SUCCEEDED),
        ("refund", bad.connector_refund_id, PspStatus.FAILED)]
    assert refunds[0].payment_ref == "att_r"


async def test_duplicate_deliveries_share_the_event_id(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, success=False, duplicates=2)
    await env.receiver.wait_for(3)
    ids = {e.dedupe_id for _, e in env.receiver.events(account(env))}
    assert len(ids) == 1
    assert ids == {env.fake.deliveries[0].event_id}


async def test_out_of_order_delivery_still_parses_each_event(
        env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, order="reversed")
    await env.receiver.wait_for(4)
    names = [name for name, _ in env.receiver.events(account(env))]
    assert names[0] == "payment_link.paid" and names[-1] == "payment.authorized"


async def test_unhandled_event_is_ignored_without_a_reference(
        env: Env, executor: HttpExecutor) -> None:
    body = env.fake.event_body("payment.dispute.created", {
        "dispute": {"entity": {"id": "disp_1"}}, "payment": {"entity": {
            "id": "pay_1", "order_id": "order_1", "status": "captured"}}})
    await env.fake.deliver(body, event_id="evt_dispute_1")
    await env.receiver.wait_for(1)
    ((_, event),) = env.receiver.events(account(env))
    assert event.kind == "ignored"
    assert (event.connector_payment_id, event.payment_ref) == ("", "")


async def test_forged_signature_is_rejected(env: Env, executor: HttpExecutor) -> None:
    body = env.fake.event_body("payment.captured", {"payment": {"entity": {"id": "pay_1"}}})
    await env.fake.deliver(body, event_id="evt_forged", secret="attacker_secret")
    await env.receiver.wait_for(1)
    headers, raw = env.receiver.deliveries[0]
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(account(env), headers, raw, datetime.now(UTC))
    assert info.value.reason == "bad_signature"


async def test_tampered_body_is_rejected(env: Env, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, account(env), payment_input())
    await env.fake.pay_link(created.connector_payment_id, success=False)
    await env.receiver.wait_for(1)
    headers, raw = env.receiver.deliveries[0]
    tampered = raw.replace(b'"status":"failed"', b'"status":"captured"')
    assert tampered != raw
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(account(env), headers, tampered, datetime.now(UTC))
    assert info.value.reason == "bad_signature"


def test_missing_signature_is_unsigned() -> None:
    acct = ConnectorAccount(name="r", psp="razorpay", base_url="http://x",
                            webhook_secret=WEBHOOK_SECRET)
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(acct, {"X-Razorpay-Event-Id": "e"}, b"{}", datetime.now(UTC))
    assert info.value.reason == "unsigned"


def test_signature_is_checked_before_parsing() -> None:
    acct = ConnectorAccount(name="r", psp="razorpay", base_url="http://x",
                            webhook_secret=WEBHOOK_SECRET)
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(acct, {"X-Razorpay-Signature": "ab" * 32}, b"{not json",
                                datetime.now(UTC))
    assert info.value.reason == "bad_signature"


def test_known_answer_signature_vector() -> None:
    body = (b'{"entity":"event","event":"payment.captured","contains":["payment"],"payload":'
            b'{"payment":{"entity":{"id":"pay_KAT0000000001","amount":150000,"currency":"INR",'
            b'"status":"captured","order_id":"order_KAT000000001","notes":'
            b'{"triveni_attempt_id":"att_kat"}}}},"created_at":1700000000}')
    expected = "85abcbf657a9a12eee232de97e961989dd9156e02d08378f3c71273d70a48714"
    assert hmac.new(b"rzp_whsec_known", body, hashlib.sha256).hexdigest() == expected
    acct = ConnectorAccount(name="r", psp="razorpay", base_url="http://x",
                            webhook_secret="rzp_whsec_known")
    event = connector.parse_webhook(
        acct, {"x-razorpay-signature": expected, "x-razorpay-event-id": "evt_KAT"}, body,
        datetime.now(UTC))
    assert (event.dedupe_id, event.connector_payment_id, event.payment_ref, event.status,
            event.amount) == ("evt_KAT", "order_KAT000000001", "att_kat", PspStatus.SUCCEEDED,
                              Money(150_000))
    assert event.occurred_at == datetime.fromtimestamp(1700000000, UTC)
