"""Verify the webhooks Triveni delivers to merchant endpoints (standard library only).

Every delivery carries:

    Triveni-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]
    Triveni-Event-Id:  evt_...   (the dedupe key: deliveries are at least once)
    Triveni-Sequence:  <n>       (per-payment order; ignore a lower n than one already applied)

where each v1 is hex(HMAC-SHA256(secret, f"{t}.".encode() + raw_body)). While a secret is being
rotated Triveni signs with both, so a header may carry several v1 values; a receiver accepts
the delivery when ANY v1 matches ANY of its secrets (compared in constant time) and the
timestamp is within `tolerance_seconds` of its clock (default 300 s), which bounds replays.

    verify_signature(request_body, headers["Triveni-Signature"], secrets=[new, old])

The server signs its deliveries with `sign` from this module, so keep it dependency-free.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from triveni.errors import SignatureVerificationError

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_ID_HEADER",
    "SEQUENCE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_SCHEME",
    "SignatureVerificationError",
    "compute_signature",
    "parse_event",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "Triveni-Signature"
EVENT_ID_HEADER = "Triveni-Event-Id"
SEQUENCE_HEADER = "Triveni-Sequence"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

_HEX_DIGITS = frozenset("0123456789abcdef")
_SHA256_HEX_LEN = 64


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """hex(HMAC-SHA256(secret, f"{timestamp}.".encode() + payload))."""
    _require_bytes(payload)
    if not secret:
        raise ValueError("webhook secret must be non-empty")
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str | Sequence[str], timestamp: int | None = None) -> str:
    """The Triveni-Signature header value for `payload`: one v1 per secret, in order."""
    secrets = _secret_list(secret)
    t = int(time.time()) if timestamp is None else timestamp
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError("timestamp must be a non-negative integer number of unix seconds")
    parts = [f"t={t}"]
    parts.extend(f"{SIGNATURE_SCHEME}={compute_signature(payload, s, t)}" for s in secrets)
    return ",".join(parts)


def verify_signature(
    payload: bytes,
    header: str,
    secrets: str | Sequence[str],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise SignatureVerificationError unless `header` signs the raw `payload` recently.

    `payload` must be the request body exactly as received (not re-serialized JSON).
    """
    _require_bytes(payload)
    keys = _secret_list(secrets)
    if tolerance_seconds < 0:
        raise ValueError("tolerance_seconds must be >= 0")
    timestamp, signatures = _parse_header(header)
    matched = False
    for key in keys:
        expected = compute_signature(payload, key, timestamp)
        for candidate in signatures:
            # Check every pair: how long this takes must not depend on which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureVerificationError("no v1 signature matches the payload and secret")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureVerificationError(
            f"timestamp {timestamp} is outside the {tolerance_seconds:g} s tolerance"
        )


def parse_event(payload: bytes | str) -> dict[str, Any]:
    """The delivery's JSON body as a dict (verify the signature first)."""
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"webhook payload is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise ValueError("webhook payload is not a JSON object")
    return event


def _parse_header(header: str) -> tuple[int, list[str]]:
    if not header or not isinstance(header, str):
        raise SignatureVerificationError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise SignatureVerificationError(f"malformed {SIGNATURE_HEADER} header: {item!r}")
        value = value.strip()
        if key == "t":
            if timestamp is not None:
                raise SignatureVerificationError("malformed header: more than one timestamp")
            if not value.isascii() or not value.isdigit():
                raise SignatureVerificationError(f"malformed header: bad timestamp {value!r}")
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME:
            signature = value.lower()
            if len(signature) != _SHA256_HEX_LEN or not set(signature) <= _HEX_DIGITS:
                raise SignatureVerificationError("malformed header: v1 is not a SHA-256 hex")
            signatures.append(signature)
        # Other schemes (a future v2) are ignored so that senders can add them first.
    if timestamp is None:
        raise SignatureVerificationError("malformed header: no timestamp (t=)")
    if not signatures:
        raise SignatureVerificationError("malformed header: no v1 signature")
    return timestamp, signatures


def _secret_list(secrets: str | Sequence[str]) -> list[str]:
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("at least one non-empty webhook secret is required")
    return keys


def _require_bytes(payload: object) -> None:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError("payload must be the raw request body as bytes")
