"""Contract tests: the real PayuConnector, sent through the real HttpExecutor, against the fake
PayU over loopback HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import httpx
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
    Transport,
    UnknownOutcome,
    WebhookRejected,
)
from server.connectors.http import HttpExecutor, RetryPolicy
from server.connectors.payu import PayuConnector
from server.connectors.payu.checkout import render_checkout_page
from server.connectors.payu.models import command_hash, request_hash, response_hash
from server.domain.money import Money
from tests.fakes.payu import Delivery, PayuFake
from tests.fakes.server import serve_app

CHECKOUT_BASE = "https://pay.triveni.test"
RS_1500 = Money(150_000)
FAST_RETRIES = RetryPolicy(initial_backoff_seconds=0.01, max_backoff_seconds=0.05)
TIMEOUT = 1.0
SLOW = 2.0  # longer than the account timeout

connector = PayuConnector()


@dataclass
class Receiver:
    """A Triveni-side endpoint that records webhook deliveries."""

    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.deliveries.append((dict(request.headers.items()), await request.body()))
        return Response("ok")


@pytest.fixture
def fake() -> PayuFake:
    return PayuFake()


@pytest.fixture
def base_url(fake: PayuFake) -> Iterator[str]:
    with serve_app(fake.app) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    sink = Receiver()
    app = Starlette(routes=[Route("/webhooks/payu_test", sink.handle, methods=["POST"])])
    with serve_app(app) as url:
        yield sink, f"{url}/webhooks/payu_test"


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    executor = HttpExecutor(retry_policy=FAST_RETRIES)
    yield executor
    await executor.aclose()


@pytest.fixture
def account(fake: PayuFake, base_url: str) -> ConnectorAccount:
    return ConnectorAccount(
        name="payu_test", psp="payu", base_url=base_url,
        credentials={"key": fake.key, "salt": fake.salt}, timeout_seconds=TIMEOUT,
        options={"checkout_base_url": CHECKOUT_BASE},
    )


def payment_input(amount: Money = RS_1500, attempt_id: str = "") -> CreatePaymentInput:
    suffix = uuid.uuid4().hex[:12]
    return CreatePaymentInput(
        payment_id=f"pay_{suffix}", attempt_id=attempt_id or f"att_{suffix}", amount=amount,
        method="upi", method_details={}, customer_id=f"cust_{suffix}",
        customer_name="Asha Rao", customer_email="asha@example.in", customer_phone="9876543210",
        description="Masala chai", return_url="https://merchant.example/return",
        webhook_url=f"{CHECKOUT_BASE}/webhooks/payu_test",
    )


def refund_input(txnid: str, amount: Money, mihpayid: str = "") -> RefundInput:
    return RefundInput(
        refund_id=f"rfnd_{uuid.uuid4().hex[:12]}", payment_id="pay_x",
        connector_payment_id=txnid, amount=amount, total_amount=RS_1500,
        reason="customer returned the item",
        references={"mihpayid": mihpayid} if mihpayid else {},
    )


def form_of(references: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    fields: dict[str, str] = json.loads(references["payu_form_fields"])
    return references["payu_form_action"], fields


async def checkout(transport: Transport, account: ConnectorAccount, amount: Money = RS_1500,
                   attempt_id: str = "") -> tuple[str, dict[str, str]]:
    """Create the payment and let the 'browser' post the form to PayU; (txnid, fields)."""
    created = await connector.create_payment(transport, account,
                                             payment_input(amount, attempt_id))
    action, fields = form_of(created.references)
    async with httpx.AsyncClient() as browser:
        answer = await browser.post(action, data=fields)
    assert answer.status_code == 200, answer.text
    return created.connector_payment_id, fields


async def paid(transport: Transport, account: ConnectorAccount, fake: PayuFake,
               amount: Money = RS_1500) -> str:
    txnid, _ = await checkout(transport, account, amount)
    fake.complete(txnid, "captured")
    return txnid


def now() -> datetime:
    return datetime.now(UTC)


# ---- known answers (digests from `openssl dgst -sha512` over the literal strings) ---------

def test_request_hash_matches_known_answer() -> None:
    literal = ("payu_kat_key|att_kat_1|1500.00|Masala chai|Asha|asha@example.in|pay_kat_1|"
               "att_kat_1|||||||||payu_kat_salt")
    expected = ("8cd8790d1f3464458e4ebd5362b5bd8bbfd7fc4ae1f81dbbd51204732779d97c"
                "641bdf670278fdd03714a142804e1e778162446a3e82e62f3dab2180dc8501db")
    assert hashlib.sha512(literal.encode()).hexdigest() == expected
    assert request_hash(key="payu_kat_key", txnid="att_kat_1", amount="1500.00",
                        productinfo="Masala chai", firstname="Asha", email="asha@example.in",
                        udf=["pay_kat_1", "att_kat_1"], salt="payu_kat_salt") == expected


def test_request_hash_with_no_udfs_has_eleven_pipes_after_email() -> None:
    literal = ("payu_kat_key|att_kat_2|10.00|Masala chai|Asha|asha@example.in"
               "|||||||||||payu_kat_salt")
    expected = ("f98eb1df35ce4483f3af3ef46efaaa1ff11ed3ed2134dfdb6525d69a49545b85"
                "ceb0f90c3cbea60a1d5844fbd6bc4bd142052f9239cb5a88551b6bd3fde8ec18")
    assert hashlib.sha512(literal.encode()).hexdigest() == expected
    assert request_hash(key="payu_kat_key", txnid="att_kat_2", amount="10.00",
                        productinfo="Masala chai", firstname="Asha", email="asha@example.in",
                        udf=[], salt="payu_kat_salt") == expected


KAT_RESPONSE = {"status": "success", "udf1": "pay_kat_1", "udf2": "att_kat_1",
                "email": "asha@example.in", "firstname": "Asha", "productinfo": "Masala chai",
                "amount": "1500.00", "txnid": "att_kat_1", "key": "payu_kat_key"}


def test_response_hash_matches_known_answer() -> None:
    literal = ("payu_kat_salt|success|||||||||att_kat_1|pay_kat_1|asha@example.in|Asha|"
               "Masala chai|1500.00|att_kat_1|payu_kat_key")
    expected = ("80716f549d6d3b9da138e7298b919655a9fd91ff44bbb4faa11a1e3284a4bf03"
                "98952573a0a6dc2c42421e4f8cc6b2f44bd5d6c7b057f217f06242d7af12a734")
    assert hashlib.sha512(literal.encode()).hexdigest() == expected
    assert response_hash(KAT_RESPONSE, "payu_kat_salt") == expected


def test_response_hash_with_additional_charges_is_prefixed() -> None:
    literal = ("5.00|payu_kat_salt|success|||||||||att_kat_1|pay_kat_1|asha@example.in|Asha|"
               "Masala chai|1500.00|att_kat_1|payu_kat_key")
    expected = ("3c4a71c40e835ead0e2d7131a24d4b613ce84f3d6624d592a10a16cb54739c20"
                "801520814c43e93c486d74846084c25e7d8d7e147ed58609c859f657412fa48d")
    assert hashlib.sha512(literal.encode()).hexdigest() == expected
    fields = {**KAT_RESPONSE, "additionalCharges": "5.00"}
    assert response_hash(fields, "payu_kat_salt") == expected


def test_command_hash_matches_known_answer() -> None:
    expected = ("e116be5d55a4f1ff5b558a4189c21ca2de181cc1e47d610c6a7c17d2c02739c2"
                "2d3f55948e86a212bc1814c72bfd82d39e7f57388de0537d9656af6a56da258a")
    literal = "payu_kat_key|verify_payment|att_kat_1|payu_kat_salt"
    assert hashlib.sha512(literal.encode()).hexdigest() == expected
    assert command_hash(key="payu_kat_key", command="verify_payment", var1="att_kat_1",
                        salt="payu_kat_salt") == expected


# ---- create -------------------------------------------------------------------------------

async def test_create_returns_a_signed_form_and_our_checkout_page_without_calling_payu(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, base_url: str
) -> None:
    data = payment_input(Money(150_050))
    created = await connector.create_payment(transport, account, data)
    assert fake.requests == []
    assert created.status is PspStatus.REQUIRES_ACTION
    assert created.connector_payment_id == data.attempt_id
    assert created.redirect_url == f"{CHECKOUT_BASE}/checkout/payu/{data.attempt_id}"
    action, fields = form_of(created.references)
    assert action == f"{base_url}/_payment"
    assert fields["amount"] == "1500.50"
    assert fields["txnid"] == data.attempt_id
    assert fields["udf1"] == data.payment_id
    assert fields["udf2"] == data.attempt_id
    assert fields["surl"] == fields["furl"] == data.return_url
    assert fields["hash"] == fake.expected_request_hash(fields)  # the fake's own computation
    page = render_checkout_page(created.references)
    assert f'action="{base_url}/_payment"' in page
    assert f'value="{fields["hash"]}"' in page


async def test_payu_accepts_the_form_and_refuses_a_tampered_amount(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid, fields = await checkout(transport, account)
    assert txnid in fake.txns
    async with httpx.AsyncClient() as browser:
        answer = await browser.post(f"{account.base_url}/_payment",
                                    data={**fields, "amount": "1.00"})
    assert answer.status_code == 400
    assert "hash" in answer.text


async def test_long_attempt_id_becomes_a_stable_25_char_txnid(
    transport: Transport, account: ConnectorAccount
) -> None:
    long_id = "att_01HZX3K9V8Q7N6M5L4K3J2H1G0F"
    first = await connector.create_payment(transport, account, payment_input(
        attempt_id=long_id))
    second = await connector.create_payment(transport, account, payment_input(
        attempt_id=long_id))
    assert first.connector_payment_id == second.connector_payment_id
    assert len(first.connector_payment_id) == 25
    assert form_of(first.references)[1]["udf2"] == long_id


async def test_retried_create_gives_the_same_form_and_payu_refuses_a_second_charge(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    data = payment_input()
    first = await connector.create_payment(transport, account, data)
    again = await connector.create_payment(transport, account, data)
    assert form_of(first.references) == form_of(again.references)
    action, fields = form_of(first.references)
    async with httpx.AsyncClient() as browser:
        assert (await browser.post(action, data=fields)).status_code == 200
        fake.complete(data.attempt_id, "captured")
        replay = await browser.post(action, data=fields)
    assert replay.status_code == 400
    assert "duplicate" in replay.text
    assert fake.charges(data.attempt_id) == 1


async def test_create_without_email_is_declined(
    transport: Transport, account: ConnectorAccount
) -> None:
    with pytest.raises(Declined):
        await connector.create_payment(
            transport, account, dataclasses.replace(payment_input(), customer_email=""))


async def test_pipe_in_customer_text_cannot_shift_the_hash(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    data = dataclasses.replace(payment_input(), description="Chai|2 cups",
                               customer_name="A|sha Rao")
    created = await connector.create_payment(transport, account, data)
    _, fields = form_of(created.references)
    assert "|" not in fields["productinfo"] + fields["firstname"]
    assert fields["hash"] == fake.expected_request_hash(fields)


# ---- status -------------------------------------------------------------------------------

async def test_unknown_txnid_still_requires_action(
    transport: Transport, account: ConnectorAccount
) -> None:
    created = await connector.create_payment(transport, account, payment_input())
    status = await connector.get_payment(transport, account, created.connector_payment_id,
                                         created.references)
    assert status.status is PspStatus.REQUIRES_ACTION
    assert status.redirect_url == created.redirect_url


async def test_captured_payment_is_succeeded_with_mihpayid(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake, Money(99_999))
    status = await connector.get_payment(transport, account, txnid, {})
    assert status.status is PspStatus.SUCCEEDED
    assert status.raw_status == "success/captured"
    assert status.amount_captured == Money(99_999)
    assert status.references["mihpayid"] == fake.mihpayid(txnid)
    (sent,) = fake.requests_for("verify_payment")
    assert sent.fields["var1"] == txnid
    assert sent.fields["hash"] == hashlib.sha512(
        f"{fake.key}|verify_payment|{txnid}|{fake.salt}".encode()).hexdigest()


@pytest.mark.parametrize(("outcome", "expected", "code"), [
    ("failed", PspStatus.FAILED, "E308"),
    ("userCancelled", PspStatus.FAILED, "E1605"),
    ("bounced", PspStatus.FAILED, "E500"),
    ("dropped", PspStatus.FAILED, "E501"),
    ("pending", PspStatus.PENDING, ""),
    ("auth", PspStatus.PENDING, ""),
])
async def test_payu_outcomes_map_to_statuses(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, outcome: str,
    expected: PspStatus, code: str,
) -> None:
    txnid, _ = await checkout(transport, account)
    fake.complete(txnid, outcome)
    status = await connector.get_payment(transport, account, txnid, {})
    assert status.status is expected
    assert status.error_code == code
    assert status.amount_captured is None


async def test_verify_failures_are_classified(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    fake.inject("verify_payment", status=503)  # once: the executor retries it
    assert (await connector.get_payment(transport, account, txnid, {})).status \
        is PspStatus.SUCCEEDED
    fake.inject("verify_payment", status=500, times=3)
    with pytest.raises(UnknownOutcome):  # the executor treats every POST 5xx as unknown
        await connector.get_payment(transport, account, txnid, {})
    fake.inject("verify_payment", status=429, retry_after=60)
    with pytest.raises(RateLimited) as limited:
        await connector.get_payment(transport, account, txnid, {})
    assert limited.value.retry_after_seconds == 60
    fake.inject("verify_payment", delay=SLOW, times=3)
    with pytest.raises(UnknownOutcome):
        await connector.get_payment(transport, account, txnid, {})


async def test_wrong_salt_is_misconfigured(
    transport: Transport, account: ConnectorAccount
) -> None:
    wrong = dataclasses.replace(account, credentials={"key": "payu_key_test", "salt": "nope"})
    with pytest.raises(Misconfigured):
        await connector.get_payment(transport, wrong, "att_whatever", {})


# ---- refunds ------------------------------------------------------------------------------

async def test_full_refund_is_queued_then_succeeded(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    mihpayid = fake.mihpayid(txnid)
    data = refund_input(txnid, RS_1500, mihpayid)
    refund = await connector.refund(transport, account, data)
    (sent,) = fake.requests_for("cancel_refund_transaction")
    assert (sent.fields["var1"], sent.fields["var2"], sent.fields["var3"]) == (
        mihpayid, data.refund_id, "1500.00")
    assert refund.status is PspStatus.PENDING
    assert refund.connector_refund_id in fake.refunds

    fake.settle_refund(refund.connector_refund_id, "success")
    settled = await connector.get_refund(transport, account, data, refund.connector_refund_id)
    assert settled.status is PspStatus.SUCCEEDED


async def test_partial_refunds_and_over_refund_declined(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    mihpayid = fake.mihpayid(txnid)
    for rupees in (500, 600):
        refund = await connector.refund(transport, account,
                                        refund_input(txnid, Money.inr(rupees), mihpayid))
        assert refund.status is PspStatus.PENDING
    with pytest.raises(Declined) as caught:
        await connector.refund(transport, account, refund_input(txnid, Money(40_001), mihpayid))
    assert caught.value.code == "105"
    assert len(fake.refunds) == 2


async def test_refund_without_mihpayid_looks_it_up(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    refund = await connector.refund(transport, account, refund_input(txnid, Money(1_000)))
    assert fake.refunds[refund.connector_refund_id]["mihpayid"] == fake.mihpayid(txnid)


async def test_refund_of_failed_or_unknown_payment_is_declined(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid, _ = await checkout(transport, account)
    fake.complete(txnid, "failed")
    with pytest.raises(Declined) as caught:
        await connector.refund(transport, account, refund_input(txnid, Money(100)))
    assert caught.value.code == "111"
    with pytest.raises(Declined):
        await connector.refund(transport, account, refund_input("att_never", Money(100)))


async def test_retried_refund_returns_the_existing_request(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    data = refund_input(txnid, Money(2_000), fake.mihpayid(txnid))
    first = await connector.refund(transport, account, data)
    again = await connector.refund(transport, account, data)  # token exists → look it up
    assert again.connector_refund_id == first.connector_refund_id
    assert len(fake.refunds) == 1


async def test_same_amount_twice_within_five_minutes_is_declined(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    mihpayid = fake.mihpayid(txnid)
    await connector.refund(transport, account, refund_input(txnid, Money(1_000), mihpayid))
    with pytest.raises(Declined) as caught:
        await connector.refund(transport, account, refund_input(txnid, Money(1_000), mihpayid))
    assert caught.value.code == "214"


async def test_failed_refund_is_failed_and_found_without_request_id(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    data = refund_input(txnid, Money(3_000), fake.mihpayid(txnid))
    refund = await connector.refund(transport, account, data)
    fake.settle_refund(refund.connector_refund_id, "failure")
    by_token = await connector.get_refund(transport, account, data, "")
    assert by_token.connector_refund_id == refund.connector_refund_id
    assert by_token.status is PspStatus.FAILED


async def test_refund_5xx_is_unknown_and_the_retry_refunds_once(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    data = refund_input(txnid, Money(4_000), fake.mihpayid(txnid))
    fake.inject("cancel_refund_transaction", status=502, after=False, times=3)
    with pytest.raises(UnknownOutcome):
        await connector.refund(transport, account, data)
    refund = await connector.refund(transport, account, data)
    assert refund.status is PspStatus.PENDING
    assert len(fake.refunds) == 1


async def test_refund_answered_late_is_retried_without_a_second_refund(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    data = refund_input(txnid, Money(4_500), fake.mihpayid(txnid))
    fake.inject("cancel_refund_transaction", delay=SLOW, after=True)
    refund = await connector.refund(transport, account, data)
    assert refund.connector_refund_id in fake.refunds
    assert len(fake.refunds) == 1


# ---- webhooks -----------------------------------------------------------------------------

async def delivered(fake: PayuFake, receiver: tuple[Receiver, str],
                    delivery: Delivery | list[Delivery], **options: bool
                    ) -> list[tuple[dict[str, str], bytes]]:
    sink, url = receiver
    assert set(await fake.deliver(url, delivery, **options)) == {200}
    return sink.deliveries


async def test_form_encoded_success_webhook_is_verified_and_parsed(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, receiver: tuple[Receiver, str]
) -> None:
    txnid, fields = await checkout(transport, account, Money(17_000))
    fake.complete(txnid, "captured")
    ((headers, body),) = await delivered(fake, receiver, fake.payment_webhook(txnid))
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    event = connector.parse_webhook(account, headers, body, now())
    assert event.kind == "payment"
    assert event.status is PspStatus.SUCCEEDED
    assert event.connector_payment_id == txnid
    assert event.payment_ref == fields["udf2"]
    assert event.amount == Money(17_000)
    assert event.dedupe_id == f"payu:{fake.mihpayid(txnid)}:success"
    assert event.occurred_at is not None


async def test_json_webhook_is_accepted_too(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    delivery = fake.payment_webhook(txnid, as_json=True)
    event = connector.parse_webhook(account, delivery.headers, delivery.body, now())
    assert event.status is PspStatus.SUCCEEDED


async def test_failure_webhook_carries_the_error(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, receiver: tuple[Receiver, str]
) -> None:
    txnid, _ = await checkout(transport, account)
    fake.complete(txnid, "userCancelled")
    ((headers, body),) = await delivered(fake, receiver, fake.payment_webhook(txnid))
    event = connector.parse_webhook(account, headers, body, now())
    assert event.status is PspStatus.FAILED
    assert event.error_code == "E1605"
    assert event.raw_status == "failure"
    assert event.dedupe_id == f"payu:{fake.mihpayid(txnid)}:failure"


async def test_webhook_with_additional_charges_is_verified(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid, _ = await checkout(transport, account)
    fake.complete(txnid, "captured", additional_charges="15.00")
    delivery = fake.payment_webhook(txnid)
    assert b"additionalCharges=15.00" in delivery.body
    assert connector.parse_webhook(account, delivery.headers, delivery.body, now()).status \
        is PspStatus.SUCCEEDED


async def test_forged_and_tampered_webhooks_are_rejected(
    transport: Transport, account: ConnectorAccount, fake: PayuFake
) -> None:
    txnid = await paid(transport, account, fake)
    forged = fake.payment_webhook(txnid, salt="guessed-salt")
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, forged.headers, forged.body, now())
    assert caught.value.reason == "bad_signature"

    genuine = fake.payment_webhook(txnid)
    fields = dict(parse_qsl(genuine.body.decode(), keep_blank_values=True))
    tampered = urlencode({**fields, "amount": "1.00"}).encode()
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, genuine.headers, tampered, now())
    assert caught.value.reason == "bad_signature"

    unsigned = urlencode({k: v for k, v in fields.items() if k != "hash"}).encode()
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, genuine.headers, unsigned, now())
    assert caught.value.reason == "unsigned"


async def test_duplicate_delivery_has_the_same_dedupe_id(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, receiver: tuple[Receiver, str]
) -> None:
    txnid = await paid(transport, account, fake)
    received = await delivered(fake, receiver, fake.payment_webhook(txnid), duplicate=True)
    first, second = (connector.parse_webhook(account, h, b, now()) for h, b in received)
    assert first.dedupe_id == second.dedupe_id


async def test_out_of_order_attempts_keep_distinct_ids(
    transport: Transport, account: ConnectorAccount, fake: PayuFake, receiver: tuple[Receiver, str]
) -> None:
    txnid, fields = await checkout(transport, account)
    fake.complete(txnid, "failed")
    failed = fake.payment_webhook(txnid)
    async with httpx.AsyncClient() as browser:  # the customer tries again on the same txnid
        assert (await browser.post(f"{account.base_url}/_payment", data=fields)).is_success
    fake.complete(txnid, "captured")
    succeeded = fake.payment_webhook(txnid)
    received = await delivered(fake, receiver, [failed, succeeded], reverse=True)
    events = [connector.parse_webhook(account, h, b, now()) for h, b in received]
    assert [e.status for e in events] == [PspStatus.SUCCEEDED, PspStatus.FAILED]
    assert events[0].dedupe_id != events[1].dedupe_id
    assert fake.charges(txnid) == 1


async def test_unsigned_refund_callback_is_only_a_hint_to_check_status(
    transport: Transport, account: ConnectorAccount, fake: PayuFake,
    receiver: tuple[Receiver, str],
) -> None:
    txnid = await paid(transport, account, fake)
    refund = await connector.refund(transport, account,
                                    refund_input(txnid, Money(5_000), fake.mihpayid(txnid)))
    fake.settle_refund(refund.connector_refund_id, "success")
    ((headers, body),) = await delivered(fake, receiver,
                                         fake.refund_webhook(refund.connector_refund_id))
    event = connector.parse_webhook(account, headers, body, now())
    assert event.kind == "refund"
    assert event.status is PspStatus.PENDING  # unsigned: never trusted
    assert event.raw_status == "success"
    assert event.connector_refund_id == refund.connector_refund_id
    assert event.connector_payment_id == txnid
    assert event.amount == Money(5_000)


def test_garbage_is_malformed_or_unsigned(account: ConnectorAccount) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, form, b"\xff\xfe", now())
    assert caught.value.reason == "malformed"
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, {"content-type": "application/json"}, b"[1]", now())
    assert caught.value.reason == "malformed"
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(account, form, b"status=success&txnid=x", now())
    assert caught.value.reason == "unsigned"
