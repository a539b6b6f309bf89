"""The seed project's `POST /create-payment` JSON (amounts in rupees), kept working verbatim.

{"amount": 15000, "currency": "INR", "cardDetails": {}, "ipAddress": "192.168.1.1", "country": "IN"}
Optional: "upi": {"vpa": "..."}, "netbanking": {"bankCode": "HDFC"}, "wallet": "paytm",
"customer": {"id","name","email","phone"}, "description", "returnUrl", "metadata",
"preferredConnector". The `Idempotency-Key` header makes a retry safe; without it each call is a
new payment, as in the seed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from server.domain.money import Money
from server.domain.payment import CustomerInfo, MethodSummary
from server.domain.validation import refuse_card_numbers
from server.errors import ValidationError
from server.service_layer.commands import CreatePayment

__all__ = ["SeedCreatePayment", "parse_seed_create"]

_CARD_FIELDS_ALLOWED = frozenset({"token", "network", "last4"})


@dataclass(frozen=True, slots=True)
class SeedCreatePayment:
    command: CreatePayment


def _text(data: dict[str, Any], key: str, field: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def _all_strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string (keys too) with the path to name it by; a key is named by its parent."""
    if isinstance(value, dict):
        keys = [(f"{path} (a key)", str(k)) for k in value]
        return keys + [pair for k, v in value.items() for pair in _all_strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _all_strings(v, f"{path}[{i}]")]
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [(path, str(value))]
    return []


def _rupees(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError("amount", "must be a number of rupees")
    try:
        rupees = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValidationError("amount", "must be a number of rupees") from exc
    if not rupees.is_finite() or abs(rupees) > Decimal(10) ** 12:
        raise ValidationError("amount", "must be a finite number of rupees")
    paise = rupees * 100
    if paise != paise.to_integral_value():
        raise ValidationError("amount", "must have at most 2 decimal places")
    return int(paise)


def parse_seed_create(body: bytes, merchant_id: str, idempotency_key: str) -> SeedCreatePayment:
    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise ValidationError("body", "must be JSON") from exc
    if not isinstance(data, dict):
        raise ValidationError("body", "must be a JSON object")
    # Scan everything first: a card number anywhere is refused before it is used or logged.
    refuse_card_numbers((path.removeprefix("body.").removeprefix("body "), text)
                        for path, text in _all_strings(data, "body"))
    if "amount" not in data:
        raise ValidationError("amount", "is required (in rupees)")
    card = data.get("cardDetails")
    if card is not None:
        if not isinstance(card, dict):
            raise ValidationError("cardDetails", "must be an object")
        forbidden = sorted(set(card) - _CARD_FIELDS_ALLOWED)
        if forbidden:
            raise ValidationError(
                f"cardDetails.{forbidden[0]}", "card numbers, expiry and CVV are never accepted "
                "(RBI card-on-file rule); the customer enters them on the PSP's checkout")
    method = _seed_method(data)
    customer_data = data.get("customer") or {}
    if not isinstance(customer_data, dict):
        raise ValidationError("customer", "must be an object")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValidationError("metadata", "must be an object of strings")
    command = CreatePayment(
        merchant_id=merchant_id,
        idempotency_key=idempotency_key or f"seed-{uuid.uuid4().hex}",
        amount=Money(_rupees(data["amount"]), _text(data, "currency", "currency") or "INR"),
        method=method,
        customer=CustomerInfo(
            id=_text(customer_data, "id", "customer.id"),
            name=_text(customer_data, "name", "customer.name"),
            email=_text(customer_data, "email", "customer.email"),
            phone=_text(customer_data, "phone", "customer.phone")),
        ip_address=_text(data, "ipAddress", "ipAddress"),
        country=_text(data, "country", "country"),
        description=_text(data, "description", "description"),
        return_url=_text(data, "returnUrl", "returnUrl"),
        metadata=dict(metadata),
        preferred_connector=_text(data, "preferredConnector", "preferredConnector"),
    )
    return SeedCreatePayment(command)


def _seed_method(data: dict[str, Any]) -> MethodSummary:
    if isinstance(data.get("upi"), dict):
        upi = data["upi"]
        return MethodSummary(type="upi", upi_vpa=_text(upi, "vpa", "upi.vpa"),
                             upi_flow=_text(upi, "flow", "upi.flow").lower())
    if isinstance(data.get("netbanking"), dict):
        return MethodSummary(type="netbanking", bank_code=_text(
            data["netbanking"], "bankCode", "netbanking.bankCode"))
    if "wallet" in data:
        return MethodSummary(type="wallet", wallet=_text(data, "wallet", "wallet"))
    card = data.get("cardDetails") or {}
    return MethodSummary(type="card", card_token=_text(card, "token", "cardDetails.token"),
                         card_network=_text(card, "network", "cardDetails.network"),
                         card_last4=_text(card, "last4", "cardDetails.last4"))
