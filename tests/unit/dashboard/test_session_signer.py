"""Dashboard session cookies: signed, expiring, and useless when tampered with."""

from __future__ import annotations

import base64
import json

import pytest

from server.entrypoints.http.dashboard_auth import Session, SessionSigner

SECRET = b"s" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(clock: Clock | None = None, secret: bytes = SECRET) -> SessionSigner:
    return SessionSigner(secret, ttl_seconds=3600, clock=clock or Clock())


def test_an_issued_session_verifies_to_its_merchant_and_key() -> None:
    clock = Clock()
    value = signer(clock).issue("mer_1", "key_1")
    assert signer(clock).verify(value) == Session("mer_1", "key_1", int(clock.now) + 3600)


def test_the_cookie_names_the_key_but_never_holds_a_secret() -> None:
    payload = signer().issue("mer_1", "key_1").split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(data) == {"m", "k", "exp"}


def test_an_expired_session_is_refused() -> None:
    clock = Clock()
    value = signer(clock).issue("mer_1", "key_1")
    clock.now += 3600
    assert signer(clock).verify(value) is None


def test_a_session_signed_with_another_secret_is_refused() -> None:
    value = signer(secret=b"o" * 32).issue("mer_1", "key_1")
    assert signer().verify(value) is None


def test_a_payload_changed_to_another_merchant_is_refused() -> None:
    value = signer().issue("mer_1", "key_1")
    _, mac = value.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"m": "mer_2", "k": "key_1", "exp": 1_900_000_000}).encode()).decode().rstrip("=")
    assert signer().verify(f"{forged}.{mac}") is None


@pytest.mark.parametrize("value", ["", "abc", "a.b.c", "é.é", "x" * 5000, ".", "e30.AAAA"])
def test_malformed_values_are_refused_without_raising(value: str) -> None:
    assert signer().verify(value) is None


def test_a_short_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SessionSigner(b"short", ttl_seconds=60)
