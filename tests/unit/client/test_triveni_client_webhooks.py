"""Merchant webhook verification: Triveni-Signature: t=<unix>,v1=<hex hmac>[,v1=...]."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from triveni import webhooks
from triveni.webhooks import SignatureVerificationError, parse_event, sign, verify_signature

SECRET = "whsec_test_4f9a"
OLD_SECRET = "whsec_old_77c1"
T = 1_700_000_000
BODY = b'{"event_id":"evt_0001","type":"payment.succeeded"}'
# Computed outside Python: printf '%s' "$T.$BODY" | openssl dgst -sha256 -hmac "$SECRET"
KNOWN_V1 = "d7ae15e2a756045ef9fd53b174d91347ab13a204b0c2a0457438da0d1304771b"
KNOWN_V1_OLD = "cdc7005c439571acb6f5399b60cec289542efe36ef154b0129941576901464d9"


def test_known_answer_vector() -> None:
    independent = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert independent == KNOWN_V1
    assert webhooks.compute_signature(BODY, SECRET, T) == KNOWN_V1
    assert sign(BODY, SECRET, T) == f"t={T},v1={KNOWN_V1}"


def test_good_signature_is_accepted() -> None:
    verify_signature(BODY, f"t={T},v1={KNOWN_V1}", SECRET, now=T + 10)


def test_sign_then_verify_round_trips_with_the_current_time() -> None:
    verify_signature(BODY, sign(BODY, SECRET), [SECRET])


def test_tampered_body_is_rejected() -> None:
    tampered = BODY.replace(b"succeeded", b"failed")
    with pytest.raises(SignatureVerificationError, match="no v1 signature matches"):
        verify_signature(tampered, f"t={T},v1={KNOWN_V1}", SECRET, now=T)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureVerificationError, match="no v1 signature matches"):
        verify_signature(BODY, f"t={T},v1={KNOWN_V1}", "whsec_someone_else", now=T)


def test_changed_timestamp_breaks_the_signature() -> None:
    with pytest.raises(SignatureVerificationError, match="no v1 signature matches"):
        verify_signature(BODY, f"t={T + 1},v1={KNOWN_V1}", SECRET, now=T)


def test_rotation_header_with_two_v1_is_accepted_when_the_second_matches() -> None:
    header = f"t={T},v1={KNOWN_V1_OLD},v1={KNOWN_V1}"
    verify_signature(BODY, header, SECRET, now=T)


def test_receiver_with_two_secrets_accepts_either() -> None:
    verify_signature(BODY, f"t={T},v1={KNOWN_V1_OLD}", [SECRET, OLD_SECRET], now=T)
    verify_signature(BODY, f"t={T},v1={KNOWN_V1}", [OLD_SECRET, SECRET], now=T)


def test_sign_with_several_secrets_emits_one_v1_each_in_order() -> None:
    assert sign(BODY, [OLD_SECRET, SECRET], T) == f"t={T},v1={KNOWN_V1_OLD},v1={KNOWN_V1}"


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamp_is_rejected(skew: int) -> None:
    with pytest.raises(SignatureVerificationError, match="tolerance"):
        verify_signature(BODY, f"t={T},v1={KNOWN_V1}", SECRET, now=T + skew)


@pytest.mark.parametrize("skew", [300, -300])
def test_timestamp_exactly_at_the_tolerance_is_accepted(skew: int) -> None:
    verify_signature(BODY, f"t={T},v1={KNOWN_V1}", SECRET, now=T + skew)


def test_tolerance_is_configurable() -> None:
    verify_signature(BODY, f"t={T},v1={KNOWN_V1}", SECRET, now=T + 900, tolerance_seconds=900)
    with pytest.raises(SignatureVerificationError):
        verify_signature(BODY, f"t={T},v1={KNOWN_V1}", SECRET, now=T + 61, tolerance_seconds=60)


def test_uppercase_hex_and_spaces_are_tolerated() -> None:
    verify_signature(BODY, f" t={T} , v1={KNOWN_V1.upper()}", SECRET, now=T)


def test_unknown_schemes_are_ignored() -> None:
    verify_signature(BODY, f"t={T},v2=abc,v1={KNOWN_V1}", SECRET, now=T)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={KNOWN_V1}",  # no timestamp
        f"t={T}",  # no signature
        f"t=abc,v1={KNOWN_V1}",
        f"t=-5,v1={KNOWN_V1}",
        f"t={T},t={T},v1={KNOWN_V1}",
        f"t={T},v1=xyz",
        f"t={T},v1={KNOWN_V1[:-2]}",
        f"t={T};v1={KNOWN_V1}",
        f"t={T},,v1={KNOWN_V1}",
    ],
)
def test_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureVerificationError) as raised:
        verify_signature(BODY, header, SECRET, now=T)
    assert raised.value.reason


def test_payload_must_be_raw_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        verify_signature(BODY.decode(), f"t={T},v1={KNOWN_V1}", SECRET, now=T)  # type: ignore[arg-type]


@pytest.mark.parametrize("secrets", ["", [], [""]])
def test_empty_secrets_are_refused(secrets: str | list[str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_signature(BODY, f"t={T},v1={KNOWN_V1}", secrets, now=T)


def test_parse_event_returns_the_json_object() -> None:
    assert parse_event(BODY) == {"event_id": "evt_0001", "type": "payment.succeeded"}


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b"\xff\xfe"])
def test_parse_event_refuses_what_is_not_a_json_object(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_event(payload)


def test_header_names() -> None:
    assert webhooks.SIGNATURE_HEADER == "Triveni-Signature"
    assert webhooks.EVENT_ID_HEADER == "Triveni-Event-Id"
    assert webhooks.SEQUENCE_HEADER == "Triveni-Sequence"
