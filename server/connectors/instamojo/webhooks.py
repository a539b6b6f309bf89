"""Instamojo webhook verification and parsing.

Instamojo POSTs a form-encoded body (not JSON) with no signature header and no timestamp. The
`mac` field is lowercase hex HMAC-SHA1(key = the account's private salt, which is
`account.webhook_secret`, message = the values of every other field, ordered by lower-cased
key, joined with "|"). Unknown fields Instamojo may add are covered too, because the MAC is
over all of them. The form is decoded (we cannot find `mac` otherwise), the MAC is compared in
constant time, and only then is any field interpreted.

Replay protection: the scheme has none, so it comes from the dedupe id
`<payment_id>:<status>` (a redelivery repeats it, so it is a no-op) and from the payment state
machine (a replayed old status cannot move a payment backwards).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from server.connectors.base import ConnectorAccount, PspStatus, WebhookEvent, WebhookRejected
from server.connectors.instamojo.models import V1_PAYMENT_STATUS_MAP
from server.domain.money import Money, parse_rupees

__all__ = ["compute_mac", "decode_form", "parse_webhook"]


def compute_mac(fields: Mapping[str, str], salt: str) -> str:
    """hex HMAC-SHA1(salt, "|".join(values sorted by lower-cased key)), `mac` excluded."""
    ordered = sorted((key for key in fields if key != "mac"), key=lambda key: (key.lower(), key))
    message = "|".join(fields[key] for key in ordered)
    return hmac.new(salt.encode("utf-8"), message.encode("utf-8"), hashlib.sha1).hexdigest()


def decode_form(body: bytes) -> dict[str, str]:
    """URL-decoded form fields; a repeated field is refused (its MAC would be ambiguous)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected("malformed", "body is not a form-encoded payload") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise WebhookRejected("malformed", f"field {key!r} appears twice")
        fields[key] = value
    return fields


def parse_webhook(account: ConnectorAccount, headers: Mapping[str, str], body: bytes,
                  now: datetime) -> WebhookEvent:
    """Verify the MAC (constant time), then parse the delivery."""
    fields = decode_form(body)
    mac = fields.get("mac", "").strip().lower()
    if not mac:
        raise WebhookRejected("unsigned", "no mac field")
    if not account.webhook_secret:
        raise WebhookRejected("unsigned", f"account {account.name} has no private salt set")
    expected = compute_mac(fields, account.webhook_secret)
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8")):
        raise WebhookRejected("bad_signature", "mac does not match")

    payment_id = fields.get("payment_id", "")
    request_id = fields.get("payment_request_id", "")
    raw_status = fields.get("status", "")
    if not payment_id or not request_id or not raw_status:
        raise WebhookRejected("malformed", "payment_id, payment_request_id and status needed")
    status = V1_PAYMENT_STATUS_MAP.get(raw_status, PspStatus.PENDING)
    failed = status == PspStatus.FAILED
    return WebhookEvent(
        kind="payment",
        dedupe_id=f"{payment_id}:{raw_status}",
        connector_payment_id=request_id,
        status=status,
        raw_status=raw_status,
        amount=_amount(fields.get("amount", ""), fields.get("currency", "") or "INR"),
        error_code=raw_status if failed else "",
        error_message=f"Instamojo payment {payment_id} failed" if failed else "",
    )


def _amount(rupees: str, currency: str) -> Money | None:
    try:
        return Money(parse_rupees(rupees), currency)
    except ValueError:
        return None
