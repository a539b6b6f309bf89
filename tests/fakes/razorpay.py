"""A fake Razorpay (Orders, Payment Links, Payments, Refunds, webhooks) for contract tests.

Serve `FakeRazorpay().app` with `tests.fakes.server.serve_app`. Amounts are integer paise,
auth is HTTP Basic key_id:key_secret (401 with Razorpay's error shape otherwise), errors are
{"error": {"code", "description", "source", "step", "reason", "field", "metadata"}}. State is
in memory. Faults can be injected per operation (an HTTP status before or after the work, 429
with rate-limit headers, a timeout that does the work and holds the answer, a slow answer).
`pay_link` / `pay_order` play the customer and send the webhooks Razorpay would send, signed
here with a hand-written HMAC-SHA256 (independent of the connector code), optionally
duplicated or out of order.

Operations for faults: create_order, create_link, get_order, get_link, find_link, find_order,
get_payment, create_refund, get_refund, list_refunds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeRazorpay", "razorpay_signature"]


def razorpay_signature(secret: str, body: bytes) -> str:
    """hex(HMAC-SHA256(webhook secret, raw body)), as Razorpay's docs describe it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _rid(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits)
                            for _ in range(14))


def _error(status: int, code: str, description: str, *, field_name: str | None = None,
           reason: str = "input_validation_failed") -> JSONResponse:
    return JSONResponse({"error": {
        "code": code, "description": description, "source": "business", "step": "NA",
        "reason": reason, "field": field_name, "metadata": {}}}, status_code=status)


@dataclass
class Fault:
    operation: str
    mode: str = "status"  # status | rate_limit | timeout | slow
    status: int = 500
    remaining: int = 1  # 0 = every matching request
    delay: float = 1.0
    retry_after: int = 1
    after_commit: bool = False


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Delivery:
    event_id: str
    event: str
    body: bytes
    status: int


@dataclass
class FakeRazorpay:
    key_id: str = "rzp_test_fakekey"
    key_secret: str = "fake_key_secret"
    webhook_secret: str = "fake_webhook_secret"
    webhook_url: str = ""
    refund_initial_status: str = "pending"
    # Whether fetched links carry the `payments` summary (the connector copes without it).
    link_payments_summary: bool = True
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    log: list[LoggedRequest] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self.app = self._build_app()

    # ---- test controls -------------------------------------------------------------------

    def fail(self, operation: str, mode: str = "status", *, status: int = 500, count: int = 1,
             delay: float = 1.0, retry_after: int = 1, after_commit: bool = False) -> None:
        self.faults.append(Fault(operation, mode, status, count, delay, retry_after,
                                 after_commit))

    def logged(self, path_part: str, method: str = "POST") -> list[LoggedRequest]:
        return [r for r in self.log if path_part in r.path and r.method == method]

    async def pay_link(self, link_id: str, *, success: bool = True, method: str = "upi",
                       duplicates: int = 0, order: str = "normal") -> str:
        """The customer pays a link; returns the pay_ id. Sends the events Razorpay sends."""
        link = self.links[link_id]
        order_id = link.get("order_id") or self._new_order(
            link["amount"], link["currency"], link.get("reference_id"), link.get("notes", {}),
            status="created")["id"]
        link["order_id"] = order_id
        payment = self._new_payment(order_id, link["amount"], success, method,
                                    notes=link.get("notes", {}),
                                    description=f"#{link_id.removeprefix('plink_')}")
        link.setdefault("payments", None)
        link["payments"] = [*(link["payments"] or []), {
            "payment_id": payment["id"], "status": payment["status"], "amount": link["amount"],
            "method": method, "created_at": payment["created_at"], "plink_id": link_id}]
        events: list[tuple[str, dict[str, Any]]]
        if success:
            link["status"] = "paid"
            link["amount_paid"] = link["amount"]
            link["updated_at"] = int(time.time())
            events = [
                ("payment.authorized", {"payment": {"entity": {**payment,
                                                               "status": "authorized",
                                                               "captured": False}}}),
                ("payment.captured", {"payment": {"entity": payment}}),
                ("order.paid", {"payment": {"entity": payment},
                                "order": {"entity": self.orders[order_id]}}),
                ("payment_link.paid", {"payment_link": {"entity": dict(link)},
                                       "order": {"entity": self.orders[order_id]},
                                       "payment": {"entity": payment}}),
            ]
        else:
            events = [("payment.failed", {"payment": {"entity": payment}})]
        await self._send_events(events, duplicates=duplicates, order=order)
        return str(payment["id"])

    async def pay_order(self, order_id: str, *, success: bool = True, method: str = "card",
                        duplicates: int = 0, order: str = "normal") -> str:
        """The customer pays an order through Checkout.js; returns the pay_ id."""
        existing = self.orders[order_id]
        payment = self._new_payment(order_id, existing["amount"], success, method, notes={},
                                    description="Checkout")
        if success:
            events = [("payment.captured", {"payment": {"entity": payment}}),
                      ("order.paid", {"payment": {"entity": payment},
                                      "order": {"entity": existing}})]
        else:
            events = [("payment.failed", {"payment": {"entity": payment}})]
        await self._send_events(events, duplicates=duplicates, order=order)
        return str(payment["id"])

    async def settle_refund(self, refund_id: str, *, success: bool = True) -> None:
        refund = self.refunds[refund_id]
        refund["status"] = "processed" if success else "failed"
        if success:
            refund["speed_processed"] = "normal"
        else:
            payment = self.payments[refund["payment_id"]]
            payment["amount_refunded"] -= refund["amount"]
        event = "refund.processed" if success else "refund.failed"
        await self._send_events([(event, {"refund": {"entity": refund},
                                          "payment": {"entity": self.payments[
                                              refund["payment_id"]]}})])

    def event_body(self, event: str, payload: dict[str, Any]) -> bytes:
        envelope = {"entity": "event", "account_id": "acc_FakeTriveni01", "event": event,
                    "contains": list(payload), "payload": payload,
                    "created_at": int(time.time())}
        return json.dumps(envelope, separators=(",", ":")).encode()

    async def deliver(self, body: bytes, *, event_id: str, url: str = "",
                      secret: str = "") -> int:
        headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": event_id,
                   "X-Razorpay-Signature": razorpay_signature(secret or self.webhook_secret,
                                                              body),
                   "User-Agent": "Razorpay-Webhook/v1"}
        async with httpx.AsyncClient() as client:
            response = await client.post(url or self.webhook_url, content=body, headers=headers)
        event = json.loads(body)["event"]
        self.deliveries.append(Delivery(event_id, event, body, response.status_code))
        return response.status_code

    async def _send_events(self, events: list[tuple[str, dict[str, Any]]], *,
                           duplicates: int = 0, order: str = "normal") -> None:
        if not self.webhook_url:
            return
        prepared = [(_rid(""), self.event_body(name, payload)) for name, payload in events]
        if order == "reversed":
            prepared.reverse()
        for event_id, body in prepared:
            for _ in range(1 + duplicates):
                await self.deliver(body, event_id=event_id)

    # ---- entities ------------------------------------------------------------------------

    def _new_order(self, amount: int, currency: str, receipt: str | None,
                   notes: dict[str, Any] | list[Any], status: str = "created") -> dict[str, Any]:
        order: dict[str, Any] = {
                 "id": _rid("order_"), "entity": "order", "amount": amount, "amount_paid": 0,
                 "amount_due": amount, "currency": currency, "receipt": receipt,
                 "offer_id": None, "status": status, "attempts": 0, "notes": notes or [],
                 "created_at": int(time.time())}
        self.orders[order["id"]] = order
        return order

    def _new_payment(self, order_id: str, amount: int, success: bool, method: str, *,
                     notes: dict[str, Any], description: str) -> dict[str, Any]:
        order = self.orders[order_id]
        order["attempts"] += 1
        payment: dict[str, Any] = {
            "id": _rid("pay_"), "entity": "payment", "amount": amount,
            "currency": order["currency"], "status": "captured" if success else "failed",
            "order_id": order_id, "invoice_id": None, "international": False,
            "method": method, "amount_refunded": 0, "refund_status": None,
            "captured": success, "description": description, "card_id": None,
            "bank": None, "wallet": None, "vpa": "asha@okaxis" if method == "upi" else None,
            "email": "asha@example.com", "contact": "+919876543210", "notes": notes or [],
            "fee": 354 if success else None, "tax": 54 if success else None,
            "error_code": None if success else "BAD_REQUEST_ERROR",
            "error_description": None if success else "Payment failed due to incorrect UPI PIN",
            "error_source": None if success else "customer",
            "error_step": None if success else "payment_authorization",
            "error_reason": None if success else "incorrect_pin",
            "acquirer_data": {"rrn": "412345678901"} if success else {},
            "created_at": int(time.time()),
        }
        self.payments[payment["id"]] = payment
        if success:
            order["status"] = "paid"
            order["amount_paid"] = amount
            order["amount_due"] = 0
        else:
            order["status"] = "attempted"
        return payment

    # ---- HTTP ----------------------------------------------------------------------------

    def _take_fault(self, operation: str) -> Fault | None:
        for fault in self.faults:
            if fault.operation == operation:
                if fault.remaining == 1:
                    self.faults.remove(fault)
                elif fault.remaining > 1:
                    fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        if fault.mode == "rate_limit":
            response = _error(429, "BAD_REQUEST_ERROR", "Too many requests",
                              reason="rate_limit_exceeded")
            response.headers["Retry-After"] = str(fault.retry_after)
            response.headers["X-RateLimit-Limit"] = "25"
            response.headers["X-RateLimit-Remaining"] = "0"
            return response
        code = "SERVER_ERROR" if fault.status == 500 else "GATEWAY_ERROR"
        return _error(fault.status, code, "The server encountered an error.",
                      reason="server_error")

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        return hmac.compare_digest(header, f"Basic {expected}")

    def _build_app(self) -> Starlette:
        fake = self

        def route(path: str, operation: str, handler: Any, method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                body = await request.body()
                fake.base_url = str(request.base_url).rstrip("/")
                fake.log.append(LoggedRequest(request.method, request.url.path,
                                              dict(request.headers), body))
                if not fake._authorised(request):
                    return _error(401, "BAD_REQUEST_ERROR", "The api key provided is invalid",
                                  reason="authentication_failed")
                fault = fake._take_fault(operation)
                if fault and fault.mode in ("status", "rate_limit") and not fault.after_commit:
                    return fake._fault_response(fault)
                if fault and fault.mode == "slow":
                    await asyncio.sleep(fault.delay)
                try:
                    data = json.loads(body) if body else {}
                except json.JSONDecodeError:
                    return _error(400, "BAD_REQUEST_ERROR", "The request body is not JSON")
                response: Response = await handler(request, data)
                if fault and fault.mode == "timeout":
                    await asyncio.sleep(fault.delay)
                if fault and fault.mode == "status" and fault.after_commit:
                    return fake._fault_response(fault)
                return response

            return Route(path, endpoint, methods=[method])

        def check_amount(data: dict[str, Any]) -> Response | None:
            amount = data.get("amount")
            if not isinstance(amount, int) or isinstance(amount, bool):
                return _error(400, "BAD_REQUEST_ERROR", "The amount must be an integer.",
                              field_name="amount")
            if amount < 100:
                return _error(400, "BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00",
                              field_name="amount")
            if data.get("currency") != "INR":
                return _error(400, "BAD_REQUEST_ERROR", "Currency is not supported",
                              field_name="currency")
            return None

        async def create_order(request: Request, data: dict[str, Any]) -> Response:
            refused = check_amount(data)
            if refused is not None:
                return refused
            receipt = data.get("receipt")
            if isinstance(receipt, str) and len(receipt) > 40:
                return _error(400, "BAD_REQUEST_ERROR",
                              "receipt may not be greater than 40 characters.",
                              field_name="receipt")
            return JSONResponse(fake._new_order(data["amount"], data["currency"], receipt,
                                                data.get("notes") or []))

        async def get_order(request: Request, data: dict[str, Any]) -> Response:
            order = fake.orders.get(request.path_params["id"])
            if order is None:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            return JSONResponse(order)

        async def order_payments(request: Request, data: dict[str, Any]) -> Response:
            order_id = request.path_params["id"]
            if order_id not in fake.orders:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            items = [p for p in fake.payments.values() if p["order_id"] == order_id]
            return JSONResponse({"entity": "collection", "count": len(items), "items": items})

        async def find_orders(request: Request, data: dict[str, Any]) -> Response:
            receipt = request.query_params.get("receipt")
            items = [o for o in fake.orders.values() if receipt is None or o["receipt"] == receipt]
            return JSONResponse({"entity": "collection", "count": len(items), "items": items})

        async def create_link(request: Request, data: dict[str, Any]) -> Response:
            refused = check_amount(data)
            if refused is not None:
                return refused
            reference = data.get("reference_id")
            if reference and any(link["reference_id"] == reference
                                 for link in fake.links.values()):
                return _error(400, "BAD_REQUEST_ERROR",
                              f"Payment Link with reference id {reference} already exists",
                              field_name="reference_id")
            link_id = _rid("plink_")
            link: dict[str, Any] = {
                "id": link_id, "entity": "payment_link", "amount": data["amount"],
                "amount_paid": 0, "currency": data["currency"],
                "accept_partial": bool(data.get("accept_partial", False)),
                "reference_id": reference or "", "description": data.get("description", ""),
                "customer": data.get("customer", {}), "notify": data.get("notify", {}),
                "reminder_enable": data.get("reminder_enable", False),
                "notes": data.get("notes") or [], "callback_url": data.get("callback_url", ""),
                "callback_method": data.get("callback_method", ""), "status": "created",
                "short_url": f"{fake.base_url}/i/{link_id.removeprefix('plink_')}",
                "payments": None, "cancelled_at": 0, "expired_at": 0, "expire_by": 0,
                "created_at": int(time.time()), "updated_at": int(time.time()),
                "upi_link": False, "user_id": "",
            }
            fake.links[link_id] = link
            return JSONResponse(link)

        async def get_link(request: Request, data: dict[str, Any]) -> Response:
            link = fake.links.get(request.path_params["id"])
            if link is None:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            if not fake.link_payments_summary:
                return JSONResponse({k: v for k, v in link.items() if k != "payments"})
            return JSONResponse(link)

        async def find_links(request: Request, data: dict[str, Any]) -> Response:
            reference = request.query_params.get("reference_id")
            items = [link for link in fake.links.values()
                     if reference is None or link["reference_id"] == reference]
            return JSONResponse({"payment_links": items})

        async def get_payment(request: Request, data: dict[str, Any]) -> Response:
            payment = fake.payments.get(request.path_params["id"])
            if payment is None:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            return JSONResponse(payment)

        async def create_refund(request: Request, data: dict[str, Any]) -> Response:
            payment = fake.payments.get(request.path_params["id"])
            if payment is None:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            key = request.headers.get("x-refund-idempotency", "")
            fingerprint = json.dumps({"payment": payment["id"], "amount": data.get("amount")},
                                     sort_keys=True).encode()
            if key:
                seen = fake.refund_keys.get(key)
                if seen is not None:
                    if seen[1] != fingerprint:
                        return _error(400, "BAD_REQUEST_ERROR", "Idempotency key was already "
                                      "used with a different request")
                    return JSONResponse(fake.refunds[seen[0]])
            if not payment["captured"]:
                return _error(400, "BAD_REQUEST_ERROR", "Only captured payments can be refunded")
            remaining = payment["amount"] - payment["amount_refunded"]
            if remaining <= 0:
                return _error(400, "BAD_REQUEST_ERROR",
                              "The payment has been fully refunded already")
            amount = data.get("amount", remaining)
            if not isinstance(amount, int) or amount < 100:
                return _error(400, "BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00",
                              field_name="amount")
            if amount > remaining:
                return _error(400, "BAD_REQUEST_ERROR", "The refund amount provided is "
                              "greater than amount captured", field_name="amount")
            payment["amount_refunded"] += amount
            payment["refund_status"] = "full" if payment["amount_refunded"] == \
                payment["amount"] else "partial"
            refund: dict[str, Any] = {"id": _rid("rfnd_"), "entity": "refund", "amount": amount,
                      "currency": payment["currency"], "payment_id": payment["id"],
                      "notes": data.get("notes") or [], "receipt": data.get("receipt"),
                      "acquirer_data": {"arn": None}, "created_at": int(time.time()),
                      "batch_id": None, "status": fake.refund_initial_status,
                      "speed_processed": "normal", "speed_requested": data.get("speed",
                                                                               "normal")}
            fake.refunds[refund["id"]] = refund
            if key:
                fake.refund_keys[key] = (refund["id"], fingerprint)
            return JSONResponse(refund)

        async def get_refund(request: Request, data: dict[str, Any]) -> Response:
            refund = fake.refunds.get(request.path_params["id"])
            if refund is None:
                return _error(404, "BAD_REQUEST_ERROR", "The id provided does not exist")
            return JSONResponse(refund)

        async def list_refunds(request: Request, data: dict[str, Any]) -> Response:
            payment_id = request.path_params["id"]
            items = [r for r in fake.refunds.values() if r["payment_id"] == payment_id]
            return JSONResponse({"entity": "collection", "count": len(items), "items": items})

        return Starlette(routes=[
            route("/v1/orders", "create_order", create_order, "POST"),
            route("/v1/orders", "find_order", find_orders, "GET"),
            route("/v1/orders/{id}", "get_order", get_order, "GET"),
            route("/v1/orders/{id}/payments", "get_order", order_payments, "GET"),
            route("/v1/payment_links", "create_link", create_link, "POST"),
            route("/v1/payment_links", "find_link", find_links, "GET"),
            route("/v1/payment_links/{id}", "get_link", get_link, "GET"),
            route("/v1/payments/{id}", "get_payment", get_payment, "GET"),
            route("/v1/payments/{id}/refund", "create_refund", create_refund, "POST"),
            route("/v1/payments/{id}/refunds", "list_refunds", list_refunds, "GET"),
            route("/v1/refunds/{id}", "get_refund", get_refund, "GET"),
        ])
