"""PostgreSQL rows ↔ domain objects for payments, attempts and refunds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.domain.money import Money
from server.domain.payment import (
    Attempt,
    CustomerInfo,
    Failure,
    FraudReasonInfo,
    FraudSummary,
    MethodSummary,
    Payment,
    Refund,
    RoutingCandidateInfo,
    RoutingSummary,
)
from server.domain.status import AttemptStatus, PaymentStatus, RefundStatus

__all__ = [
    "attempt_from_row",
    "attempt_params",
    "fraud_to_json",
    "payment_from_row",
    "payment_params",
    "refund_from_row",
    "refund_params",
    "routing_to_json",
]

Row = Mapping[str, Any]


def fraud_to_json(fraud: FraudSummary) -> str:
    return json.dumps({
        "decision": fraud.decision, "score": fraud.score,
        "reasons": [{"code": r.code, "message": r.message, "score": r.score,
                     "hard_block": r.hard_block} for r in fraud.reasons],
        "unavailable_signals": list(fraud.unavailable_signals),
    })


def _fraud_from_json(data: Mapping[str, Any]) -> FraudSummary:
    return FraudSummary(
        decision=data.get("decision", ""), score=int(data.get("score", 0)),
        reasons=tuple(FraudReasonInfo(r["code"], r["message"], int(r["score"]),
                                      bool(r.get("hard_block", False)))
                      for r in data.get("reasons", [])),
        unavailable_signals=tuple(data.get("unavailable_signals", [])),
    )


def routing_to_json(routing: RoutingSummary) -> str:
    return json.dumps({
        "algorithm": routing.algorithm, "chosen": routing.chosen, "reason": routing.reason,
        "degraded": routing.degraded, "fallbacks": list(routing.fallbacks),
        "candidates": [{"connector": c.connector, "score": c.score, "note": c.note}
                       for c in routing.candidates],
    })


def _routing_from_json(data: Mapping[str, Any]) -> RoutingSummary:
    return RoutingSummary(
        algorithm=data.get("algorithm", ""), chosen=data.get("chosen", ""),
        reason=data.get("reason", ""), degraded=bool(data.get("degraded", False)),
        fallbacks=tuple(data.get("fallbacks", [])),
        candidates=tuple(RoutingCandidateInfo(c["connector"], float(c["score"]), c["note"])
                         for c in data.get("candidates", [])),
    )


def payment_params(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id, "merchant_id": p.merchant_id, "idempotency_key": p.idempotency_key,
        "amount_minor": p.amount.amount_minor, "currency": p.amount.currency,
        "status": p.status.value, "method": json.dumps(p.method.as_dict()),
        "customer": json.dumps(p.customer.as_dict()), "ip_address": p.ip_address,
        "country": p.country, "description": p.description, "return_url": p.return_url,
        "metadata": json.dumps(p.metadata), "preferred_connector": p.preferred_connector,
        "connector": p.connector, "connector_payment_id": p.connector_payment_id,
        "redirect_url": p.redirect_url, "fraud": fraud_to_json(p.fraud),
        "routing": routing_to_json(p.routing),
        "amount_refunded_minor": p.refunded.amount_minor,
        "failure_code": p.failure.code if p.failure else "",
        "failure_message": p.failure.message if p.failure else "",
        "version": p.version, "next_sync_at": p.next_sync_at,
        "created_at": p.created_at, "updated_at": p.updated_at,
    }


def payment_from_row(row: Row) -> Payment:
    currency = row["currency"]
    return Payment(
        id=row["id"], merchant_id=row["merchant_id"], idempotency_key=row["idempotency_key"],
        amount=Money(int(row["amount_minor"]), currency),
        method=MethodSummary.from_dict(row["method"]),
        status=PaymentStatus(row["status"]),
        customer=CustomerInfo(**row["customer"]),
        ip_address=row["ip_address"], country=row["country"], description=row["description"],
        return_url=row["return_url"], metadata=dict(row["metadata"]),
        preferred_connector=row["preferred_connector"], connector=row["connector"],
        connector_payment_id=row["connector_payment_id"], redirect_url=row["redirect_url"],
        fraud=_fraud_from_json(row["fraud"]), routing=_routing_from_json(row["routing"]),
        amount_refunded=Money(int(row["amount_refunded_minor"]), currency),
        failure=Failure(row["failure_code"], row["failure_message"])
        if row["failure_code"] else None,
        version=int(row["version"]), next_sync_at=row["next_sync_at"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def attempt_params(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id, "payment_id": a.payment_id, "number": a.number, "connector": a.connector,
        "connector_payment_id": a.connector_payment_id, "status": a.status.value,
        "error_code": a.error_code, "error_message": a.error_message,
        "latency_ms": a.latency_ms, "references_json": json.dumps(a.references),
        "created_at": a.created_at, "updated_at": a.updated_at,
    }


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        id=row["id"], payment_id=row["payment_id"], number=int(row["number"]),
        connector=row["connector"], status=AttemptStatus(row["status"]),
        connector_payment_id=row["connector_payment_id"], error_code=row["error_code"],
        error_message=row["error_message"], latency_ms=int(row["latency_ms"]),
        references=dict(row["references_json"]), created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def refund_params(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id, "payment_id": r.payment_id, "merchant_id": r.merchant_id,
        "amount_minor": r.amount.amount_minor, "currency": r.amount.currency,
        "status": r.status.value, "reason": r.reason, "connector": r.connector,
        "connector_refund_id": r.connector_refund_id,
        "failure_code": r.failure.code if r.failure else "",
        "failure_message": r.failure.message if r.failure else "",
        "created_at": r.created_at, "updated_at": r.updated_at,
    }


def refund_from_row(row: Row) -> Refund:
    return Refund(
        id=row["id"], payment_id=row["payment_id"], merchant_id=row["merchant_id"],
        amount=Money(int(row["amount_minor"]), row["currency"]),
        status=RefundStatus(row["status"]), connector=row["connector"], reason=row["reason"],
        connector_refund_id=row["connector_refund_id"],
        failure=Failure(row["failure_code"], row["failure_message"])
        if row["failure_code"] else None,
        created_at=row["created_at"], updated_at=row["updated_at"],
    )
