"""The simulator PSP's wire format, shared by its HTTP app and its connector.

API (JSON bodies, amounts in integer minor units):

    POST /v1/payments                    {reference, amount_minor, currency, method,
                                          return_url, webhook_url, description?, customer?}
         → 201 payment (200 with the same payment when `reference` was seen before; 409 when
           it was seen with a different amount/currency)
    GET  /v1/payments/{id}               → 200 payment | 404
    GET  /v1/payments?reference={ref}    → 200 {"data": [payment]} (0 or 1 element)
    GET  /v1/payments/{id}/refunds       → 200 {"data": [refund]}
    POST /v1/payments/{id}/refunds       {amount_minor, reason?} + Idempotency-Key header
         → 201 refund (200 with the same refund for a repeated key; 409 if the key was used
           for a different refund)
    GET  /v1/refunds/{id}                → 200 refund | 404
    GET  /checkout/{id}[?outcome=success|failure]  the hosted page: completes the payment
    GET|POST /admin/config, GET /admin/payments, GET /admin/refunds, GET /admin/webhooks

Errors: {"error": {"code": ..., "message": ...}} with 400/402/404/409/429/500/503.
Auth: `Authorization: Bearer <api_key>` when the simulator is started with an API key.
`X-Simulator-Account: <account name>` selects the webhook secret (see app.py).

Webhooks: POST to the payment's webhook_url, body `{"id", "type", "created", "data"}`, headers
`X-Simulator-Event-Id`, `X-Simulator-Timestamp` (unix seconds) and `X-Simulator-Signature` =
lowercase hex HMAC-SHA256(webhook secret, f"{timestamp}." + raw body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict

from server.connectors.base import PspStatus

__all__ = [
    "ACCOUNT_HEADER",
    "EVENT_ID_HEADER",
    "IDEMPOTENCY_HEADER",
    "PAYMENT_STATUS_MAP",
    "REFUND_STATUS_MAP",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_EVENT_TYPES",
    "WEBHOOK_TOLERANCE_SECONDS",
    "SimPayment",
    "SimRefund",
    "map_payment_status",
    "map_refund_status",
]

SIGNATURE_HEADER: Final = "X-Simulator-Signature"
TIMESTAMP_HEADER: Final = "X-Simulator-Timestamp"
EVENT_ID_HEADER: Final = "X-Simulator-Event-Id"
ACCOUNT_HEADER: Final = "X-Simulator-Account"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

# A signed delivery older (or newer) than this is rejected as stale; inside the window the
# event id makes a replay a no-op.
WEBHOOK_TOLERANCE_SECONDS: Final = 300

# The simulator's payment statuses. Only succeeded/failed/expired are final; everything else
# (including statuses a future simulator might add) is PENDING.
PAYMENT_STATUS_MAP: Mapping[str, PspStatus] = {
    "requires_action": PspStatus.REQUIRES_ACTION,
    "processing": PspStatus.PENDING,
    "succeeded": PspStatus.SUCCEEDED,
    "failed": PspStatus.FAILED,
    "expired": PspStatus.EXPIRED,
}

REFUND_STATUS_MAP: Mapping[str, PspStatus] = {
    "pending": PspStatus.PENDING,
    "succeeded": PspStatus.SUCCEEDED,
    "failed": PspStatus.FAILED,
}

# Event type → (kind, status). Unknown types are acknowledged but ignored (kind "ignored").
WEBHOOK_EVENT_TYPES: Mapping[str, tuple[str, PspStatus]] = {
    "payment.succeeded": ("payment", PspStatus.SUCCEEDED),
    "payment.failed": ("payment", PspStatus.FAILED),
    "payment.expired": ("payment", PspStatus.EXPIRED),
    "refund.succeeded": ("refund", PspStatus.SUCCEEDED),
    "refund.failed": ("refund", PspStatus.FAILED),
}


class SimPayment(TypedDict):
    """A payment as the simulator serialises it."""

    object: str  # "payment"
    id: str  # sim_…
    reference: str  # the merchant's attempt id
    status: str
    amount_minor: int
    currency: str
    method: str
    checkout_url: str
    return_url: str
    failure_code: str | None
    failure_message: str | None
    amount_refunded_minor: int
    created: int


class SimRefund(TypedDict):
    """A refund as the simulator serialises it."""

    object: str  # "refund"
    id: str  # simrf_…
    payment_id: str
    idempotency_key: str
    status: str
    amount_minor: int
    currency: str
    reason: str
    created: int


def map_payment_status(raw: str) -> PspStatus:
    return PAYMENT_STATUS_MAP.get(raw, PspStatus.PENDING)


def map_refund_status(raw: str) -> PspStatus:
    return REFUND_STATUS_MAP.get(raw, PspStatus.PENDING)


def str_field(data: Mapping[str, Any], key: str) -> str:
    """A string field or "" (None and non-strings become "")."""
    value = data.get(key)
    return value if isinstance(value, str) else ""


def int_field(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
