"""Cashfree PG connector (API version 2023-08-01): orders, payments, refunds, webhooks.

Identity: the Cashfree `order_id` is our attempt id, so `connector_payment_id` is known before
the call and a retried create can never make a second order: Cashfree refuses a duplicate
order_id, and on that refusal we read the existing order instead. Every POST also carries an
`x-idempotency-key` derived from our id (a UUID, as Cashfree asks), so the executor may retry
it. The same holds for refunds (`refund_id` = our refund id).

redirect_url: Cashfree returns no URL, only `payment_session_id`, which its JS SDK turns into
the hosted checkout. We return a Triveni-hosted page,
`{checkout_base_url}/checkout/cashfree/{order_id}?payment_session_id=…&mode=sandbox|production`,
that runs the SDK (see checkout.py for the page). `checkout_base_url` is the account option of
that name, or else the origin of the webhook URL (our public base). The session id and mode are
kept in `references` as well.

Credentials: `client_id`, `client_secret`. Options: `checkout_base_url`, `environment`
(`sandbox` or `production`; default: guessed from base_url).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

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
    RateLimited,
    RefundInput,
    TransientError,
    Transport,
    UnknownOutcome,
    WebhookEvent,
)
from server.connectors.cashfree import webhooks
from server.connectors.cashfree.models import (
    API_VERSION,
    CHECKOUT_PATH,
    DUPLICATE_ID_HTTP_STATUS,
    ORDER_STATUS_MAP,
    CashfreeError,
    CashfreeOrder,
    CashfreePayment,
    CashfreeRefund,
    parse_json,
)
from server.domain.money import Money

__all__ = ["CashfreeConnector"]

# Namespace for the deterministic x-idempotency-key UUIDs (uuid5 of our attempt/refund id).
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d8a52-2b0e-5c8e-9a55-0c1f3b7d9e21")
_AMOUNT_SENTINEL = "__triveni_amount__"
_CUSTOMER_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# Cashfree's order_meta.payment_methods codes for our method families.
_PAYMENT_METHODS = {"upi": "upi", "card": "cc,dc", "netbanking": "nb", "wallet": "app"}
# The idempotency_error status: the key is being processed or was used with another body.
_IDEMPOTENCY_ERROR_STATUS = 422


class CashfreeConnector:
    """Stateless translator for Cashfree PG."""

    psp = "cashfree"

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """Create an order (order_id = attempt id); REQUIRES_ACTION with our checkout page."""
        checkout_base = _checkout_base_url(account, data.webhook_url)
        request = HttpRequest(
            method="POST",
            url=_url(account, "orders"),
            headers=_headers(account, idempotency_key=data.attempt_id),
            body=_order_body(data),
            safe_to_retry=True,  # order_id is unique at Cashfree + x-idempotency-key
            operation="create_payment",
        )
        response = await transport.send(account, request)
        if response.status in (DUPLICATE_ID_HTTP_STATUS, _IDEMPOTENCY_ERROR_STATUS):
            # A retry of a create that already reached Cashfree: read that order, never a 2nd.
            order = await self._fetch_order(transport, account, data.attempt_id)
            if order is None:
                # e.g. the first request is still being processed under the same key.
                raise _unknown_after(response)
            if order.amount is not None and order.amount != data.amount:
                raise UnknownOutcome(
                    f"cashfree order {data.attempt_id} exists with another amount",
                    code="order_amount_mismatch", http_status=response.status,
                )
        else:
            order = CashfreeOrder.from_json(_success_body(response, mutating=True))
        if not order.order_id:
            order = CashfreeOrder(data.attempt_id, order.cf_order_id, order.order_status,
                                  order.payment_session_id, order.amount)
        if order.order_status == "ACTIVE":
            payments: list[CashfreePayment] = []
        else:
            payments = await self._fetch_payments(transport, account, order.order_id)
        redirect = _redirect_url(checkout_base, account, order)
        return _payment_view(order, payments, redirect, account)

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """Read the order and its payments; the order is the source of truth."""
        order = await self._fetch_order(transport, account, connector_payment_id)
        if order is None:
            # The create never reached Cashfree: no session exists, so no one can ever pay it.
            return ConnectorPayment(
                connector_payment_id=connector_payment_id, status=PspStatus.FAILED,
                raw_status="NOT_FOUND", error_code="ORDER_NOT_FOUND",
                error_message="Cashfree has no order with this id",
            )
        payments: list[CashfreePayment] = []
        if order.order_status not in ("EXPIRED", "TERMINATED"):
            payments = await self._fetch_payments(transport, account, order.order_id)
        return _payment_view(order, payments, references.get("redirect_url", ""), account)

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """POST a refund with refund_id = our refund id; a duplicate reads the existing one."""
        payload: dict[str, Any] = {
            "refund_amount": _AMOUNT_SENTINEL,
            "refund_id": data.refund_id,
        }
        if len(data.reason.strip()) >= 3:
            payload["refund_note"] = data.reason.strip()[:100]
        request = HttpRequest(
            method="POST",
            url=_url(account, "orders", data.connector_payment_id, "refunds"),
            headers=_headers(account, idempotency_key=data.refund_id),
            body=_json_with_amount(payload, data.amount),
            safe_to_retry=True,  # refund_id is unique per order + x-idempotency-key
            operation="refund",
        )
        response = await transport.send(account, request)
        if response.status in (DUPLICATE_ID_HTTP_STATUS, _IDEMPOTENCY_ERROR_STATUS):
            existing = await self._fetch_refund(transport, account, data)
            if existing is None:
                raise _unknown_after(response)
            return _refund_view(existing)
        return _refund_view(CashfreeRefund.from_json(_success_body(response, mutating=True)))

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """GET the refund by our refund id (which is also connector_refund_id)."""
        refund = await self._fetch_refund(transport, account, data, connector_refund_id)
        if refund is None:
            raise Declined(f"cashfree has no refund {connector_refund_id or data.refund_id}",
                           code="refund_not_found", http_status=404)
        return _refund_view(refund)

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify (HMAC-SHA256, constant time, ±5 min) BEFORE parsing; see webhooks.py."""
        return webhooks.parse_webhook(account, headers, body, now)

    # ---- reads -------------------------------------------------------------------------

    async def _fetch_order(
        self, transport: Transport, account: ConnectorAccount, order_id: str
    ) -> CashfreeOrder | None:
        response = await transport.send(account, HttpRequest(
            method="GET", url=_url(account, "orders", order_id), headers=_headers(account),
            safe_to_retry=True, operation="get_status",
        ))
        if response.status == 404:
            return None
        return CashfreeOrder.from_json(_success_body(response, mutating=False))

    async def _fetch_payments(
        self, transport: Transport, account: ConnectorAccount, order_id: str
    ) -> list[CashfreePayment]:
        response = await transport.send(account, HttpRequest(
            method="GET", url=_url(account, "orders", order_id, "payments"),
            headers=_headers(account), safe_to_retry=True, operation="get_payments",
        ))
        if response.status == 404:
            return []
        body = _success_json(response, mutating=False)
        if not isinstance(body, list):
            raise TransientError("cashfree payments list is not a JSON array",
                                 code="malformed_response", http_status=response.status)
        return [CashfreePayment.from_json(item, order_id) for item in body
                if isinstance(item, dict)]

    async def _fetch_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        refund_id: str = "",
    ) -> CashfreeRefund | None:
        response = await transport.send(account, HttpRequest(
            method="GET",
            url=_url(account, "orders", data.connector_payment_id, "refunds",
                     refund_id or data.refund_id),
            headers=_headers(account), safe_to_retry=True, operation="get_refund",
        ))
        if response.status == 404:
            return None
        return CashfreeRefund.from_json(_success_body(response, mutating=False))


# ---- request building ------------------------------------------------------------------

def _url(account: ConnectorAccount, *segments: str) -> str:
    path = "/".join(quote(segment, safe="") for segment in segments)
    return f"{account.base_url.rstrip('/')}/{path}"


def _headers(account: ConnectorAccount, idempotency_key: str = "") -> dict[str, str]:
    headers = {
        "x-client-id": account.credential("client_id"),
        "x-client-secret": account.credential("client_secret"),
        "x-api-version": API_VERSION,
        "content-type": "application/json",
        "accept": "application/json",
    }
    if idempotency_key:
        headers["x-idempotency-key"] = str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, idempotency_key))
    return headers


def _json_with_amount(payload: Mapping[str, Any], amount: Money) -> bytes:
    """JSON with the amount as a number literal formatted once ('1500.00', not 1500.0)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text.replace(f'"{_AMOUNT_SENTINEL}"', amount.to_major_string(), 1).encode()


def _order_body(data: CreatePaymentInput) -> bytes:
    customer: dict[str, str] = {
        "customer_id": _customer_id(data),
        "customer_phone": _phone(data.customer_phone),
    }
    if data.customer_email:
        customer["customer_email"] = data.customer_email
    if data.customer_name:
        customer["customer_name"] = data.customer_name
    meta: dict[str, str] = {"notify_url": data.webhook_url}
    if data.return_url:
        meta["return_url"] = data.return_url
    if data.method in _PAYMENT_METHODS:
        meta["payment_methods"] = _PAYMENT_METHODS[data.method]
    payload: dict[str, Any] = {
        "order_id": data.attempt_id,
        "order_amount": _AMOUNT_SENTINEL,
        "order_currency": data.amount.currency,
        "customer_details": customer,
        "order_meta": meta,
        "order_tags": {"payment_id": data.payment_id},
    }
    if len(data.description.strip()) >= 3:
        payload["order_note"] = data.description.strip()[:200]
    return _json_with_amount(payload, data.amount)


def _customer_id(data: CreatePaymentInput) -> str:
    """3-50 chars of [A-Za-z0-9_-]; our payment id when the merchant gave none usable."""
    cleaned = _CUSTOMER_ID_CHARS.sub("_", data.customer_id)[:50]
    return cleaned if len(cleaned) >= 3 else _CUSTOMER_ID_CHARS.sub("_", data.payment_id)[:50]


def _phone(phone: str) -> str:
    """'+91 98765-43210' → '9876543210' (Cashfree wants the 10-digit national number)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) == 12 and digits.startswith("91"):
        return digits[2:]
    if len(digits) == 11 and digits.startswith("0"):
        return digits[1:]
    return digits


def _checkout_base_url(account: ConnectorAccount, webhook_url: str) -> str:
    base = account.options.get("checkout_base_url", "")
    if not base and webhook_url:
        parts = urlsplit(webhook_url)
        base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    if not base:
        raise Misconfigured(
            f"account {account.name}: no checkout_base_url option and no webhook URL to "
            "derive the Triveni checkout page from"
        )
    return base.rstrip("/")


def _mode(account: ConnectorAccount) -> str:
    configured = account.options.get("environment", "")
    if configured:
        return configured
    return "production" if "api.cashfree.com" in account.base_url else "sandbox"


def _redirect_url(base: str, account: ConnectorAccount, order: CashfreeOrder) -> str:
    query = urlencode({"payment_session_id": order.payment_session_id, "mode": _mode(account)})
    return f"{base}{CHECKOUT_PATH}/{quote(order.order_id, safe='')}?{query}"


# ---- response reading ------------------------------------------------------------------

def _success_json(response: HttpResponse, *, mutating: bool) -> Any:
    if not 200 <= response.status < 300:
        raise _error_for(response)
    try:
        return parse_json(response.body)
    except ValueError as exc:
        # A 2xx we cannot read: for a POST the PSP may have acted, so the outcome is unknown.
        kind = UnknownOutcome if mutating else TransientError
        raise kind("cashfree returned a body that is not JSON", code="malformed_response",
                   http_status=response.status) from exc


def _success_body(response: HttpResponse, *, mutating: bool) -> dict[str, Any]:
    body = _success_json(response, mutating=mutating)
    if not isinstance(body, dict):
        kind = UnknownOutcome if mutating else TransientError
        raise kind("cashfree returned a body that is not a JSON object",
                   code="malformed_response", http_status=response.status)
    return body


def _error_for(response: HttpResponse) -> ConnectorError:
    """Classify a non-2xx answer into the connector error tree (reference §3.4)."""
    status = response.status
    error = CashfreeError.from_body(response.body)
    code = error.code or error.type or f"http_{status}"
    message = f"cashfree HTTP {status}: {error.message or error.type or 'no message'}"
    if status == 429:
        return RateLimited(message, retry_after_seconds=_retry_after(response.headers),
                           code=code, http_status=status)
    if status in (401, 403):
        return Misconfigured(message, code=code, http_status=status)
    if status >= 500 or status == 408:
        return TransientError(message, code=code, http_status=status)
    return Declined(message, code=code, http_status=status)


def _unknown_after(response: HttpResponse) -> UnknownOutcome:
    error = _error_for(response)
    return UnknownOutcome(f"{error.message}; the existing object could not be read",
                          code=error.code, http_status=response.status)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in ("x-ratelimit-retry", "retry-after"):
        try:
            return float(lowered[name])
        except (KeyError, ValueError):
            continue
    return None


def _payment_view(order: CashfreeOrder, payments: Sequence[CashfreePayment], redirect_url: str,
                  account: ConnectorAccount) -> ConnectorPayment:
    """The order and its payments → one ConnectorPayment (status map in models.py)."""
    succeeded = [p for p in payments if p.status is PspStatus.SUCCEEDED]
    newest = max(payments, key=_payment_order, default=None)
    deciding = succeeded[0] if succeeded else newest
    if order.order_status == "PAID" or succeeded:
        status = PspStatus.SUCCEEDED
    elif order.order_status == "ACTIVE":
        status = deciding.status if deciding else PspStatus.REQUIRES_ACTION
    else:
        status = ORDER_STATUS_MAP.get(order.order_status, PspStatus.PENDING)
    references = {"order_id": order.order_id, "cf_order_id": order.cf_order_id,
                  "payment_session_id": order.payment_session_id,
                  "checkout_mode": _mode(account)}
    if redirect_url:
        references["redirect_url"] = redirect_url
    error_code = error_message = ""
    if deciding is not None:
        references["cf_payment_id"] = deciding.cf_payment_id
        references["payment_status"] = deciding.payment_status
        if status is PspStatus.FAILED:
            error_code = deciding.error_code or deciding.payment_status
            error_message = deciding.error_description or deciding.payment_message
    if status is PspStatus.FAILED and not error_code:
        error_code = order.order_status
    captured = None
    if status is PspStatus.SUCCEEDED:
        captured = (succeeded[0].amount if succeeded else None) or order.amount
    return ConnectorPayment(
        connector_payment_id=order.order_id,
        status=status,
        redirect_url=redirect_url if status is PspStatus.REQUIRES_ACTION else "",
        raw_status=order.order_status,
        error_code=error_code,
        error_message=error_message,
        amount_captured=captured,
        references={key: value for key, value in references.items() if value},
    )


def _payment_order(payment: CashfreePayment) -> tuple[str, int]:
    cf_id = int(payment.cf_payment_id) if payment.cf_payment_id.isdigit() else 0
    return (payment.payment_time, cf_id)


def _refund_view(refund: CashfreeRefund) -> ConnectorRefund:
    failed = refund.status is PspStatus.FAILED
    return ConnectorRefund(
        connector_refund_id=refund.refund_id,
        status=refund.status,
        raw_status=refund.refund_status,
        error_code=refund.refund_status if failed else "",
        error_message=refund.status_description if failed else "",
    )
