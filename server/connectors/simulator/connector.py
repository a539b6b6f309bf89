"""Connector for the simulator PSP (server.connectors.simulator.app), the dev and bench default.

Identity: the simulator deduplicates payments on `reference` (our attempt id), like a real
PSP's unique receipt, so create is safe to retry: the executor may repeat it and a repeat
returns the same payment. After an unknown outcome, `get_payment` with no connector payment id
(or with the attempt id in its place, as the service's status sync passes it) looks the
payment up by reference; when the simulator has none, it raises a ConnectorError with
http_status 404, which tells the caller the create never landed.

Refunds carry `Idempotency-Key: <our refund id>`, so they are safe to retry too.

Credentials: optional `api_key` (sent as a Bearer token when present). The account name is sent
as `X-Simulator-Account` so one simulator can serve several accounts, each with its own
webhook secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from server.connectors.base import (
    ConnectorAccount,
    ConnectorError,
    ConnectorPayment,
    ConnectorRefund,
    CreatePaymentInput,
    Declined,
    HttpRequest,
    HttpResponse,
    Misconfigured,
    PspStatus,
    RefundInput,
    TransientError,
    Transport,
    UnknownOutcome,
    WebhookEvent,
)
from server.connectors.simulator import webhooks
from server.connectors.simulator.models import (
    ACCOUNT_HEADER,
    IDEMPOTENCY_HEADER,
    int_field,
    map_payment_status,
    map_refund_status,
    str_field,
)
from server.domain.money import Money

__all__ = ["SimulatorConnector"]

ATTEMPT_ID_REFERENCE = "attempt_id"  # the key the service layer puts our attempt id under


class SimulatorConnector:
    """Stateless translator for the simulator's little JSON API."""

    psp = "simulator"

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """POST /v1/payments with reference = attempt id (idempotent at the simulator)."""
        payload = {
            "reference": data.attempt_id,
            "amount_minor": data.amount.amount_minor,
            "currency": data.amount.currency,
            "method": data.method,
            "return_url": data.return_url,
            "webhook_url": data.webhook_url,
            "description": data.description,
            "customer": {"id": data.customer_id, "name": data.customer_name},
        }
        response = await transport.send(account, HttpRequest(
            method="POST", url=_url(account, "/v1/payments"), headers=_headers(account),
            body=json.dumps(payload).encode(), safe_to_retry=True, operation="create_payment",
        ))
        body = _success_body(response, mutating=True)
        return _payment_view(body, data.attempt_id)

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """GET the payment by id, or by reference when we never learnt the id."""
        attempt_id = references.get(ATTEMPT_ID_REFERENCE, "")
        if connector_payment_id and connector_payment_id != attempt_id:
            response = await transport.send(account, HttpRequest(
                method="GET", url=_url(account, "/v1/payments/", connector_payment_id),
                headers=_headers(account), safe_to_retry=True, operation="get_payment",
            ))
            if response.status == 404:
                raise ConnectorError(f"simulator has no payment {connector_payment_id}",
                                     code="NOT_FOUND", http_status=404)
            return _payment_view(_success_body(response, mutating=False), attempt_id)
        if not attempt_id:
            raise Misconfigured("get_payment needs a connector payment id or an attempt_id")
        query = urlencode({"reference": attempt_id})
        response = await transport.send(account, HttpRequest(
            method="GET", url=f"{_url(account, '/v1/payments')}?{query}",
            headers=_headers(account), safe_to_retry=True, operation="find_payment",
        ))
        found = _success_body(response, mutating=False).get("data")
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            raise ConnectorError(f"simulator has no payment with reference {attempt_id}",
                                 code="NOT_FOUND", http_status=404)
        return _payment_view(found[0], attempt_id)

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """POST a refund with Idempotency-Key = our refund id."""
        payload = {"amount_minor": data.amount.amount_minor, "reason": data.reason}
        headers = {**_headers(account), IDEMPOTENCY_HEADER: data.refund_id}
        response = await transport.send(account, HttpRequest(
            method="POST",
            url=_url(account, "/v1/payments/", data.connector_payment_id, "/refunds"),
            headers=headers, body=json.dumps(payload).encode(), safe_to_retry=True,
            operation="refund",
        ))
        return _refund_view(_success_body(response, mutating=True))

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """GET /v1/refunds/{id}."""
        if not connector_refund_id:
            return await self._find_refund(transport, account, data)
        response = await transport.send(account, HttpRequest(
            method="GET", url=_url(account, "/v1/refunds/", connector_refund_id),
            headers=_headers(account), safe_to_retry=True, operation="get_refund",
        ))
        if response.status == 404:
            raise ConnectorError(f"simulator has no refund {connector_refund_id}",
                                 code="NOT_FOUND", http_status=404)
        return _refund_view(_success_body(response, mutating=False))

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify (HMAC-SHA256 over timestamp.body, constant time, ±5 min), then parse."""
        return webhooks.parse_webhook(account, headers, body, now)

    async def _find_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """The payment's refund whose idempotency key is our refund id (404 if none)."""
        response = await transport.send(account, HttpRequest(
            method="GET",
            url=_url(account, "/v1/payments/", data.connector_payment_id, "/refunds"),
            headers=_headers(account), safe_to_retry=True, operation="find_refund",
        ))
        listed = _success_body(response, mutating=False).get("data")
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and item.get("idempotency_key") == data.refund_id:
                return _refund_view(item)
        raise ConnectorError(f"simulator has no refund for key {data.refund_id}",
                             code="NOT_FOUND", http_status=404)


# ---- helpers ---------------------------------------------------------------------------

def _url(account: ConnectorAccount, *parts: str) -> str:
    path = "".join(part if part.startswith("/") else quote(part, safe="") for part in parts)
    return account.base_url.rstrip("/") + path


def _headers(account: ConnectorAccount) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               ACCOUNT_HEADER: account.name}
    api_key = account.credentials.get("api_key", "")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _success_body(response: HttpResponse, *, mutating: bool) -> dict[str, Any]:
    """The JSON object of a 2xx response; 4xx bodies become the matching error."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if 200 <= response.status < 300:
        if not isinstance(body, dict):
            raise (UnknownOutcome if mutating else TransientError)(
                "simulator sent a 2xx without a JSON object", code="MALFORMED_RESPONSE",
                http_status=response.status)
        return body
    error = body.get("error") if isinstance(body, dict) else None
    code = str_field(error, "code") if isinstance(error, dict) else ""
    message = str_field(error, "message") if isinstance(error, dict) else ""
    message = message or f"simulator refused the request (HTTP {response.status})"
    if response.status == 409:
        # The reference or idempotency key exists with other parameters: a caller bug, and
        # the original may well have moved money.
        raise UnknownOutcome(message, code=code or "CONFLICT", http_status=409)
    if response.status == 404:
        raise ConnectorError(message, code=code or "NOT_FOUND", http_status=404)
    raise Declined(message, code=code or f"HTTP_{response.status}", http_status=response.status)


def _payment_view(body: Mapping[str, Any], attempt_id: str) -> ConnectorPayment:
    payment_id = str_field(body, "id")
    if not payment_id:
        raise UnknownOutcome("simulator payment without an id", code="MALFORMED_RESPONSE")
    raw = str_field(body, "status")
    status = map_payment_status(raw)
    amount_minor = int_field(body, "amount_minor")
    captured = None
    if status == PspStatus.SUCCEEDED and amount_minor is not None:
        captured = Money(amount_minor, str_field(body, "currency") or "INR")
    return ConnectorPayment(
        connector_payment_id=payment_id, status=status,
        redirect_url=str_field(body, "checkout_url"), raw_status=raw,
        error_code=str_field(body, "failure_code"),
        error_message=str_field(body, "failure_message"),
        amount_captured=captured,
        references={ATTEMPT_ID_REFERENCE: str_field(body, "reference") or attempt_id},
    )


def _refund_view(body: Mapping[str, Any]) -> ConnectorRefund:
    refund_id = str_field(body, "id")
    if not refund_id:
        raise UnknownOutcome("simulator refund without an id", code="MALFORMED_RESPONSE")
    raw = str_field(body, "status")
    return ConnectorRefund(connector_refund_id=refund_id, status=map_refund_status(raw),
                           raw_status=raw, error_code=str_field(body, "failure_code"),
                           error_message=str_field(body, "failure_message"))
