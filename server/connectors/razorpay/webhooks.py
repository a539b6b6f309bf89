"""Razorpay webhook verification and parsing.

Signature: `X-Razorpay-Signature` = lowercase hex HMAC-SHA256(key = the webhook secret set in
the Dashboard, which is `account.webhook_secret` and not the API key secret, msg = the raw
body bytes). It is compared in constant time before the JSON is parsed (re-serialised JSON
would not verify anyway). Dedupe id: `X-Razorpay-Event-Id`, which Razorpay repeats on every
retry of one event.

Replay: the scheme has no timestamp, and Razorpay retries an event for 24 hours with its
original `created_at`, so a freshness window would reject legitimate retries. Replays are
no-ops through the event id and the payment state machine.

References: `connector_payment_id` is the payment link id for payment_link.* events and the
order id otherwise (payment.* and order.* events identify the order); `payment_ref` is our
attempt id, taken from the notes we attach (Razorpay copies a link's notes onto its order and
payments [P]) or from the order's receipt / the link's reference_id. Order-mode payments match
on the order id, link-mode payments on payment_ref.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.connectors.base import ConnectorAccount, PspStatus, WebhookEvent, WebhookRejected
from server.connectors.razorpay.models import (
    EVENT_ID_HEADER,
    NOTE_ATTEMPT_ID,
    SIGNATURE_HEADER,
    WEBHOOK_EVENTS,
)
from server.domain.money import Money

__all__ = ["compute_signature", "header", "parse_webhook"]


def compute_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup over any mapping ("" when absent)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), "")


def parse_webhook(account: ConnectorAccount, headers: Mapping[str, str], body: bytes,
                  now: datetime) -> WebhookEvent:
    """Verify X-Razorpay-Signature over the raw body (constant time), then parse."""
    signature = header(headers, SIGNATURE_HEADER).strip().lower()
    if not signature:
        raise WebhookRejected("unsigned", "missing X-Razorpay-Signature")
    if not account.webhook_secret:
        raise WebhookRejected("unsigned", f"account {account.name} has no webhook secret")
    expected = compute_signature(account.webhook_secret, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
        raise WebhookRejected("bad_signature", "X-Razorpay-Signature does not match")

    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected("malformed", "body is not JSON") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), dict):
        raise WebhookRejected("malformed", "no payload object")
    event_type = _text(envelope, "event")
    payload: dict[str, Any] = envelope["payload"]
    payment = _entity(payload, "payment")
    order = _entity(payload, "order")
    link = _entity(payload, "payment_link")
    refund = _entity(payload, "refund")
    primary = link or refund or payment or order
    dedupe_id = header(headers, EVENT_ID_HEADER).strip() or \
        f"{event_type}:{_text(primary, 'id')}:{envelope.get('created_at')}"
    created = envelope.get("created_at")
    occurred_at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None

    kind, status = WEBHOOK_EVENTS.get(event_type, ("ignored", PspStatus.PENDING))
    if kind == "ignored":
        return WebhookEvent(kind="ignored", dedupe_id=dedupe_id, connector_payment_id="",
                            status=PspStatus.PENDING, raw_status=event_type,
                            occurred_at=occurred_at)
    if kind == "refund":
        refund_id = _text(refund, "id")
        if not refund_id:
            raise WebhookRejected("malformed", f"{event_type} without a refund entity")
        return WebhookEvent(
            kind="refund", dedupe_id=dedupe_id, connector_payment_id=_text(refund, "payment_id"),
            status=status, raw_status=_text(refund, "status") or event_type,
            payment_ref=_notes(refund).get(NOTE_ATTEMPT_ID, ""),
            connector_refund_id=refund_id, amount=_money(refund, "amount"),
            occurred_at=occurred_at,
        )
    if link:
        reference = _text(link, "id")
    else:
        reference = _text(order, "id") or _text(payment, "order_id") or _text(payment, "id")
    if not reference:
        raise WebhookRejected("malformed", f"{event_type} without a payment, order or link")
    attempt_id = (_notes(link).get(NOTE_ATTEMPT_ID) or _notes(order).get(NOTE_ATTEMPT_ID)
                  or _notes(payment).get(NOTE_ATTEMPT_ID) or _text(link, "reference_id")
                  or _text(order, "receipt"))
    amount = _money(payment, "amount") if payment else (
        _money(link, "amount_paid") or _money(order, "amount_paid"))
    failed = status == PspStatus.FAILED and bool(payment)
    return WebhookEvent(
        kind="payment", dedupe_id=dedupe_id, connector_payment_id=reference, status=status,
        raw_status=_text(payment, "status") or _text(link, "status") or _text(order, "status")
        or event_type,
        payment_ref=attempt_id or "", amount=amount, occurred_at=occurred_at,
        error_code=(_text(payment, "error_reason") or _text(payment, "error_code"))
        if failed else "",
        error_message=_text(payment, "error_description") if failed else "",
    )


def _entity(payload: Mapping[str, Any], name: str) -> dict[str, Any]:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else {}


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _notes(data: Mapping[str, Any]) -> dict[str, str]:
    notes = data.get("notes")  # Razorpay sends [] for "no notes"
    if not isinstance(notes, dict):
        return {}
    return {str(k): v for k, v in notes.items() if isinstance(v, str)}


def _money(data: Mapping[str, Any], key: str) -> Money | None:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    currency = data.get("currency")
    return Money(value, currency if isinstance(currency, str) and currency else "INR")
