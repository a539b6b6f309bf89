"""The HTTP shim: PSP webhooks, the seed's REST endpoints, health, metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.adapters.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    WEBHOOKS_RECEIVED,
)
from server.adapters.postgres.merchants import MerchantStore, Principal
from server.connectors.base import PspStatus, WebhookEvent, WebhookRejected
from server.connectors.cashfree.checkout import render_checkout_page as cashfree_checkout_page
from server.connectors.payu.checkout import render_checkout_page as payu_checkout_page
from server.entrypoints.http.bodies import read_body_limited
from server.entrypoints.http.probes import ReadinessCheck, probe_routes
from server.entrypoints.http.seed import SeedCreatePayment, parse_seed_create
from server.errors import DependencyUnavailable, NotFound, TriveniError, Unauthenticated
from server.service_layer.payments import PaymentService
from server.service_layer.webhooks import WebhookService

__all__ = ["HttpDeps", "build_http_app"]

log = logging.getLogger("triveni.http")
MAX_WEBHOOK_BYTES = 256 * 1024
MAX_JSON_BYTES = 64 * 1024
_CHECKOUT_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer",
                     "x-frame-options": "DENY"}



@dataclass
class HttpDeps:
    payments: PaymentService
    webhooks: WebhookService
    merchants: MerchantStore
    readiness: ReadinessCheck
    production: bool
    dev_merchant_id: str
    allow_unsigned_webhooks: bool
    extra_routes: list[BaseRoute] | None = None


class _Observe(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        route = request.scope.get("route")
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(route=path, status=str(response.status_code)).inc()
        HTTP_REQUEST_DURATION.labels(route=path).observe(time.perf_counter() - started)
        response.headers["x-request-id"] = request.headers.get("x-request-id", uuid.uuid4().hex)
        return response


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def build_http_app(deps: HttpDeps) -> Starlette:
    async def principal_for(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if auth:
            if scheme.lower() != "bearer" or not key.strip():
                raise Unauthenticated("authorization must be 'Bearer <api key>'")
            return await deps.merchants.authenticate(key.strip())
        if deps.production:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        # Development: the seed's curl examples carry no key and act for the dev merchant.
        return Principal(deps.dev_merchant_id, "dev")

    async def create_payment(request: Request) -> Response:
        body = await read_body_limited(request, MAX_JSON_BYTES)
        if body is None:
            return _error(413, "request body too large")
        try:
            principal = await principal_for(request)
            seed: SeedCreatePayment = parse_seed_create(
                body, principal.merchant_id, request.headers.get("idempotency-key", ""))
            payment = await deps.payments.create(seed.command, actor=principal.actor)
        except TriveniError as exc:
            return _triveni_error(exc)
        summary = {
            "id": payment.id, "status": payment.status.value,
            "amount": payment.amount.to_major_string(), "currency": payment.amount.currency,
            "connector": payment.connector, "paymentLink": payment.redirect_url,
            "fraud": {"decision": payment.fraud.decision, "score": payment.fraud.score,
                      "reasons": [r.message for r in payment.fraud.reasons]},
        }
        if payment.failure is not None:
            summary["failure"] = {"code": payment.failure.code,
                                  "message": payment.failure.message}
        if payment.status.value == "BLOCKED" and payment.failure is not None:
            return JSONResponse({"error": payment.failure.message, **summary}, status_code=403)
        return JSONResponse(summary, status_code=201 if payment.status.value != "FAILED" else 502)

    async def psp_webhook(request: Request) -> Response:
        account = request.path_params["account"]
        body = await read_body_limited(request, MAX_WEBHOOK_BYTES)
        if body is None:
            WEBHOOKS_RECEIVED.labels(account=account, result="malformed").inc()
            return _error(413, "webhook body too large")
        try:
            event = deps.webhooks.parse(account, dict(request.headers), body)
        except NotFound:
            WEBHOOKS_RECEIVED.labels(account="unknown", result="unknown_account").inc()
            return _error(404, f"no connector account named {account}")
        except WebhookRejected as exc:
            result = {"bad_signature": "bad_signature", "unsigned": "bad_signature",
                      "stale": "stale"}.get(exc.reason, "malformed")
            WEBHOOKS_RECEIVED.labels(account=account, result=result).inc()
            status = 400 if result == "malformed" else 401
            return _error(status, exc.message, reason=exc.reason)
        return await _apply(account, event)

    async def _apply(account: str, event: WebhookEvent) -> Response:
        try:
            outcome = await deps.webhooks.apply(account, event)
        except NotFound as exc:
            WEBHOOKS_RECEIVED.labels(account=account, result="unknown_payment").inc()
            return _error(404, str(exc))
        except TriveniError as exc:
            return _triveni_error(exc)
        WEBHOOKS_RECEIVED.labels(account=account, result="duplicate"
                                 if outcome.result == "duplicate" else "ok").inc()
        return JSONResponse({"result": outcome.result, "payment_id": outcome.payment_id,
                             "status": outcome.status})

    async def seed_webhook(request: Request) -> Response:
        """The seed's unsigned `POST /webhook` — only with the explicit dev flag."""
        if deps.production or not deps.allow_unsigned_webhooks:
            WEBHOOKS_RECEIVED.labels(account="seed", result="bad_signature").inc()
            return _error(401, "unsigned webhooks are disabled; PSPs post signed webhooks to "
                          "/webhooks/{account} (set TRIVENI_ALLOW_UNSIGNED_WEBHOOKS=true in "
                          "development to use this endpoint)")
        body = await read_body_limited(request, MAX_JSON_BYTES)
        if body is None:
            return _error(413, "request body too large")
        try:
            data = json.loads(body)
            reference = str(data["payment_request_id"])
            raw_status = str(data["status"]).lower()
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected JSON with payment_request_id and status")
        status = {"success": PspStatus.SUCCEEDED, "credit": PspStatus.SUCCEEDED,
                  "failed": PspStatus.FAILED, "failure": PspStatus.FAILED}.get(raw_status)
        if status is None:
            return _error(400, "status must be success or failed")
        try:
            found = await deps.webhooks.account_for_reference(reference)
        except TriveniError as exc:
            return _triveni_error(exc)
        if found is None:
            WEBHOOKS_RECEIVED.labels(account="seed", result="unknown_payment").inc()
            return _error(404, f"no payment with payment_request_id {reference}")
        account, psp_reference = found
        event = WebhookEvent(kind="payment", dedupe_id=f"seed:{reference}:{raw_status}",
                             connector_payment_id=psp_reference, payment_ref=psp_reference,
                             status=status, raw_status=raw_status)
        return await _apply(account, event)

    async def payu_checkout(request: Request) -> Response:
        """Auto-submitting PayU form (PayU's hosted checkout is entered by a form POST)."""
        try:
            references = await deps.payments.checkout_references(request.path_params["txnid"])
            page = payu_checkout_page(references)
        except (NotFound, ValueError):
            return _error(404, "no such checkout")
        except TriveniError as exc:
            return _triveni_error(exc)
        return HTMLResponse(page, headers=_CHECKOUT_HEADERS)

    async def cashfree_checkout(request: Request) -> Response:
        """Cashfree's JS SDK page for a payment_session_id (the session id is browser-bound)."""
        session_id = request.query_params.get("payment_session_id", "")
        mode = request.query_params.get("mode", "sandbox")
        if not session_id or mode not in ("sandbox", "production"):
            return _error(400, "payment_session_id and mode (sandbox|production) are required")
        return HTMLResponse(cashfree_checkout_page(session_id, mode), headers=_CHECKOUT_HEADERS)

    routes: list[BaseRoute] = [
        *probe_routes(deps.readiness),
        Route("/create-payment", create_payment, methods=["POST"]),
        Route("/webhook", seed_webhook, methods=["POST"]),
        Route("/webhooks/{account}", psp_webhook, methods=["POST"]),
        Route("/checkout/payu/{txnid}", payu_checkout, methods=["GET"]),
        Route("/checkout/cashfree/{order_id}", cashfree_checkout, methods=["GET"]),
        *(deps.extra_routes or []),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Observe)])


def _triveni_error(exc: TriveniError) -> JSONResponse:
    from server.errors import (
        ConcurrentUpdate,
        IdempotencyConflict,
        IllegalTransition,
        PermissionDenied,
        RateLimited,
        ValidationError,
    )

    if isinstance(exc, ValidationError):
        return _error(400, str(exc), field=exc.field)
    status = {Unauthenticated: 401, PermissionDenied: 403, NotFound: 404,
              IdempotencyConflict: 409, IllegalTransition: 409, ConcurrentUpdate: 409,
              RateLimited: 429,
              DependencyUnavailable: 503}
    for kind, code in status.items():
        if isinstance(exc, kind):
            return _error(code, str(exc))
    log.error("unmapped error", extra={"error": type(exc).__name__})
    return _error(500, "internal error")
