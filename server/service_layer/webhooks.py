"""Applying verified PSP webhooks through the same state machine, audit log and outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.connectors.base import PspStatus, WebhookEvent
from server.domain.payment import Failure, Payment, apply_psp_status, settle_refund
from server.domain.status import AttemptStatus, PaymentStatus
from server.errors import NotFound
from server.service_layer.payments import PaymentDeps
from server.service_layer.ports import UnitOfWork

__all__ = ["WebhookResult", "WebhookService"]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    result: str  # applied | duplicate | ignored
    payment_id: str
    status: str


class WebhookService:
    def __init__(self, deps: PaymentDeps) -> None:
        self.deps = deps

    def parse(self, account_name: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Verify (signature first) and parse; raises NotFound / WebhookRejected."""
        routable = self.deps.accounts.get(account_name)
        if routable is None:
            raise NotFound(f"no connector account named {account_name}")
        return routable.connector.parse_webhook(routable.account, headers, body,
                                                self.deps.clock())

    async def account_for_reference(self, reference: str) -> tuple[str, str] | None:
        """(account, PSP reference) of the attempt a bare reference names (seed `/webhook`)."""
        async with self.deps.uow_factory() as uow:
            return await uow.payments.find_account_for_reference(reference)

    async def apply(self, account_name: str, event: WebhookEvent) -> WebhookResult:
        """Apply once; a duplicate delivery is a no-op. NotFound for an unknown payment."""
        actor = f"webhook:{account_name}"
        if event.kind == "ignored":
            # Events no flow acts on (disputes, downtime notices): acknowledge so the PSP does
            # not retry them or disable the webhook.
            return WebhookResult("ignored", "", "")
        async with self.deps.uow_factory() as uow:
            payment_id = await self._find_payment(uow, account_name, event)
            if payment_id is None:
                raise NotFound("no payment matches this webhook")
            payment = await uow.payments.get_any(payment_id, for_update=True)
            assert payment is not None
            if not await uow.record_webhook_receipt(account_name, event.dedupe_id, payment_id):
                return WebhookResult("duplicate", payment_id, payment.status.value)
            attempt = next((a for a in reversed(payment.attempts)
                            if a.connector == account_name and (
                                a.connector_payment_id == event.connector_payment_id
                                or a.id in (event.payment_ref, event.connector_payment_id))),
                           None)
            if event.kind == "refund":
                changed = self._apply_refund(payment, event, actor)
            elif attempt is None:
                payment.record_note("webhook.ignored", actor=actor, details={
                    "reason": "no attempt of this payment on this account",
                    "dedupe_id": event.dedupe_id})
                changed = False
            else:
                if event.status == PspStatus.SUCCEEDED:
                    attempt.status = AttemptStatus.SUCCEEDED
                elif event.status in (PspStatus.FAILED, PspStatus.EXPIRED) and \
                        attempt.status != AttemptStatus.SUCCEEDED:
                    attempt.status = AttemptStatus.FAILED
                    attempt.error_code, attempt.error_message = (event.error_code,
                                                                 event.error_message)
                if not attempt.connector_payment_id and event.connector_payment_id:
                    attempt.connector_payment_id = event.connector_payment_id
                failure = Failure(event.error_code or "PSP_FAILED",
                                  event.error_message or "payment failed at the PSP") \
                    if event.status in (PspStatus.FAILED, PspStatus.EXPIRED) else None
                changed = apply_psp_status(payment, event.status.value, actor=actor,
                                           failure=failure, details={
                                               "dedupe_id": event.dedupe_id,
                                               "raw_status": event.raw_status})
                if payment.status not in (PaymentStatus.REQUIRES_ACTION,
                                          PaymentStatus.PROCESSING, PaymentStatus.CREATED):
                    payment.next_sync_at = None
            await uow.payments.save(payment)
            await uow.commit()
        if changed and payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED) and \
                event.kind == "payment":
            await self.deps.router.record_result(
                account_name, payment.method.type,
                success=payment.status == PaymentStatus.SUCCEEDED)
        return WebhookResult("applied" if changed else "ignored", payment.id,
                             payment.status.value)

    async def _find_payment(self, uow: UnitOfWork, account_name: str, event: WebhookEvent
                            ) -> str | None:
        repo = uow.payments
        if event.kind == "refund" and event.connector_refund_id:
            found = await repo.find_by_refund_reference(account_name, event.connector_refund_id)
            if found:
                return str(found)
        for reference in (event.connector_payment_id, event.payment_ref):
            if reference:
                found = await repo.find_by_connector_reference(account_name, reference)
                if found:
                    return str(found)
        return None

    def _apply_refund(self, payment: Payment, event: WebhookEvent, actor: str) -> bool:
        refund = next((r for r in payment.refunds if event.connector_refund_id in (
            r.connector_refund_id, r.id)), None)
        if refund is None:
            payment.record_note("webhook.ignored", actor=actor, details={
                "reason": "unknown refund", "refund": event.connector_refund_id})
            return False
        if not refund.connector_refund_id:
            refund.connector_refund_id = event.connector_refund_id
        return settle_refund(payment, refund, event.status.value, actor=actor,
                             error_code=event.error_code, error_message=event.error_message)
