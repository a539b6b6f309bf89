"""The seed flow through Instamojo, end to end: ₹15,000 → payment link → signed webhook →
SUCCEEDED → event on Kafka → refund → REFUNDED (Instamojo played by its local fake)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from tests.fakes.instamojo import FakeInstamojo, instamojo_mac
from tests.fakes.server import serve_app
from tests.fixtures.stack import Stack, running_server
from tests.integration.test_payment_lifecycle import _consume_events
from tests.integration.test_payments_grpc import upi_request

pytestmark = pytest.mark.integration

ACCOUNTS = """
[accounts.instamojo_premium]
psp = "instamojo"
base_url = "{url}"
tier = "premium"
priority = 20
timeout_seconds = 2.0
credentials = {{ client_id = "test_client_id", client_secret = "test_client_secret" }}
webhook_secret = "test_private_salt"

[accounts.instamojo_standard]
psp = "instamojo"
base_url = "{url}"
tier = "standard"
priority = 10
timeout_seconds = 2.0
credentials = {{ client_id = "test_client_id", client_secret = "test_client_secret" }}
webhook_secret = "test_private_salt"
"""


@pytest.fixture(scope="module")
def instamojo() -> Iterator[tuple[FakeInstamojo, str]]:
    fake = FakeInstamojo()
    with serve_app(fake.app) as url:
        fake.base_url = url
        yield fake, url


async def test_seed_flow_through_instamojo(stack: Stack, tmp_path: Path,
                                           instamojo: tuple[FakeInstamojo, str]) -> None:
    fake, url = instamojo
    accounts = tmp_path / "instamojo.toml"
    accounts.write_text(ACCOUNTS.format(url=url))
    settings = stack.settings_with(connectors_file=accounts)
    async with running_server(settings) as server:
        _, key = await server.app.merchants.create_merchant(f"im-{secrets.token_hex(3)}")
        metadata = (("authorization", f"Bearer {key}"),)
        async with stack.channel(server.grpc_target) as channel:
            stub = stack.payments(channel)
            payment = await stub.CreatePayment(upi_request(1_500_000), metadata=metadata)
            assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
            assert payment.connector == "instamojo_premium"
            request = fake.requests[payment.connector_payment_id]
            assert request.fields["amount"] == "15000.00"  # rupee string, formatted once
            assert payment.redirect_url  # the longurl the customer opens

            # A forged webhook (wrong salt) changes nothing.
            fields = {"payment_id": "MOJOFORGED", "payment_request_id": request.id,
                      "status": "Credit", "amount": "15000.00"}
            fields["mac"] = instamojo_mac(fields, "not-the-salt")
            async with httpx.AsyncClient() as client:
                forged = await client.post(f"{server.http_url}/webhooks/instamojo_premium",
                                           data=fields)
            assert forged.status_code == 401

            await fake.pay(request.id, times=2)  # the webhook arrives twice
            paid = await stub.GetPayment(ps.GetPaymentRequest(id=payment.id), metadata=metadata)
            assert paid.status == pb.PAYMENT_STATUS_SUCCEEDED
            assert [code for _, _, code in fake.webhook_deliveries[-2:]] == [200, 200]

            events = await asyncio.to_thread(
                _consume_events, settings.kafka_bootstrap, payment.id, {"payment.succeeded"})
            assert "payment.succeeded" in {e.type for e in events}

            refund = await stub.RefundPayment(ps.RefundPaymentRequest(
                payment_id=payment.id, idempotency_key=f"rf-{secrets.token_hex(4)}"),
                metadata=metadata)
            assert refund.amount.amount_minor == 1_500_000
            if refund.status == pb.REFUND_STATUS_PENDING:
                fake.settle_refund(refund.connector_refund_id)
                await stub.SyncPayment(ps.SyncPaymentRequest(id=payment.id), metadata=metadata)
            final = await stub.GetPayment(ps.GetPaymentRequest(id=payment.id), metadata=metadata)
            assert final.status == pb.PAYMENT_STATUS_REFUNDED
            assert final.refunds[0].status == pb.REFUND_STATUS_SUCCEEDED
