"""Input rules for payments. Every failure names the request field it is about."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from server.domain.money import SUPPORTED_CURRENCIES
from server.errors import ValidationError

__all__ = [
    "ISO_COUNTRIES",
    "MAX_AMOUNT_MINOR",
    "contains_card_number",
    "luhn_valid",
    "normalize_phone",
    "refuse_card_numbers",
    "validate_amount",
    "validate_country",
    "validate_email",
    "validate_idempotency_key",
    "validate_ip",
    "validate_phone",
    "validate_url",
    "validate_vpa",
]

# ₹1 crore: far above any fraud threshold, so the fraud engine (not validation) decides big ones.
MAX_AMOUNT_MINOR = 1_000_000_000

ISO_COUNTRIES = frozenset([
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
    "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
    "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
    "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
    "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
    "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
    "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
    "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
    "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
    "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
    "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
    "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
    "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
    "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
])

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_VPA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]{1,255}@[A-Za-z][A-Za-z0-9]{1,63}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_INDIAN_MOBILE = re.compile(r"^(?:\+91|91|0)?([6-9]\d{9})$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# A run of 13-19 ASCII digits, optionally separated by single spaces or dashes (how people type
# card numbers); other digits next to it make it a different, longer run. The whole run must pass
# Luhn: checking every sub-window would refuse about two thirds of ordinary 16-digit order ids.
_CARDISH = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")


def luhn_valid(digits: str) -> bool:
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """True when `text` holds a run of 13-19 digits (single spaces/dashes allowed) that passes
    the Luhn check (ARCHITECTURE §5). Runs of 20+ digits are ids, not card numbers."""
    return any(luhn_valid(re.sub(r"[ \-]", "", match.group()))
               for match in _CARDISH.finditer(text))


def refuse_card_numbers(fields: Iterable[tuple[str, str]]) -> None:
    """Raise ValidationError naming the first field that carries something card-number-like."""
    for name, value in fields:
        if value and contains_card_number(value):
            raise ValidationError(
                name, "looks like a card number; card numbers are never accepted (RBI "
                "card-on-file rule) - use the PSP's hosted checkout or a network token")


def validate_idempotency_key(key: str, field: str = "idempotency_key") -> None:
    if not key:
        raise ValidationError(field, "is required")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError(field, "must be 1-255 printable ASCII characters without spaces")


def validate_amount(amount_minor: int, currency: str, field: str = "amount") -> None:
    if not currency:
        raise ValidationError(f"{field}.currency", "is required")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValidationError(f"{field}.currency", "must be an upper-case ISO 4217 code")
    if currency not in SUPPORTED_CURRENCIES:
        raise ValidationError(f"{field}.currency", f"{currency} is not supported (INR only)")
    if amount_minor <= 0:
        raise ValidationError(f"{field}.amount_minor", "must be greater than 0")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValidationError(f"{field}.amount_minor",
                              f"must be at most {MAX_AMOUNT_MINOR} (₹1,00,00,000)")


def validate_vpa(vpa: str, field: str) -> None:
    if not _VPA.fullmatch(vpa):
        raise ValidationError(field, "is not a valid UPI VPA (expected name@handle)")


def validate_email(email: str, field: str) -> None:
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValidationError(field, "is not a valid email address")


def normalize_phone(phone: str) -> str:
    """Indian mobiles → +91XXXXXXXXXX; E.164 kept; anything else returned unchanged."""
    compact = re.sub(r"[\s\-()]", "", phone)
    match = _INDIAN_MOBILE.fullmatch(compact)
    if match:
        return "+91" + match.group(1)
    return compact


def validate_phone(phone: str, field: str) -> None:
    normalized = normalize_phone(phone)
    if not _E164.fullmatch(normalized):
        raise ValidationError(field, "must be a 10-digit Indian mobile (optionally +91) or E.164")


def validate_ip(ip: str, field: str = "ip_address") -> None:
    try:
        ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ValidationError(field, "is not a valid IPv4 or IPv6 address") from exc


def validate_country(country: str, field: str = "country") -> None:
    if country not in ISO_COUNTRIES:
        raise ValidationError(field, "must be an upper-case ISO 3166-1 alpha-2 code, e.g. IN")


def validate_url(url: str, field: str, *, max_length: int = 2048) -> None:
    if len(url) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters")
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", url):
        raise ValidationError(field, "must be an absolute http(s) URL")


def validate_metadata(metadata: Mapping[str, str], field: str = "metadata") -> None:
    if len(metadata) > 20:
        raise ValidationError(field, "at most 20 keys")
    for key, value in metadata.items():
        if not key or len(key) > 40:
            raise ValidationError(f"{field}[{key}]", "keys must be 1-40 characters")
        if len(value) > 500:
            raise ValidationError(f"{field}[{key}]", "values must be at most 500 characters")
