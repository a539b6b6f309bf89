"""The one place where protobuf messages and domain/command types meet."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2, payment_service_pb2

from server.domain.money import Money
from server.domain.payment import (
    Attempt,
    CustomerInfo,
    FraudSummary,
    MethodSummary,
    Payment,
    Refund,
    RoutingSummary,
    StateChange,
)
from server.domain.status import PaymentStatus, RefundStatus
from server.errors import ValidationError
from server.service_layer.commands import CreatePayment

__all__ = [
    "create_command_from_proto",
    "event_to_proto",
    "fraud_to_proto",
    "from_timestamp",
    "money_from_proto",
    "money_to_proto",
    "payment_status_from_proto",
    "payment_status_to_proto",
    "payment_to_proto",
    "refund_to_proto",
    "timestamp",
]

_UPI_FLOW_NAMES = {pb.UPI_FLOW_UNSPECIFIED: "", pb.UPI_FLOW_INTENT: "intent",
                   pb.UPI_FLOW_COLLECT: "collect", pb.UPI_FLOW_QR: "qr"}
_FRAUD_DECISIONS = {"ALLOW": pb.FRAUD_DECISION_ALLOW, "REVIEW": pb.FRAUD_DECISION_REVIEW,
                    "BLOCK": pb.FRAUD_DECISION_BLOCK}
_REFUND_STATUS = {RefundStatus.PENDING: pb.REFUND_STATUS_PENDING,
                  RefundStatus.SUCCEEDED: pb.REFUND_STATUS_SUCCEEDED,
                  RefundStatus.FAILED: pb.REFUND_STATUS_FAILED}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def payment_status_to_proto(status: PaymentStatus) -> pb.PaymentStatus.ValueType:
    return pb.PaymentStatus.Value(f"PAYMENT_STATUS_{status.value}")


def payment_status_from_proto(value: int, field: str = "status") -> PaymentStatus | None:
    if value == pb.PAYMENT_STATUS_UNSPECIFIED:
        return None
    try:
        name = pb.PaymentStatus.Name(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValidationError(field, f"unknown status {value}") from exc
    return PaymentStatus(name.removeprefix("PAYMENT_STATUS_"))


def money_to_proto(money: Money) -> pb.Money:
    return pb.Money(amount_minor=money.amount_minor, currency=money.currency)


def money_from_proto(money: pb.Money, field: str) -> Money:
    """Proto money → Money; the amount is checked by the use case."""
    return Money(int(money.amount_minor), money.currency)


def method_from_proto(method: pb.PaymentMethod) -> MethodSummary:
    kind = method.WhichOneof("kind")
    if kind == "upi":
        return MethodSummary(type="upi", upi_vpa=method.upi.vpa,
                             upi_flow=_UPI_FLOW_NAMES.get(method.upi.flow, "?"))
    if kind == "card":
        return MethodSummary(type="card", card_token=method.card.token,
                             card_network=method.card.network, card_last4=method.card.last4)
    if kind == "netbanking":
        return MethodSummary(type="netbanking", bank_code=method.netbanking.bank_code)
    if kind == "wallet":
        return MethodSummary(type="wallet", wallet=method.wallet.wallet)
    return MethodSummary(type="")


def create_command_from_proto(request: payment_service_pb2.CreatePaymentRequest,
                              merchant_id: str) -> CreatePayment:
    """Proto → command. Field checks happen in CreatePayment.validated()."""
    if not request.HasField("amount"):
        raise ValidationError("amount", "is required")
    return CreatePayment(
        merchant_id=merchant_id,
        idempotency_key=request.idempotency_key,
        amount=money_from_proto(request.amount, "amount"),
        method=method_from_proto(request.method),
        customer=CustomerInfo(id=request.customer.id, name=request.customer.name,
                              email=request.customer.email, phone=request.customer.phone),
        ip_address=request.ip_address,
        country=request.country,
        description=request.description,
        return_url=request.return_url,
        metadata=dict(request.metadata),
        preferred_connector=request.preferred_connector,
    )


def fraud_to_proto(fraud: FraudSummary) -> pb.FraudAssessment:
    return pb.FraudAssessment(
        decision=_FRAUD_DECISIONS.get(fraud.decision, pb.FRAUD_DECISION_UNSPECIFIED),
        score=fraud.score,
        reasons=[pb.FraudReason(code=r.code, message=r.message, score=r.score,
                                hard_block=r.hard_block) for r in fraud.reasons],
        unavailable_signals=list(fraud.unavailable_signals),
    )


def _routing_to_proto(routing: RoutingSummary) -> pb.RoutingDecision:
    return pb.RoutingDecision(
        algorithm=routing.algorithm, chosen=routing.chosen, reason=routing.reason,
        degraded=routing.degraded,
        candidates=[pb.RoutingCandidate(connector=c.connector, score=c.score, note=c.note)
                    for c in routing.candidates],
    )


def _attempt_to_proto(attempt: Attempt) -> pb.Attempt:
    return pb.Attempt(
        number=attempt.number, connector=attempt.connector,
        connector_payment_id=attempt.connector_payment_id, status=attempt.status.value,
        error=pb.Failure(code=attempt.error_code, message=attempt.error_message)
        if attempt.error_code else None,
        latency_ms=attempt.latency_ms, created_at=timestamp(attempt.created_at),
    )


def refund_to_proto(refund: Refund) -> pb.Refund:
    return pb.Refund(
        id=refund.id, payment_id=refund.payment_id, amount=money_to_proto(refund.amount),
        status=_REFUND_STATUS[refund.status], reason=refund.reason,
        connector_refund_id=refund.connector_refund_id,
        failure=pb.Failure(code=refund.failure.code, message=refund.failure.message)
        if refund.failure else None,
        created_at=timestamp(refund.created_at), updated_at=timestamp(refund.updated_at),
    )


def _method_to_proto(method: MethodSummary) -> pb.MethodSummary:
    return pb.MethodSummary(**method.as_dict())


def payment_to_proto(payment: Payment) -> pb.Payment:
    return pb.Payment(
        id=payment.id,
        merchant_id=payment.merchant_id,
        amount=money_to_proto(payment.amount),
        status=payment_status_to_proto(payment.status),
        connector=payment.connector,
        connector_payment_id=payment.connector_payment_id,
        redirect_url=payment.redirect_url,
        fraud=fraud_to_proto(payment.fraud),
        attempts=[_attempt_to_proto(a) for a in payment.attempts],
        routing=_routing_to_proto(payment.routing),
        amount_refunded=money_to_proto(payment.refunded),
        failure=pb.Failure(code=payment.failure.code, message=payment.failure.message)
        if payment.failure else None,
        created_at=timestamp(payment.created_at),
        updated_at=timestamp(payment.updated_at),
        method=_method_to_proto(payment.method),
        customer=pb.Customer(**payment.customer.as_dict()),
        description=payment.description,
        return_url=payment.return_url,
        metadata=payment.metadata,
        idempotency_key=payment.idempotency_key,
        version=payment.version,
        ip_address=payment.ip_address,
        country=payment.country,
        refunds=[refund_to_proto(r) for r in payment.refunds],
    )


def event_to_proto(change: StateChange, payment: Payment) -> events_pb2.PaymentEvent:
    """The Kafka event for one change: the payment as committed, at that change's status/version."""
    snapshot = payment_to_proto(payment)
    snapshot.status = payment_status_to_proto(change.after)
    snapshot.version = change.version
    if change.after == PaymentStatus.CREATED:
        snapshot.ClearField("failure")
    return events_pb2.PaymentEvent(
        event_id=change.event_id,
        type=change.event_type,
        occurred_at=timestamp(change.occurred_at),
        payment=snapshot,
        sequence=change.version,
        previous_status=payment_status_to_proto(change.before) if change.before
        else pb.PAYMENT_STATUS_UNSPECIFIED,
        merchant_id=change.merchant_id,
    )
