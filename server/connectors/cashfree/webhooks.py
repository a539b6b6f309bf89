"""Cashfree webhook verification and parsing.

Signature: base64(HMAC-SHA256(key=client secret, msg=x-webhook-timestamp + raw body)), the
timestamp being epoch milliseconds as sent, concatenated with no separator. It is checked in
constant time over the raw bytes before anything is parsed. A delivery whose timestamp is more
than WEBHOOK_TOLERANCE_SECONDS away from our clock is rejected as stale, so a captured delivery
cannot be replayed later; inside the window, the dedupe id makes a replay a no-op.

Dedupe id: the 2023-08-01 payload carries no event id, so it is built from the delivery's
identity: `cashfree:<type>:<cf_payment_id>` for payments (the type already encodes the
outcome) and `cashfree:refund:<cf_refund_id or refund_id>:<refund_status>` for refunds (one
refund moves PENDING → SUCCESS and each step is its own event). Retries of the same delivery
therefore share one id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.connectors.base import (
    ConnectorAccount,
    Misconfigured,
    PspStatus,
    WebhookEvent,
    WebhookRejected,
)
from server.connectors.cashfree.models import (
    PAYMENT_WEBHOOK_TYPES,
    REFUND_WEBHOOK_TYPES,
    WEBHOOK_TOLERANCE_SECONDS,
    CashfreePayment,
    CashfreeRefund,
    money_from_rupees,
    parse_json,
)

__all__ = ["compute_signature", "parse_webhook", "verify_signature"]

SIGNATURE_HEADER = "x-webhook-signature"
TIMESTAMP_HEADER = "x-webhook-timestamp"

_PAYMENT_TYPE_STATUS: Mapping[str, PspStatus] = {
    "PAYMENT_SUCCESS_WEBHOOK": PspStatus.SUCCEEDED,
    "PAYMENT_FAILED_WEBHOOK": PspStatus.FAILED,
    "PAYMENT_USER_DROPPED_WEBHOOK": PspStatus.FAILED,
}


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, timestamp + body)), as Cashfree sends it."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def webhook_secret(account: ConnectorAccount) -> str:
    """Cashfree signs webhooks with the API client secret (reference §3.5), so that is the key.

    `account.webhook_secret` is used only when no client_secret is configured; Cashfree has
    no separate webhook secret, so configure webhook_secret to the same value.
    """
    secret = account.credentials.get("client_secret", "") or account.webhook_secret
    if not secret:
        raise Misconfigured(f"account {account.name}: no Cashfree webhook secret configured")
    return secret


def verify_signature(
    account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
) -> None:
    """Raise WebhookRejected unless the delivery is signed by this account and fresh."""
    lowered = {key.lower(): value for key, value in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER, "")
    timestamp = lowered.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        raise WebhookRejected("unsigned", "missing x-webhook-signature or x-webhook-timestamp")
    expected = compute_signature(webhook_secret(account), timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRejected("bad_signature", "x-webhook-signature does not match")
    if not timestamp.isdigit():
        raise WebhookRejected("malformed", "x-webhook-timestamp is not epoch milliseconds")
    sent_at = int(timestamp) / 1000
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs(now.timestamp() - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected("stale", "x-webhook-timestamp outside the accepted window")


def parse_webhook(
    account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
) -> WebhookEvent:
    """Verify, then parse a Cashfree delivery into a WebhookEvent."""
    verify_signature(account, headers, body, now)
    try:
        envelope = parse_json(body)
    except ValueError as exc:
        raise WebhookRejected("malformed", "body is not JSON") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        raise WebhookRejected("malformed", "body has no data object")
    event_type = str(envelope.get("type", ""))
    data: dict[str, Any] = envelope["data"]
    occurred_at = _parse_time(envelope.get("event_time"))
    if event_type in PAYMENT_WEBHOOK_TYPES:
        return _payment_event(event_type, data, occurred_at)
    if event_type in REFUND_WEBHOOK_TYPES or isinstance(data.get("refund"), dict):
        return _refund_event(data, occurred_at)
    raise WebhookRejected("malformed", f"unsupported Cashfree webhook type {event_type!r}")


def _payment_event(event_type: str, data: dict[str, Any], occurred_at: datetime | None
                   ) -> WebhookEvent:
    order = data.get("order")
    payment_data = data.get("payment")
    if not isinstance(order, dict) or not isinstance(payment_data, dict):
        raise WebhookRejected("malformed", "payment webhook without order/payment")
    order_id = str(order.get("order_id") or "")
    payment = CashfreePayment.from_json(payment_data, order_id=order_id)
    if not order_id or not payment.cf_payment_id:
        raise WebhookRejected("malformed", "payment webhook without order_id/cf_payment_id")
    errors = data.get("error_details")
    if isinstance(errors, dict):
        error_code = str(errors.get("error_code") or payment.error_code)
        error_message = str(errors.get("error_description") or payment.error_description)
    else:
        error_code, error_message = payment.error_code, payment.error_description
    # The payment entity's own status is the most specific word; the type is the fallback.
    status = payment.status
    if not payment.payment_status:
        status = _PAYMENT_TYPE_STATUS[event_type]
    if status is not PspStatus.FAILED:
        error_code, error_message = "", ""
    elif not error_message:
        error_message = payment.payment_message
    return WebhookEvent(
        kind="payment",
        dedupe_id=f"cashfree:{event_type}:{payment.cf_payment_id}",
        connector_payment_id=order_id,
        status=status,
        raw_status=payment.payment_status or event_type,
        payment_ref=order_id,
        amount=payment.amount
        or money_from_rupees(order.get("order_amount"), str(order.get("order_currency") or "")),
        occurred_at=occurred_at,
        error_code=error_code or (payment.payment_status if status is PspStatus.FAILED else ""),
        error_message=error_message,
    )


def _refund_event(data: dict[str, Any], occurred_at: datetime | None) -> WebhookEvent:
    refund_data = data.get("refund")
    if not isinstance(refund_data, dict):
        raise WebhookRejected("malformed", "refund webhook without refund")
    refund = CashfreeRefund.from_json(refund_data)
    if not refund.refund_id or not refund.order_id or not refund.refund_status:
        raise WebhookRejected("malformed", "refund webhook without refund_id/order_id/status")
    identity = refund.cf_refund_id or refund.refund_id
    return WebhookEvent(
        kind="refund",
        dedupe_id=f"cashfree:refund:{identity}:{refund.refund_status}",
        connector_payment_id=refund.order_id,
        status=refund.status,
        raw_status=refund.refund_status,
        payment_ref=refund.order_id,
        connector_refund_id=refund.refund_id,
        amount=refund.amount,
        occurred_at=occurred_at,
        error_code=refund.refund_status if refund.status is PspStatus.FAILED else "",
        error_message=refund.status_description if refund.status is PspStatus.FAILED else "",
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
