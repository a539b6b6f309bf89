"""The connector contract. A connector is a stateless translator for one PSP.

It builds the PSP's HTTP requests, parses its responses, maps the PSP's statuses (anything not
explicitly success or failure stays PENDING), classifies errors, and verifies/parses webhooks.
It never opens a socket itself: every request goes through the `Transport` seam given to each
call (in production `server.connectors.http.HttpExecutor`; in tests, the same executor pointed at
a local fake PSP). It never touches storage: the service layer persists the attempt before the
call and the result after.

Error tree (all derive from server.errors.TriveniError):
ConnectorError
├── Declined           the PSP definitively refused; no money moved           → do not retry
├── TransientError     failed before the PSP acted (5xx before processing, refused connection)
│   └── RateLimited    HTTP 429                                             → retry later/elsewhere
├── UnknownOutcome     request may have reached the PSP (timeout after send)  → status sync first
├── Misconfigured      bad credentials / account setup (401/403)              → alert, try elsewhere
└── WebhookRejected    signature invalid, stale, or body malformed            → 401/400, no change
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from server.domain.money import Money
from server.errors import TriveniError

__all__ = [
    "AccountCapabilities",
    "Connector",
    "ConnectorAccount",
    "ConnectorError",
    "ConnectorPayment",
    "ConnectorRefund",
    "CreatePaymentInput",
    "Declined",
    "HttpRequest",
    "HttpResponse",
    "Misconfigured",
    "PspStatus",
    "RateLimited",
    "RefundInput",
    "TransientError",
    "Transport",
    "UnknownOutcome",
    "WebhookEvent",
    "WebhookRejected",
]


# ---- errors -------------------------------------------------------------------------------

class ConnectorError(TriveniError):
    """A PSP call failed. `code`/`message` are the PSP's own where it gave them."""

    def __init__(self, message: str, *, code: str = "", http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


class Declined(ConnectorError):
    pass


class TransientError(ConnectorError):
    pass


class RateLimited(TransientError):
    def __init__(self, message: str, *, retry_after_seconds: float | None = None,
                 code: str = "RATE_LIMITED", http_status: int | None = 429) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after_seconds = retry_after_seconds


class UnknownOutcome(ConnectorError):
    pass


class Misconfigured(ConnectorError):
    pass


class WebhookRejected(ConnectorError):
    """`reason` is one of: bad_signature, stale, malformed, unsigned."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code=reason)
        self.reason = reason


# ---- HTTP seam ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request to a PSP, fully built by the connector (body bytes are what gets signed)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # True only when repeating the call cannot move money twice (GETs, PSP-idempotent POSTs);
    # the executor retries transient failures of these and nothing else.
    safe_to_retry: bool = False
    # Logical operation name for metrics and logs, e.g. "create_payment", "get_status".
    operation: str = ""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body or b"null")


class Transport(Protocol):
    """The one-method seam every connector sends through."""

    async def send(self, account: ConnectorAccount, request: HttpRequest) -> HttpResponse: ...


# ---- accounts -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AccountCapabilities:
    methods: frozenset[str] = frozenset({"upi", "card", "netbanking", "wallet"})
    currencies: frozenset[str] = frozenset({"INR"})
    min_amount_minor: int = 100
    max_amount_minor: int = 100_000_000  # ₹10,00,000

    def supports(self, method: str, amount: Money) -> str | None:
        """None when eligible, else the reason it is not (for the routing decision)."""
        if method not in self.methods:
            return f"method {method} not supported"
        if amount.currency not in self.currencies:
            return f"currency {amount.currency} not supported"
        if amount.amount_minor < self.min_amount_minor:
            return "amount below account minimum"
        if amount.amount_minor > self.max_amount_minor:
            return "amount above account maximum"
        return None


@dataclass(frozen=True, slots=True)
class ConnectorAccount:
    """One merchant-of-record account at one PSP (e.g. instamojo_premium)."""

    name: str
    psp: str  # "simulator", "instamojo", "razorpay", "cashfree", "payu"
    base_url: str
    # PSP credentials by the PSP's own names (key_id, key_secret, client_id, ...). Never logged.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    webhook_secret: str = field(default="", repr=False)
    capabilities: AccountCapabilities = field(default_factory=AccountCapabilities)
    # "premium" accounts are preferred above the premium threshold (seed: ₹10,000).
    tier: str = "standard"
    priority: int = 100  # lower = preferred in static order
    timeout_seconds: float = 10.0
    # PSP-specific switches, e.g. {"api_version": "v1.1"} for Instamojo.
    options: Mapping[str, str] = field(default_factory=dict)

    def credential(self, key: str) -> str:
        try:
            return self.credentials[key]
        except KeyError as exc:
            raise Misconfigured(f"account {self.name}: missing credential {key}") from exc


# ---- flow inputs / outputs ----------------------------------------------------------------

class PspStatus(StrEnum):
    """What the PSP says, mapped. Anything not explicitly success or failure is PENDING."""

    PENDING = "PENDING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class CreatePaymentInput:
    payment_id: str  # our pay_… id
    attempt_id: str  # unique per attempt; sent as the PSP's receipt / order id / txnid
    amount: Money
    method: str  # upi | card | netbanking | wallet
    method_details: Mapping[str, str]  # vpa, upi_flow, bank_code, wallet, card_token, network
    customer_id: str
    customer_name: str
    customer_email: str
    customer_phone: str
    description: str
    return_url: str
    webhook_url: str  # our /webhooks/{account} URL for this account


@dataclass(frozen=True, slots=True)
class ConnectorPayment:
    connector_payment_id: str  # the PSP reference used for status queries
    status: PspStatus
    redirect_url: str = ""
    raw_status: str = ""  # the PSP's own status string, for the audit log
    error_code: str = ""
    error_message: str = ""
    amount_captured: Money | None = None
    # Extra PSP references worth keeping (e.g. razorpay payment id under an order).
    references: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundInput:
    refund_id: str  # our rfnd_… id; also the PSP idempotency key / receipt where supported
    payment_id: str
    connector_payment_id: str
    amount: Money
    total_amount: Money  # the original payment amount (PayU and Instamojo need it)
    reason: str
    references: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectorRefund:
    connector_refund_id: str
    status: PspStatus  # PENDING / SUCCEEDED / FAILED
    raw_status: str = ""
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified, parsed webhook delivery."""

    kind: str  # "payment" or "refund"
    dedupe_id: str  # the PSP's event id, or a stable hash of the delivery's identity
    connector_payment_id: str  # the reference we stored when creating (order id, request id…)
    status: PspStatus
    raw_status: str = ""
    payment_ref: str = ""  # our pay_… / attempt id when the PSP echoes it
    connector_refund_id: str = ""
    amount: Money | None = None
    occurred_at: datetime | None = None
    error_code: str = ""
    error_message: str = ""


# ---- the contract -------------------------------------------------------------------------

class Connector(Protocol):
    """One PSP. Implementations live in server/connectors/<psp>/connector.py."""

    psp: str

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment: ...

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment: ...

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund: ...

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund: ...

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify the signature (constant time) BEFORE parsing; raise WebhookRejected if bad."""
        ...
