"""Structured logs: structlog (JSON or console) for our code and the standard library alike.

Every line carries the request / merchant / payment ids bound in the current context
(`bind_log_context`, `log_context`), and passes through `redact_event` just before rendering:

- values of secret keys (authorization, api_key, key_secret, client_secret, password, salt,
  webhook_secret, cvv, ...) become "[REDACTED]"; tokens and signatures keep their last 4 chars;
- card numbers (13-19 digits, spaces or dashes allowed, passing Luhn) inside any string or integer
  are masked to their last 4 digits (RBI card-on-file rule: a PAN is never written anywhere);
- personal data is masked partially: emails (r***@example.com), Indian mobile numbers
  (******3210), UPI VPAs (ra***@okhdfcbank);
- credentials in URLs (postgresql://user:[REDACTED]@host), bearer tokens and `secret=...` pairs
  inside free text are masked too.

Logs go to stderr: stdout belongs to command output (create-merchant prints an API key there).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from server.errors import ConfigurationError

__all__ = [
    "REDACTED",
    "bind_log_context",
    "clear_log_context",
    "configure_logging",
    "get_logger",
    "log_context",
    "mask_card_numbers",
    "redact",
    "redact_event",
    "redact_text",
    "reset_log_context",
]

REDACTED: Final = "[REDACTED]"
_FORMATS: Final = ("json", "console")
_MAX_DEPTH: Final = 8
# Values our own processors add (level, ISO timestamp, logger name): nothing to mask there.
_OWN_KEYS: Final = frozenset({"level", "timestamp", "logger"})

# --- keys ---------------------------------------------------------------------------------------
# Compared after lower-casing and turning "-" into "_"; a key also matches when it ends with
# "_<name>" (razorpay_key_secret, payu_salt, x_api_key).
_SECRET_KEYS: Final = frozenset({
    "authorization", "proxy_authorization", "api_key", "apikey", "key_secret", "client_secret",
    "secret", "secret_key", "private_key", "password", "passwd", "webhook_secret", "salt",
    "cvv", "cvv2", "cvc", "pin", "otp", "card_number", "pan", "cookie", "set_cookie",
})
_TOKEN_KEYS: Final = frozenset({"token", "signature"})
_EMAIL_KEYS: Final = frozenset({"email"})
_PHONE_KEYS: Final = frozenset({"phone", "mobile", "contact", "phone_number"})
_VPA_KEYS: Final = frozenset({"vpa", "upi_id"})


def _key_in(key: str, names: frozenset[str]) -> bool:
    return key in names or any(key.endswith("_" + name) for name in names)


def _is_secret_key(key: str) -> bool:
    return _key_in(key, _SECRET_KEYS) or "secret" in key or "password" in key


# --- text patterns --------------------------------------------------------------------------------
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]+):([^@\s/]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}")
_SECRET_PAIR = re.compile(
    r"(?i)(?<![A-Za-z0-9])(authorization|api[_\-]?key|key[_\-]?secret|client[_\-]?secret|"
    r"webhook[_\-]?secret|secret|password|passwd|salt|cvv|cvc|token|access[_\-]?token)"
    r"([\"']?\s*[:=]\s*[\"']?)([^\"'&\s,;}]+)"
)
_SECRET_PAIR_WORDS: Final = (
    "auth", "key", "secret", "password", "passwd", "salt", "cvv", "cvc", "token",
)
# A run of digits with single spaces or dashes between them, at least 13 digits long.
_DIGIT_RUN = re.compile(r"[0-9](?:[ \-]?[0-9]){12,}")
_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
                    r"\.[A-Za-z]{2,})")
_VPA = re.compile(r"(?<![A-Za-z0-9._\-*])([A-Za-z0-9]{2})[A-Za-z0-9._\-]*@([A-Za-z][A-Za-z0-9]+)"
                  r"(?![A-Za-z0-9.\-])")
# 98765 43210, 9876543210, +91-9876543210: the last 4 digits stay.
_INDIAN_MOBILE = re.compile(
    r"(?<![0-9])((?:\+?91[ \-]?)?)([6-9][0-9]{4}[ \-]?[0-9])([0-9]{4})(?![0-9])"
)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _holds_card_number(digits: str) -> bool:
    """True when any 13-19 digit window of the run passes Luhn (a PAN glued to other digits)."""
    for length in range(13, min(19, len(digits)) + 1):
        for start in range(len(digits) - length + 1):
            if _luhn_valid(digits[start:start + length]):
                return True
    return False


def _mask_digit_run(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = [char for char in run if char.isdigit()]
    if not _holds_card_number("".join(digits)):
        return run
    keep = len(digits) - 4
    masked: list[str] = []
    for char in run:
        if char.isdigit():
            masked.append("*" if keep > 0 else char)
            keep -= 1
        else:
            masked.append(char)
    return "".join(masked)


def _mask_mobile(match: re.Match[str]) -> str:
    hidden = "".join("*" if char.isdigit() else char for char in match.group(2))
    return f"{match.group(1)}{hidden}{match.group(3)}"


def mask_card_numbers(text: str) -> str:
    """Mask every card-number-like digit run in `text`, keeping its last 4 digits."""
    return _DIGIT_RUN.sub(_mask_digit_run, text)


def redact_text(text: str) -> str:
    """Mask secrets, card numbers and personal data found inside free text."""
    if len(text) < 5:  # shorter than anything below can match
        return text
    # Cheap substring tests first: most log values (statuses, ids, names) match no pattern, and
    # this runs for every string of every log line.
    if "://" in text:
        text = _URL_CREDENTIALS.sub(rf"\1:{REDACTED}@", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(rf"\1 {REDACTED}", text)
    if ("=" in text or ":" in text) and any(word in lowered for word in _SECRET_PAIR_WORDS):
        text = _SECRET_PAIR.sub(rf"\1\2{REDACTED}", text)
    text = mask_card_numbers(text)
    if "@" in text:
        text = _EMAIL.sub(r"\1***@\2", text)
        text = _VPA.sub(r"\1***@\2", text)
    return _INDIAN_MOBILE.sub(_mask_mobile, text)


def _mask_token(value: object) -> str:
    text = str(value)
    return f"****{text[-4:]}" if len(text) >= 12 else REDACTED


def _mask_phone(value: object) -> str:
    digits = "".join(char for char in str(value) if char.isdigit())
    return f"******{digits[-4:]}" if len(digits) >= 8 else REDACTED


def _mask_email(value: object) -> str:
    local, at, domain = str(value).partition("@")
    return f"{local[:1]}***@{domain}" if at else REDACTED


def _mask_vpa(value: object) -> str:
    handle, at, bank = str(value).partition("@")
    return f"{handle[:2]}***@{bank}" if at else REDACTED


def _redacted(_value: object) -> str:
    return REDACTED


@functools.lru_cache(maxsize=1024)
def _masker_for(raw_key: str) -> Callable[[object], object] | None:
    """How to mask the value of `raw_key`, or None; cached: log keys are few."""
    key = raw_key.lower().replace("-", "_")
    if _is_secret_key(key):
        return _redacted
    if _key_in(key, _TOKEN_KEYS):
        return _mask_token
    if _key_in(key, _EMAIL_KEYS):
        return _mask_email
    if _key_in(key, _PHONE_KEYS):
        return _mask_phone
    if _key_in(key, _VPA_KEYS):
        return _mask_vpa
    return None


def redact(value: object, _depth: int = 0) -> object:
    """A copy of `value` (any JSON-like structure) with secrets and card numbers masked."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int):
        if value < 10**12:
            return value
        masked = mask_card_numbers(str(value))
        return value if masked == str(value) else masked
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if _depth >= _MAX_DEPTH:
        return redact_text(str(value))
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item, _depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, _depth + 1) for item in value]
    return redact_text(str(value))


def _redact_item(key: object, value: object, depth: int) -> object:
    masker = _masker_for(key if isinstance(key, str) else str(key))
    if masker is not None and value is not None and value != "":
        return masker(value)
    return redact(value, depth)


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets, card numbers and personal data in every value."""
    for key, value in list(event_dict.items()):
        if key not in _OWN_KEYS:
            event_dict[key] = _redact_item(key, value, 0)
    return event_dict


# --- context ------------------------------------------------------------------------------------
def bind_log_context(**values: object) -> Mapping[str, Token[Any]]:
    """Attach ids (request_id, merchant_id, payment_id, ...) to every log line of the current
    task or thread; None values are skipped. Returns tokens for `reset_log_context`."""
    return structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )


def reset_log_context(tokens: Mapping[str, Token[Any]]) -> None:
    """Undo a `bind_log_context` call."""
    structlog.contextvars.reset_contextvars(**tokens)


@contextmanager
def log_context(**values: object) -> Iterator[None]:
    """Bind ids (request_id=..., payment_id=...) for the duration of a block."""
    tokens = bind_log_context(**values)
    try:
        yield
    finally:
        reset_log_context(tokens)


def clear_log_context() -> None:
    """Forget every id bound in the current context (start of a request or message)."""
    structlog.contextvars.clear_contextvars()


# --- configuration --------------------------------------------------------------------------------
class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name it was asked for (structlog.get_logger(name))."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ConfigurationError(f"TRIVENI_LOG_LEVEL: unknown log level {level!r}")
    return number


def _drop_color_message(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's duplicate of the message with ANSI codes
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and standard-library logging through one redacting renderer.

    level: a logging level name (TRIVENI_LOG_LEVEL); fmt: "json" or "console"
    (TRIVENI_LOG_FORMAT); stream: where lines go (default stderr). Safe to call again.
    """
    levelno = _level_number(level)
    if fmt not in _FORMATS:
        raise ConfigurationError(f"TRIVENI_LOG_FORMAT: expected json or console, got {fmt!r}")
    out = stream if stream is not None else sys.stderr
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finish: list[Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # before redaction: tracebacks are text too
        redact_event,
        renderer,
    ]

    def logger_factory(*args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(out, str(args[0]) if args else None)

    structlog.configure(
        processors=[*shared, _add_logger_name, *finish],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=logger_factory,
        context_class=dict,
        # Off so that a later configure_logging (tests, the CLI) also reaches existing loggers.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),  # logging's extra={...} fields become keys
            _drop_color_message,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    # Chatty libraries: per-request access lines and Kafka client internals only when debugging.
    for name in ("uvicorn.access", "kafka", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True


def get_logger(name: str | None = None, **initial_values: object) -> FilteringBoundLogger:
    """A structlog logger; `name` (usually __name__) appears as the `logger` key of its lines.

    Safe at import time: the logger is assembled lazily from the configuration in force when it
    logs, so module-level loggers follow `configure_logging` calls made later.
    """
    args = () if name is None else (name,)
    return cast(FilteringBoundLogger, structlog.get_logger(*args, **initial_values))
