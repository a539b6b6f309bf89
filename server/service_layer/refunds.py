"""RefundPayment: full or partial, idempotent, never more than captured."""

from __future__ import annotations

from server.connectors.base import ConnectorError, ConnectorRefund
from server.domain.ids import new_id
from server.domain.payment import Payment, Refund, settle_refund, utcnow
from server.domain.status import PaymentStatus, RefundStatus
from server.domain.validation import validate_amount, validate_idempotency_key
from server.errors import IdempotencyConflict, IllegalTransition, NotFound, ValidationError
from server.service_layer.commands import RefundPayment, request_hash
from server.service_layer.payments import PaymentDeps
from server.service_layer.psp_inputs import refund_input_for

__all__ = ["RefundService"]

_REFUNDABLE = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)


class RefundService:
    def __init__(self, deps: PaymentDeps) -> None:
        self.deps = deps

    async def refund(self, command: RefundPayment, *, actor: str) -> Refund:
        if not command.payment_id:
            raise ValidationError("payment_id", "is required")
        validate_idempotency_key(command.idempotency_key)
        if command.amount is not None:
            validate_amount(command.amount.amount_minor, command.amount.currency)
        if len(command.reason) > 255:
            raise ValidationError("reason", "must be at most 255 characters")
        fingerprint = request_hash(command)
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(command.merchant_id, command.payment_id,
                                             for_update=True)
            refund_id = new_id("rfnd")
            existing = await uow.payments.claim_idempotency_key(
                command.merchant_id, "refund_payment", command.idempotency_key, fingerprint,
                refund_id)
            if existing is not None:
                if existing[0] != fingerprint:
                    raise IdempotencyConflict(
                        "idempotency_key was already used with a different request")
                return _find_refund(payment, existing[1])
            if payment.status not in _REFUNDABLE:
                raise IllegalTransition(
                    f"payment {payment.id} is {payment.status.value}; only SUCCEEDED or "
                    "PARTIALLY_REFUNDED payments can be refunded")
            refundable = payment.refundable()
            amount = command.amount or refundable
            if amount.currency != payment.amount.currency:
                raise ValidationError("amount.currency", "must match the payment's currency")
            if amount.amount_minor <= 0 or amount.amount_minor > refundable.amount_minor:
                raise ValidationError(
                    "amount.amount_minor",
                    f"exceeds the refundable amount ({refundable.amount_minor} paise)")
            refund = Refund(id=refund_id, payment_id=payment.id, merchant_id=payment.merchant_id,
                            amount=amount, status=RefundStatus.PENDING,
                            connector=payment.connector, reason=command.reason)
            payment.add_refund(refund)
            payment.record_note("refund.created", actor=actor, details={
                "refund_id": refund.id, "amount_minor": amount.amount_minor})
            await uow.payments.save(payment)
            await uow.commit()
        result = await self._call_psp(payment, refund)
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(command.merchant_id, command.payment_id,
                                             for_update=True)
            refund = _find_refund(payment, refund.id)
            if isinstance(result, ConnectorRefund):
                refund.connector_refund_id = result.connector_refund_id
                settle_refund(payment, refund, result.status.value,
                              actor=f"connector:{refund.connector}",
                              error_code=result.error_code, error_message=result.error_message)
            else:
                # Outcome unknown or refused before processing: stays PENDING, sync resolves it.
                payment.record_note("refund.call_failed", actor=f"connector:{refund.connector}",
                                    details={"refund_id": refund.id, "error": result.code})
            if refund.status == RefundStatus.PENDING:
                # Settles later by webhook or by the status-sync worker asking the PSP.
                payment.next_sync_at = utcnow() + self.deps.sync_policy.refund_recheck
            await uow.payments.save(payment)
            await uow.commit()
        return refund

    async def _call_psp(self, payment: Payment, refund: Refund) -> ConnectorRefund | ConnectorError:
        routable = self.deps.accounts.get(refund.connector)
        if routable is None:
            return ConnectorError(f"connector account {refund.connector} not configured",
                                  code="NOT_CONFIGURED")
        data = refund_input_for(payment, refund)
        try:
            return await routable.connector.refund(self.deps.accounts.transport,
                                                   routable.account, data)
        except ConnectorError as exc:
            return exc


def _find_refund(payment: Payment, refund_id: str) -> Refund:
    for refund in payment.refunds:
        if refund.id == refund_id:
            return refund
    raise NotFound(f"refund {refund_id} not found")

