"""Log lines never carry card numbers, secrets or raw personal data, and always carry the ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ConfigurationError
from server.logging_setup import (
    REDACTED,
    bind_log_context,
    clear_log_context,
    configure_logging,
    get_logger,
    log_context,
    redact,
    redact_text,
    reset_log_context,
)


def _luhn_check_digit(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:  # these positions are doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def _luhn_valid(number: str) -> bool:
    return _luhn_check_digit(number[:-1]) == number[-1]


card_numbers = st.text(alphabet="0123456789", min_size=15, max_size=15).map(
    lambda body: body + _luhn_check_digit(body)
)


class Capture:
    """configure_logging pointed at an in-memory stream; `lines()` parses the JSON lines."""

    def __init__(self, level: str = "DEBUG", fmt: str = "json") -> None:
        self.stream = io.StringIO()
        configure_logging(level, fmt, stream=self.stream)

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    touched = ("uvicorn", "uvicorn.error", "uvicorn.access", "kafka", "httpx", "httpcore")
    levels = {name: logging.getLogger(name).level for name in touched}
    clear_log_context()
    yield
    clear_log_context()
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def test_luhn_helper_agrees_with_a_known_test_card() -> None:
    assert _luhn_valid("4111111111111111")
    assert not _luhn_valid("4111111111111112")


@settings(max_examples=200, deadline=None)
@given(card=card_numbers, prefix=st.text(max_size=40), suffix=st.text(max_size=40))
def test_a_card_number_embedded_in_a_message_never_reaches_the_output(
    card: str, prefix: str, suffix: str
) -> None:
    capture = Capture()
    grouped = " ".join(card[i:i + 4] for i in range(0, 16, 4))

    get_logger("test").info(f"{prefix}{card}{suffix}", note=f"{prefix}{grouped}{suffix}")
    logging.getLogger("stdlib").warning("%s%s%s", prefix, card, suffix)

    output = capture.text()
    assert card not in output
    assert grouped not in output
    assert len(capture.lines()) == 2


@settings(max_examples=100, deadline=None)
@given(card=card_numbers)
def test_a_card_number_in_nested_values_or_integers_is_masked(card: str) -> None:
    capture = Capture()

    get_logger().info(
        "payment", request={"metadata": {"note": f"pan {card}"}, "items": [card]}, raw=int(card)
    )

    assert card not in capture.text()
    assert card[-4:] in capture.text()


def test_secret_keys_are_redacted_wherever_they_are_nested() -> None:
    capture = Capture()

    get_logger().info(
        "psp call",
        headers={"Authorization": "Bearer sk_live_abcdef123456", "X-Api-Key": "k_123456789"},
        api_key="tvn_live_0123456789",
        razorpay_key_secret="rzp_secret_value",
        client_secret="cf-secret",
        password="hunter2",
        webhook_secret="whsec_123",
        payu_salt="salty",
        card={"cvv": "123", "network": "VISA"},
    )

    line = capture.lines()[0]
    assert line["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED}
    for key in ("api_key", "razorpay_key_secret", "client_secret", "password", "webhook_secret",
                "payu_salt"):
        assert line[key] == REDACTED, key
    assert line["card"] == {"cvv": REDACTED, "network": "VISA"}
    for secret in ("sk_live_abcdef123456", "tvn_live_0123456789", "hunter2", "whsec_123", "salty"):
        assert secret not in capture.text()


def test_tokens_keep_only_their_last_four_characters() -> None:
    assert redact({"token": "tok_abcdefgh1234"}) == {"token": "****1234"}
    assert redact({"network_token": "ntk_9999999999990042"}) == {"network_token": "****0042"}
    assert redact({"access_token": "short"}) == {"access_token": REDACTED}


def test_emails_phones_and_vpas_are_masked_partially() -> None:
    masked = redact(
        {"customer": {"email": "rahul.sharma@example.com", "phone": "+919876543210",
                      "vpa": "rahul@okhdfcbank"}}
    )

    assert masked == {
        "customer": {"email": "r***@example.com", "phone": "******3210",
                     "vpa": "ra***@okhdfcbank"}
    }


def test_personal_data_inside_free_text_is_masked() -> None:
    text = redact_text("notify rahul.sharma@example.com or +91 98765 43210, pay to rahul@okaxis")

    assert text == "notify r***@example.com or +91 ***** *3210, pay to ra***@okaxis"


def test_credentials_in_urls_and_bearer_tokens_in_text_are_masked() -> None:
    text = redact_text(
        "connecting to postgresql://triveni:s3cret@db:5432/triveni with "
        "Authorization: Bearer tvn_live_abcdef api_key=tvn_live_zzz&x=1"
    )

    assert "s3cret" not in text
    assert "tvn_live_abcdef" not in text
    assert "tvn_live_zzz" not in text
    assert "postgresql://triveni:[REDACTED]@db:5432/triveni" in text
    assert "x=1" in text


def test_secret_fields_inside_a_logged_json_body_are_masked() -> None:
    body = '{"key_id": "rzp_test_1", "key_secret": "abc123", "password": "p"}'

    assert redact_text(body) == (
        '{"key_id": "rzp_test_1", "key_secret": "[REDACTED]", "password": "[REDACTED]"}'
    )


def test_ordinary_numbers_and_ids_are_left_alone() -> None:
    event = {"amount_minor": 1_000_000, "ts_ms": 1_732_634_400_001, "payment_id": "pay_01JABC",
             "attempt": 2, "ratio": 0.5, "ok": True, "nothing": None}

    assert redact(event) == event


def test_request_merchant_and_payment_ids_come_from_the_context() -> None:
    capture = Capture()
    log = get_logger("svc")

    with log_context(request_id="req_1", merchant_id="mer_1"):
        tokens = bind_log_context(payment_id="pay_1")
        log.info("inside")
        logging.getLogger("lib").info("stdlib inside")
        reset_log_context(tokens)
        log.info("payment unbound")
    log.info("outside")

    inside, stdlib_inside, unbound, outside = capture.lines()
    for line in (inside, stdlib_inside):
        assert (line["request_id"], line["merchant_id"], line["payment_id"]) == (
            "req_1", "mer_1", "pay_1"
        )
    assert "payment_id" not in unbound and unbound["request_id"] == "req_1"
    assert "request_id" not in outside


def test_lines_carry_level_timestamp_and_logger_name() -> None:
    capture = Capture()

    get_logger("server.demo").warning("hello")
    logging.getLogger("uvicorn.error").error("stdlib hello %s", "world")

    ours, theirs = capture.lines()
    assert (ours["event"], ours["level"], ours["logger"]) == ("hello", "warning", "server.demo")
    assert (theirs["event"], theirs["level"], theirs["logger"]) == (
        "stdlib hello world", "error", "uvicorn.error"
    )
    assert ours["timestamp"].endswith("Z")


def test_stdlib_extra_fields_are_kept_and_redacted() -> None:
    capture = Capture()

    logging.getLogger("runner").info(
        "serving", extra={"grpc_port": 50051, "dsn": "postgresql://u:pw@db/triveni"}
    )

    line = capture.lines()[0]
    assert line["grpc_port"] == 50051
    assert line["dsn"] == "postgresql://u:[REDACTED]@db/triveni"


def test_lines_below_the_level_are_dropped() -> None:
    capture = Capture(level="warning")

    get_logger().info("quiet")
    logging.getLogger("lib").info("quiet too")
    get_logger().warning("loud")

    assert [line["event"] for line in capture.lines()] == ["loud"]


def test_loggers_created_before_configuration_follow_it() -> None:
    early = get_logger("early")
    capture = Capture()

    early.info("late configured")

    assert capture.lines()[0]["logger"] == "early"


def test_exception_tracebacks_are_rendered_and_redacted() -> None:
    capture = Capture()

    try:
        raise ValueError("declined card 4111111111111111")
    except ValueError:
        get_logger().exception("psp failed")

    line = capture.lines()[0]
    assert "ValueError: declined card ************1111" in line["exception"]
    assert "4111111111111111" not in capture.text()


def test_console_format_renders_redacted_key_values() -> None:
    capture = Capture(fmt="console")

    get_logger("c").info("console line", password="hunter2", card="4111111111111111")

    assert "hunter2" not in capture.text()
    assert "4111111111111111" not in capture.text()
    assert "console line" in capture.text()


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_invalid_level_or_format_is_a_configuration_error(level: str, fmt: str) -> None:
    with pytest.raises(ConfigurationError):
        configure_logging(level, fmt, stream=io.StringIO())
