"""What the sync and async clients share: retry policy, request builders, money helpers."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fraud_pb
from triveni.v1 import payment_service_pb2 as pay_pb

VERSION = "0.1.0"
DEFAULT_TARGET = "localhost:50051"
ChannelOptions = Sequence[tuple[str, Any]]
Metadata = tuple[tuple[str, str], ...]

_PAISE_PER_RUPEE = 100


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a failed call.

    UNAVAILABLE is retried for every call: every mutating request carries its idempotency key,
    and the very same request object (same key) is resent, so the server applies it at most
    once. DEADLINE_EXCEEDED is retried only for reads: a write that timed out may have happened.
    """

    max_retries: int = 3
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoff must be >= 0 and multiplier >= 1")

    def should_retry(self, code: grpc.StatusCode, *, read: bool, retries_done: int) -> bool:
        """True when a call that failed with `code` may be sent again."""
        if retries_done >= self.max_retries:
            return False
        if code == grpc.StatusCode.UNAVAILABLE:
            return True
        return read and code == grpc.StatusCode.DEADLINE_EXCEEDED

    def backoff(self, retries_done: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retries_done + 1` (exponential, equal jitter)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**retries_done)
        return ceiling / 2 + rand() * ceiling / 2


def new_idempotency_key() -> str:
    """A fresh idempotency key (a random UUID4)."""
    return str(uuid.uuid4())


def idempotency_key_or_new(key: str | None) -> str:
    if key is None:
        return new_idempotency_key()
    if not key:
        raise ValueError("idempotency_key must be non-empty (pass None to generate one)")
    return key


def inr(rupees: int | str | Decimal | float) -> pb.Money:
    """Money in INR from an amount in rupees: `inr(15000)`, `inr("499.50")` → paise."""
    if isinstance(rupees, bool):
        raise TypeError("inr() takes an amount in rupees, not a bool")
    if isinstance(rupees, float):
        if not math.isfinite(rupees):
            raise ValueError(f"not a finite amount: {rupees!r}")
        rupees = repr(rupees)  # the shortest decimal that round-trips, so 0.1 stays 0.1
    try:
        amount = Decimal(rupees)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount in rupees: {rupees!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be a non-negative number of rupees: {rupees!r}")
    paise = amount * _PAISE_PER_RUPEE
    if paise != paise.to_integral_value():
        raise ValueError(f"amount has fractions of a paisa: {rupees!r}")
    return pb.Money(amount_minor=int(paise), currency="INR")


def paise(amount_minor: int) -> pb.Money:
    """Money in INR from an amount in paise."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("paise() takes an integer number of paise")
    if amount_minor < 0:
        raise ValueError("amount must be >= 0 paise")
    return pb.Money(amount_minor=amount_minor, currency="INR")


def upi(vpa: str = "", flow: pb.UpiFlow.ValueType = pb.UPI_FLOW_INTENT) -> pb.PaymentMethod:
    """A UPI payment method; intent flow (upi://pay link / QR) unless told otherwise."""
    return pb.PaymentMethod(upi=pb.UpiMethod(vpa=vpa, flow=flow))


def card(token: str = "", network: str = "", last4: str = "") -> pb.PaymentMethod:
    """A card payment: hosted checkout (no token) or a PSP/network token. Never a card number."""
    return pb.PaymentMethod(card=pb.CardMethod(token=token, network=network, last4=last4))


def netbanking(bank_code: str) -> pb.PaymentMethod:
    """A netbanking payment at the bank with this IFSC-style code, e.g. "HDFC"."""
    return pb.PaymentMethod(netbanking=pb.NetbankingMethod(bank_code=bank_code))


def wallet(name: str) -> pb.PaymentMethod:
    """A wallet payment, e.g. wallet("paytm")."""
    return pb.PaymentMethod(wallet=pb.WalletMethod(wallet=name))


def resolve_method(
    method: pb.PaymentMethod | None,
    upi_vpa: str | None,
    upi_flow: pb.UpiFlow.ValueType | None,
) -> pb.PaymentMethod | None:
    if method is not None and (upi_vpa is not None or upi_flow is not None):
        raise ValueError("pass either method=... or upi_vpa=/upi_flow=..., not both")
    if method is not None:
        return method
    if upi_vpa is None and upi_flow is None:
        return None
    return upi(upi_vpa or "", pb.UPI_FLOW_INTENT if upi_flow is None else upi_flow)


def create_payment_request(
    *,
    amount: pb.Money,
    method: pb.PaymentMethod | None,
    upi_vpa: str | None,
    upi_flow: pb.UpiFlow.ValueType | None,
    customer: pb.Customer | None,
    ip_address: str,
    country: str,
    description: str,
    return_url: str,
    metadata: Mapping[str, str] | None,
    preferred_connector: str,
    idempotency_key: str | None,
) -> pay_pb.CreatePaymentRequest:
    resolved = resolve_method(method, upi_vpa, upi_flow)
    if resolved is None:
        raise ValueError("create_payment needs method=... (e.g. triveni.upi()) or upi_vpa=...")
    return pay_pb.CreatePaymentRequest(
        idempotency_key=idempotency_key_or_new(idempotency_key),
        amount=_money(amount),
        method=resolved,
        customer=customer,
        ip_address=ip_address,
        country=country,
        description=description,
        return_url=return_url,
        metadata=dict(metadata or {}),
        preferred_connector=preferred_connector,
    )


def list_payments_request(
    *,
    status: pb.PaymentStatus.ValueType | None,
    connector: str,
    created_from: datetime | Timestamp | None,
    created_to: datetime | Timestamp | None,
    page_size: int,
    page_token: str,
) -> pay_pb.ListPaymentsRequest:
    return pay_pb.ListPaymentsRequest(
        status=pb.PAYMENT_STATUS_UNSPECIFIED if status is None else status,
        connector=connector,
        created_from=_timestamp(created_from),
        created_to=_timestamp(created_to),
        page_size=page_size,
        page_token=page_token,
    )


def refund_payment_request(
    payment_id: str, *, amount: pb.Money | None, reason: str, idempotency_key: str | None
) -> pay_pb.RefundPaymentRequest:
    return pay_pb.RefundPaymentRequest(
        payment_id=payment_id,
        idempotency_key=idempotency_key_or_new(idempotency_key),
        amount=None if amount is None else _money(amount),
        reason=reason,
    )


def check_transaction_request(
    *,
    amount: pb.Money,
    method: pb.PaymentMethod | None,
    upi_vpa: str | None,
    customer: pb.Customer | None,
    ip_address: str,
    country: str,
    record: bool,
) -> fraud_pb.CheckTransactionRequest:
    return fraud_pb.CheckTransactionRequest(
        amount=_money(amount),
        method=resolve_method(method, upi_vpa, None),
        customer=customer,
        ip_address=ip_address,
        country=country,
        record=record,
    )


def update_fraud_settings_request(
    settings: fraud_pb.FraudSettings, expected_version: int | None
) -> fraud_pb.UpdateFraudSettingsRequest:
    return fraud_pb.UpdateFraudSettingsRequest(
        settings=settings,
        expected_version=settings.version if expected_version is None else expected_version,
    )


def auth_metadata(api_key: str) -> Metadata:
    if not api_key or any(ch.isspace() or not ch.isprintable() for ch in api_key):
        raise ValueError("api_key must be a non-empty string without whitespace")
    return (("authorization", f"Bearer {api_key}"),)


def channel_options(options: ChannelOptions) -> list[tuple[str, Any]]:
    return [("grpc.primary_user_agent", f"triveni-python/{VERSION}"), *options]


def channel_credentials(
    tls: bool, root_certificates: bytes | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials when asked for (root_certificates implies TLS); None for plaintext."""
    if not tls and root_certificates is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


def validate_timeout(timeout: float | None, name: str = "timeout") -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"{name} must be > 0 seconds")


def _money(amount: pb.Money) -> pb.Money:
    if not isinstance(amount, pb.Money):
        raise TypeError(
            "amount must be a triveni.Money; use triveni.inr(rupees) or triveni.paise(paise)"
        )
    return amount


def _timestamp(value: datetime | Timestamp | None) -> Timestamp | None:
    if value is None or isinstance(value, Timestamp):
        return value
    if value.tzinfo is None:
        raise ValueError("datetime filters must be timezone-aware (e.g. tzinfo=timezone.utc)")
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
