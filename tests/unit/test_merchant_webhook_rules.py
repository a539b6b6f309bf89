"""Merchant webhooks without I/O: address and URL rules, the schedule, the body, the sender's
SSRF guard and address pinning, the dispatcher's decisions, settings."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from triveni import webhooks
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2

from server.adapters.webhook_payload import dead_letter_record, event_body
from server.adapters.webhook_sender import WebhookSender, check_webhook_url
from server.config import Settings
from server.domain.merchant_webhooks import (
    EVENT_TYPES,
    DeliveryAttempt,
    DeliveryStatus,
    IpAddress,
    RetrySchedule,
    SendOutcome,
    WebhookDelivery,
    WebhookEndpoint,
    address_refusal,
    check_url,
    normalize_event_types,
)
from server.errors import ConfigurationError, ValidationError
from server.service_layer.merchant_notifications import (
    ClaimedDelivery,
    DeliveryDispatcher,
)

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


# --- addresses and URLs -------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "169.254.1.1", "100.64.0.1", "100.127.255.254", "100.100.100.200", "0.0.0.0", "224.0.0.1",
    "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1",
    "fd00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a00:1", "2002:7f00:1::1", "2001:db8::1",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_metadata_address_is_named_as_such() -> None:
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"
    assert address_refusal(ipaddress.ip_address("100.64.0.1")) == "shared (CGNAT)"


@pytest.mark.parametrize(("url", "reason"), [
    ("", "is required"),
    ("http://example.com/hooks", "must use https"),
    ("ftp://example.com/hooks", "must be an https URL"),
    ("https:///hooks", "has no host"),
    ("https://user:secret@example.com/", "credentials"),
    ("https://example.com/#frag", "fragment"),
    ("https://example.com:99999/", "not a valid URL"),
    ("https://127.0.0.1/hooks", "loopback"),
    ("https://[::1]:8443/hooks", "loopback"),
    ("https://" + "a" * 2048 + ".com/", "at most 2048"),
])
def test_bad_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_url(url, allow_private=False)
    assert info.value.field == "url"
    assert reason in info.value.message


def test_dev_flag_allows_http_and_private_targets() -> None:
    target = check_url("http://127.0.0.1:8000/hooks", allow_private=True)
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8000)
    assert check_url("https://Example.COM./x", allow_private=False).host == "example.com"


def test_event_types_are_normalised_and_unknown_ones_named() -> None:
    assert normalize_event_types(["payment.succeeded", " PAYMENT.FAILED", "payment.succeeded"]) \
        == ("payment.failed", "payment.succeeded")
    assert {"payment.created", "payment.requires_action", "payment.refunded"} <= EVENT_TYPES
    with pytest.raises(ValidationError) as info:
        normalize_event_types(["payment.created", "refund.made"])
    assert info.value.field == "event_types[1]"


# --- schedule and endpoint ----------------------------------------------------------------------
def test_default_schedule_retries_for_more_than_three_days_in_ten_attempts() -> None:
    schedule = RetrySchedule()
    assert schedule.max_attempts == 10
    assert timedelta(days=3) < schedule.total < timedelta(days=4)
    assert [schedule.delay_after(n) for n in (1, 2, 9)] == [60, 300, 86400]
    assert schedule.delay_after(10) is None


def test_schedule_parses_and_refuses_nonsense() -> None:
    assert RetrySchedule.parse("0.5, 1,2").delays == (0.5, 1.0, 2.0)
    for text in ("", "1,-2", "a,b", "0"):
        with pytest.raises(ValueError):
            RetrySchedule.parse(text)


def endpoint(**changes: object) -> WebhookEndpoint:
    base: dict[str, object] = dict(
        id="we_1", merchant_id="mer_1", url="https://example.com/hooks", event_types=(),
        description="", enabled=True, created_at=NOW, secret="whsec_new")
    base.update(changes)
    return WebhookEndpoint(**base)  # type: ignore[arg-type]


def test_endpoint_wants_subscribed_events_that_happened_after_it_was_created() -> None:
    everything = endpoint()
    assert everything.wants("payment.created", NOW)
    assert not everything.wants("payment.created", NOW - timedelta(seconds=1))
    filtered = endpoint(event_types=("payment.succeeded",))
    assert filtered.wants("payment.succeeded", NOW) and not filtered.wants("payment.failed", NOW)
    assert not endpoint(deleted_at=NOW).wants("payment.created", NOW)


def test_previous_secret_signs_until_it_expires_and_secrets_never_print() -> None:
    rotated = endpoint(previous_secret="whsec_old",
                       previous_secret_expires_at=NOW + timedelta(hours=1))
    assert rotated.signing_secrets(NOW) == ["whsec_new", "whsec_old"]
    assert rotated.signing_secrets(NOW + timedelta(hours=2)) == ["whsec_new"]
    assert "whsec" not in repr(rotated)


# --- the body -----------------------------------------------------------------------------------
def payment_event() -> events_pb2.PaymentEvent:
    event = events_pb2.PaymentEvent(
        event_id="evt_1", type="payment.succeeded", sequence=3, merchant_id="mer_1",
        previous_status=pb.PAYMENT_STATUS_REQUIRES_ACTION,
        payment=pb.Payment(id="pay_1", merchant_id="mer_1", status=pb.PAYMENT_STATUS_SUCCEEDED,
                           amount=pb.Money(amount_minor=1_500_000, currency="INR")))
    event.occurred_at.FromDatetime(NOW)
    return event


def test_event_body_is_compact_json_with_numbers_and_names() -> None:
    body = event_body(payment_event())
    assert b" " not in body.split(b'"data"')[0]
    document = json.loads(body)
    assert {k: document[k] for k in ("id", "type", "sequence", "merchant_id", "payment_id")} == {
        "id": "evt_1", "type": "payment.succeeded", "sequence": 3, "merchant_id": "mer_1",
        "payment_id": "pay_1"}
    assert document["created_at"] == "2026-03-01T10:00:00Z"
    assert document["previous_status"] == "PAYMENT_STATUS_REQUIRES_ACTION"
    payment = document["data"]["payment"]
    assert payment["amount"] == {"amount_minor": 1_500_000, "currency": "INR"}
    assert payment["status"] == "PAYMENT_STATUS_SUCCEEDED"
    assert payment["connector"] == ""  # zero values are present
    assert event_body(payment_event()) == body  # stable bytes


# --- the sender ---------------------------------------------------------------------------------
@dataclass
class FlipResolver:
    """Public at the first lookup, private afterwards: DNS rebinding."""

    answers: list[str]
    calls: int = 0

    async def __call__(self, host: str, port: int) -> list[IpAddress]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [ipaddress.ip_address(answer)]


async def test_registration_refuses_a_name_resolving_to_a_private_address() -> None:
    with pytest.raises(ValidationError) as info:
        await check_webhook_url("https://hooks.example.com/x", allow_private=False,
                                resolver=FlipResolver(["10.0.0.7"]))
    assert "private" in info.value.message


async def test_sender_rechecks_the_address_at_send_time_and_refuses_rebinding() -> None:
    resolver = FlipResolver(["93.184.216.34", "127.0.0.1"])
    await check_webhook_url("https://hooks.example.com/x", allow_private=False,
                            resolver=resolver)
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: (sent.append(request),
                                                     httpx.Response(200))[1])
    sender = WebhookSender(allow_private=False, resolver=resolver, transport=transport)
    outcome = await sender.send("https://hooks.example.com/x", b"{}", {})
    await sender.aclose()
    assert not outcome.delivered and "loopback" in outcome.error and sent == []


async def test_sender_connects_to_the_checked_address_with_the_original_host() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    sender = WebhookSender(allow_private=False, resolver=FlipResolver(["93.184.216.34"]),
                           transport=httpx.MockTransport(answer))
    outcome = await sender.send("https://hooks.example.com:8443/x?a=1", b'{"k":1}',
                                {"Triveni-Event-Id": "evt_1"})
    await sender.aclose()
    assert outcome.delivered and outcome.http_status == 204
    [request] = sent
    assert str(request.url) == "https://93.184.216.34:8443/x?a=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["triveni-event-id"] == "evt_1"
    assert request.content == b'{"k":1}'


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(500), "HTTP 500"),
    (httpx.Response(302, headers={"location": "http://127.0.0.1/"}), "HTTP 302"),
])
async def test_non_2xx_answers_and_redirects_are_failures(response: httpx.Response,
                                                          error: str) -> None:
    sender = WebhookSender(allow_private=False, resolver=FlipResolver(["93.184.216.34"]),
                           transport=httpx.MockTransport(lambda request: response))
    outcome = await sender.send("https://hooks.example.com/x", b"{}", {})
    await sender.aclose()
    assert not outcome.delivered and outcome.error == error


async def test_connection_errors_are_reported_not_raised() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sender = WebhookSender(allow_private=False, resolver=FlipResolver(["93.184.216.34"]),
                           transport=httpx.MockTransport(refuse))
    outcome = await sender.send("https://hooks.example.com/x", b"{}", {})
    await sender.aclose()
    assert not outcome.delivered and outcome.http_status == 0
    assert outcome.error.startswith("ConnectError")


# --- the dispatcher -----------------------------------------------------------------------------
@dataclass
class FakeStore:
    claims: list[ClaimedDelivery]
    finished: list[tuple[DeliveryStatus, datetime | None, bytes | None, DeliveryAttempt]] = \
        field(default_factory=list)
    lease_lost: bool = False

    async def claim_due(self, *, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> Sequence[ClaimedDelivery]:
        claims, self.claims = self.claims[:limit], self.claims[limit:]
        return claims

    async def finish_attempt(self, claim: ClaimedDelivery, attempt: DeliveryAttempt, *,
                             status: DeliveryStatus, next_attempt_at: datetime | None,
                             now: datetime, dead_letter: bytes | None = None) -> bool:
        self.finished.append((status, next_attempt_at, dead_letter, attempt))
        return not self.lease_lost


@dataclass
class FakeSender:
    outcome: SendOutcome
    headers: list[dict[str, str]] = field(default_factory=list)

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
        self.headers.append(headers)
        return self.outcome


def claim(attempts_made: int = 0, secret_expiry: datetime | None = None) -> ClaimedDelivery:
    delivery = WebhookDelivery(
        id="whd_1", endpoint_id="we_1", merchant_id="mer_1", event_id="evt_1",
        event_type="payment.created", payment_id="pay_1", sequence=1,
        status=DeliveryStatus.RETRYING if attempts_made else DeliveryStatus.PENDING,
        attempt_count=attempts_made, next_attempt_at=NOW, created_at=NOW)
    return ClaimedDelivery(delivery=delivery, body=b'{"id":"evt_1"}', lease_owner="me",
                           endpoint=endpoint(previous_secret="whsec_old",
                                             previous_secret_expires_at=secret_expiry))


def dispatcher(store: FakeStore, sender: FakeSender, results: list[str]) -> DeliveryDispatcher:
    return DeliveryDispatcher(store, sender, owner="me", schedule=RetrySchedule((60, 300)),
                              dead_letter_record=dead_letter_record, clock=lambda: NOW,
                              observe=results.append)


async def test_a_delivered_attempt_is_signed_with_every_live_secret() -> None:
    store, results = FakeStore([claim(secret_expiry=NOW + timedelta(hours=1))]), []
    sender = FakeSender(SendOutcome(delivered=True, http_status=200, latency_ms=12))
    assert await dispatcher(store, sender, results).run_once() == 1
    [(status, next_at, dead, attempt)] = store.finished
    assert (status, next_at, dead, attempt.number, attempt.latency_ms) == (
        DeliveryStatus.DELIVERED, None, None, 1, 12)
    [headers] = sender.headers
    assert headers["Triveni-Event-Id"] == "evt_1" and headers["Triveni-Sequence"] == "1"
    assert headers["Triveni-Delivery-Id"] == "whd_1"
    signature = headers["Triveni-Signature"]
    assert signature.startswith(f"t={int(NOW.timestamp())},") and signature.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):
        webhooks.verify_signature(b'{"id":"evt_1"}', signature, secret, now=NOW.timestamp())
    assert results == ["delivered"]


async def test_a_failed_attempt_is_retried_on_schedule_then_dead_lettered() -> None:
    failing = FakeSender(SendOutcome(delivered=False, http_status=503, error="HTTP 503"))
    store, results = FakeStore([claim(0), claim(1), claim(2)]), []
    assert await dispatcher(store, failing, results).run_once() == 3
    (first, after_first, _, a1), (second, after_second, _, a2), (third, after_third, dead, a3) = \
        store.finished
    assert (first, after_first, a1.number) == (DeliveryStatus.RETRYING,
                                               NOW + timedelta(seconds=60), 1)
    assert (second, after_second, a2.number) == (DeliveryStatus.RETRYING,
                                                 NOW + timedelta(seconds=300), 2)
    assert (third, after_third, a3.number) == (DeliveryStatus.DEAD_LETTERED, None, 3)
    assert dead is not None
    record = json.loads(dead)
    assert record["attempts"] == 3 and record["last_error"] == "HTTP 503"
    assert record["event"] == {"id": "evt_1"} and record["delivery_id"] == "whd_1"
    assert results == ["failed", "retried", "failed", "retried", "failed", "dead_lettered"]


async def test_an_attempt_whose_lease_was_taken_over_is_not_counted() -> None:
    store, results = FakeStore([claim()], lease_lost=True), []
    sender = FakeSender(SendOutcome(delivered=True, http_status=200))
    await dispatcher(store, sender, results).run_once()
    assert results == []


# --- settings -----------------------------------------------------------------------------------
def test_production_refuses_private_urls_and_a_schedule_shorter_than_three_days() -> None:
    base = dict(env="production", postgres_url="postgresql://x", redis_url="redis://x",
                kafka_bootstrap="k:9092", dashboard_secret="s" * 40)
    Settings(**base).check()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ALLOW_PRIVATE"):
        Settings(**base, allow_private_webhook_urls=True).check()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="3 days"):
        Settings(**base, webhook_retry_schedule="1,2,3").check()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="RETRY_SCHEDULE"):
        Settings(webhook_retry_schedule="soon").check()
