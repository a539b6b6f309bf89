"""SimulatorConnector against the simulator PSP: real HTTP (serve_app) and in-process (ASGI)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
    UnknownOutcome,
    WebhookRejected,
)
from server.connectors.http import HttpExecutor
from server.connectors.registry import ConnectorRegistry, build_default_registry
from server.connectors.simulator import SimulatorConnector
from server.connectors.simulator.app import (
    Simulator,
    build_simulator_app,
    in_process_executor,
    simulator_of,
)
from server.domain.money import Money
from server.errors import ConfigurationError
from tests.fakes.server import free_port, serve_app

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_contract_sim"


# ---- fixtures ----------------------------------------------------------------------------

@dataclass
class Receiver:
    """A merchant-side webhook endpoint that records every delivery verbatim."""

    url: str = ""
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} deliveries, got {len(self.deliveries)}")
            await asyncio.sleep(0.01)


def receiver_app(receiver: Receiver) -> Starlette:
    async def hook(request: Request) -> Response:
        receiver.deliveries.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve_app(receiver_app(rec)) as base:
        rec.url = f"{base}/hook"
        yield rec


@dataclass
class Sim:
    base_url: str
    state: Simulator
    account: ConnectorAccount


@pytest.fixture
def sim() -> Iterator[Sim]:
    app = build_simulator_app()
    state = simulator_of(app)
    state.configure({"webhook_secrets": {"sim_contract": SECRET}})
    with serve_app(app) as base:
        yield Sim(base, state, account(base))


def account(base_url: str, **overrides: object) -> ConnectorAccount:
    values: dict[str, object] = {"name": "sim_contract", "psp": "simulator",
                                 "base_url": base_url, "webhook_secret": SECRET,
                                 "timeout_seconds": 2.0}
    values.update(overrides)
    return ConnectorAccount(**values)  # type: ignore[arg-type]


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def executor() -> AsyncIterator[HttpExecutor]:
    ex = HttpExecutor(sleep=no_sleep)
    yield ex
    await ex.aclose()


def payment_input(webhook_url: str = "", amount_minor: int = 150_000) -> CreatePaymentInput:
    suffix = uuid.uuid4().hex[:16]
    return CreatePaymentInput(
        payment_id=f"pay_{suffix}", attempt_id=f"att_{suffix}",
        amount=Money(amount_minor, "INR"), method="upi", method_details={"upi_flow": "intent"},
        customer_id="cus_1", customer_name="Asha Rao", customer_email="asha@example.com",
        customer_phone="+919876543210", description="Order 42",
        return_url="https://merchant.example/return", webhook_url=webhook_url,
    )


def refund_input(connector_payment_id: str, amount_minor: int, total_minor: int = 150_000
                 ) -> RefundInput:
    return RefundInput(
        refund_id=f"rfnd_{uuid.uuid4().hex[:16]}", payment_id="pay_x",
        connector_payment_id=connector_payment_id, amount=Money(amount_minor),
        total_amount=Money(total_minor), reason="customer asked")


connector = SimulatorConnector()


async def pay(sim: Sim, connector_payment_id: str, outcome: str = "success") -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.base_url}/checkout/{connector_payment_id}",
                                    params={"outcome": outcome})
    assert response.status_code in (200, 303)


# ---- create / status -------------------------------------------------------------------

async def test_create_returns_requires_action_with_a_checkout_url(
        sim: Sim, executor: HttpExecutor) -> None:
    data = payment_input()
    payment = await connector.create_payment(executor, sim.account, data)
    assert payment.status == PspStatus.REQUIRES_ACTION
    assert payment.connector_payment_id.startswith("sim_")
    assert payment.redirect_url == f"{sim.base_url}/checkout/{payment.connector_payment_id}"
    assert payment.references["attempt_id"] == data.attempt_id
    stored = sim.state.payments[payment.connector_payment_id]
    assert (stored.reference, stored.amount_minor, stored.currency) == (
        data.attempt_id, 150_000, "INR")


async def test_in_process_mode_runs_the_same_code_without_sockets() -> None:
    app = build_simulator_app()
    async with in_process_executor(app) as ex:
        acct = account("http://simulator.local")
        payment = await connector.create_payment(ex, acct, payment_input())
        await simulator_of(app).complete(simulator_of(app).payments[
            payment.connector_payment_id], succeed=True)
        status = await connector.get_payment(ex, acct, payment.connector_payment_id, {})
    assert status.status == PspStatus.SUCCEEDED


async def test_status_after_successful_checkout_is_succeeded_with_amount(
        sim: Sim, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, sim.account, payment_input())
    await pay(sim, created.connector_payment_id, "success")
    status = await connector.get_payment(executor, sim.account, created.connector_payment_id,
                                         created.references)
    assert status.status == PspStatus.SUCCEEDED
    assert status.amount_captured == Money(150_000)
    assert status.raw_status == "succeeded"


async def test_status_after_failed_checkout_is_failed_with_the_reason(
        sim: Sim, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, sim.account, payment_input())
    await pay(sim, created.connector_payment_id, "failure")
    status = await connector.get_payment(executor, sim.account, created.connector_payment_id, {})
    assert status.status == PspStatus.FAILED
    assert status.error_code == "declined"
    assert status.amount_captured is None


async def test_success_rate_zero_fails_every_checkout(sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"success_rate": 0.0})
    created = await connector.create_payment(executor, sim.account, payment_input())
    await pay(sim, created.connector_payment_id, "")
    status = await connector.get_payment(executor, sim.account, created.connector_payment_id, {})
    assert status.status == PspStatus.FAILED


async def test_unknown_payment_id_is_a_404_connector_error(
        sim: Sim, executor: HttpExecutor) -> None:
    with pytest.raises(ConnectorError) as info:
        await connector.get_payment(executor, sim.account, "sim_doesnotexist", {})
    assert info.value.http_status == 404


async def test_wrong_api_key_is_misconfigured(sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"api_key": "sk_sim_right"})
    wrong = account(sim.base_url, credentials={"api_key": "sk_sim_wrong"})
    with pytest.raises(Misconfigured):
        await connector.create_payment(executor, wrong, payment_input())
    right = account(sim.base_url, credentials={"api_key": "sk_sim_right"})
    created = await connector.create_payment(executor, right, payment_input())
    assert created.status == PspStatus.REQUIRES_ACTION


# ---- failure modes ---------------------------------------------------------------------

async def test_decline_mode_is_declined(sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "decline"})
    with pytest.raises(Declined) as info:
        await connector.create_payment(executor, sim.account, payment_input())
    assert info.value.code == "declined"
    assert sim.state.payments == {}


async def test_transient_5xx_is_retried_and_creates_one_payment(
        sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "unavailable", "failure_count": 2})
    created = await connector.create_payment(executor, sim.account, payment_input())
    assert created.status == PspStatus.REQUIRES_ACTION
    assert len(sim.state.payments) == 1


async def test_persistent_5xx_on_create_is_unknown_and_sync_reports_404(
        sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "server_error"})
    data = payment_input()
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(executor, sim.account, data)
    # Status sync by attempt id: the simulator never recorded it, so the create never landed.
    with pytest.raises(ConnectorError) as info:
        await connector.get_payment(executor, sim.account, data.attempt_id,
                                    {"attempt_id": data.attempt_id})
    assert info.value.http_status == 404


async def test_429_is_retried_after_retry_after(sim: Sim) -> None:
    sim.state.configure({"failure_mode": "rate_limit", "failure_count": 1,
                         "retry_after_seconds": 2})
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with HttpExecutor(sleep=sleep) as ex:
        created = await connector.create_payment(ex, sim.account, payment_input())
    assert created.status == PspStatus.REQUIRES_ACTION
    assert waits == [2.0]


async def test_persistent_429_is_rate_limited(sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "rate_limit", "retry_after_seconds": 1})
    with pytest.raises(RateLimited) as info:
        await connector.create_payment(executor, sim.account, payment_input())
    assert info.value.retry_after_seconds == 1.0


async def test_timeout_is_unknown_then_status_sync_finds_the_one_payment(
        sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "timeout", "hang_seconds": 2.0})
    impatient = account(sim.base_url, timeout_seconds=0.5)
    acct = sim.account
    data = payment_input()
    with pytest.raises(UnknownOutcome):
        await connector.create_payment(executor, impatient, data)
    found = await connector.get_payment(executor, acct, data.attempt_id,
                                        {"attempt_id": data.attempt_id})
    assert found.connector_payment_id in sim.state.payments
    assert len(sim.state.payments) == 1
    # Retrying the create with the same attempt id never makes a second charge.
    sim.state.configure({"failure_mode": "none"})
    again = await connector.create_payment(executor, acct, data)
    assert again.connector_payment_id == found.connector_payment_id
    assert len(sim.state.payments) == 1


async def test_one_timeout_then_retry_returns_the_same_payment(
        sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"failure_mode": "timeout", "failure_count": 1, "hang_seconds": 2.5})
    created = await connector.create_payment(
        executor, account(sim.base_url, timeout_seconds=1.0), payment_input())
    assert created.status == PspStatus.REQUIRES_ACTION
    assert list(sim.state.payments) == [created.connector_payment_id]


async def test_latency_is_added_to_api_calls(sim: Sim, executor: HttpExecutor) -> None:
    sim.state.configure({"latency_ms": 150})
    started = time.monotonic()
    await connector.create_payment(executor, sim.account, payment_input())
    assert time.monotonic() - started >= 0.15


async def test_admin_config_changes_behaviour_at_run_time(
        sim: Sim, executor: HttpExecutor) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.post("/admin/config", json={"failure_mode": "decline"})
        assert response.status_code == 200
        assert response.json()["failure_mode"] == "decline"
        assert "webhook_secrets" not in response.json()  # secrets are never echoed
        with pytest.raises(Declined):
            await connector.create_payment(executor, sim.account, payment_input())
        await client.post("/admin/config", json={"failure_mode": "none"})
        await connector.create_payment(executor, sim.account, payment_input())
        bad = await client.post("/admin/config", json={"failure_mode": "explode"})
        assert bad.status_code == 400
        unknown = await client.post("/admin/config", json={"colour": "blue"})
        assert unknown.status_code == 400


# ---- refunds ---------------------------------------------------------------------------

async def _succeeded_payment(sim: Sim, executor: HttpExecutor) -> str:
    created = await connector.create_payment(executor, sim.account, payment_input())
    await pay(sim, created.connector_payment_id, "success")
    return created.connector_payment_id


async def test_full_refund_succeeds(sim: Sim, executor: HttpExecutor) -> None:
    payment_id = await _succeeded_payment(sim, executor)
    data = refund_input(payment_id, 150_000)
    refund = await connector.refund(executor, sim.account, data)
    assert refund.status == PspStatus.SUCCEEDED
    fetched = await connector.get_refund(executor, sim.account, data, refund.connector_refund_id)
    assert fetched == refund


async def test_partial_refunds_add_up_and_over_refund_is_declined(
        sim: Sim, executor: HttpExecutor) -> None:
    payment_id = await _succeeded_payment(sim, executor)
    await connector.refund(executor, sim.account, refund_input(payment_id, 50_000))
    await connector.refund(executor, sim.account, refund_input(payment_id, 100_000))
    with pytest.raises(Declined) as info:
        await connector.refund(executor, sim.account, refund_input(payment_id, 1))
    assert info.value.code == "amount_exceeds_refundable"
    assert sim.state.payments[payment_id].amount_refunded_minor == 150_000


async def test_refund_is_idempotent_on_our_refund_id(sim: Sim, executor: HttpExecutor) -> None:
    payment_id = await _succeeded_payment(sim, executor)
    data = refund_input(payment_id, 40_000)
    first = await connector.refund(executor, sim.account, data)
    second = await connector.refund(executor, sim.account, data)
    assert first.connector_refund_id == second.connector_refund_id
    assert len(sim.state.refunds) == 1


async def test_refund_that_timed_out_is_found_by_our_refund_id(
        sim: Sim, executor: HttpExecutor) -> None:
    payment_id = await _succeeded_payment(sim, executor)
    sim.state.configure({"failure_mode": "timeout", "failure_operations": ["create_refund"],
                         "hang_seconds": 2.0})
    data = refund_input(payment_id, 10_000)
    with pytest.raises(UnknownOutcome):
        await connector.refund(executor, account(sim.base_url, timeout_seconds=0.5), data)
    found = await connector.get_refund(executor, sim.account, data, "")
    assert found.connector_refund_id in sim.state.refunds
    assert len(sim.state.refunds) == 1


async def test_refund_of_an_unpaid_payment_is_declined(sim: Sim, executor: HttpExecutor) -> None:
    created = await connector.create_payment(executor, sim.account, payment_input())
    with pytest.raises(Declined):
        await connector.refund(executor, sim.account,
                               refund_input(created.connector_payment_id, 100))


async def test_delayed_refund_is_pending_then_succeeded(sim: Sim, executor: HttpExecutor) -> None:
    payment_id = await _succeeded_payment(sim, executor)
    sim.state.configure({"refund_delay_ms": 100})
    data = refund_input(payment_id, 1_000)
    refund = await connector.refund(executor, sim.account, data)
    assert refund.status == PspStatus.PENDING
    await asyncio.sleep(0.3)
    settled = await connector.get_refund(executor, sim.account, data, refund.connector_refund_id)
    assert settled.status == PspStatus.SUCCEEDED


# ---- webhooks --------------------------------------------------------------------------

def now() -> datetime:
    return datetime.now(UTC)


async def test_checkout_delivers_a_signed_success_webhook(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    data = payment_input(webhook_url=receiver.url)
    created = await connector.create_payment(executor, sim.account, data)
    await pay(sim, created.connector_payment_id, "success")
    await receiver.wait_for(1)
    headers, body = receiver.deliveries[0]
    event = connector.parse_webhook(sim.account, headers, body, now())
    assert event.kind == "payment"
    assert event.status == PspStatus.SUCCEEDED
    assert event.connector_payment_id == created.connector_payment_id
    assert event.payment_ref == data.attempt_id
    assert event.amount == Money(150_000)
    assert event.dedupe_id == headers["x-simulator-event-id"]


async def test_failure_webhook_is_failed_with_the_reason(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    created = await connector.create_payment(executor, sim.account,
                                             payment_input(webhook_url=receiver.url))
    await pay(sim, created.connector_payment_id, "failure")
    await receiver.wait_for(1)
    event = connector.parse_webhook(sim.account, *receiver.deliveries[0], now())
    assert event.status == PspStatus.FAILED
    assert event.error_code == "declined"


async def test_auto_complete_finishes_without_a_browser(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    sim.state.configure({"auto_complete": True, "auto_complete_ms": 20})
    created = await connector.create_payment(executor, sim.account,
                                             payment_input(webhook_url=receiver.url))
    await receiver.wait_for(1)
    event = connector.parse_webhook(sim.account, *receiver.deliveries[0], now())
    assert event.status == PspStatus.SUCCEEDED
    status = await connector.get_payment(executor, sim.account, created.connector_payment_id, {})
    assert status.status == PspStatus.SUCCEEDED


async def test_duplicate_deliveries_share_one_dedupe_id(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    sim.state.configure({"duplicate_webhooks": 2})
    created = await connector.create_payment(executor, sim.account,
                                             payment_input(webhook_url=receiver.url))
    await pay(sim, created.connector_payment_id)
    await receiver.wait_for(3)
    events = [connector.parse_webhook(sim.account, h, b, now()) for h, b in receiver.deliveries]
    assert len({e.dedupe_id for e in events}) == 1


async def test_refund_webhook_is_parsed_as_a_refund_event(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    created = await connector.create_payment(executor, sim.account,
                                             payment_input(webhook_url=receiver.url))
    await pay(sim, created.connector_payment_id)
    refund = await connector.refund(executor, sim.account,
                                    refund_input(created.connector_payment_id, 5_000))
    await receiver.wait_for(2)
    event = connector.parse_webhook(sim.account, *receiver.deliveries[1], now())
    assert (event.kind, event.status) == ("refund", PspStatus.SUCCEEDED)
    assert event.connector_refund_id == refund.connector_refund_id
    assert event.connector_payment_id == created.connector_payment_id
    assert event.amount == Money(5_000)


async def _one_delivery(sim: Sim, executor: HttpExecutor, receiver: Receiver
                        ) -> tuple[dict[str, str], bytes]:
    created = await connector.create_payment(executor, sim.account,
                                             payment_input(webhook_url=receiver.url))
    await pay(sim, created.connector_payment_id)
    await receiver.wait_for(1)
    return receiver.deliveries[0]


async def test_forged_signature_is_rejected(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    headers, body = await _one_delivery(sim, executor, receiver)
    forged = {**headers, "x-simulator-signature": hmac.new(
        b"not-the-secret", headers["x-simulator-timestamp"].encode() + b"." + body,
        hashlib.sha256).hexdigest()}
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(sim.account, forged, body, now())
    assert info.value.reason == "bad_signature"


async def test_tampered_body_is_rejected(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    headers, body = await _one_delivery(sim, executor, receiver)
    tampered = body.replace(b'"succeeded"', b'"failed"')
    assert tampered != body
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(sim.account, headers, tampered, now())
    assert info.value.reason == "bad_signature"


async def test_stale_delivery_is_rejected(
        sim: Sim, executor: HttpExecutor, receiver: Receiver) -> None:
    headers, body = await _one_delivery(sim, executor, receiver)
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(sim.account, headers, body, now() + timedelta(minutes=6))
    assert info.value.reason == "stale"


def test_unsigned_delivery_is_rejected() -> None:
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(account("http://x"), {}, b'{"id":"evt_1"}', now())
    assert info.value.reason == "unsigned"


def test_signature_is_checked_before_the_body_is_parsed() -> None:
    headers = {"X-Simulator-Timestamp": "1700000000", "X-Simulator-Signature": "00" * 32}
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(account("http://x"), headers, b"not json at all", now())
    assert info.value.reason == "bad_signature"


def test_known_answer_signature_vector() -> None:
    body = (b'{"id":"evt_kat","type":"payment.succeeded","created":1700000000,"data":'
            b'{"id":"sim_kat","reference":"att_kat","status":"succeeded",'
            b'"amount_minor":150000,"currency":"INR"}}')
    expected = "cb0e21cca1a0fc461e99aca337141fcf545d83b6bee1dd73a6be68177ad7b242"
    assert hmac.new(b"whsec_test_known", b"1700000000." + body,
                    hashlib.sha256).hexdigest() == expected
    acct = account("http://x", webhook_secret="whsec_test_known")
    headers = {"X-Simulator-Signature": expected, "X-Simulator-Timestamp": "1700000000",
               "X-Simulator-Event-Id": "evt_kat"}
    event = connector.parse_webhook(acct, headers, body,
                                    datetime.fromtimestamp(1700000100, UTC))
    assert (event.dedupe_id, event.connector_payment_id, event.payment_ref, event.status) == (
        "evt_kat", "sim_kat", "att_kat", PspStatus.SUCCEEDED)


def test_dev_secret_convention_matches_the_dev_accounts() -> None:
    state = simulator_of(build_simulator_app())
    assert state.webhook_secret_for("simulator_premium") == "whsec_dev_simulator_premium"
    state.configure({"webhook_secrets": {"simulator_premium": "explicit"}})
    assert state.webhook_secret_for("simulator_premium") == "explicit"


# ---- standalone --------------------------------------------------------------------------

async def test_runs_standalone_from_the_command_line(executor: HttpExecutor) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.connectors.simulator", "--port", str(port),
        "--latency-ms", "5", "--jitter-ms", "2", "--auto-complete-ms", "10",
        "--account-secret", f"sim_contract={SECRET}",
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "simulator did not start"
                await asyncio.sleep(0.1)
            config = (await client.get(f"{base}/admin/config")).json()
        assert config["latency_ms"] == 5 and config["auto_complete"] is True
        created = await connector.create_payment(executor, account(base), payment_input())
        await asyncio.sleep(0.2)
        status = await connector.get_payment(executor, account(base),
                                             created.connector_payment_id, {})
        assert status.status == PspStatus.SUCCEEDED
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_same_reference_returns_the_same_payment_and_a_different_amount_conflicts(
) -> None:
    app = build_simulator_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sim") as client:
        response = await client.post("/v1/payments", content=json.dumps({
            "reference": "att_shape", "amount_minor": 100, "currency": "INR",
            "method": "upi", "return_url": "", "webhook_url": ""}))
        assert response.status_code == 201
        again = await client.post("/v1/payments", json={
            "reference": "att_shape", "amount_minor": 100, "currency": "INR"})
        assert again.status_code == 200
        assert again.json()["id"] == response.json()["id"]
        conflict = await client.post("/v1/payments", json={
            "reference": "att_shape", "amount_minor": 999, "currency": "INR"})
        assert conflict.status_code == 409
    body = response.json()
    assert {"id", "reference", "status", "amount_minor", "currency", "method",
            "checkout_url"} <= set(body)
    assert body["status"] == "requires_action"


# ---- the connector registry (the simulator is its default connector) ----------------------

def test_default_registry_has_every_shipped_psp() -> None:
    registry = build_default_registry()
    assert registry.names() == ("cashfree", "instamojo", "payu", "razorpay", "simulator")
    assert all(registry.get(name).psp == name for name in registry.names())
    assert isinstance(registry.for_account(account("http://x")), SimulatorConnector)


def test_registry_refuses_unknown_psps_and_duplicates() -> None:
    registry = ConnectorRegistry([SimulatorConnector()])
    with pytest.raises(ConfigurationError, match="known: simulator"):
        registry.get("stripe")
    with pytest.raises(ConfigurationError):
        registry.register(SimulatorConnector())
