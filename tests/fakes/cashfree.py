"""A fake Cashfree PG (API version 2023-08-01) for contract tests, served by `serve_app`.

It implements the endpoints Triveni uses, under `/pg`: create/read orders, list payments,
create/read refunds; the headers auth and x-api-version check; rupee amounts as JSON numbers;
duplicate order_id/refund_id → 409; x-idempotency-key replay (422 on a changed body); the
error envelope `{message, code, type}` and rate-limit headers. Tests drive the customer side
(`pay`, `expire`, `settle_refund`), inject faults per operation (`inject`: 5xx, 429, slow
answers before or after acting), and build/deliver signed webhooks, including duplicates and
out-of-order batches. Signatures are computed here from the reference, never by importing
the connector.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeGuard

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["CashfreeFake", "Delivery", "Fault", "RecordedRequest"]

API_VERSION = "2023-08-01"
IST = timezone(timedelta(hours=5, minutes=30))
_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{3,45}$")
_DECIMAL_MARK = re.compile(r'"__dec__(-?[0-9.]+)__"')
OPERATIONS = ("create_order", "get_order", "get_payments", "create_refund", "get_refund")


def _dumps(payload: Any) -> bytes:
    """JSON with Decimals written as number literals exactly as stored (170.00 stays 170.00)."""
    def mark(value: Any) -> str:
        if isinstance(value, Decimal):
            return f"__dec__{value}__"
        raise TypeError(type(value).__name__)

    return _DECIMAL_MARK.sub(r"\1", json.dumps(payload, default=mark)).encode()


def _now_ist() -> str:
    return datetime.now(IST).replace(microsecond=0).isoformat()


@dataclass
class Fault:
    """One injected misbehaviour for the next request of an operation."""

    status: int | None = None  # answer with this HTTP status instead of acting
    delay: float = 0.0  # seconds to wait
    after: bool = False  # wait AFTER acting (the request took effect, the answer is late)
    retry_after: int = 7  # x-ratelimit-retry for 429s


@dataclass(frozen=True)
class RecordedRequest:
    operation: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One signed webhook delivery, ready to POST."""

    headers: dict[str, str]
    body: bytes


@dataclass
class _Order:
    entity: dict[str, Any]
    notify_url: str
    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)


class CashfreeFake:
    """State and behaviour of one fake Cashfree merchant account."""

    def __init__(self, client_id: str = "cf_app_test", client_secret: str = "cf_secret_test",
                 *, honour_idempotency_keys: bool = True) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.honour_idempotency_keys = honour_idempotency_keys
        self.orders: dict[str, _Order] = {}
        self.requests: list[RecordedRequest] = []
        self.orders_created: Counter[str] = Counter()
        self._faults: dict[str, list[Fault]] = {}
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}
        self._ids = itertools.count(5_000_000_001)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/pg/orders", self._create_order, methods=["POST"]),
            Route("/pg/orders/{order_id}", self._get_order, methods=["GET"]),
            Route("/pg/orders/{order_id}/payments", self._get_payments, methods=["GET"]),
            Route("/pg/orders/{order_id}/refunds", self._create_refund, methods=["POST"]),
            Route("/pg/orders/{order_id}/refunds/{refund_id}", self._get_refund,
                  methods=["GET"]),
        ])

    # ---- test controls -------------------------------------------------------------------

    def inject(self, operation: str, *, status: int | None = None, delay: float = 0.0,
               after: bool = False, times: int = 1, retry_after: int = 7) -> None:
        """Make the next `times` requests of `operation` misbehave."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation}")
        fault = Fault(status=status, delay=delay, after=after, retry_after=retry_after)
        with self._lock:
            self._faults.setdefault(operation, []).extend([fault] * times)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation == operation]

    def pay(self, order_id: str, outcome: str = "SUCCESS", *, group: str = "upi",
            amount: Decimal | None = None) -> dict[str, Any]:
        """The customer pays on the hosted checkout: one payment attempt with `outcome`."""
        with self._lock:
            order = self.orders[order_id]
            if order.entity["order_status"] != "ACTIVE":
                raise ValueError(f"order {order_id} is {order.entity['order_status']}")
            failed = outcome not in ("SUCCESS", "PENDING")
            payment: dict[str, Any] = {
                "cf_payment_id": next(self._ids),
                "order_id": order_id,
                "entity": "payment",
                "payment_status": outcome,
                "payment_amount": amount if amount is not None
                else order.entity["order_amount"],
                "payment_currency": order.entity["order_currency"],
                "payment_group": group,
                "payment_method": {"upi": {"channel": "collect", "upi_id": "9611199227@paytm"}},
                "payment_message": "Transaction successful" if not failed
                else "Payment failed at bank",
                "bank_reference": str(next(self._ids)) if not failed else None,
                "payment_time": _now_ist(),
                "error_details": None if not failed else {
                    "error_code": "TRANSACTION_DECLINED" if outcome == "FAILED"
                    else "USER_DROPPED",
                    "error_description": "issuer bank or payment service provider declined"
                    if outcome == "FAILED" else "user dropped and did not complete",
                    "error_reason": "bank_declined" if outcome == "FAILED" else "user_dropped",
                    "error_source": "customer",
                },
            }
            order.payments.append(payment)
            if outcome == "SUCCESS":
                order.entity["order_status"] = "PAID"
            return payment

    def expire(self, order_id: str) -> None:
        with self._lock:
            self.orders[order_id].entity["order_status"] = "EXPIRED"

    def settle_refund(self, order_id: str, refund_id: str, status: str = "SUCCESS") -> None:
        with self._lock:
            refund = self.orders[order_id].refunds[refund_id]
            refund["refund_status"] = status
            refund["status_description"] = "Refund processed" if status == "SUCCESS" \
                else "Refund failed at bank"
            refund["processed_at"] = _now_ist()
            refund["refund_arn"] = "ARN" + str(next(self._ids)) if status == "SUCCESS" else None

    def charges(self, order_id: str) -> int:
        """How many successful payments the order has (more than one is a double charge)."""
        return sum(1 for p in self.orders[order_id].payments
                   if p["payment_status"] == "SUCCESS")

    def notify_url(self, order_id: str) -> str:
        return self.orders[order_id].notify_url

    # ---- webhooks ------------------------------------------------------------------------

    def sign(self, timestamp: str, body: bytes, secret: str | None = None) -> str:
        """base64(HMAC-SHA256(client secret, timestamp + raw body)), reference §3.5."""
        key = (secret if secret is not None else self.client_secret).encode()
        return base64.b64encode(hmac.new(key, timestamp.encode() + body,
                                         hashlib.sha256).digest()).decode()

    def _delivery(self, payload: dict[str, Any], *, timestamp_ms: int | None,
                  secret: str | None, attempt: int) -> Delivery:
        body = _dumps(payload)
        timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        return Delivery(headers={
            "content-type": "application/json",
            "x-webhook-signature": self.sign(timestamp, body, secret),
            "x-webhook-timestamp": timestamp,
            "x-webhook-version": API_VERSION,
            "x-webhook-attempt": str(attempt),
        }, body=body)

    def payment_webhook(self, order_id: str, payment_index: int = -1, *,
                        timestamp_ms: int | None = None, secret: str | None = None,
                        attempt: int = 1) -> Delivery:
        """The PAYMENT_*_WEBHOOK Cashfree sends for one payment of the order."""
        with self._lock:
            order = self.orders[order_id]
            payment = dict(order.payments[payment_index])
            entity = order.entity
        kind = {"SUCCESS": "PAYMENT_SUCCESS_WEBHOOK", "FAILED": "PAYMENT_FAILED_WEBHOOK",
                "USER_DROPPED": "PAYMENT_USER_DROPPED_WEBHOOK"}[payment["payment_status"]]
        errors = payment.pop("error_details")
        payment.pop("entity")
        payment.pop("order_id")
        data: dict[str, Any] = {
            "order": {"order_id": order_id, "order_amount": entity["order_amount"],
                      "order_currency": entity["order_currency"],
                      "order_tags": entity["order_tags"]},
            "payment": payment,
            "customer_details": entity["customer_details"],
            "payment_gateway_details": {"gateway_name": "CASHFREE",
                                        "gateway_order_id": str(entity["cf_order_id"])},
        }
        if errors:
            data["error_details"] = errors
        payload = {"data": data, "event_time": _now_ist(), "type": kind}
        return self._delivery(payload, timestamp_ms=timestamp_ms, secret=secret,
                              attempt=attempt)

    def refund_webhook(self, order_id: str, refund_id: str, *, timestamp_ms: int | None = None,
                       secret: str | None = None, attempt: int = 1) -> Delivery:
        with self._lock:
            refund = dict(self.orders[order_id].refunds[refund_id])
        payload = {"data": {"refund": refund}, "event_time": _now_ist(),
                   "type": "REFUND_STATUS_WEBHOOK"}
        return self._delivery(payload, timestamp_ms=timestamp_ms, secret=secret,
                              attempt=attempt)

    def redeliver(self, delivery: Delivery) -> Delivery:
        """Cashfree's retry of a delivery: same body, fresh timestamp and signature."""
        attempt = int(delivery.headers.get("x-webhook-attempt", "1")) + 1
        payload = json.loads(delivery.body, parse_float=Decimal)
        return self._delivery(payload, timestamp_ms=None, secret=None, attempt=attempt)

    async def deliver(self, url: str, deliveries: Sequence[Delivery] | Delivery, *,
                      duplicate: bool = False, reverse: bool = False) -> list[int]:
        """POST deliveries to url (optionally each twice, or newest first); their statuses."""
        batch = [deliveries] if isinstance(deliveries, Delivery) else list(deliveries)
        if reverse:
            batch.reverse()
        if duplicate:
            batch = [d for item in batch for d in (item, self.redeliver(item))]
        statuses = []
        async with httpx.AsyncClient(timeout=5) as client:
            for delivery in batch:
                answer = await client.post(url, content=delivery.body, headers=delivery.headers)
                statuses.append(answer.status_code)
        return statuses

    # ---- HTTP plumbing -------------------------------------------------------------------

    def _error(self, status: int, message: str, code: str, kind: str,
               headers: dict[str, str] | None = None) -> Response:
        body = json.dumps({"message": message, "code": code, "type": kind}).encode()
        return Response(body, status, headers=headers, media_type="application/json")

    def _json(self, payload: Any, status: int = 200) -> Response:
        return Response(_dumps(payload), status, media_type="application/json")

    async def _enter(self, operation: str, request: Request) -> tuple[bytes, Fault | None,
                                                                      Response | None]:
        """Record, authenticate and apply a pre-action fault; returns (body, fault, answer)."""
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(operation, request.method, request.url.path,
                                                 headers, body))
            queue = self._faults.get(operation) or []
            fault = queue.pop(0) if queue else None
        if fault and not fault.after and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.status:
            return body, fault, self._fault_response(fault)
        if (headers.get("x-client-id") != self.client_id
                or not hmac.compare_digest(headers.get("x-client-secret", ""),
                                           self.client_secret)):
            return body, fault, self._error(401, "authentication Failed", "request_failed",
                                             "authentication_error")
        if headers.get("x-api-version") != API_VERSION:
            return body, fault, self._error(400, "x-api-version is missing or unsupported",
                                            "x-api-version_missing", "invalid_request_error")
        return body, fault, None

    def _fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        if status == 429:
            return self._error(429, "Too many requests", "request_limit_exceeded",
                               "rate_limit_error", headers={
                                   "x-ratelimit-limit": "30", "x-ratelimit-remaining": "0",
                                   "x-ratelimit-retry": str(fault.retry_after),
                                   "x-ratelimit-type": "app_id"})
        if status >= 500:
            return self._error(status, "something went wrong", "internal_server_error",
                               "api_error")
        return self._error(status, "injected error", "injected", "invalid_request_error")

    async def _leave(self, fault: Fault | None, answer: Response) -> Response:
        if fault and fault.after and fault.delay:
            await asyncio.sleep(fault.delay)
        return answer

    def _idempotent(self, key: str, body: bytes) -> Response | None:
        """Replay of an earlier request with this x-idempotency-key, or None."""
        if not key or not self.honour_idempotency_keys:
            return None
        with self._lock:
            seen = self._idempotency.get(key)
        if seen is None:
            return None
        digest, status, answer = seen
        if digest != hashlib.sha256(body).hexdigest():
            return self._error(422, "idempotency key used with a different request",
                               "idempotency_error", "idempotency_error")
        return Response(answer, status, media_type="application/json")

    def _remember(self, key: str, body: bytes, answer: Response) -> None:
        if key and self.honour_idempotency_keys:
            with self._lock:
                self._idempotency[key] = (hashlib.sha256(body).hexdigest(), answer.status_code,
                                          bytes(answer.body))

    # ---- endpoints -----------------------------------------------------------------------

    async def _create_order(self, request: Request) -> Response:
        body, fault, answer = await self._enter("create_order", request)
        if answer is None:
            key = request.headers.get("x-idempotency-key", "")
            answer = self._idempotent(key, body) or self._do_create_order(body)
            self._remember(key, body, answer)
        return await self._leave(fault, answer)

    def _do_create_order(self, body: bytes) -> Response:
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            return self._error(400, "body is not JSON", "request_invalid",
                               "invalid_request_error")
        problem = _order_problem(data)
        if problem:
            return self._error(400, problem, "request_invalid", "invalid_request_error")
        order_id = data.get("order_id") or f"order_{secrets.token_hex(8)}"
        with self._lock:
            if order_id in self.orders:
                return self._error(409, "order with same order_id already exists",
                                   "order_already_exists", "invalid_request_error")
            meta = data.get("order_meta") or {}
            entity = {
                "cf_order_id": next(self._ids),
                "order_id": order_id,
                "entity": "order",
                "order_currency": data["order_currency"],
                "order_amount": data["order_amount"],
                "order_status": "ACTIVE",
                "payment_session_id": f"session_{secrets.token_urlsafe(24)}",
                "order_expiry_time": (datetime.now(IST) + timedelta(days=30))
                .replace(microsecond=0).isoformat(),
                "order_note": data.get("order_note"),
                "created_at": _now_ist(),
                "order_splits": [],
                "customer_details": data["customer_details"],
                "order_meta": {"return_url": meta.get("return_url"),
                               "notify_url": meta.get("notify_url"),
                               "payment_methods": meta.get("payment_methods")},
                "order_tags": data.get("order_tags"),
            }
            self.orders[order_id] = _Order(entity=entity, notify_url=meta.get("notify_url", ""))
            self.orders_created[order_id] += 1
            return self._json(entity)

    async def _get_order(self, request: Request) -> Response:
        _, fault, answer = await self._enter("get_order", request)
        if answer is None:
            with self._lock:
                order = self.orders.get(request.path_params["order_id"])
                answer = self._json(order.entity) if order else self._order_not_found()
        return await self._leave(fault, answer)

    async def _get_payments(self, request: Request) -> Response:
        _, fault, answer = await self._enter("get_payments", request)
        if answer is None:
            with self._lock:
                order = self.orders.get(request.path_params["order_id"])
                answer = self._json(list(reversed(order.payments))) if order \
                    else self._order_not_found()
        return await self._leave(fault, answer)

    async def _create_refund(self, request: Request) -> Response:
        body, fault, answer = await self._enter("create_refund", request)
        if answer is None:
            key = request.headers.get("x-idempotency-key", "")
            answer = self._idempotent(key, body) or self._do_create_refund(
                request.path_params["order_id"], body)
            self._remember(key, body, answer)
        return await self._leave(fault, answer)

    def _do_create_refund(self, order_id: str, body: bytes) -> Response:
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            return self._error(400, "body is not JSON", "request_invalid",
                               "invalid_request_error")
        amount = data.get("refund_amount") if isinstance(data, dict) else None
        refund_id = data.get("refund_id") if isinstance(data, dict) else None
        if not _is_rupee_number(amount) or Decimal(amount) <= 0:
            return self._error(400, "refund_amount should be a number greater than 0",
                               "refund_amount_invalid", "invalid_request_error")
        if not isinstance(refund_id, str) or not 3 <= len(refund_id) <= 40:
            return self._error(400, "refund_id should be 3-40 characters",
                               "refund_id_invalid", "invalid_request_error")
        with self._lock:
            order = self.orders.get(order_id)
            if order is None:
                return self._order_not_found()
            if refund_id in order.refunds:
                return self._error(409, "refund with same refund_id already exists",
                                   "refund_already_exists", "invalid_request_error")
            paid = [p for p in order.payments if p["payment_status"] == "SUCCESS"]
            if order.entity["order_status"] != "PAID" or not paid:
                return self._error(400, "refund not allowed: order is not paid",
                                   "refund_invalid", "invalid_request_error")
            refunded = sum((Decimal(r["refund_amount"]) for r in order.refunds.values()
                            if r["refund_status"] not in ("CANCELLED", "FAILED")), Decimal(0))
            if refunded + Decimal(amount) > Decimal(order.entity["order_amount"]):
                return self._error(400, "refund amount is greater than the refundable amount",
                                   "refund_amount_invalid", "invalid_request_error")
            refund = {
                "cf_refund_id": str(next(self._ids)),
                "cf_payment_id": paid[0]["cf_payment_id"],
                "refund_id": refund_id,
                "order_id": order_id,
                "entity": "refund",
                "refund_amount": amount,
                "refund_currency": order.entity["order_currency"],
                "refund_note": data.get("refund_note"),
                "refund_status": "PENDING",
                "refund_arn": None,
                "refund_charge": Decimal("0"),
                "status_description": "In Progress",
                "refund_type": "MERCHANT_INITIATED",
                "refund_speed": {"requested": data.get("refund_speed", "STANDARD")},
                "created_at": _now_ist(),
                "processed_at": None,
            }
            order.refunds[refund_id] = refund
            return self._json(refund)

    async def _get_refund(self, request: Request) -> Response:
        _, fault, answer = await self._enter("get_refund", request)
        if answer is None:
            with self._lock:
                order = self.orders.get(request.path_params["order_id"])
                refund = order.refunds.get(request.path_params["refund_id"]) if order else None
            answer = self._json(refund) if refund else self._error(
                404, "refund does not exist", "refund_not_found", "invalid_request_error")
        return await self._leave(fault, answer)

    def _order_not_found(self) -> Response:
        return self._error(404, "order does not exist", "order_not_found",
                           "invalid_request_error")


def _is_rupee_number(value: Any) -> TypeGuard[int | Decimal]:
    """A JSON number (never a string) with at most 2 decimals."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return False
    return Decimal(value).as_tuple().exponent >= -2  # type: ignore[operator]


def _order_problem(data: Any) -> str:
    if not isinstance(data, dict):
        return "body must be a JSON object"
    order_id = data.get("order_id")
    if order_id is not None and not (isinstance(order_id, str) and _ORDER_ID.match(order_id)):
        return "order_id should be 3-45 characters of [A-Za-z0-9_-]"
    amount = data.get("order_amount")
    if not _is_rupee_number(amount) or Decimal(amount) < 1:
        return "order_amount should be a number >= 1 with at most 2 decimals"
    if data.get("order_currency") != "INR":
        return "order_currency should be INR"
    customer = data.get("customer_details")
    if not isinstance(customer, dict):
        return "customer_details is required"
    customer_id = customer.get("customer_id")
    if not isinstance(customer_id, str) or not 3 <= len(customer_id) <= 50:
        return "customer_details.customer_id should be 3-50 characters"
    phone = customer.get("customer_phone")
    if not isinstance(phone, str) or not re.fullmatch(r"\d{10}", phone):
        return "customer_details.customer_phone should be 10 digits"
    return ""

