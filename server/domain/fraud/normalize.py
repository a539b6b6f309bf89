"""Canonical forms of the identifiers the engine counts and blocklists match.

The same normalisation runs when a blocklist entry is stored and when a payment is screened,
so "Fraud@YBL" on the list catches "fraud@ybl" at checkout.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from server.domain.fraud.model import BlocklistKind, FraudInput
from server.errors import ValidationError

__all__ = [
    "instrument_of",
    "is_e164",
    "mask_token",
    "normalize_blocklist_value",
    "normalize_email",
    "normalize_input",
    "normalize_ip",
    "normalize_ip_network",
    "normalize_phone",
    "normalize_vpa",
    "velocity_ip",
]

_INDIAN_MOBILE = re.compile(r"^(?:\+91|91|0)?([6-9]\d{9})$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def normalize_vpa(vpa: str) -> str:
    return vpa.strip().lower()


def normalize_phone(phone: str) -> str:
    """Indian mobiles → +91XXXXXXXXXX; E.164 kept; anything else compacted but unchanged."""
    compact = re.sub(r"[\s\-().]", "", phone)
    match = _INDIAN_MOBILE.match(compact)
    if match:
        return "+91" + match.group(1)
    return compact


def is_e164(phone: str) -> bool:
    return bool(_E164.match(phone))


def normalize_ip(ip: str) -> str:
    """Canonical text of an IP address ('' when it is not one). IPv4-mapped IPv6 → IPv4."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def velocity_ip(ip: str) -> str:
    """The unit IP velocity counts: the IPv4 address, or the IPv6 /64 (one subscriber's prefix)."""
    canonical = normalize_ip(ip)
    if ":" not in canonical:
        return canonical
    return str(ipaddress.IPv6Network(f"{canonical}/64", strict=False))


def normalize_ip_network(value: str, field: str = "value") -> str:
    """An IP or CIDR range as stored on the blocklist: '203.0.113.7' or '203.0.113.0/24'."""
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValidationError(field, "is not a valid IP address or CIDR range") from exc
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def mask_token(token: str) -> str:
    """A card token as it may appear in messages and logs: never in full."""
    token = token.strip()
    if len(token) <= 8:
        return "****"
    return f"{token[:4]}…{token[-4:]}"


_BIN = re.compile(r"^\d{6}(\d{2})?$")
_MAX_VALUE_LENGTH = 256


def normalize_blocklist_value(kind: BlocklistKind, value: str, field: str = "value") -> str:
    """The stored form of a blocklist value; ValidationError(field) when it cannot be one."""
    text = value.strip()
    if not text:
        raise ValidationError(field, "must not be empty")
    if len(text) > _MAX_VALUE_LENGTH:
        raise ValidationError(field, f"must be at most {_MAX_VALUE_LENGTH} characters")
    match kind:
        case BlocklistKind.IP:
            return normalize_ip_network(text, field)
        case BlocklistKind.VPA:
            vpa = normalize_vpa(text)
            if vpa.count("@") != 1 or vpa.startswith("@") or vpa.endswith("@"):
                raise ValidationError(field, "is not a UPI VPA (expected name@handle)")
            return vpa
        case BlocklistKind.EMAIL:
            email = normalize_email(text)
            if email.count("@") != 1 or email.startswith("@") or email.endswith("@"):
                raise ValidationError(field, "is not an email address")
            return email
        case BlocklistKind.PHONE:
            phone = normalize_phone(text)
            if not is_e164(phone):
                raise ValidationError(
                    field, "must be a 10-digit Indian mobile (optionally +91) or E.164")
            return phone
        case BlocklistKind.CARD_BIN:
            if not _BIN.match(text):
                raise ValidationError(field, "must be the first 6 or 8 digits of a card (BIN)")
            return text
        case BlocklistKind.CARD_TOKEN | BlocklistKind.CUSTOMER_ID:
            return text
    raise ValidationError("kind", "is not a blocklist kind")  # pragma: no cover


def normalize_input(inp: FraudInput) -> FraudInput:
    """`inp` with every identifier in canonical form (idempotent)."""
    return replace(
        inp,
        method_type=inp.method_type.strip().lower(),
        vpa=normalize_vpa(inp.vpa),
        email=normalize_email(inp.email),
        phone=normalize_phone(inp.phone) if inp.phone.strip() else "",
        customer_id=inp.customer_id.strip(),
        card_token=inp.card_token.strip(),
        card_bin=inp.card_bin.strip() if _BIN.match(inp.card_bin.strip()) else "",
        ip=normalize_ip(inp.ip),
        country=inp.country.strip().upper(),
        merchant_id=inp.merchant_id.strip(),
    )


def instrument_of(inp: FraudInput) -> str:
    """The payment instrument as the distinct-instrument counts see it ('' when anonymous).

    Only identifiable instruments count: a UPI VPA or a card token. The PostgreSQL adapter
    computes the same string from the payments table.
    """
    if inp.vpa.strip():
        return "vpa:" + normalize_vpa(inp.vpa)
    if inp.card_token.strip():
        return "card:" + inp.card_token.strip()
    return ""
