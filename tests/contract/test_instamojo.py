"""InstamojoConnector (v2 and v1.1) against the fake Instamojo over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

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
    WebhookRejected,
)
from server.connectors.http import HttpExecutor
from server.connectors.instamojo import InstamojoConnector
from server.domain.money import Money
from tests.fakes.instamojo import FakeInstamojo
from tests.fakes.server import serve_app

SALT = "test_private_salt"


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    async def hook(request: Request) -> Response:
        rec.deliveries.append((dict(request.headers), await request.body()))
        return PlainTextResponse("ok")

    with serve_app(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        rec.url = f"{base}/hook"
        yield rec


@dataclass
class Env:
    fake: FakeInstamojo
    base_url: str


@pytest.fixture
def env() -> Iterator[Env]:
    fake = FakeInstamojo(private_salt=SALT)
    with serve_app(fake.app) as base:
        yield Env(fake, base)


def v2_account(env: Env, **overrides: object) -> ConnectorAccount:
    values: dict[str, object] = {
        "name": "instamojo_contract", "psp": "instamojo", "base_url": env.base_url,
        "credentials": {"client_id": "test_client_id", "client_secret": "test_client_secret"},
        "webhook_secret": SALT, "timeout_seconds": 2.0}
    values.update(overrides)
    return ConnectorAccount(**values)  # type: ignore[arg-type]


def v1_account(env: Env, **overrides: object) -> ConnectorAccount:
    values: dict[str, object] = {
        "credentials": {"api_key": "test_api_key", "auth_token": "test_auth_token"},
        "options": {"api_version": "v1.1"}}
    values.update(overrides)
    return v2_account(env, **values)


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def executor() -> AsyncIterator[HttpExecutor]:
    ex = HttpExecutor(sleep=no_sleep)
    yield ex
    await ex.aclose()


def payment_input(webhook_url: str = "", amount_minor: int = 150_000,
                  description: str = "Order 42") -> CreatePaymentInput:
    suffix = uuid.uuid4().hex[:16]
    return CreatePaymentInput(
        payment_id=f"pay_{suffix}", attempt_id=f"att_{suffix}",
        amount=Money(amount_minor, "INR"), method="upi", method_details={},
        customer_id="cus_1", customer_name="Asha Rao", customer_email="asha@example.com",
        customer_phone="+919876543210", description=description,
        return_url="https://merchant.example/return", webhook_url=webhook_url)


def refund_input(request_id: str, amount_minor: int, references: dict[str, str] | None = None,
                 refund_id: str = "") -> RefundInput:
    return RefundInput(
        refund_id=refund_id or f"rfnd_{uuid.uuid4().hex[:16]}", payment_id="pay_x",
        connector_payment_id=request_id, amount=Money(amount_minor),
        total_amount=Money(150_000), reason="customer asked", references=references or {})


def now() -> datetime:
    return datetime.now(UTC)


# ---- create ------------------------------------------------------------------------------

async def test_create_sends_a_form_with_rupees_and_returns_the_longurl(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    data = payment_input(webhook_url="https://triveni.example/webhooks/instamojo_contract")
    payment = await connector.create_payment(executor, v2_account(env), data)
    assert payment.status == PspStatus.REQUIRES_ACTION
    assert payment.connector_payment_id in env.fake.requests
    assert payment.redirect_url == f"{env.base_url}/@triveni/{payment.connector_payment_id}"
    sent = env.fake.logged("/v2/payment_requests/")[0]
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["authorization"].startswith("Bearer ")
    form = sent.form()
    assert form["amount"] == "1500.00"
    assert form["purpose"] == "Order 42"
    assert form["allow_repeated_payments"] == "False"
    assert form["webhook"] == "https://triveni.example/webhooks/instamojo_contract"
    assert form["redirect_url"] == "https://merchant.example/return"
    assert (form["buyer_name"], form["email"], form["phone"]) == (
        "Asha Rao", "asha@example.com", "+919876543210")


async def test_purpose_is_cut_to_30_characters(env: Env, executor: HttpExecutor) -> None:
    await InstamojoConnector().create_payment(
        executor, v2_account(env), payment_input(description="A" * 50))
    assert env.fake.logged("/v2/payment_requests/")[0].form()["purpose"] == "A" * 30


async def test_amount_below_the_instamojo_minimum_is_declined(
        env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(Declined) as info:
        await InstamojoConnector().create_payment(executor, v2_account(env),
                                                  payment_input(amount_minor=800))
    assert info.value.code == "VALIDATION_ERROR"
    assert "amount" in info.value.message


# ---- tokens ------------------------------------------------------------------------------

async def test_token_is_cached_across_calls(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    for _ in range(3):
        await connector.create_payment(executor, v2_account(env), payment_input())
    assert env.fake.token_requests == 1
    token_form = env.fake.logged("/oauth2/token/")[0].form()
    assert token_form == {"grant_type": "client_credentials", "client_id": "test_client_id",
                          "client_secret": "test_client_secret"}


async def test_token_is_refreshed_before_it_expires(env: Env, executor: HttpExecutor) -> None:
    env.fake.token_expires_in = 600
    clock = [1000.0]
    connector = InstamojoConnector(clock=lambda: clock[0])
    await connector.create_payment(executor, v2_account(env), payment_input())
    clock[0] += 530  # 70 s left: outside the 60 s refresh margin
    await connector.create_payment(executor, v2_account(env), payment_input())
    assert env.fake.token_requests == 1
    clock[0] += 20  # 50 s left: refresh now rather than risk a 401 mid-flight
    await connector.create_payment(executor, v2_account(env), payment_input())
    assert env.fake.token_requests == 2


async def test_revoked_token_is_refreshed_once_on_401(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    await connector.create_payment(executor, v2_account(env), payment_input())
    env.fake.revoke_tokens()
    payment = await connector.create_payment(executor, v2_account(env), payment_input())
    assert payment.status == PspStatus.REQUIRES_ACTION
    assert env.fake.token_requests == 2
    assert len(env.fake.requests) == 2


async def test_bad_client_credentials_are_misconfigured(env: Env, executor: HttpExecutor) -> None:
    account = v2_account(env, credentials={"client_id": "test_client_id",
                                           "client_secret": "wrong"})
    with pytest.raises(Misconfigured):
        await InstamojoConnector().create_payment(executor, account, payment_input())
    assert env.fake.requests == {}


async def test_missing_credentials_are_misconfigured(env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(Misconfigured, match="client_secret"):
        await InstamojoConnector().create_payment(
            executor, v2_account(env, credentials={"client_id": "x"}), payment_input())


# ---- status ------------------------------------------------------------------------------

async def test_unpaid_request_requires_action(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env), payment_input())
    status = await connector.get_payment(executor, v2_account(env),
                                         created.connector_payment_id, created.references)
    assert status.status == PspStatus.REQUIRES_ACTION
    assert status.raw_status == "Pending"


async def test_paid_request_is_succeeded_with_the_payment_id_and_amount(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env), payment_input())
    mojo_id = await env.fake.pay(created.connector_payment_id)
    status = await connector.get_payment(executor, v2_account(env),
                                         created.connector_payment_id, {})
    assert status.status == PspStatus.SUCCEEDED
    assert status.references["instamojo_payment_id"] == mojo_id
    assert status.amount_captured == Money(150_000)


async def test_failed_try_is_failed_with_the_reason_and_late_success_wins(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env), payment_input())
    await env.fake.pay(created.connector_payment_id, success=False)
    failed = await connector.get_payment(executor, v2_account(env),
                                         created.connector_payment_id, {})
    assert failed.status == PspStatus.FAILED
    assert failed.error_code == "BANK_DECLINED"
    await env.fake.pay(created.connector_payment_id, success=True)
    late = await connector.get_payment(executor, v2_account(env),
                                       created.connector_payment_id, {})
    assert late.status == PspStatus.SUCCEEDED


async def test_sync_with_only_our_attempt_id_is_a_404(env: Env, executor: HttpExecutor) -> None:
    data = payment_input()
    with pytest.raises(ConnectorError) as info:
        await InstamojoConnector().get_payment(executor, v2_account(env), data.attempt_id,
                                               {"attempt_id": data.attempt_id})
    assert info.value.http_status == 404


async def test_5xx_on_a_status_read_is_retried(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env), payment_input())
    env.fake.fail("get_payment_request", status=502, count=2)
    status = await connector.get_payment(executor, v2_account(env),
                                         created.connector_payment_id, {})
    assert status.status == PspStatus.REQUIRES_ACTION
    assert len(env.fake.logged("/v2/payment_requests/", "GET")) == 3


async def test_429_on_a_read_waits_and_retries(env: Env) -> None:
    connector = InstamojoConnector()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with HttpExecutor(sleep=sleep) as executor:
        created = await connector.create_payment(executor, v2_account(env), payment_input())
        env.fake.fail("get_payment_request", "rate_limit", retry_after=2)
        await connector.get_payment(executor, v2_account(env), created.connector_payment_id, {})
    assert waits == [2.0]


async def test_429_on_create_is_rate_limited(env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_payment", "rate_limit", retry_after=3)
    with pytest.raises(RateLimited) as info:
        await InstamojoConnector().create_payment(executor, v2_account(env), payment_input())
    assert info.value.retry_after_seconds == 3.0


# ---- no double charge ----------------------------------------------------------------------

async def test_create_timeout_moves_no_money_and_a_retry_makes_one_payable_link(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    account = v2_account(env)
    warm = await connector.create_payment(executor, account, payment_input())  # token cached
    data = payment_input()
    env.fake.fail("create_payment", "timeout", delay=2.0)
    with pytest.raises(TransientError) as info:
        await connector.create_payment(executor, v2_account(env, timeout_seconds=0.5), data)
    assert not isinstance(info.value, UnknownOutcome)
    assert len(env.fake.logged("/v2/payment_requests/")) == 2  # never re-sent by the executor
    (orphan_id,) = set(env.fake.requests) - {warm.connector_payment_id}
    retried = await connector.create_payment(executor, account, data)
    assert retried.connector_payment_id != orphan_id
    await env.fake.pay(retried.connector_payment_id)
    with pytest.raises(RuntimeError, match="already paid"):
        await env.fake.pay(retried.connector_payment_id)  # allow_repeated_payments=false
    assert sum(p.success for p in env.fake.payments.values()) == 1
    assert env.fake.requests[orphan_id].payment_ids == []  # its URL never left the connector


async def test_5xx_on_create_is_not_retried_and_fails_over(
        env: Env, executor: HttpExecutor) -> None:
    env.fake.fail("create_payment", status=500, after_commit=True)
    with pytest.raises(TransientError):
        await InstamojoConnector().create_payment(executor, v2_account(env), payment_input())
    assert len(env.fake.logged("/v2/payment_requests/")) == 1


# ---- refunds -------------------------------------------------------------------------------

async def _paid(env: Env, executor: HttpExecutor, connector: InstamojoConnector,
                account: ConnectorAccount) -> tuple[str, str]:
    created = await connector.create_payment(executor, account, payment_input())
    mojo_id = await env.fake.pay(created.connector_payment_id)
    return created.connector_payment_id, mojo_id


async def test_full_refund_with_transaction_id_and_rupee_amount(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    request_id, mojo_id = await _paid(env, executor, connector, v2_account(env))
    data = refund_input(request_id, 150_000, {"instamojo_payment_id": mojo_id})
    refund = await connector.refund(executor, v2_account(env), data)
    assert refund.status == PspStatus.PENDING
    form = env.fake.logged(f"/v2/payments/{mojo_id}/refund/")[0].form()
    assert form == {"type": "PTH", "body": "customer asked", "refund_amount": "1500.00",
                    "transaction_id": data.refund_id}
    env.fake.settle_refund(refund.connector_refund_id, "FINI_CONC")
    settled = await connector.get_refund(executor, v2_account(env), data,
                                         refund.connector_refund_id)
    assert (settled.status, settled.raw_status) == (PspStatus.SUCCEEDED, "FINI_CONC")


async def test_partial_refunds_and_over_refund_is_declined(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    request_id, mojo_id = await _paid(env, executor, connector, v2_account(env))
    refs = {"instamojo_payment_id": mojo_id}
    await connector.refund(executor, v2_account(env), refund_input(request_id, 50_000, refs))
    await connector.refund(executor, v2_account(env), refund_input(request_id, 70_000, refs))
    with pytest.raises(Declined):
        await connector.refund(executor, v2_account(env), refund_input(request_id, 40_000, refs))
    assert env.fake.payments[mojo_id].refunded == 1200


async def test_refund_finds_the_payment_id_when_references_lack_it(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    request_id, mojo_id = await _paid(env, executor, connector, v2_account(env))
    refund = await connector.refund(executor, v2_account(env), refund_input(request_id, 1_000))
    assert env.fake.refunds[refund.connector_refund_id].payment_id == mojo_id


async def test_refund_of_an_unpaid_request_is_declined(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env), payment_input())
    with pytest.raises(Declined):
        await connector.refund(executor, v2_account(env),
                               refund_input(created.connector_payment_id, 1_000))


async def test_repeated_refund_with_the_same_refund_id_refunds_once(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    request_id, mojo_id = await _paid(env, executor, connector, v2_account(env))
    data = refund_input(request_id, 10_000, {"instamojo_payment_id": mojo_id})
    first = await connector.refund(executor, v2_account(env), data)
    env.fake.fail("create_refund", "timeout", delay=2.5)
    second = await connector.refund(executor, v2_account(env, timeout_seconds=1.0), data)
    assert first.connector_refund_id == second.connector_refund_id
    assert len(env.fake.refunds) == 1


async def test_denied_refund_is_failed(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    request_id, mojo_id = await _paid(env, executor, connector, v2_account(env))
    data = refund_input(request_id, 1_000, {"instamojo_payment_id": mojo_id})
    refund = await connector.refund(executor, v2_account(env), data)
    env.fake.settle_refund(refund.connector_refund_id, "FINI_DENY")
    assert (await connector.get_refund(executor, v2_account(env), data,
                                       refund.connector_refund_id)).status == PspStatus.FAILED


# ---- v1.1 --------------------------------------------------------------------------------

async def test_v1_create_status_and_refund_use_api_key_headers(
        env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    account = v1_account(env)
    created = await connector.create_payment(executor, account, payment_input())
    sent = env.fake.logged("/api/1.1/payment-requests/")[0]
    assert (sent.headers["x-api-key"], sent.headers["x-auth-token"]) == (
        "test_api_key", "test_auth_token")
    assert sent.form()["amount"] == "1500.00"
    assert env.fake.token_requests == 0
    mojo_id = await env.fake.pay(created.connector_payment_id)
    status = await connector.get_payment(executor, account, created.connector_payment_id, {})
    assert status.status == PspStatus.SUCCEEDED
    assert status.references["instamojo_payment_id"] == mojo_id
    data = refund_input(created.connector_payment_id, 5_000, dict(status.references))
    refund = await connector.refund(executor, account, data)
    assert env.fake.logged("/api/1.1/refunds/")[0].form()["payment_id"] == mojo_id
    env.fake.settle_refund(refund.connector_refund_id)
    settled = await connector.get_refund(executor, account, data, refund.connector_refund_id)
    assert (settled.status, settled.raw_status) == (PspStatus.SUCCEEDED, "Refunded")


async def test_v1_failed_payment_is_failed(env: Env, executor: HttpExecutor) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v1_account(env), payment_input())
    await env.fake.pay(created.connector_payment_id, success=False)
    status = await connector.get_payment(executor, v1_account(env),
                                         created.connector_payment_id, {})
    assert status.status == PspStatus.FAILED


async def test_v1_bad_auth_token_is_misconfigured(env: Env, executor: HttpExecutor) -> None:
    account = v1_account(env, credentials={"api_key": "test_api_key", "auth_token": "bad"})
    with pytest.raises(Misconfigured):
        await InstamojoConnector().create_payment(executor, account, payment_input())


async def test_v1_validation_error_message_is_readable(env: Env, executor: HttpExecutor) -> None:
    with pytest.raises(Declined, match="amount"):
        await InstamojoConnector().create_payment(executor, v1_account(env),
                                                  payment_input(amount_minor=100))


# ---- webhooks ----------------------------------------------------------------------------

async def _delivered(env: Env, executor: HttpExecutor, receiver: Receiver, *,
                     success: bool = True, times: int = 1) -> tuple[str, str]:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env),
                                             payment_input(webhook_url=receiver.url))
    mojo_id = await env.fake.pay(created.connector_payment_id, success=success, times=times)
    await receiver.wait_for(times)
    return created.connector_payment_id, mojo_id


async def test_success_webhook_is_verified_and_parsed(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    request_id, mojo_id = await _delivered(env, executor, receiver)
    headers, body = receiver.deliveries[0]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    event = InstamojoConnector().parse_webhook(v2_account(env), headers, body, now())
    assert (event.kind, event.status, event.raw_status) == ("payment", PspStatus.SUCCEEDED,
                                                            "Credit")
    assert event.connector_payment_id == request_id
    assert event.dedupe_id == f"{mojo_id}:Credit"
    assert event.amount == Money(150_000)


async def test_failure_webhook_is_failed(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    _, mojo_id = await _delivered(env, executor, receiver, success=False)
    event = InstamojoConnector().parse_webhook(v2_account(env), *receiver.deliveries[0], now())
    assert event.status == PspStatus.FAILED
    assert event.dedupe_id == f"{mojo_id}:Failed"
    assert event.error_code == "Failed"


async def test_duplicate_deliveries_share_one_dedupe_id(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    await _delivered(env, executor, receiver, times=3)
    connector = InstamojoConnector()
    ids = {connector.parse_webhook(v2_account(env), h, b, now()).dedupe_id
           for h, b in receiver.deliveries}
    assert len(ids) == 1


async def test_out_of_order_failure_after_success_keeps_distinct_ids(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    connector = InstamojoConnector()
    created = await connector.create_payment(executor, v2_account(env),
                                             payment_input(webhook_url=receiver.url))
    failed_id = await env.fake.pay(created.connector_payment_id, success=False,
                                   send_webhook=False)
    await env.fake.pay(created.connector_payment_id, success=True)
    await env.fake.deliver(receiver.url, env.fake.webhook_fields(failed_id))  # arrives late
    await receiver.wait_for(2)
    events = [connector.parse_webhook(v2_account(env), h, b, now())
              for h, b in receiver.deliveries]
    assert [e.status for e in events] == [PspStatus.SUCCEEDED, PspStatus.FAILED]
    assert events[0].dedupe_id != events[1].dedupe_id
    assert {e.connector_payment_id for e in events} == {created.connector_payment_id}


async def test_unknown_extra_fields_are_covered_by_the_mac(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    env.fake.extra_webhook_fields = {"custom_fields": "{}", "Zeta": "z", "offer_slug": ""}
    await _delivered(env, executor, receiver)
    event = InstamojoConnector().parse_webhook(v2_account(env), *receiver.deliveries[0], now())
    assert event.status == PspStatus.SUCCEEDED


async def test_forged_mac_is_rejected(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    _, mojo_id = await _delivered(env, executor, receiver)
    forged = env.fake.webhook_fields(mojo_id, salt="attacker_guess")
    with pytest.raises(WebhookRejected) as info:
        InstamojoConnector().parse_webhook(v2_account(env), {}, urlencode(forged).encode(),
                                           now())
    assert info.value.reason == "bad_signature"


async def test_tampered_field_is_rejected(
        env: Env, executor: HttpExecutor, receiver: Receiver) -> None:
    await _delivered(env, executor, receiver, success=False)
    headers, body = receiver.deliveries[0]
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    fields["status"] = "Credit"
    with pytest.raises(WebhookRejected) as info:
        InstamojoConnector().parse_webhook(v2_account(env), headers,
                                           urlencode(fields).encode(), now())
    assert info.value.reason == "bad_signature"


def test_missing_mac_is_unsigned() -> None:
    account = ConnectorAccount(name="i", psp="instamojo", base_url="http://x",
                               webhook_secret=SALT)
    with pytest.raises(WebhookRejected) as info:
        InstamojoConnector().parse_webhook(account, {}, b"payment_id=MOJO1&status=Credit", now())
    assert info.value.reason == "unsigned"


def test_repeated_field_is_malformed() -> None:
    account = ConnectorAccount(name="i", psp="instamojo", base_url="http://x",
                               webhook_secret=SALT)
    with pytest.raises(WebhookRejected) as info:
        InstamojoConnector().parse_webhook(account, {}, b"status=Failed&status=Credit&mac=00",
                                           now())
    assert info.value.reason == "malformed"


def test_known_answer_mac_vector() -> None:
    fields = {
        "amount": "150.00", "buyer": "buyer@example.com", "buyer_name": "Asha Rao",
        "buyer_phone": "+919876543210", "currency": "INR", "fees": "2.95",
        "longurl": "https://test.instamojo.com/@triveni/d66cb29dd059482e8072999f995c4eef",
        "payment_id": "MOJO5a06005J21512197",
        "payment_request_id": "d66cb29dd059482e8072999f995c4eef", "purpose": "Order att_kat",
        "shorturl": "https://imjo.in/NNxHg", "status": "Credit",
    }
    message = ("150.00|buyer@example.com|Asha Rao|+919876543210|INR|2.95|"
               "https://test.instamojo.com/@triveni/d66cb29dd059482e8072999f995c4eef|"
               "MOJO5a06005J21512197|d66cb29dd059482e8072999f995c4eef|Order att_kat|"
               "https://imjo.in/NNxHg|Credit")
    expected = "7b16979ec850071aebf66049ab7a6498b58922bc"
    assert hmac.new(b"private_salt_known", message.encode(), hashlib.sha1).hexdigest() == expected
    body = urlencode({**fields, "mac": expected}).encode()
    account = ConnectorAccount(name="i", psp="instamojo", base_url="http://x",
                               webhook_secret="private_salt_known")
    event = InstamojoConnector().parse_webhook(account, {}, body, now())
    assert (event.dedupe_id, event.connector_payment_id, event.amount) == (
        "MOJO5a06005J21512197:Credit", "d66cb29dd059482e8072999f995c4eef", Money(15_000))
