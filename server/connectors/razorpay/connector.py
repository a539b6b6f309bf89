"""Razorpay connector: payment links (default) or orders, status, refunds, webhooks.

Auth: HTTP Basic `key_id:key_secret` (credentials `key_id`, `key_secret`); JSON bodies;
amounts in integer paise. `account.base_url` is `https://api.razorpay.com` (a trailing `/v1`
is tolerated).

Checkout (`account.options["checkout"]`):
- `payment_link` (default): POST /v1/payment_links with reference_id = our attempt id,
  callback_url = return_url and notify off. `connector_payment_id` is the link id (plink_…) and
  `redirect_url` its short_url, a hosted page like Instamojo's longurl. An order is the wrong
  primary id here: Razorpay creates the link's order only when the customer opens it, so it
  does not exist when we must store a reference. The order id and the captured payment id
  (pay_…) are kept in `references` once a status read has seen them.
- `order`: POST /v1/orders with receipt = our attempt id, for merchants that open Checkout.js
  themselves with the order id. `connector_payment_id` is the order id; no redirect_url.

Retries and unknown outcomes: Razorpay refuses a second link with the same reference_id [P],
so link creation is safe to retry, and a refusal is resolved by reading the existing link by
reference_id; a status sync that has only our attempt id does the same lookup (orders: by
receipt [P]) and raises a ConnectorError with http_status 404 when nothing is found. Order
creation is not retried automatically. Refunds send `X-Refund-Idempotency: <our refund id>`
and are retried safely; our refund id is also the refund's receipt, so a refund whose
response was lost is found again.

Capture: the account must auto-capture (Razorpay's default for links and the usual order
setting); an authorized payment stays PENDING until captured.
"""

from __future__ import annotations

import base64
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
from server.connectors.razorpay import models, webhooks
from server.connectors.razorpay.models import (
    NOTE_ATTEMPT_ID,
    NOTE_PAYMENT_ID,
    NOTE_REFUND_ID,
    ORDER_RECEIPT_IS_UNIQUE,
    ORDER_STATUS_MAP,
    PAYMENT_LINK_REFERENCE_ID_IS_UNIQUE,
    PAYMENT_LINK_STATUS_MAP,
    REFUND_IDEMPOTENCY_HEADER,
    REFUND_STATUS_MAP,
    map_payment_status,
    parse_error,
    parse_json_object,
)
from server.domain.money import Money

__all__ = ["RazorpayConnector"]

ATTEMPT_ID_REFERENCE = "attempt_id"
ORDER_ID_REFERENCE = "razorpay_order_id"
PAYMENT_ID_REFERENCE = "razorpay_payment_id"
_CHECKOUT_MODES = frozenset({"payment_link", "order"})


class RazorpayConnector:
    """Translator for Razorpay's Orders, Payment Links, Payments and Refunds APIs."""

    psp = "razorpay"

    # ---- create --------------------------------------------------------------------------

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """Create a payment link (hosted) or an order (Checkout.js), keyed by our attempt id."""
        notes = {NOTE_PAYMENT_ID: data.payment_id, NOTE_ATTEMPT_ID: data.attempt_id}
        if _checkout_mode(account) == "order":
            response = await transport.send(account, HttpRequest(
                method="POST", url=_url(account, models.ORDERS_PATH), headers=_headers(account),
                body=_json({"amount": data.amount.amount_minor,
                            "currency": data.amount.currency,
                            "receipt": data.attempt_id[:models.RECEIPT_MAX_CHARS],
                            "notes": notes}),
                safe_to_retry=ORDER_RECEIPT_IS_UNIQUE, operation="create_payment"))
            order = _success(response, mutating=True, creating=True)
            return _order_view(order, [], data.attempt_id)

        customer = {"name": data.customer_name, "email": data.customer_email,
                    "contact": data.customer_phone}
        payload: dict[str, Any] = {
            "amount": data.amount.amount_minor,
            "currency": data.amount.currency,
            "accept_partial": False,
            "reference_id": data.attempt_id[:models.REFERENCE_ID_MAX_CHARS],
            "description": data.description[:2048],
            "customer": {k: v for k, v in customer.items() if v},
            "notify": {"sms": False, "email": False},
            "reminder_enable": False,
            "notes": notes,
        }
        if data.return_url:
            payload["callback_url"] = data.return_url
            payload["callback_method"] = "get"
        response = await transport.send(account, HttpRequest(
            method="POST", url=_url(account, models.PAYMENT_LINKS_PATH),
            headers=_headers(account), body=_json(payload),
            safe_to_retry=PAYMENT_LINK_REFERENCE_ID_IS_UNIQUE, operation="create_payment"))
        if response.status == 400:
            # Most likely our own earlier try (a retry after a lost response): reuse that link.
            existing = await self._find_link(transport, account, data.attempt_id)
            if existing is not None and existing.get("amount") == data.amount.amount_minor:
                return await self._link_view(transport, account, existing, data.attempt_id)
        link = _success(response, mutating=True, creating=True)
        return await self._link_view(transport, account, link, data.attempt_id)

    # ---- status --------------------------------------------------------------------------

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """Read the link / order (and its payments); by our attempt id when that is all we have."""
        attempt_id = references.get(ATTEMPT_ID_REFERENCE, "")
        if not connector_payment_id or connector_payment_id == attempt_id:
            return await self._find_by_attempt(transport, account, attempt_id)
        if connector_payment_id.startswith("order_"):
            order = await self._get(transport, account, models.ORDERS_PATH,
                                    connector_payment_id, operation="get_payment")
            return _order_view(order, await self._order_payments(
                transport, account, connector_payment_id), attempt_id)
        if connector_payment_id.startswith("pay_"):
            payment = await self._get(transport, account, models.PAYMENTS_PATH,
                                      connector_payment_id, operation="get_payment")
            return _payment_view(payment, attempt_id)
        link = await self._get(transport, account, models.PAYMENT_LINKS_PATH,
                               connector_payment_id, operation="get_payment")
        return await self._link_view(transport, account, link, attempt_id)

    async def _find_by_attempt(self, transport: Transport, account: ConnectorAccount,
                               attempt_id: str) -> ConnectorPayment:
        if not attempt_id:
            raise Misconfigured("get_payment needs a connector payment id or an attempt_id")
        if _checkout_mode(account) == "payment_link":
            link = await self._find_link(transport, account, attempt_id)
            if link is not None:
                return await self._link_view(transport, account, link, attempt_id)
        else:
            query = urlencode({models.ORDER_LOOKUP_PARAM: attempt_id})
            found = _success(await transport.send(account, HttpRequest(
                method="GET", url=f"{_url(account, models.ORDERS_PATH)}?{query}",
                headers=_headers(account), safe_to_retry=True, operation="find_payment")),
                mutating=False)
            orders = [o for o in _items(found) if o.get("receipt") == attempt_id]
            if orders:
                order = orders[0]
                return _order_view(order, await self._order_payments(
                    transport, account, _text(order, "id")), attempt_id)
        raise ConnectorError(f"Razorpay has nothing for attempt {attempt_id}",
                             code="NOT_FOUND", http_status=404)

    async def _find_link(self, transport: Transport, account: ConnectorAccount,
                         attempt_id: str) -> dict[str, Any] | None:
        query = urlencode({models.PAYMENT_LINK_LOOKUP_PARAM: attempt_id})
        found = _success(await transport.send(account, HttpRequest(
            method="GET", url=f"{_url(account, models.PAYMENT_LINKS_PATH)}?{query}",
            headers=_headers(account), safe_to_retry=True, operation="find_payment")),
            mutating=False)
        links = found.get(models.PAYMENT_LINK_LIST_KEY)
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("reference_id") == attempt_id:
                return link
        return None

    async def _link_view(self, transport: Transport, account: ConnectorAccount,
                         link: Mapping[str, Any], attempt_id: str) -> ConnectorPayment:
        link_id = _text(link, "id")
        if not link_id:
            raise UnknownOutcome("Razorpay payment link without an id", code="MALFORMED_RESPONSE")
        raw = _text(link, "status")
        status = PAYMENT_LINK_STATUS_MAP.get(raw, PspStatus.PENDING)
        references = _refs(attempt_id or _text(link, "reference_id"),
                           order_id=_text(link, "order_id"))
        tries = [p for p in link.get("payments") or [] if isinstance(p, dict)]
        if not tries and _text(link, "order_id"):
            # No payments summary on the link: read the tries from the link's order instead.
            tries = [{**p, "payment_id": _text(p, "id")} for p in await self._order_payments(
                transport, account, _text(link, "order_id"))]
            tries.sort(key=lambda p: p.get("created_at") or 0)
        captured = next((p for p in tries if p.get("status") == "captured"), None)
        amount_paid = link.get("amount_paid")
        paid_money = Money(amount_paid, _text(link, "currency") or "INR") \
            if isinstance(amount_paid, int) and amount_paid > 0 else None
        redirect = _text(link, "short_url")
        if status == PspStatus.SUCCEEDED or captured is not None:
            if captured is not None:
                references[PAYMENT_ID_REFERENCE] = _text(captured, "payment_id")
            return ConnectorPayment(connector_payment_id=link_id, status=PspStatus.SUCCEEDED,
                                    redirect_url=redirect, raw_status=raw,
                                    amount_captured=paid_money, references=references)
        if status == PspStatus.REQUIRES_ACTION and tries:
            newest = tries[-1]
            if newest.get("status") == "failed":
                # The summary carries no reason; the payment itself does.
                payment = await self._get(transport, account, models.PAYMENTS_PATH,
                                          _text(newest, "payment_id"), operation="get_payment")
                view = _payment_view(payment, attempt_id)
                return ConnectorPayment(connector_payment_id=link_id, status=PspStatus.FAILED,
                                        redirect_url=redirect, raw_status=raw,
                                        error_code=view.error_code,
                                        error_message=view.error_message,
                                        references=references)
            if newest.get("status") in ("authorized", "created"):
                status = PspStatus.PENDING
        return ConnectorPayment(connector_payment_id=link_id, status=status,
                                redirect_url=redirect, raw_status=raw, references=references)

    async def _order_payments(self, transport: Transport, account: ConnectorAccount,
                              order_id: str) -> list[dict[str, Any]]:
        found = await self._get(transport, account, models.ORDERS_PATH, order_id, "payments",
                                operation="get_payment")
        return _items(found)

    # ---- refunds -------------------------------------------------------------------------

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """POST /v1/payments/{pay_id}/refund with X-Refund-Idempotency = our refund id."""
        payment_id = await self._captured_payment_id(transport, account, data)
        notes = {NOTE_REFUND_ID: data.refund_id,
                 NOTE_ATTEMPT_ID: data.references.get(ATTEMPT_ID_REFERENCE, ""),
                 "reason": data.reason[:models.NOTE_VALUE_MAX_CHARS]}
        payload = {"amount": data.amount.amount_minor,
                   "speed": account.options.get("refund_speed", "normal"),
                   "receipt": data.refund_id[:models.RECEIPT_MAX_CHARS],
                   "notes": {k: v for k, v in notes.items() if v}}
        headers = {**_headers(account), REFUND_IDEMPOTENCY_HEADER: data.refund_id}
        response = await transport.send(account, HttpRequest(
            method="POST", url=_url(account, models.PAYMENTS_PATH, payment_id, "refund"),
            headers=headers, body=_json(payload), safe_to_retry=True, operation="refund"))
        return _refund_view(_success(response, mutating=True))

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """GET the refund; without its id, find it among the payment's refunds by receipt."""
        if connector_refund_id:
            return _refund_view(await self._get(transport, account, models.REFUNDS_PATH,
                                                connector_refund_id, operation="get_refund"))
        payment_id = await self._captured_payment_id(transport, account, data)
        found = await self._get(transport, account, models.PAYMENTS_PATH, payment_id, "refunds",
                                operation="find_refund")
        for refund in _items(found):
            notes = refund.get("notes")
            if refund.get("receipt") == data.refund_id[:models.RECEIPT_MAX_CHARS] or (
                    isinstance(notes, dict) and notes.get(NOTE_REFUND_ID) == data.refund_id):
                return _refund_view(refund)
        raise ConnectorError(f"Razorpay has no refund {data.refund_id}", code="NOT_FOUND",
                             http_status=404)

    async def _captured_payment_id(self, transport: Transport, account: ConnectorAccount,
                                   data: RefundInput) -> str:
        payment_id = data.references.get(PAYMENT_ID_REFERENCE, "")
        if not payment_id and data.connector_payment_id.startswith("pay_"):
            payment_id = data.connector_payment_id
        if not payment_id:
            current = await self.get_payment(transport, account, data.connector_payment_id,
                                             data.references)
            payment_id = current.references.get(PAYMENT_ID_REFERENCE, "")
        if not payment_id:
            raise Declined(f"{data.connector_payment_id} has no captured payment to refund",
                           code="NOT_REFUNDABLE")
        return payment_id

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify X-Razorpay-Signature (HMAC-SHA256 of the raw body, constant time), then parse."""
        return webhooks.parse_webhook(account, headers, body, now)

    # ---- plumbing ------------------------------------------------------------------------

    async def _get(self, transport: Transport, account: ConnectorAccount, path: str,
                   *segments: str, operation: str) -> dict[str, Any]:
        response = await transport.send(account, HttpRequest(
            method="GET", url=_url(account, path, *segments), headers=_headers(account),
            safe_to_retry=True, operation=operation))
        return _success(response, mutating=False)


# ---- helpers ---------------------------------------------------------------------------------

def _checkout_mode(account: ConnectorAccount) -> str:
    mode = account.options.get("checkout", "payment_link")
    if mode not in _CHECKOUT_MODES:
        raise Misconfigured(f"account {account.name}: options.checkout must be one of "
                            f"{sorted(_CHECKOUT_MODES)}")
    return mode


def _url(account: ConnectorAccount, path: str, *segments: str) -> str:
    base = account.base_url.rstrip("/")
    base = base.removesuffix("/v1")
    return base + path + "".join(f"/{quote(s, safe='')}" for s in segments)


def _headers(account: ConnectorAccount) -> dict[str, str]:
    pair = f"{account.credential('key_id')}:{account.credential('key_secret')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"),
            "Content-Type": "application/json", "Accept": "application/json"}


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _items(collection: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = collection.get("items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _refs(attempt_id: str, **ids: str) -> dict[str, str]:
    refs = {ATTEMPT_ID_REFERENCE: attempt_id} if attempt_id else {}
    if ids.get("order_id"):
        refs[ORDER_ID_REFERENCE] = ids["order_id"]
    return refs


def _success(response: HttpResponse, *, mutating: bool, creating: bool = False
             ) -> dict[str, Any]:
    """The JSON object of a 2xx; Razorpay's error shape mapped onto the contract's errors."""
    data = parse_json_object(response.body)
    if 200 <= response.status < 300:
        if data is None:
            raise (UnknownOutcome if mutating else TransientError)(
                "Razorpay answered 2xx without a JSON object", code="MALFORMED_RESPONSE",
                http_status=response.status)
        return data
    error = parse_error(response.body)
    message = error.description or f"Razorpay refused the request (HTTP {response.status})"
    code = error.reason or error.code or f"HTTP_{response.status}"
    if response.status == 404:
        if creating:
            raise Misconfigured(f"Razorpay has no such endpoint ({message}); check base_url",
                                code="NOT_FOUND", http_status=404)
        raise ConnectorError(message, code="NOT_FOUND", http_status=404)
    if response.status == 409:
        # A request with this idempotency key is still being processed.
        raise UnknownOutcome(message, code=code, http_status=409)
    if error.code == "GATEWAY_ERROR":
        raise TransientError(message, code=code, http_status=response.status)
    if error.code in ("SERVER_ERROR", "SERVICE_UNAVAILABLE"):
        raise (UnknownOutcome if mutating else TransientError)(
            message, code=code, http_status=response.status)
    raise Declined(message, code=code, http_status=response.status)


def _payment_view(payment: Mapping[str, Any], attempt_id: str) -> ConnectorPayment:
    status = map_payment_status(payment)
    refs = _refs(attempt_id, order_id=_text(payment, "order_id"))
    payment_id = _text(payment, "id")
    if payment_id:
        refs[PAYMENT_ID_REFERENCE] = payment_id
    amount = payment.get("amount")
    failed = status == PspStatus.FAILED
    return ConnectorPayment(
        connector_payment_id=payment_id, status=status, raw_status=_text(payment, "status"),
        error_code=(_text(payment, "error_reason") or _text(payment, "error_code")
                    or "payment_failed") if failed else "",
        error_message=_text(payment, "error_description") if failed else "",
        amount_captured=Money(amount, _text(payment, "currency") or "INR")
        if status == PspStatus.SUCCEEDED and isinstance(amount, int) else None,
        references=refs,
    )


def _order_view(order: Mapping[str, Any], payments: list[dict[str, Any]],
                attempt_id: str) -> ConnectorPayment:
    order_id = _text(order, "id")
    if not order_id:
        raise UnknownOutcome("Razorpay order without an id", code="MALFORMED_RESPONSE")
    raw = _text(order, "status")
    refs = _refs(attempt_id or _text(order, "receipt"), order_id=order_id)
    views = [_payment_view(p, attempt_id) for p in payments]
    captured = next((v for v in views if v.status == PspStatus.SUCCEEDED), None)
    if captured is not None:
        return ConnectorPayment(
            connector_payment_id=order_id, status=PspStatus.SUCCEEDED, raw_status=raw,
            amount_captured=captured.amount_captured,
            references={**refs, **captured.references, ORDER_ID_REFERENCE: order_id})
    status = ORDER_STATUS_MAP.get(raw, PspStatus.PENDING)
    if status != PspStatus.SUCCEEDED and views:
        if any(v.status == PspStatus.PENDING for v in views):
            status = PspStatus.PENDING
        else:
            newest = max(payments, key=lambda p: p.get("created_at") or 0)
            failed = _payment_view(newest, attempt_id)
            return ConnectorPayment(
                connector_payment_id=order_id, status=PspStatus.FAILED, raw_status=raw,
                error_code=failed.error_code, error_message=failed.error_message,
                references=refs)
    return ConnectorPayment(connector_payment_id=order_id, status=status, raw_status=raw,
                            references=refs)


def _refund_view(refund: Mapping[str, Any]) -> ConnectorRefund:
    refund_id = _text(refund, "id")
    if not refund_id:
        raise UnknownOutcome("Razorpay refund without an id", code="MALFORMED_RESPONSE")
    raw = _text(refund, "status")
    return ConnectorRefund(connector_refund_id=refund_id,
                           status=REFUND_STATUS_MAP.get(raw, PspStatus.PENDING), raw_status=raw)
