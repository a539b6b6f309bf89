"""A fake Instamojo (API v2 with OAuth2 tokens, and v1.1) for contract tests.

Serve `FakeInstamojo().app` with `tests.fakes.server.serve_app`. It implements the documented
endpoints (docs: /work/shared/reference/psp-apis.md §1) with their auth, units (rupee strings)
and shapes, keeps state in memory, and can inject faults per operation: an HTTP status (before
or after the work is done), 429 with rate-limit headers, a timeout (work done, answer held
back), or a slow answer. `pay()` plays the buyer on the hosted page and sends the signed,
form-encoded webhook; the MAC is computed here, independently of the connector code.

Operations for faults: token, create_payment, get_payment_request, get_payment,
create_refund, get_refund.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeInstamojo", "Fault", "instamojo_mac"]

REFUND_TYPES = {"RFD", "TNR", "QFL", "QNR", "EWN", "TAN", "PTH"}


def instamojo_mac(fields: Mapping[str, str], salt: str) -> str:
    """What Instamojo's docs describe: values sorted by lower-cased key, '|'-joined, HMAC-SHA1."""
    values = [value for key, value in sorted(fields.items(), key=lambda kv: kv[0].lower())
              if key != "mac"]
    return hmac.new(salt.encode(), "|".join(values).encode(), hashlib.sha1).hexdigest()


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

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class PaymentRequest:
    id: str
    fields: dict[str, Any]
    version: str
    status: str = "Pending"
    payment_ids: list[str] = field(default_factory=list)


@dataclass
class Payment:
    id: str
    request_id: str
    amount: Decimal
    success: bool
    failure: dict[str, str] | None
    refunded: Decimal = Decimal("0")


@dataclass
class Refund:
    id: str
    payment_id: str
    amount: Decimal
    total: Decimal
    type: str
    body: str
    transaction_id: str
    version: str
    resolution_status: str | None = None
    status: str = "Pending"


class FakeInstamojo:
    def __init__(self, *, client_id: str = "test_client_id",
                 client_secret: str = "test_client_secret", api_key: str = "test_api_key",
                 auth_token: str = "test_auth_token", private_salt: str = "test_private_salt",
                 token_expires_in: int = 36000, send_failure_webhooks: bool = True) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.api_key, self.auth_token = api_key, auth_token
        self.private_salt = private_salt
        self.token_expires_in = token_expires_in
        self.send_failure_webhooks = send_failure_webhooks
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.requests: dict[str, PaymentRequest] = {}
        self.payments: dict[str, Payment] = {}
        self.refunds: dict[str, Refund] = {}
        self.log: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.webhook_deliveries: list[tuple[str, dict[str, str], int]] = []
        self.extra_webhook_fields: dict[str, str] = {}
        self.base_url = ""
        self.app = self._build_app()

    # ---- test controls -------------------------------------------------------------------

    def fail(self, operation: str, mode: str = "status", *, status: int = 500, count: int = 1,
             delay: float = 1.0, retry_after: int = 1, after_commit: bool = False) -> None:
        self.faults.append(Fault(operation, mode, status, count, delay, retry_after,
                                 after_commit))

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (as if they expired early)."""
        self.tokens.clear()

    def logged(self, path_part: str, method: str = "POST") -> list[LoggedRequest]:
        return [r for r in self.log if path_part in r.path and r.method == method]

    async def pay(self, request_id: str, *, success: bool = True, send_webhook: bool = True,
                  times: int = 1) -> str:
        """The buyer pays on the hosted page; returns the MOJO payment id."""
        pr = self.requests[request_id]
        if not pr.fields.get("allow_repeated_payments", True) and any(
                self.payments[p].success for p in pr.payment_ids):
            raise RuntimeError("this payment request was already paid")
        payment_id = "MOJO" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                      for _ in range(16))
        failure = None if success else {"reason": "BANK_DECLINED",
                                        "message": "Payment declined by the bank"}
        self.payments[payment_id] = Payment(payment_id, request_id, Decimal(pr.fields["amount"]),
                                            success, failure)
        pr.payment_ids.append(payment_id)
        if success:
            pr.status = "Completed"
        webhook = str(pr.fields.get("webhook") or "")
        if send_webhook and webhook and (success or self.send_failure_webhooks):
            await self.deliver(webhook, self.webhook_fields(payment_id), times=times)
        return payment_id

    def webhook_fields(self, payment_id: str, *, salt: str | None = None) -> dict[str, str]:
        """The signed form Instamojo posts for a payment."""
        payment = self.payments[payment_id]
        pr = self.requests[payment.request_id]
        fields = {
            "amount": f"{payment.amount:.2f}", "buyer": str(pr.fields.get("email", "")),
            "buyer_name": str(pr.fields.get("buyer_name", "")),
            "buyer_phone": str(pr.fields.get("phone", "")), "currency": "INR",
            "fees": f"{payment.amount * Decimal('0.02'):.2f}",
            "longurl": self._longurl(pr.id), "payment_id": payment.id,
            "payment_request_id": pr.id, "purpose": str(pr.fields.get("purpose", "")),
            "shorturl": "", "status": "Credit" if payment.success else "Failed",
            **self.extra_webhook_fields,
        }
        fields["mac"] = instamojo_mac(fields, salt or self.private_salt)
        return fields

    async def deliver(self, url: str, fields: Mapping[str, str], *, times: int = 1) -> None:
        body = urlencode(dict(fields)).encode()
        async with httpx.AsyncClient() as client:
            for _ in range(times):
                response = await client.post(url, content=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
                self.webhook_deliveries.append((url, dict(fields), response.status_code))

    def settle_refund(self, refund_id: str, resolution: str = "FINI_CONC") -> None:
        refund = self.refunds[refund_id]
        refund.resolution_status = resolution
        refund.status = {"FINI_CONC": "Refunded", "FINI_DENY": "Rejected"}.get(resolution,
                                                                               "Closed")

    # ---- wire shapes ---------------------------------------------------------------------

    def _longurl(self, request_id: str) -> str:
        return f"{self.base_url}/@triveni/{request_id}"

    def _request_json(self, pr: PaymentRequest) -> dict[str, Any]:
        data = {
            **pr.fields, "id": pr.id, "longurl": self._longurl(pr.id), "shorturl": None,
            "status": pr.status, "sms_status": "Pending", "email_status": "Pending",
            "created_at": "2026-01-01T10:00:00.000000Z",
            "modified_at": "2026-01-01T10:00:00.000000Z",
        }
        if pr.version == "v2":
            data["payments"] = [f"{self.base_url}/v2/payments/{p}/" for p in pr.payment_ids]
            data["user"] = f"{self.base_url}/v2/users/u1/"
            data["resource_uri"] = f"{self.base_url}/v2/payment_requests/{pr.id}/"
        else:
            data["payments"] = [self._payment_json(p, "v1.1") for p in pr.payment_ids]
        return data

    def _payment_json(self, payment_id: str, version: str) -> dict[str, Any]:
        p = self.payments[payment_id]
        pr = self.requests[p.request_id]
        common = {"amount": f"{p.amount:.2f}", "currency": "INR",
                  "fees": f"{p.amount * Decimal('0.02'):.2f}", "instrument_type": "UPI",
                  "buyer_name": pr.fields.get("buyer_name", ""),
                  "buyer_email": pr.fields.get("email", ""), "failure": p.failure}
        if version == "v2":
            return {"id": p.id, "status": p.success, **common,
                    "payment_request": f"{self.base_url}/v2/payment_requests/{pr.id}/"}
        return {"payment_id": p.id, "status": "Credit" if p.success else "Failed", **common}

    @staticmethod
    def _refund_json(r: Refund) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": r.id, "payment_id": r.payment_id, "status": r.status, "type": r.type,
            "body": r.body, "refund_amount": f"{r.amount:.2f}", "total_amount": f"{r.total:.2f}",
            "created_at": "2026-01-01T10:05:00Z"}
        if r.version == "v2":
            data["resolution_status"] = r.resolution_status
            data["transaction_id"] = r.transaction_id
        return data

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
            return JSONResponse({"success": False, "message": "Too many requests"},
                                status_code=429, headers={
                                    "Retry-After": str(fault.retry_after),
                                    "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0"})
        return JSONResponse({"success": False, "message": "Internal server error"},
                            status_code=fault.status)

    async def _run(self, request: Request, operation: str, handler: Any) -> Response:
        body = await request.body()
        self.base_url = str(request.base_url).rstrip("/")
        self.log.append(LoggedRequest(request.method, request.url.path, dict(request.headers),
                                      body))
        fault = self._take_fault(operation)
        if fault and fault.mode in ("status", "rate_limit") and not fault.after_commit:
            return self._fault_response(fault)
        if fault and fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        response: Response = await handler(request, self._parse(request, body))
        if fault and fault.mode == "timeout":
            await asyncio.sleep(fault.delay)
        if fault and fault.mode == "status" and fault.after_commit:
            return self._fault_response(fault)
        return response

    @staticmethod
    def _parse(request: Request, body: bytes) -> dict[str, Any]:
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(body or b"{}")
            return data if isinstance(data, dict) else {}
        return dict(parse_qsl(body.decode(), keep_blank_values=True))

    def _v2_auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self.tokens:
            return JSONResponse({"success": False, "message": "Invalid or expired token"},
                                status_code=401)
        return None

    def _v1_auth(self, request: Request) -> Response | None:
        if (request.headers.get("x-api-key"), request.headers.get("x-auth-token")) != (
                self.api_key, self.auth_token):
            return JSONResponse({"success": False,
                                 "message": "Invalid authentication credentials."},
                                status_code=401)
        return None

    def _build_app(self) -> Starlette:
        fake = self

        async def token(request: Request, data: dict[str, Any]) -> Response:
            fake.token_requests += 1
            if data.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if (data.get("client_id"), data.get("client_secret")) != (
                    fake.client_id, fake.client_secret):
                return JSONResponse({"error": "Invalid Client Id"}, status_code=401)
            value = uuid.uuid4().hex
            fake.tokens.add(value)
            return JSONResponse({"access_token": value, "token_type": "Bearer",
                                 "expires_in": fake.token_expires_in,
                                 "scope": "read write"})

        def validate_request(data: dict[str, Any]) -> dict[str, list[str]]:
            errors: dict[str, list[str]] = {}
            purpose = str(data.get("purpose", ""))
            if not purpose:
                errors["purpose"] = ["This field is required."]
            elif len(purpose) > 30:
                errors["purpose"] = ["Ensure this field has no more than 30 characters."]
            try:
                amount = Decimal(str(data.get("amount", "")))
                if amount.as_tuple().exponent < -2:  # type: ignore[operator]
                    raise InvalidOperation
                if not Decimal(9) <= amount <= Decimal(200000):
                    errors["amount"] = ["Amount must be between 9 and 200000."]
            except InvalidOperation:
                errors["amount"] = ["Enter a valid amount."]
            return errors

        async def create(request: Request, data: dict[str, Any], version: str) -> Response:
            errors = validate_request(data)
            if errors:
                body = errors if version == "v2" else {"success": False, "message": errors}
                return JSONResponse(body, status_code=400)
            fields = dict(data)
            fields["amount"] = f"{Decimal(str(data['amount'])):.2f}"
            for flag in ("allow_repeated_payments", "send_email", "send_sms"):
                if flag in fields:
                    fields[flag] = str(fields[flag]).lower() == "true"
            pr = PaymentRequest(uuid.uuid4().hex, fields, version)
            fake.requests[pr.id] = pr
            out = fake._request_json(pr)
            if version == "v2":
                return JSONResponse(out, status_code=201)
            return JSONResponse({"success": True, "payment_request": out}, status_code=201)

        async def get_request(request: Request, version: str) -> Response:
            pr = fake.requests.get(request.path_params["request_id"])
            if pr is None:
                return JSONResponse({"success": False, "message": "Not found."}, 404)
            out = fake._request_json(pr)
            return JSONResponse(out if version == "v2" else {"success": True,
                                                              "payment_request": out})

        async def get_payment(request: Request, version: str) -> Response:
            payment_id = request.path_params["payment_id"]
            if payment_id not in fake.payments:
                return JSONResponse({"success": False, "message": "Not found."}, 404)
            out = fake._payment_json(payment_id, version)
            return JSONResponse(out if version == "v2" else {"success": True, "payment": out})

        async def create_refund(data: dict[str, Any], payment_id: str,
                                version: str) -> Response:
            payment = fake.payments.get(payment_id)
            if payment is None:
                return JSONResponse({"success": False, "message": "Not found."}, 404)
            transaction_id = str(data.get("transaction_id", ""))
            existing = [r for r in fake.refunds.values() if r.payment_id == payment_id]
            if transaction_id:
                for refund in existing:
                    if refund.transaction_id == transaction_id:
                        return JSONResponse({"success": True,
                                             "refund": fake._refund_json(refund)})
            elif version == "v2" and existing:
                return JSONResponse({"transaction_id": ["This field is required."]}, 400)
            if data.get("type") not in REFUND_TYPES:
                return JSONResponse({"success": False, "message": {"type": ["Invalid type."]}},
                                    400)
            if not payment.success:
                return JSONResponse({"success": False,
                                     "message": "Payment is not eligible for a refund."}, 400)
            remaining = payment.amount - payment.refunded
            try:
                amount = Decimal(str(data.get("refund_amount") or remaining))
            except InvalidOperation:
                return JSONResponse({"success": False,
                                     "message": {"refund_amount": ["Invalid amount."]}}, 400)
            if amount <= 0 or amount > remaining:
                return JSONResponse({"success": False, "message":
                                     "Refund amount cannot exceed the refundable amount."}, 400)
            payment.refunded += amount
            refund = Refund(id="C" + secrets.token_hex(5), payment_id=payment_id, amount=amount,
                            total=payment.amount, type=str(data["type"]),
                            body=str(data.get("body", "")), transaction_id=transaction_id,
                            version=version)
            fake.refunds[refund.id] = refund
            return JSONResponse({"success": True, "refund": fake._refund_json(refund)}, 201)

        async def get_refund(request: Request, version: str) -> Response:
            refund = fake.refunds.get(request.path_params["refund_id"])
            if refund is None:
                return JSONResponse({"success": False, "message": "Not found."}, 404)
            out = fake._refund_json(refund)
            return JSONResponse(out if version == "v2" else {"success": True, "refund": out})

        def route(path: str, operation: str, auth: str, handler: Any, method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                async def guarded(req: Request, data: dict[str, Any]) -> Response:
                    refused = {"v2": fake._v2_auth, "v1.1": fake._v1_auth}.get(auth)
                    denied = refused(req) if refused else None
                    if denied is not None:
                        return denied
                    result: Response = await handler(req, data)
                    return result

                return await fake._run(request, operation, guarded)

            return Route(path, endpoint, methods=[method])

        return Starlette(routes=[
            route("/oauth2/token/", "token", "none", token, "POST"),
            route("/v2/payment_requests/", "create_payment", "v2",
                  lambda r, d: create(r, d, "v2"), "POST"),
            route("/v2/payment_requests/{request_id}/", "get_payment_request", "v2",
                  lambda r, d: get_request(r, "v2"), "GET"),
            route("/v2/payments/{payment_id}/", "get_payment", "v2",
                  lambda r, d: get_payment(r, "v2"), "GET"),
            route("/v2/payments/{payment_id}/refund/", "create_refund", "v2",
                  lambda r, d: create_refund(d, r.path_params["payment_id"], "v2"), "POST"),
            route("/v2/refunds/{refund_id}/", "get_refund", "v2",
                  lambda r, d: get_refund(r, "v2"), "GET"),
            route("/api/1.1/payment-requests/", "create_payment", "v1.1",
                  lambda r, d: create(r, d, "v1.1"), "POST"),
            route("/api/1.1/payment-requests/{request_id}/", "get_payment_request", "v1.1",
                  lambda r, d: get_request(r, "v1.1"), "GET"),
            route("/api/1.1/payments/{payment_id}/", "get_payment", "v1.1",
                  lambda r, d: get_payment(r, "v1.1"), "GET"),
            route("/api/1.1/refunds/", "create_refund", "v1.1",
                  lambda r, d: create_refund(d, str(d.get("payment_id", "")), "v1.1"), "POST"),
            route("/api/1.1/refunds/{refund_id}/", "get_refund", "v1.1",
                  lambda r, d: get_refund(r, "v1.1"), "GET"),
        ])
