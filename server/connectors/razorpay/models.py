"""Razorpay wire facts: paths, status maps, error codes and the uncertain ([P]) facts.

Status maps (anything not listed is PENDING):

| Razorpay                                   | PspStatus                                    |
|--------------------------------------------|----------------------------------------------|
| payment link created                       | REQUIRES_ACTION, unless a try says otherwise |
| payment link partially_paid                | PENDING (we never allow partial payments)    |
| payment link paid / expired / cancelled    | SUCCEEDED / EXPIRED / FAILED                 |
| order created / attempted / paid           | REQUIRES_ACTION / PENDING* / SUCCEEDED       |
| payment created / authorized               | PENDING (auto-capture will follow)           |
| payment captured / failed                  | SUCCEEDED / FAILED                           |
| payment refunded (captured before)         | SUCCEEDED (the refund is tracked on its own) |
| payment refunded (never captured)          | FAILED (an authorisation auto-refunded)      |
| refund pending / processed / failed        | PENDING / SUCCEEDED / FAILED                 |

*An open link or attempted order is refined by its payments: a captured one → SUCCEEDED; else
an authorized one → PENDING; else the newest failed → FAILED (the customer may retry, and the
payment state machine accepts a late success; Razorpay's late authorisation does the same).

Webhook events → (kind, status): see WEBHOOK_EVENTS. Events we do not act on (disputes,
downtime, …) come back as kind "ignored" with no payment reference, so they can be
acknowledged with 2xx (Razorpay disables a webhook that keeps failing) and change nothing.

Errors: {"error": {"code", "description", "reason", "source", "step", "field"}}.
BAD_REQUEST_ERROR → Declined (it covers validation and customer-side failures);
GATEWAY_ERROR → TransientError (the bank/gateway hop failed; another PSP may succeed);
SERVER_ERROR / SERVICE_UNAVAILABLE → TransientError for reads, UnknownOutcome for writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from server.connectors.base import PspStatus

__all__ = [
    "AUTH_FAILURE_STATUS",
    "NOTE_ATTEMPT_ID",
    "NOTE_PAYMENT_ID",
    "NOTE_REFUND_ID",
    "ORDER_RECEIPT_IS_UNIQUE",
    "ORDER_STATUS_MAP",
    "PAYMENT_LINK_REFERENCE_ID_IS_UNIQUE",
    "PAYMENT_LINK_STATUS_MAP",
    "PAYMENT_STATUS_MAP",
    "REFUND_IDEMPOTENCY_HEADER",
    "REFUND_STATUS_MAP",
    "WEBHOOK_EVENTS",
    "RazorpayError",
    "map_payment_status",
    "parse_error",
    "parse_json_object",
]

ORDERS_PATH: Final = "/v1/orders"
PAYMENT_LINKS_PATH: Final = "/v1/payment_links"
PAYMENTS_PATH: Final = "/v1/payments"
REFUNDS_PATH: Final = "/v1/refunds"

REFUND_IDEMPOTENCY_HEADER: Final = "X-Refund-Idempotency"
SIGNATURE_HEADER: Final = "X-Razorpay-Signature"
EVENT_ID_HEADER: Final = "X-Razorpay-Event-Id"

# Keys of the `notes` we attach (Razorpay copies a link's notes onto its order and payments).
NOTE_PAYMENT_ID: Final = "triveni_payment_id"
NOTE_ATTEMPT_ID: Final = "triveni_attempt_id"
NOTE_REFUND_ID: Final = "triveni_refund_id"

RECEIPT_MAX_CHARS: Final = 40
REFERENCE_ID_MAX_CHARS: Final = 40
NOTE_VALUE_MAX_CHARS: Final = 256

# [P] Razorpay refuses a second payment link with a reference_id it has seen, so re-sending a
# create cannot make a second link; this is what lets the executor retry link creation.
PAYMENT_LINK_REFERENCE_ID_IS_UNIQUE: Final = True
# [P] Payment links can be listed by reference_id: GET /v1/payment_links?reference_id=…,
# answering {"payment_links": [...]}.
PAYMENT_LINK_LOOKUP_PARAM: Final = "reference_id"
PAYMENT_LINK_LIST_KEY: Final = "payment_links"
# [P] Orders can be listed by receipt: GET /v1/orders?receipt=… (a collection).
ORDER_LOOKUP_PARAM: Final = "receipt"
# [P] An order's receipt is documented as "unique" but we do not rely on Razorpay refusing a
# duplicate, so order creation is not retried automatically.
ORDER_RECEIPT_IS_UNIQUE: Final = False
# [P] Bad API keys answer HTTP 401 (the executor maps 401/403 to Misconfigured either way).
AUTH_FAILURE_STATUS: Final = 401

PAYMENT_LINK_STATUS_MAP: Mapping[str, PspStatus] = {
    "created": PspStatus.REQUIRES_ACTION,
    "partially_paid": PspStatus.PENDING,
    "paid": PspStatus.SUCCEEDED,
    "expired": PspStatus.EXPIRED,
    "cancelled": PspStatus.FAILED,
}

ORDER_STATUS_MAP: Mapping[str, PspStatus] = {
    "created": PspStatus.REQUIRES_ACTION,
    "attempted": PspStatus.PENDING,
    "paid": PspStatus.SUCCEEDED,
}

PAYMENT_STATUS_MAP: Mapping[str, PspStatus] = {
    "created": PspStatus.PENDING,
    "authorized": PspStatus.PENDING,
    "captured": PspStatus.SUCCEEDED,
    "failed": PspStatus.FAILED,
    # "refunded" depends on whether it was captured first: see map_payment_status.
}

REFUND_STATUS_MAP: Mapping[str, PspStatus] = {
    "pending": PspStatus.PENDING,
    "processed": PspStatus.SUCCEEDED,
    "failed": PspStatus.FAILED,
}

WEBHOOK_EVENTS: Mapping[str, tuple[str, PspStatus]] = {
    "payment.authorized": ("payment", PspStatus.PENDING),
    "payment.pending": ("payment", PspStatus.PENDING),
    "payment.captured": ("payment", PspStatus.SUCCEEDED),
    "payment.failed": ("payment", PspStatus.FAILED),
    "order.paid": ("payment", PspStatus.SUCCEEDED),
    "payment_link.paid": ("payment", PspStatus.SUCCEEDED),
    "payment_link.partially_paid": ("payment", PspStatus.PENDING),
    "payment_link.expired": ("payment", PspStatus.EXPIRED),
    "payment_link.cancelled": ("payment", PspStatus.FAILED),
    "refund.created": ("refund", PspStatus.PENDING),
    "refund.processed": ("refund", PspStatus.SUCCEEDED),
    "refund.failed": ("refund", PspStatus.FAILED),
}


def map_payment_status(entity: Mapping[str, Any]) -> PspStatus:
    raw = entity.get("status")
    if raw == "refunded":
        return PspStatus.SUCCEEDED if entity.get("captured") is True else PspStatus.FAILED
    return PAYMENT_STATUS_MAP.get(raw, PspStatus.PENDING) if isinstance(raw, str) \
        else PspStatus.PENDING


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class RazorpayError:
    """The `error` object of a Razorpay error response."""

    __slots__ = ("code", "description", "reason")

    def __init__(self, code: str, description: str, reason: str) -> None:
        self.code = code
        self.description = description
        self.reason = reason


def parse_error(body: bytes) -> RazorpayError:
    data = parse_json_object(body) or {}
    error = data.get("error")
    if not isinstance(error, dict):
        return RazorpayError("", "", "")

    def text(key: str) -> str:
        value = error.get(key)
        return value if isinstance(value, str) and value != "NA" else ""

    return RazorpayError(text("code"), text("description")[:300], text("reason"))
