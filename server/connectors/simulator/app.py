"""The simulator PSP: a small, real HTTP payment service with configurable behaviour.

`build_simulator_app(settings)` returns a Starlette app implementing the API documented in
models.py. Run it standalone with `python -m server.connectors.simulator --port 9001 …`, serve
it in a test with `tests.fakes.server.serve_app`, or call it in-process through
`httpx.ASGITransport` (see `in_process_executor`). State lives in memory, in the `Simulator`
object at `app.state.simulator`.

Behaviour knobs (`SimulatorSettings`, changeable at run time with POST /admin/config):
- latency_ms + latency_jitter_ms: added to every /v1 request.
- success_rate: the share of checkouts that succeed (the rest fail with `declined`).
- failure_mode (none | decline | insufficient_funds | server_error | unavailable | rate_limit
  | timeout) applied to failure_operations, to a failure_rate share of them, for the next
  failure_count requests (0 = all). decline/insufficient_funds answer 402; server_error 500
  and unavailable 503, both before recording anything; rate_limit 429 with Retry-After
  (retry_after_seconds); timeout records the payment (or refund) and then holds the response
  for hang_seconds, so the client times out not knowing the outcome.
- auto_complete (+ auto_complete_ms): complete each new payment by itself, no browser needed.
- duplicate_webhooks: deliver each webhook this many extra times (same event id).
- refund_delay_ms: 0 settles refunds at once; otherwise they stay pending that long.
- webhook secrets: `webhook_secrets[account]` for the account named in X-Simulator-Account,
  else `webhook_secret`, else the dev convention `whsec_dev_<account>`.
- api_key: when set, /v1 requests need `Authorization: Bearer <api_key>`.

The /admin endpoints have no authentication: the simulator is a development and benchmark
tool, bound to loopback by default; never expose it.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from server.connectors.http import HttpExecutor
from server.connectors.simulator.models import (
    ACCOUNT_HEADER,
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SimPayment,
    SimRefund,
)
from server.connectors.simulator.webhooks import sign

__all__ = [
    "FAILURE_MODES",
    "OPERATIONS",
    "Simulator",
    "SimulatorSettings",
    "build_simulator_app",
    "in_process_executor",
    "simulator_of",
]

FAILURE_MODES: Final = frozenset({"none", "decline", "insufficient_funds", "server_error",
                                  "unavailable", "rate_limit", "timeout"})
OPERATIONS: Final = frozenset({"create_payment", "get_payment", "create_refund", "get_refund"})
_FINAL: Final = frozenset({"succeeded", "failed", "expired"})


@dataclass(slots=True)
class SimulatorSettings:
    """Behaviour of one simulator instance (see the module docstring)."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    success_rate: float = 1.0
    failure_mode: str = "none"
    failure_rate: float = 1.0
    failure_count: int = 0
    failure_operations: tuple[str, ...] = ("create_payment",)
    retry_after_seconds: int = 1
    hang_seconds: float = 30.0
    auto_complete: bool = False
    auto_complete_ms: float = 0.0
    duplicate_webhooks: int = 0
    refund_delay_ms: float = 0.0
    webhook_secret: str = field(default="", repr=False)
    webhook_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    api_key: str = field(default="", repr=False)
    public_url: str = ""
    webhook_timeout_seconds: float = 5.0

    def validate(self) -> None:
        """Raise ValueError for out-of-range values."""
        if self.failure_mode not in FAILURE_MODES:
            raise ValueError(f"failure_mode must be one of {sorted(FAILURE_MODES)}")
        unknown = set(self.failure_operations) - OPERATIONS
        if unknown:
            raise ValueError(f"unknown failure_operations {sorted(unknown)}")
        for name in ("success_rate", "failure_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("latency_ms", "latency_jitter_ms", "hang_seconds", "auto_complete_ms",
                     "refund_delay_ms", "failure_count", "duplicate_webhooks",
                     "retry_after_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def public(self) -> dict[str, Any]:
        """Settings as JSON, secrets left out."""
        data = asdict(self)
        for secret in ("webhook_secret", "webhook_secrets", "api_key"):
            data.pop(secret)
        data["failure_operations"] = list(self.failure_operations)
        return data

    def updated(self, changes: Mapping[str, Any]) -> SimulatorSettings:
        """A validated copy with `changes` applied; ValueError on unknown keys or bad values."""
        known = {f.name: f for f in fields(self)}
        values = {name: getattr(self, name) for name in known}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown setting {key!r}")
            current = values[key]
            if key == "failure_operations":
                if isinstance(value, str):
                    value = [part for part in value.split(",") if part]
                if not isinstance(value, list | tuple):
                    raise ValueError("failure_operations must be a list")
                value = tuple(str(item) for item in value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
            elif isinstance(current, int | float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                value = type(current)(value)
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise ValueError(f"{key} must be a string")
            elif isinstance(current, dict):
                if not isinstance(value, dict):
                    raise ValueError(f"{key} must be an object")
                value = {str(k): str(v) for k, v in value.items()}
            values[key] = value
        result = SimulatorSettings(**values)
        result.validate()
        return result


@dataclass(slots=True)
class _Payment:
    id: str
    reference: str
    account: str
    amount_minor: int
    currency: str
    method: str
    return_url: str
    webhook_url: str
    description: str
    checkout_url: str
    created: int
    status: str = "requires_action"
    failure_code: str | None = None
    failure_message: str | None = None
    amount_refunded_minor: int = 0

    def wire(self) -> SimPayment:
        return SimPayment(
            object="payment", id=self.id, reference=self.reference, status=self.status,
            amount_minor=self.amount_minor, currency=self.currency, method=self.method,
            checkout_url=self.checkout_url, return_url=self.return_url,
            failure_code=self.failure_code, failure_message=self.failure_message,
            amount_refunded_minor=self.amount_refunded_minor, created=self.created,
        )


@dataclass(slots=True)
class _Refund:
    id: str
    payment_id: str
    idempotency_key: str
    amount_minor: int
    currency: str
    reason: str
    created: int
    status: str = "pending"

    def wire(self) -> SimRefund:
        return SimRefund(
            object="refund", id=self.id, payment_id=self.payment_id,
            idempotency_key=self.idempotency_key, status=self.status,
            amount_minor=self.amount_minor, currency=self.currency, reason=self.reason,
            created=self.created,
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One delivery attempt, kept for inspection (GET /admin/webhooks)."""

    event_id: str
    event_type: str
    url: str
    status: int | None
    error: str = ""


def _error(status: int, code: str, message: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=dict(headers or {}))


class Simulator:
    """The simulator's in-memory state and behaviour, independent of HTTP routing."""

    def __init__(
        self, settings: SimulatorSettings, *,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        settings.validate()
        self.settings = settings
        self.payments: dict[str, _Payment] = {}
        self.refunds: dict[str, _Refund] = {}
        self.webhook_log: list[WebhookDelivery] = []
        self._by_reference: dict[str, str] = {}
        self._refund_by_key: dict[str, str] = {}
        self._failures_used = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._webhook_transport = webhook_transport
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- configuration -----------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply setting changes (validated); the failure budget starts over."""
        self.settings = self.settings.updated(changes)
        self._failures_used = 0

    def reset(self) -> None:
        """Forget every payment, refund and delivery."""
        self.payments.clear()
        self.refunds.clear()
        self.webhook_log.clear()
        self._by_reference.clear()
        self._refund_by_key.clear()
        self._failures_used = 0

    def webhook_secret_for(self, account: str) -> str:
        s = self.settings
        return s.webhook_secrets.get(account) or s.webhook_secret or \
            f"whsec_dev_{account or 'simulator'}"

    # ---- behaviour ---------------------------------------------------------------------

    async def latency(self) -> None:
        s = self.settings
        delay = s.latency_ms + self._rng.random() * s.latency_jitter_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    def failure_for(self, operation: str) -> str:
        """The failure mode to apply to this request ("none" when it should behave)."""
        s = self.settings
        if s.failure_mode == "none" or operation not in s.failure_operations:
            return "none"
        if s.failure_count and self._failures_used >= s.failure_count:
            return "none"
        if self._rng.random() >= s.failure_rate:
            return "none"
        self._failures_used += 1
        return s.failure_mode

    def early_failure(self, mode: str) -> JSONResponse | None:
        """The error response for modes that fail before anything is recorded."""
        if mode == "decline":
            return _error(402, "declined", "Simulated decline")
        if mode == "insufficient_funds":
            return _error(402, "insufficient_funds", "Simulated insufficient funds")
        if mode == "server_error":
            return _error(500, "server_error", "Simulated 500 before processing")
        if mode == "unavailable":
            return _error(503, "unavailable", "Simulated PSP outage (503 before processing)")
        if mode == "rate_limit":
            seconds = self.settings.retry_after_seconds
            return _error(429, "rate_limited", "Simulated throttling", headers={
                "Retry-After": str(seconds), "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0"})
        return None

    async def hang(self) -> None:
        await asyncio.sleep(self.settings.hang_seconds)

    def new_payment(self, body: Mapping[str, Any], account: str, base_url: str
                    ) -> tuple[_Payment, bool]:
        """Create (or find, by reference) a payment; True when it is new. ValueError if bad."""
        reference = body.get("reference")
        amount = body.get("amount_minor")
        currency = body.get("currency", "INR")
        if not isinstance(reference, str) or not 0 < len(reference) <= 64:
            raise ValueError("reference must be a string of 1-64 characters")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError("amount_minor must be a positive integer")
        if not isinstance(currency, str) or len(currency) != 3:
            raise ValueError("currency must be a 3-letter code")
        existing_id = self._by_reference.get(reference)
        if existing_id is not None:
            existing = self.payments[existing_id]
            if (existing.amount_minor, existing.currency) != (amount, currency):
                raise LookupError(f"reference {reference} exists with another amount")
            return existing, False
        payment_id = f"sim_{secrets.token_hex(12)}"
        public = (self.settings.public_url or base_url).rstrip("/")
        payment = _Payment(
            id=payment_id, reference=reference, account=account, amount_minor=amount,
            currency=currency, method=str(body.get("method") or "upi"),
            return_url=str(body.get("return_url") or ""),
            webhook_url=str(body.get("webhook_url") or ""),
            description=str(body.get("description") or ""),
            checkout_url=f"{public}/checkout/{payment_id}", created=int(self._clock()),
        )
        self.payments[payment_id] = payment
        self._by_reference[reference] = payment_id
        if self.settings.auto_complete:
            self.spawn(self._auto_complete(payment))
        return payment, True

    async def complete(self, payment: _Payment, succeed: bool | None = None) -> _Payment:
        """Finish a payment (by success_rate unless `succeed` says) and send its webhook."""
        if payment.status in _FINAL:
            return payment
        if succeed is None:
            succeed = self._rng.random() < self.settings.success_rate
        if succeed:
            payment.status = "succeeded"
        else:
            payment.status = "failed"
            payment.failure_code = "declined"
            payment.failure_message = "Simulated decline at checkout"
        await self.send_event(payment.account, payment.webhook_url,
                              f"payment.{payment.status}", dict(payment.wire()))
        return payment

    def new_refund(self, payment: _Payment, body: Mapping[str, Any], key: str) -> tuple[
            _Refund, bool]:
        """Create (or find, by idempotency key) a refund. ValueError / LookupError if bad."""
        amount = body.get("amount_minor", payment.amount_minor - payment.amount_refunded_minor)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError("amount_minor must be a positive integer")
        if key and key in self._refund_by_key:
            existing = self.refunds[self._refund_by_key[key]]
            if (existing.payment_id, existing.amount_minor) != (payment.id, amount):
                raise LookupError("Idempotency-Key was used for a different refund")
            return existing, False
        if payment.status != "succeeded":
            raise PermissionError(f"payment is {payment.status}, not succeeded")
        if amount > payment.amount_minor - payment.amount_refunded_minor:
            raise OverflowError("amount exceeds the refundable amount")
        refund = _Refund(
            id=f"simrf_{secrets.token_hex(12)}", payment_id=payment.id,
            idempotency_key=key, amount_minor=amount, currency=payment.currency,
            reason=str(body.get("reason") or ""), created=int(self._clock()),
        )
        payment.amount_refunded_minor += amount
        self.refunds[refund.id] = refund
        if key:
            self._refund_by_key[key] = refund.id
        if self.settings.refund_delay_ms <= 0:
            refund.status = "succeeded"
            self.spawn(self._refund_event(payment, refund))
        else:
            self.spawn(self._settle_refund_later(payment, refund))
        return refund, True

    def refunds_of(self, payment_id: str) -> list[_Refund]:
        return [r for r in self.refunds.values() if r.payment_id == payment_id]

    def find_by_reference(self, reference: str) -> _Payment | None:
        payment_id = self._by_reference.get(reference)
        return self.payments.get(payment_id) if payment_id else None

    # ---- webhooks ----------------------------------------------------------------------

    async def send_event(self, account: str, url: str, event_type: str,
                         data: dict[str, Any]) -> None:
        """Sign and POST one event (plus duplicate_webhooks copies) to `url`."""
        if not url:
            return
        event_id = f"evt_{secrets.token_hex(12)}"
        body = json.dumps({"id": event_id, "type": event_type, "created": int(self._clock()),
                           "data": data}, separators=(",", ":")).encode()
        secret = self.webhook_secret_for(account)
        for _ in range(1 + self.settings.duplicate_webhooks):
            timestamp = str(int(self._clock()))
            headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event_id,
                       TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: sign(secret, timestamp, body)}
            try:
                response = await self._client().post(
                    url, content=body, headers=headers,
                    timeout=self.settings.webhook_timeout_seconds)
                self.webhook_log.append(WebhookDelivery(event_id, event_type, url,
                                                        response.status_code))
            except httpx.HTTPError as exc:
                self.webhook_log.append(WebhookDelivery(event_id, event_type, url, None,
                                                        type(exc).__name__))

    def _client(self) -> httpx.AsyncClient:
        # One client per event loop: the app may be served from another thread's loop.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = httpx.AsyncClient(transport=self._webhook_transport)
            self._clients[loop_id] = client
        return client

    def spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait for background work (auto-completion, refund webhooks) of this loop."""
        loop = asyncio.get_running_loop()
        while pending := [t for t in self._tasks if t.get_loop() is loop and not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _auto_complete(self, payment: _Payment) -> None:
        await asyncio.sleep(self.settings.auto_complete_ms / 1000)
        await self.complete(payment)

    async def _refund_event(self, payment: _Payment, refund: _Refund) -> None:
        await self.send_event(payment.account, payment.webhook_url, f"refund.{refund.status}",
                              dict(refund.wire()))

    async def _settle_refund_later(self, payment: _Payment, refund: _Refund) -> None:
        await asyncio.sleep(self.settings.refund_delay_ms / 1000)
        refund.status = "succeeded"
        await self._refund_event(payment, refund)


# ---- HTTP routing ------------------------------------------------------------------------

def build_simulator_app(
    settings: SimulatorSettings | None = None, *,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None, clock: Callable[[], float] = time.time,
) -> Starlette:
    """A Starlette app serving the simulator API; its state is `app.state.simulator`."""
    sim = Simulator(settings or SimulatorSettings(), webhook_transport=webhook_transport,
                    rng=rng, clock=clock)

    def authorised(request: Request) -> bool:
        key = sim.settings.api_key
        return not key or request.headers.get("authorization", "") == f"Bearer {key}"

    async def api_prelude(request: Request, operation: str) -> tuple[Response | None, str]:
        if not authorised(request):
            return _error(401, "unauthorized", "invalid API key"), "none"
        await sim.latency()
        mode = sim.failure_for(operation)
        return sim.early_failure(mode), mode

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("body is not JSON") from exc
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    async def create_payment(request: Request) -> Response:
        failed, mode = await api_prelude(request, "create_payment")
        if failed is not None:
            return failed
        try:
            payment, created = sim.new_payment(
                await json_body(request), request.headers.get(ACCOUNT_HEADER, ""),
                str(request.base_url))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        except LookupError as exc:
            return _error(409, "reference_conflict", str(exc))
        if mode == "timeout":
            await sim.hang()
        return JSONResponse(dict(payment.wire()), status_code=201 if created else 200)

    async def list_payments(request: Request) -> Response:
        failed, mode = await api_prelude(request, "get_payment")
        if failed is not None:
            return failed
        if mode == "timeout":
            await sim.hang()
        payment = sim.find_by_reference(request.query_params.get("reference", ""))
        return JSONResponse({"data": [dict(payment.wire())] if payment else []})

    async def get_payment(request: Request) -> Response:
        failed, mode = await api_prelude(request, "get_payment")
        if failed is not None:
            return failed
        if mode == "timeout":
            await sim.hang()
        payment = sim.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "no such payment")
        return JSONResponse(dict(payment.wire()))

    async def create_refund(request: Request) -> Response:
        failed, mode = await api_prelude(request, "create_refund")
        if failed is not None:
            return failed
        payment = sim.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "no such payment")
        try:
            refund, created = sim.new_refund(payment, await json_body(request),
                                             request.headers.get(IDEMPOTENCY_HEADER, ""))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        except LookupError as exc:
            return _error(409, "idempotency_conflict", str(exc))
        except PermissionError as exc:
            return _error(400, "payment_not_refundable", str(exc))
        except OverflowError as exc:
            return _error(400, "amount_exceeds_refundable", str(exc))
        if mode == "timeout":
            await sim.hang()
        return JSONResponse(dict(refund.wire()), status_code=201 if created else 200)

    async def list_refunds(request: Request) -> Response:
        failed, mode = await api_prelude(request, "get_refund")
        if failed is not None:
            return failed
        if mode == "timeout":
            await sim.hang()
        payment_id = request.path_params["payment_id"]
        if payment_id not in sim.payments:
            return _error(404, "not_found", "no such payment")
        return JSONResponse({"data": [dict(r.wire()) for r in sim.refunds_of(payment_id)]})

    async def get_refund(request: Request) -> Response:
        failed, mode = await api_prelude(request, "get_refund")
        if failed is not None:
            return failed
        if mode == "timeout":
            await sim.hang()
        refund = sim.refunds.get(request.path_params["refund_id"])
        if refund is None:
            return _error(404, "not_found", "no such refund")
        return JSONResponse(dict(refund.wire()))

    async def checkout(request: Request) -> Response:
        payment = sim.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "no such payment")
        outcome = request.query_params.get("outcome", "")
        succeed = {"success": True, "failure": False}.get(outcome)
        await sim.complete(payment, succeed)
        if payment.return_url:
            separator = "&" if "?" in payment.return_url else "?"
            query = urlencode({"payment_id": payment.id, "status": payment.status,
                               "reference": payment.reference})
            return RedirectResponse(f"{payment.return_url}{separator}{query}", status_code=303)
        return JSONResponse(dict(payment.wire()))

    async def admin_config(request: Request) -> Response:
        if request.method == "POST":
            try:
                sim.configure(await json_body(request))
            except ValueError as exc:
                return _error(400, "invalid_config", str(exc))
        return JSONResponse(sim.settings.public())

    async def admin_reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"reset": True})

    async def admin_payments(request: Request) -> Response:
        return JSONResponse({"data": [dict(p.wire()) for p in sim.payments.values()]})

    async def admin_refunds(request: Request) -> Response:
        return JSONResponse({"data": [dict(r.wire()) for r in sim.refunds.values()]})

    async def admin_webhooks(request: Request) -> Response:
        return JSONResponse({"data": [
            {"event_id": d.event_id, "type": d.event_type, "url": d.url, "status": d.status,
             "error": d.error} for d in sim.webhook_log]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        Route("/v1/payments", create_payment, methods=["POST"]),
        Route("/v1/payments", list_payments, methods=["GET"]),
        Route("/v1/payments/{payment_id}", get_payment, methods=["GET"]),
        Route("/v1/payments/{payment_id}/refunds", create_refund, methods=["POST"]),
        Route("/v1/payments/{payment_id}/refunds", list_refunds, methods=["GET"]),
        Route("/v1/refunds/{refund_id}", get_refund, methods=["GET"]),
        Route("/checkout/{payment_id}", checkout, methods=["GET", "POST"]),
        Route("/admin/config", admin_config, methods=["GET", "POST"]),
        Route("/admin/reset", admin_reset, methods=["POST"]),
        Route("/admin/payments", admin_payments, methods=["GET"]),
        Route("/admin/refunds", admin_refunds, methods=["GET"]),
        Route("/admin/webhooks", admin_webhooks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])
    app.state.simulator = sim
    return app


def simulator_of(app: Starlette) -> Simulator:
    """The Simulator behind an app built by build_simulator_app."""
    sim = app.state.simulator
    assert isinstance(sim, Simulator)
    return sim


def in_process_executor(app: Starlette, **executor_args: Any) -> HttpExecutor:
    """An HttpExecutor whose requests go straight into `app` (no sockets), for tests."""
    return HttpExecutor(transport=httpx.ASGITransport(app=app), **executor_args)
