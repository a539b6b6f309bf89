"""Simulator webhook signing and verification.

Signature: lowercase hex HMAC-SHA256(key = webhook secret, msg = f"{timestamp}." + raw body),
timestamp in unix seconds, sent in X-Simulator-Timestamp. It is compared in constant time over
the raw bytes before the body is parsed; then a timestamp more than WEBHOOK_TOLERANCE_SECONDS
away from `now` is rejected as stale. The dedupe id is the event id (X-Simulator-Event-Id), which
a redelivery of the same event repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.connectors.base import (
    ConnectorAccount,
    PspStatus,
    WebhookEvent,
    WebhookRejected,
)
from server.connectors.simulator.models import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_EVENT_TYPES,
    WEBHOOK_TOLERANCE_SECONDS,
    int_field,
    str_field,
)
from server.domain.money import Money

__all__ = ["header", "parse_webhook", "sign", "verify"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """hex HMAC-SHA256(secret, timestamp + "." + body)."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup over any mapping ("" when absent)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return ""


def verify(account: ConnectorAccount, headers: Mapping[str, str], body: bytes,
           now: datetime) -> None:
    """Raise WebhookRejected unless the delivery is signed with the account's secret and fresh."""
    signature = header(headers, SIGNATURE_HEADER).strip()
    timestamp = header(headers, TIMESTAMP_HEADER).strip()
    if not signature or not timestamp:
        raise WebhookRejected("unsigned", "missing X-Simulator-Signature or -Timestamp")
    if not account.webhook_secret:
        raise WebhookRejected("unsigned", f"account {account.name} has no webhook secret")
    if not timestamp.isdigit():
        raise WebhookRejected("malformed", "X-Simulator-Timestamp is not unix seconds")
    expected = sign(account.webhook_secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("utf-8")):
        raise WebhookRejected("bad_signature", "X-Simulator-Signature does not match")
    if abs(now.timestamp() - int(timestamp)) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected("stale", "X-Simulator-Timestamp is outside the tolerance window")


def parse_webhook(account: ConnectorAccount, headers: Mapping[str, str], body: bytes,
                  now: datetime) -> WebhookEvent:
    """Verify, then parse a simulator delivery into a WebhookEvent."""
    verify(account, headers, body, now)
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected("malformed", "body is not JSON") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        raise WebhookRejected("malformed", "body has no data object")
    data: dict[str, Any] = envelope["data"]
    event_id = header(headers, EVENT_ID_HEADER) or str_field(envelope, "id")
    if not event_id:
        raise WebhookRejected("malformed", "no event id")
    event_type = str_field(envelope, "type")
    created = int_field(envelope, "created")
    occurred_at = datetime.fromtimestamp(created, UTC) if created is not None else None
    kind, status = WEBHOOK_EVENT_TYPES.get(event_type, ("ignored", PspStatus.PENDING))
    if kind == "ignored":
        return WebhookEvent(kind="ignored", dedupe_id=event_id, connector_payment_id="",
                            status=PspStatus.PENDING, raw_status=event_type,
                            occurred_at=occurred_at)
    amount_minor = int_field(data, "amount_minor")
    currency = str_field(data, "currency") or "INR"
    amount = Money(amount_minor, currency) if amount_minor is not None else None
    if kind == "refund":
        return WebhookEvent(
            kind="refund", dedupe_id=event_id,
            connector_payment_id=str_field(data, "payment_id"),
            status=status, raw_status=str_field(data, "status"),
            connector_refund_id=str_field(data, "id"), amount=amount, occurred_at=occurred_at,
        )
    payment_id = str_field(data, "id")
    if not payment_id:
        raise WebhookRejected("malformed", "payment event without a payment id")
    return WebhookEvent(
        kind="payment", dedupe_id=event_id, connector_payment_id=payment_id,
        status=status, raw_status=str_field(data, "status"),
        payment_ref=str_field(data, "reference"), amount=amount, occurred_at=occurred_at,
        error_code=str_field(data, "failure_code"),
        error_message=str_field(data, "failure_message"),
    )
