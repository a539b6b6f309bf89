"""Building connector inputs from the payment aggregate (shared by create, refund and sync)."""

from __future__ import annotations

from server.connectors.base import RefundInput
from server.domain.payment import Payment, Refund

__all__ = ["refund_input_for"]


def refund_input_for(payment: Payment, refund: Refund) -> RefundInput:
    """What a connector needs to create or look up `refund` (the paid attempt's references)."""
    attempt = next((a for a in reversed(payment.attempts)
                    if a.connector == refund.connector and a.connector_payment_id), None)
    return RefundInput(
        refund_id=refund.id, payment_id=payment.id,
        connector_payment_id=attempt.connector_payment_id if attempt else
        payment.connector_payment_id,
        amount=refund.amount, total_amount=payment.amount, reason=refund.reason,
        references=dict(attempt.references) if attempt else {},
    )
