"""Helpers for the merchant webhook and WatchPayments tests: merchants, endpoints, payments."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps
from triveni.v1 import webhook_service_pb2 as ws
from triveni.v1 import webhook_service_pb2_grpc

from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, upi_request

__all__ = ["Merchant", "eventually", "eventually_async", "new_merchant"]


async def eventually(check: Callable[[], bool], *, within: float = 15.0,
                     message: str = "condition") -> None:
    """Poll `check` every 50 ms until it holds, or fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.05)


async def eventually_async(check: Callable[[], Awaitable[bool]], *, within: float = 15.0,
                           message: str = "condition") -> None:
    """Like `eventually`, for a check that has to await (an RPC, a query)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.1)


@dataclass
class Merchant:
    """A fresh merchant of the session's stack (so tests never see each other's events)."""

    stack: Stack
    merchant_id: str
    api_key: str
    target: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),)

    def webhooks(self, channel: object) -> webhook_service_pb2_grpc.WebhookServiceStub:
        return webhook_service_pb2_grpc.WebhookServiceStub(channel)  # type: ignore[arg-type]

    async def create_endpoint(self, url: str, event_types: list[str] | None = None,
                              description: str = "", key: str | None = None
                              ) -> ws.CreateWebhookEndpointResponse:
        async with self.stack.channel(self.target or None) as channel:
            response: ws.CreateWebhookEndpointResponse = await self.webhooks(
                channel).CreateWebhookEndpoint(ws.CreateWebhookEndpointRequest(
                    idempotency_key=key or secrets.token_hex(8), url=url,
                    event_types=event_types or [], description=description),
                    metadata=self.metadata())
            return response

    async def deliveries(self, *, endpoint_id: str = "", payment_id: str = "",
                         page_size: int = 0, page_token: str = ""
                         ) -> ws.ListWebhookDeliveriesResponse:
        async with self.stack.channel() as channel:
            response: ws.ListWebhookDeliveriesResponse = await self.webhooks(
                channel).ListWebhookDeliveries(ws.ListWebhookDeliveriesRequest(
                    endpoint_id=endpoint_id, payment_id=payment_id, page_size=page_size,
                    page_token=page_token), metadata=self.metadata())
            return response

    async def payment(self, amount_minor: int = 100_000) -> pb.Payment:
        """A new UPI payment (REQUIRES_ACTION, checkout not opened yet)."""
        return await create(self.stack, upi_request(amount_minor), self.api_key)

    async def pay(self, payment: pb.Payment) -> None:
        """Open the checkout page: the simulator's signed webhook marks it SUCCEEDED."""
        async with httpx.AsyncClient(follow_redirects=False) as client:
            response = await client.get(payment.redirect_url)
            assert response.status_code in (200, 302, 303), response.text

    async def has_status(self, payment_id: str, status: int) -> bool:
        return await self.status(payment_id) == status

    async def status(self, payment_id: str) -> int:
        async with self.stack.channel() as channel:
            payment: pb.Payment = await self.stack.payments(channel).GetPayment(
                ps.GetPaymentRequest(id=payment_id), metadata=self.metadata())
            return payment.status


async def new_merchant(stack: Stack) -> Merchant:
    merchant_id, api_key = await stack.app.merchants.create_merchant(
        f"webhooks-{secrets.token_hex(3)}")
    return Merchant(stack, merchant_id, api_key)
