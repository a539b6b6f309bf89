"""PayU webhook (and surl/furl post) verification and parsing.

Payment webhooks carry the same fields as the browser's surl/furl post, form-encoded (PayU's
newer events page) or JSON (an older page): both are accepted. Their only signature is the
reverse hash in the `hash` field, checked in constant time against our own computation over
the values exactly as posted (with the `additionalCharges|` prefix when present) before any
field is believed.

PayU sends no timestamp, so there is no freshness window. Replay protection is the dedupe id
`payu:<mihpayid>:<status>` (one per transaction outcome: a replayed delivery is a no-op) plus
the payment state machine (a replayed older outcome cannot move a payment backwards).

Refund callbacks are JSON with no hash in PayU's samples, so nothing in them can be verified.
They are parsed into a `refund` event whose status is always PENDING (the claimed status is in
`raw_status`): such an event can move nothing, it only tells the service layer to confirm the
refund with `get_refund` (check_action_status), as PayU's docs advise.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from server.connectors.base import (
    ConnectorAccount,
    Misconfigured,
    PspStatus,
    WebhookEvent,
    WebhookRejected,
)
from server.connectors.payu.models import money_from_rupees, payment_status, response_hash

__all__ = ["decode_fields", "parse_webhook", "verify_response_hash"]

IST = timezone(timedelta(hours=5, minutes=30))
_NO_ERROR = frozenset({"", "E000", "NO ERROR"})


def decode_fields(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """Form-encoded or JSON body → flat str fields (raw values, nothing trusted yet)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    content_type = lowered.get("content-type", "")
    text = body.decode("utf-8", "strict") if body else ""
    looks_json = "json" in content_type or text.lstrip().startswith("{")
    if looks_json:
        data = json.loads(text, parse_float=Decimal)  # keep '10.00' as posted
        if not isinstance(data, dict):
            raise ValueError("JSON webhook body is not an object")
        return {str(k): "" if v is None else str(v) for k, v in data.items()
                if not isinstance(v, dict | list)}
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))


def verify_response_hash(account: ConnectorAccount, fields: Mapping[str, str]) -> None:
    """Raise WebhookRejected unless `hash` is PayU's reverse hash for this account."""
    salt = account.credentials.get("salt", "")
    if not salt:
        raise Misconfigured(f"account {account.name}: no PayU salt configured")
    posted = fields.get("hash", "").strip().lower()
    if not posted:
        raise WebhookRejected("unsigned", "PayU post without a hash field")
    expected = response_hash(fields, salt)
    if not hmac.compare_digest(expected.encode(), posted.encode()):
        raise WebhookRejected("bad_signature", "PayU reverse hash does not match")
    if fields.get("key", "") != account.credentials.get("key", ""):
        raise WebhookRejected("bad_signature", "PayU post is for another merchant key")


def parse_webhook(
    account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
) -> WebhookEvent:
    """Verify (reverse hash) then parse a PayU payment webhook; refund callbacks → PENDING."""
    del now  # PayU deliveries carry no timestamp; replay protection is the dedupe id
    try:
        fields = decode_fields(headers, body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected("malformed", "body is neither form-encoded nor JSON") from exc
    if "hash" not in fields and _is_refund_callback(fields):
        return _refund_hint(fields)
    verify_response_hash(account, fields)
    txnid = fields.get("txnid", "")
    mihpayid = fields.get("mihpayid", "")
    status_word = fields.get("status", "")
    if not txnid or not mihpayid or not status_word:
        raise WebhookRejected("malformed", "PayU post without txnid/mihpayid/status")
    status = payment_status(status_word, fields.get("unmappedstatus", ""))
    error_code = error_message = ""
    if status is PspStatus.FAILED:
        error = fields.get("error", "")
        error_code = error if error.upper() not in _NO_ERROR else fields.get("unmappedstatus", "")
        error_message = fields.get("error_Message", "") or fields.get("field9", "")
    return WebhookEvent(
        kind="payment",
        dedupe_id=f"payu:{mihpayid}:{status_word.lower()}",
        connector_payment_id=txnid,
        status=status,
        raw_status=status_word,
        payment_ref=fields.get("udf2", "") or txnid,
        amount=money_from_rupees(fields.get("amount")),
        occurred_at=_parse_addedon(fields.get("addedon", "")),
        error_code=error_code or (status_word if status is PspStatus.FAILED else ""),
        error_message=error_message,
    )


def _is_refund_callback(fields: Mapping[str, str]) -> bool:
    return fields.get("action", "").lower() == "refund" or (
        "request_id" in fields and "merchantTxnId" in fields)


def _refund_hint(fields: Mapping[str, str]) -> WebhookEvent:
    request_id = fields.get("request_id", "")
    txnid = fields.get("merchantTxnId", "")
    if not request_id or not txnid:
        raise WebhookRejected("malformed", "PayU refund callback without request_id/txnid")
    claimed = fields.get("status", "")
    return WebhookEvent(
        kind="refund",
        dedupe_id=f"payu:refund:{request_id}:{claimed.lower()}",
        connector_payment_id=txnid,
        status=PspStatus.PENDING,  # unsigned: never trusted; confirm with get_refund
        raw_status=claimed,
        payment_ref=txnid,
        connector_refund_id=request_id,
        amount=money_from_rupees(fields.get("amt")),
    )


def _parse_addedon(value: Any) -> datetime | None:
    """PayU's `addedon` ('2024-05-01 12:30:45', IST) → aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    except ValueError:
        return None
