"""Cashfree PG wire types (API version 2023-08-01) and the status maps.

Status maps (Cashfree → PspStatus; anything not listed is PENDING):

    order_status              payment_status             refund_status
    PAID        → SUCCEEDED   SUCCESS       → SUCCEEDED  SUCCESS   → SUCCEEDED
    EXPIRED     → EXPIRED     FAILED        → FAILED     CANCELLED → FAILED
    TERMINATED  → FAILED      USER_DROPPED  → FAILED     FAILED    → FAILED
    ACTIVE      → (decided    CANCELLED     → FAILED     PENDING   → PENDING
                  by its      VOID          → FAILED     ONHOLD    → PENDING
                  payments)   PENDING       → PENDING
    TERMINATION_REQUESTED     NOT_ATTEMPTED → PENDING
                → PENDING

An ACTIVE order is still payable: with no payment yet it is REQUIRES_ACTION (the customer has
not paid), otherwise it takes the status of its newest payment. Cashfree keeps an order ACTIVE
after a failed payment, so the customer may still pay it until it expires; a FAILED reported
from an ACTIVE order can therefore be followed by SUCCEEDED (the state machine allows a late
success for exactly this reason).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from server.connectors.base import PspStatus
from server.domain.money import Money

__all__ = [
    "API_VERSION",
    "AUTO_REFUND_WEBHOOK_TYPE",
    "CHECKOUT_PATH",
    "DUPLICATE_ID_HTTP_STATUS",
    "ORDER_STATUS_MAP",
    "PAYMENT_STATUS_MAP",
    "PAYMENT_WEBHOOK_TYPES",
    "REFUND_STATUS_MAP",
    "REFUND_WEBHOOK_TYPES",
    "WEBHOOK_TOLERANCE_SECONDS",
    "CashfreeError",
    "CashfreeOrder",
    "CashfreePayment",
    "CashfreeRefund",
    "money_from_rupees",
    "parse_json",
]

API_VERSION = "2023-08-01"

# Cashfree documents no timestamp tolerance for webhooks; we accept deliveries whose
# x-webhook-timestamp is within ±5 minutes of our clock (allowing for clock skew both ways).
WEBHOOK_TOLERANCE_SECONDS = 300

# [P] Cashfree answers a create with an order_id (or a refund with a refund_id) that already
# exists with HTTP 409 `invalid_request_error`; the reference marks the 409 as unconfirmed.
DUPLICATE_ID_HTTP_STATUS = 409

# [P] The auto-refund webhook's type name is unconfirmed (its payload has no order block).
AUTO_REFUND_WEBHOOK_TYPE = "AUTO_REFUND_STATUS_WEBHOOK"

PAYMENT_WEBHOOK_TYPES = frozenset(
    {"PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"}
)
REFUND_WEBHOOK_TYPES = frozenset({"REFUND_STATUS_WEBHOOK", AUTO_REFUND_WEBHOOK_TYPE})

# Cashfree returns no redirect URL: its checkout opens from the JS SDK with payment_session_id.
# Our redirect_url is a Triveni-hosted page that does that (see checkout.py); this is its path
# under the Triveni base URL, followed by /{order_id}.
CHECKOUT_PATH = "/checkout/cashfree"

ORDER_STATUS_MAP: Mapping[str, PspStatus] = {
    "PAID": PspStatus.SUCCEEDED,
    "EXPIRED": PspStatus.EXPIRED,
    "TERMINATED": PspStatus.FAILED,
    "TERMINATION_REQUESTED": PspStatus.PENDING,
    "ACTIVE": PspStatus.PENDING,
}

PAYMENT_STATUS_MAP: Mapping[str, PspStatus] = {
    "SUCCESS": PspStatus.SUCCEEDED,
    "FAILED": PspStatus.FAILED,
    "USER_DROPPED": PspStatus.FAILED,
    "CANCELLED": PspStatus.FAILED,
    "VOID": PspStatus.FAILED,
    "PENDING": PspStatus.PENDING,
    "NOT_ATTEMPTED": PspStatus.PENDING,
}

REFUND_STATUS_MAP: Mapping[str, PspStatus] = {
    "SUCCESS": PspStatus.SUCCEEDED,
    "FAILED": PspStatus.FAILED,
    "CANCELLED": PspStatus.FAILED,
    "PENDING": PspStatus.PENDING,
    "ONHOLD": PspStatus.PENDING,
}


def parse_json(body: bytes) -> Any:
    """Decode a Cashfree body keeping decimals exact (170.10 must not become a float)."""
    return json.loads(body, parse_float=Decimal)


def money_from_rupees(value: object, currency: str = "INR") -> Money | None:
    """Cashfree's rupee amounts (numbers, up to 2 decimals) → Money; None when absent/invalid."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        rupees = Decimal(str(value))
    except InvalidOperation:
        return None
    paise = rupees * 100
    if paise != paise.to_integral_value():
        return None
    return Money(int(paise), currency or "INR")


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class CashfreeError:
    """The error body `{"message", "code", "type"}`."""

    message: str
    code: str
    type: str

    @classmethod
    def from_body(cls, body: bytes) -> CashfreeError:
        try:
            data = parse_json(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(message=body[:200].decode("utf-8", "replace"), code="", type="")
        return cls(message=_str(data, "message"), code=_str(data, "code"), type=_str(data, "type"))


@dataclass(frozen=True, slots=True)
class CashfreeOrder:
    order_id: str
    cf_order_id: str
    order_status: str
    payment_session_id: str
    amount: Money | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CashfreeOrder:
        return cls(
            order_id=_str(data, "order_id"),
            cf_order_id=_str(data, "cf_order_id"),
            order_status=_str(data, "order_status"),
            payment_session_id=_str(data, "payment_session_id"),
            amount=money_from_rupees(data.get("order_amount"), _str(data, "order_currency")),
        )


@dataclass(frozen=True, slots=True)
class CashfreePayment:
    cf_payment_id: str
    order_id: str
    payment_status: str
    amount: Money | None
    payment_message: str
    payment_time: str
    error_code: str
    error_description: str

    @property
    def status(self) -> PspStatus:
        return PAYMENT_STATUS_MAP.get(self.payment_status, PspStatus.PENDING)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], order_id: str = "") -> CashfreePayment:
        errors = data.get("error_details")
        errors = errors if isinstance(errors, dict) else {}
        return cls(
            cf_payment_id=_str(data, "cf_payment_id"),
            order_id=_str(data, "order_id") or order_id,
            payment_status=_str(data, "payment_status"),
            amount=money_from_rupees(data.get("payment_amount"), _str(data, "payment_currency")),
            payment_message=_str(data, "payment_message"),
            payment_time=_str(data, "payment_time"),
            error_code=_str(errors, "error_code") or _str(errors, "error_reason"),
            error_description=_str(errors, "error_description"),
        )


@dataclass(frozen=True, slots=True)
class CashfreeRefund:
    refund_id: str
    cf_refund_id: str
    order_id: str
    refund_status: str
    status_description: str
    amount: Money | None

    @property
    def status(self) -> PspStatus:
        return REFUND_STATUS_MAP.get(self.refund_status, PspStatus.PENDING)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CashfreeRefund:
        return cls(
            refund_id=_str(data, "refund_id"),
            cf_refund_id=_str(data, "cf_refund_id"),
            order_id=_str(data, "order_id"),
            refund_status=_str(data, "refund_status"),
            status_description=_str(data, "status_description"),
            amount=money_from_rupees(data.get("refund_amount"), _str(data, "refund_currency")),
        )
