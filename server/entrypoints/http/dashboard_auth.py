"""Dashboard sessions: a signed cookie naming the API key that logged in, or a Bearer key.

The cookie value is `base64url(json{"m": merchant id, "k": key id, "exp": unix seconds}).
base64url(HMAC-SHA256(secret, "triveni-dashboard-v1." + payload))`. It never holds the API key
itself. It is HttpOnly, SameSite=Strict, scoped to /dashboard and Secure in production; every
request also checks that the key is still unrevoked, so revoking a key ends its sessions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COOKIE_NAME", "Session", "SessionSigner"]

COOKIE_NAME = "triveni_dashboard"
_CONTEXT = b"triveni-dashboard-v1."
_MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Session:
    merchant_id: str
    key_id: str
    expires_at: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and verifies session cookie values with one server secret."""

    def __init__(self, secret: bytes, *, ttl_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the dashboard secret must be at least 16 bytes")
        # Derived, so the same configured secret could sign something else without overlap.
        self._key = hmac.new(secret, b"dashboard-session", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def _mac(self, payload: str) -> str:
        return _b64encode(hmac.new(self._key, _CONTEXT + payload.encode("ascii"),
                                   hashlib.sha256).digest())

    def issue(self, merchant_id: str, key_id: str) -> str:
        expires = int(self._clock()) + self.ttl_seconds
        payload = _b64encode(json.dumps({"m": merchant_id, "k": key_id, "exp": expires},
                                        separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, value: str) -> Session | None:
        """The session in `value`, or None if it is malformed, forged or expired."""
        if not value or len(value) > _MAX_COOKIE_CHARS or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        try:
            expected = self._mac(payload)
        except UnicodeEncodeError:
            return None
        if not hmac.compare_digest(expected, mac):
            return None
        try:
            data = json.loads(_b64decode(payload))
            session = Session(str(data["m"]), str(data["k"]), int(data["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires_at <= self._clock():
            return None
        return session
