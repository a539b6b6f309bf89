"""CreatePayment's view of the risk engine: Payment → FraudInput, Assessment → FraudSummary."""

from __future__ import annotations

from server.adapters.postgres.pool import Conn
from server.domain.fraud.model import Assessment, FraudInput
from server.domain.payment import FraudReasonInfo, FraudSummary, Payment
from server.service_layer.fraud_screening import FraudScreening
from server.service_layer.ports import FraudVerdict

__all__ = ["EngineFraudScreener", "fraud_input_for", "summary_of"]


def fraud_input_for(payment: Payment) -> FraudInput:
    method = payment.method
    return FraudInput(
        amount=payment.amount, method_type=method.type, vpa=method.upi_vpa,
        email=payment.customer.email, phone=payment.customer.phone,
        customer_id=payment.customer.id, card_token=method.card_token,
        ip=payment.ip_address, country=payment.country, merchant_id=payment.merchant_id,
    )


def summary_of(assessment: Assessment) -> FraudSummary:
    return FraudSummary(
        decision=assessment.decision.value, score=assessment.score,
        reasons=tuple(FraudReasonInfo(r.code, r.message, r.score, r.hard_block)
                      for r in assessment.reasons),
        unavailable_signals=assessment.unavailable_signals,
    )


class EngineFraudScreener:
    def __init__(self, screening: FraudScreening[Conn]) -> None:
        self._screening = screening

    async def assess(self, conn: object, payment: Payment, *, record: bool) -> FraudVerdict:
        result = await self._screening.screen_detailed(
            conn,  # type: ignore[arg-type]
            payment.merchant_id, fraud_input_for(payment), record=record, event_id=payment.id)
        return FraudVerdict(summary_of(result.assessment), hold=result.hold)
