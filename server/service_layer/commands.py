"""Commands: validated, protocol-free requests the handlers act on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from server.domain.money import Money
from server.domain.payment import CustomerInfo, MethodSummary
from server.domain.status import PaymentStatus
from server.domain.validation import (
    normalize_phone,
    refuse_card_numbers,
    validate_amount,
    validate_country,
    validate_email,
    validate_idempotency_key,
    validate_ip,
    validate_metadata,
    validate_phone,
    validate_url,
    validate_vpa,
)
from server.errors import ValidationError

__all__ = [
    "CancelPayment",
    "CreatePayment",
    "ListPayments",
    "RefundPayment",
    "request_hash",
]

_CARD_NETWORKS = frozenset({"VISA", "MASTERCARD", "RUPAY", "AMEX", "DINERS", "DISCOVER", "MAESTRO",
                            "JCB", "UNIONPAY"})
_UPI_FLOWS = frozenset({"intent", "collect", "qr"})


@dataclass(frozen=True, slots=True)
class CreatePayment:
    merchant_id: str
    idempotency_key: str
    amount: Money
    method: MethodSummary
    customer: CustomerInfo = field(default_factory=CustomerInfo)
    ip_address: str = ""
    country: str = ""
    description: str = ""
    return_url: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    preferred_connector: str = ""

    def validated(self) -> CreatePayment:
        """Check every field (naming it on failure); returns the normalised command."""
        self._refuse_card_data()
        validate_idempotency_key(self.idempotency_key)
        validate_amount(self.amount.amount_minor, self.amount.currency)
        method = _validated_method(self.method)
        customer = self.customer
        if len(customer.id) > 64:
            raise ValidationError("customer.id", "must be at most 64 characters")
        if len(customer.name) > 100:
            raise ValidationError("customer.name", "must be at most 100 characters")
        if customer.email:
            validate_email(customer.email, "customer.email")
        if customer.phone:
            validate_phone(customer.phone, "customer.phone")
        if self.ip_address:
            validate_ip(self.ip_address)
        if self.country:
            validate_country(self.country)
        if len(self.description) > 255:
            raise ValidationError("description", "must be at most 255 characters")
        if self.return_url:
            validate_url(self.return_url, "return_url")
        validate_metadata(self.metadata)
        normalized_customer = CustomerInfo(
            id=customer.id, name=customer.name, email=customer.email.lower(),
            phone=normalize_phone(customer.phone) if customer.phone else "",
        )
        return CreatePayment(
            merchant_id=self.merchant_id, idempotency_key=self.idempotency_key,
            amount=self.amount, method=method, customer=normalized_customer,
            ip_address=self.ip_address, country=self.country, description=self.description,
            return_url=self.return_url, metadata=dict(self.metadata),
            preferred_connector=self.preferred_connector,
        )

    def _refuse_card_data(self) -> None:
        fields: list[tuple[str, str]] = [
            ("idempotency_key", self.idempotency_key),
            ("description", self.description),
            ("return_url", self.return_url),
            ("customer.id", self.customer.id),
            ("customer.name", self.customer.name),
            ("customer.email", self.customer.email),
            ("customer.phone", self.customer.phone),
            ("method.upi.vpa", self.method.upi_vpa),
            ("method.card.token", self.method.card_token),
            ("method.card.last4", self.method.card_last4),
            ("method.wallet.wallet", self.method.wallet),
            ("preferred_connector", self.preferred_connector),
        ]
        # Keys first, named without echoing them: a key that is a card number must not travel on
        # in the error message.
        refuse_card_numbers(("metadata (a key)", key) for key in self.metadata)
        fields.extend((f"metadata[{key}]", value) for key, value in self.metadata.items())
        refuse_card_numbers(fields)


def _validated_method(method: MethodSummary) -> MethodSummary:
    if method.type == "upi":
        flow = method.upi_flow or "intent"
        if flow not in _UPI_FLOWS:
            raise ValidationError("method.upi.flow", "must be intent, collect or qr")
        if flow == "collect" and not method.upi_vpa:
            raise ValidationError("method.upi.vpa", "is required for the COLLECT flow")
        if method.upi_vpa:
            validate_vpa(method.upi_vpa, "method.upi.vpa")
        return MethodSummary(type="upi", upi_vpa=method.upi_vpa.lower(), upi_flow=flow)
    if method.type == "card":
        network = method.card_network.upper()
        if network and network not in _CARD_NETWORKS:
            raise ValidationError("method.card.network", "is not a known card network")
        if method.card_last4 and not (len(method.card_last4) == 4 and method.card_last4.isdigit()):
            raise ValidationError("method.card.last4", "must be exactly 4 digits")
        if len(method.card_token) > 128:
            raise ValidationError("method.card.token", "must be at most 128 characters")
        return MethodSummary(type="card", card_token=method.card_token, card_network=network,
                             card_last4=method.card_last4)
    if method.type == "netbanking":
        code = method.bank_code.upper()
        if not code:
            raise ValidationError("method.netbanking.bank_code", "is required")
        if not (len(code) == 4 and code.isalpha()):
            raise ValidationError("method.netbanking.bank_code",
                                  "must be a 4-letter bank code, e.g. HDFC")
        return MethodSummary(type="netbanking", bank_code=code)
    if method.type == "wallet":
        wallet = method.wallet.lower()
        if not wallet:
            raise ValidationError("method.wallet.wallet", "is required")
        if not (2 <= len(wallet) <= 30 and wallet.replace("_", "").isalnum()):
            raise ValidationError("method.wallet.wallet", "must be a wallet name, e.g. paytm")
        return MethodSummary(type="wallet", wallet=wallet)
    raise ValidationError("method", "exactly one of upi, card, netbanking or wallet must be set")


def request_hash(command: object) -> str:
    """Stable fingerprint of a request: tells a retry from a new request with the same key."""
    data = asdict(command)  # type: ignore[call-overload]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ListPayments:
    merchant_id: str
    status: PaymentStatus | None = None
    connector: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    page_size: int = 20
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class CancelPayment:
    merchant_id: str
    payment_id: str
    idempotency_key: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RefundPayment:
    merchant_id: str
    payment_id: str
    idempotency_key: str
    amount: Money | None = None
    reason: str = ""
