"""Payment use cases: create (screen → route → call PSP with failover), get, list, cancel, sync.

The attempt is persisted before the PSP is called and the result after, so a crash in between
leaves a PENDING/UNKNOWN attempt that status sync resolves — never a second charge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from server.connectors.base import (
    ConnectorError,
    ConnectorPayment,
    ConnectorRefund,
    CreatePaymentInput,
    Declined,
    Misconfigured,
    PspStatus,
    TransientError,
    UnknownOutcome,
)
from server.domain.payment import (
    Attempt,
    Failure,
    Payment,
    apply_psp_status,
    settle_refund,
    utcnow,
)
from server.domain.status import CANCELLABLE, AttemptStatus, PaymentStatus, RefundStatus
from server.errors import IdempotencyConflict, IllegalTransition, NotFound, ValidationError
from server.service_layer.commands import CancelPayment, CreatePayment, ListPayments, request_hash
from server.service_layer.ports import AccountDirectory, FraudScreener, Router, UnitOfWork
from server.service_layer.psp_inputs import refund_input_for

__all__ = ["PaymentDeps", "PaymentService", "SyncPolicy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """When to ask the PSP again about a payment that is not final yet (long tail: late
    authorisations resolve over days)."""

    unknown_outcome_delay: timedelta = timedelta(seconds=5)
    # Delays after creation for REQUIRES_ACTION / PROCESSING payments.
    schedule: tuple[timedelta, ...] = (
        timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
        timedelta(hours=6), timedelta(hours=24), timedelta(hours=72),
    )
    # A hosted checkout link nobody completed is EXPIRED after this.
    checkout_expiry: timedelta = timedelta(hours=24)
    # A pending refund is asked about again after this.
    refund_recheck: timedelta = timedelta(seconds=60)

    def next_after(self, created_at: datetime, now: datetime) -> datetime | None:
        for delay in self.schedule:
            if created_at + delay > now:
                return created_at + delay
        return None


@dataclass
class PaymentDeps:
    uow_factory: Callable[[], UnitOfWork]
    accounts: AccountDirectory
    fraud: FraudScreener
    router: Router
    public_base_url: str
    max_attempts: int = 3
    sync_policy: SyncPolicy = field(default_factory=SyncPolicy)
    clock: Callable[[], datetime] = utcnow
    # Told each PSP create call's outcome (metrics); a no-op by default.
    observe_attempt: Callable[[str, str], None] = lambda connector, outcome: None


def _call_outcome(error: ConnectorError | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, Declined):
        return "declined"
    if isinstance(error, UnknownOutcome):
        return "timeout"
    return "failure"


class PaymentService:
    def __init__(self, deps: PaymentDeps) -> None:
        self.deps = deps

    # ---- create ------------------------------------------------------------------------

    async def create(self, command: CreatePayment, *, actor: str) -> Payment:
        cmd = command.validated()
        if cmd.preferred_connector and self.deps.accounts.get(cmd.preferred_connector) is None:
            raise ValidationError("preferred_connector", "is not a configured connector account")
        fingerprint = request_hash(cmd)
        async with self.deps.uow_factory() as uow:
            payment = Payment.create(
                merchant_id=cmd.merchant_id, idempotency_key=cmd.idempotency_key,
                amount=cmd.amount, method=cmd.method, actor=actor, customer=cmd.customer,
                ip_address=cmd.ip_address, country=cmd.country, description=cmd.description,
                return_url=cmd.return_url, metadata=cmd.metadata,
                preferred_connector=cmd.preferred_connector,
            )
            existing = await uow.payments.claim_idempotency_key(
                cmd.merchant_id, "create_payment", cmd.idempotency_key, fingerprint, payment.id)
            if existing is not None:
                return await self._replay(uow, cmd.merchant_id, existing, fingerprint)
            verdict = await self.deps.fraud.assess(uow.conn, payment, record=True)
            payment.fraud = verdict.summary
            blocking = [r for r in payment.fraud.reasons if r.hard_block] or list(
                payment.fraud.reasons)
            if payment.fraud.decision == "BLOCK":
                top = blocking[0] if blocking else None
                payment.transition(PaymentStatus.BLOCKED, actor="fraud", failure=Failure(
                    f"FRAUD_{top.code}" if top else "FRAUD_BLOCKED",
                    top.message if top else "Fraud detected"))
                await uow.payments.add(payment)
                await uow.commit()
                return payment
            if verdict.hold:
                payment.transition(PaymentStatus.IN_REVIEW, actor="fraud")
                await uow.payments.add(payment)
                await uow.commit()
                return payment
            payment.routing = await self.deps.router.route(payment)
            if not payment.routing.chosen:
                payment.transition(PaymentStatus.FAILED, actor="router", failure=Failure(
                    "NO_ELIGIBLE_CONNECTOR", payment.routing.reason or "no connector can take "
                    "this payment"))
                await uow.payments.add(payment)
                await uow.commit()
                return payment
            payment.new_attempt(payment.routing.chosen)
            # Safety net: if this process dies before the PSP answers, sync picks it up.
            payment.next_sync_at = self.deps.clock() + self.deps.sync_policy.unknown_outcome_delay
            await uow.payments.add(payment)
            await uow.commit()
        return await self._run_attempts(payment.merchant_id, payment.id)

    async def _replay(self, uow: UnitOfWork, merchant_id: str, existing: tuple[str, str],
                      fingerprint: str) -> Payment:
        stored_hash, payment_id = existing
        if stored_hash != fingerprint:
            raise IdempotencyConflict(
                "idempotency_key was already used with a different request")
        return await uow.payments.get(merchant_id, payment_id)

    async def approve_review(self, merchant_id: str, payment_id: str, *, actor: str) -> Payment:
        """Releases an IN_REVIEW payment to routing and its PSP."""
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(merchant_id, payment_id, for_update=True)
            if payment.status != PaymentStatus.IN_REVIEW:
                raise IllegalTransition(f"payment {payment_id} is {payment.status.value}, "
                                        "not IN_REVIEW")
            payment.transition(PaymentStatus.CREATED, actor=actor,
                               details={"review": "approved"})
            payment.routing = await self.deps.router.route(payment)
            payment.new_attempt(payment.routing.chosen)
            payment.next_sync_at = self.deps.clock() + self.deps.sync_policy.unknown_outcome_delay
            await uow.payments.save(payment)
            await uow.commit()
        return await self._run_attempts(merchant_id, payment_id)

    async def reject_review(self, merchant_id: str, payment_id: str, *, actor: str) -> Payment:
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(merchant_id, payment_id, for_update=True)
            if payment.status != PaymentStatus.IN_REVIEW:
                raise IllegalTransition(f"payment {payment_id} is {payment.status.value}, "
                                        "not IN_REVIEW")
            payment.transition(PaymentStatus.BLOCKED, actor=actor, failure=Failure(
                "FRAUD_REVIEW_REJECTED", "Fraud detected: rejected on review"))
            await uow.payments.save(payment)
            await uow.commit()
            return payment

    async def _run_attempts(self, merchant_id: str, payment_id: str) -> Payment:
        """Call the PSP for the current attempt; fail over on errors that moved no money."""
        while True:
            async with self.deps.uow_factory() as uow:
                payment = await uow.payments.get(merchant_id, payment_id)
            attempt = payment.current_attempt
            if attempt is None or attempt.status != AttemptStatus.PENDING or \
                    attempt.connector_payment_id or \
                    payment.status not in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
                return payment
            claim = await self.deps.router.claim(attempt.connector)
            outcome: ConnectorPayment | None
            error: ConnectorError | None
            if claim is None:
                # Circuit open / probe taken / at capacity: nothing was sent, so failing over
                # is safe.
                outcome, error, latency_ms = None, TransientError(
                    f"{attempt.connector} is not accepting calls now (circuit or capacity)",
                    code="CONNECTOR_UNAVAILABLE"), 0
            else:
                try:
                    outcome, error, latency_ms = await self._call_create(payment, attempt)
                finally:
                    await self.deps.router.release(claim)
            outcome_name = _call_outcome(error)
            await self.deps.router.record_call(attempt.connector, outcome_name)
            self.deps.observe_attempt(attempt.connector, outcome_name)
            async with self.deps.uow_factory() as uow:
                payment = await uow.payments.get(merchant_id, payment_id, for_update=True)
                current = payment.attempts[attempt.number - 1]
                current.latency_ms = latency_ms
                current.updated_at = self.deps.clock()
                retry = False
                if error is None:
                    assert outcome is not None
                    self._apply_create_result(payment, current, outcome)
                else:
                    retry = self._apply_create_error(payment, current, error)
                await uow.payments.save(payment)
                await uow.commit()
            if not retry:
                return payment

    async def _call_create(self, payment: Payment, attempt: Attempt
                           ) -> tuple[ConnectorPayment | None, ConnectorError | None, int]:
        routable = self.deps.accounts.get(attempt.connector)
        if routable is None:
            return None, Misconfigured(f"connector account {attempt.connector} not configured"), 0
        data = CreatePaymentInput(
            payment_id=payment.id, attempt_id=attempt.id, amount=payment.amount,
            method=payment.method.type, method_details=payment.method.details(),
            customer_id=payment.customer.id, customer_name=payment.customer.name,
            customer_email=payment.customer.email, customer_phone=payment.customer.phone,
            description=payment.description or f"Payment {payment.id}",
            return_url=payment.return_url,
            webhook_url=f"{self.deps.public_base_url}/webhooks/{attempt.connector}",
        )
        started = time.perf_counter()
        try:
            result = await routable.connector.create_payment(
                self.deps.accounts.transport, routable.account, data)
            return result, None, int((time.perf_counter() - started) * 1000)
        except ConnectorError as exc:
            return None, exc, int((time.perf_counter() - started) * 1000)

    def _apply_create_result(self, payment: Payment, attempt: Attempt,
                             result: ConnectorPayment) -> None:
        attempt.connector_payment_id = result.connector_payment_id
        attempt.references = dict(result.references)
        payment.connector = attempt.connector
        payment.connector_payment_id = result.connector_payment_id
        payment.redirect_url = result.redirect_url
        failure = None
        if result.status == PspStatus.FAILED:
            attempt.status = AttemptStatus.FAILED
            attempt.error_code, attempt.error_message = result.error_code, result.error_message
            failure = Failure(result.error_code or "PSP_FAILED",
                              result.error_message or "payment failed at the PSP")
        elif result.status == PspStatus.SUCCEEDED:
            attempt.status = AttemptStatus.SUCCEEDED
        apply_psp_status(payment, result.status.value, actor=f"connector:{attempt.connector}",
                         failure=failure, details={"attempt": attempt.number,
                                                   "raw_status": result.raw_status})
        self._schedule_sync(payment)

    def _apply_create_error(self, payment: Payment, attempt: Attempt,
                            error: ConnectorError) -> bool:
        """Record a failed create call; True when another attempt should be made."""
        actor = f"connector:{attempt.connector}"
        attempt.error_code = error.code or type(error).__name__
        attempt.error_message = error.message[:500]
        if isinstance(error, UnknownOutcome):
            # The PSP may have the payment: never fail over before status sync says otherwise.
            attempt.status = AttemptStatus.UNKNOWN
            payment.connector = attempt.connector
            apply_psp_status(payment, "PENDING", actor=actor,
                             details={"attempt": attempt.number, "unknown_outcome": error.code})
            payment.next_sync_at = self.deps.clock() + self.deps.sync_policy.unknown_outcome_delay
            return False
        attempt.status = AttemptStatus.FAILED
        fallbacks = [c for c in payment.routing.fallbacks
                     if c not in {a.connector for a in payment.attempts}]
        if not isinstance(error, Declined) and fallbacks and \
                len(payment.attempts) < self.deps.max_attempts:
            payment.new_attempt(fallbacks[0])
            payment.record_note("payment.failover", actor=actor, details={
                "from": attempt.connector, "to": fallbacks[0], "error": attempt.error_code})
            return True
        payment.next_sync_at = None
        apply_psp_status(payment, "FAILED", actor=actor, failure=Failure(
            "PSP_DECLINED" if isinstance(error, Declined) else "PSP_UNAVAILABLE",
            attempt.error_message or "the payment service provider refused the payment"),
            details={"attempt": attempt.number})
        return False

    def _schedule_sync(self, payment: Payment) -> None:
        if payment.status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING):
            payment.next_sync_at = self.deps.sync_policy.next_after(
                payment.created_at, self.deps.clock())
        else:
            payment.next_sync_at = None

    # ---- reads -------------------------------------------------------------------------

    async def get(self, merchant_id: str, payment_id: str) -> Payment:
        if not payment_id:
            raise ValidationError("id", "is required")
        async with self.deps.uow_factory() as uow:
            return await uow.payments.get(merchant_id, payment_id)

    async def list(self, query: ListPayments) -> tuple[list[Payment], str]:
        if not 0 <= query.page_size <= 100:
            raise ValidationError("page_size", "must be between 0 and 100")
        async with self.deps.uow_factory() as uow:
            return await uow.payments.list_page(query)

    async def checkout_references(self, psp_reference: str) -> dict[str, str]:
        """What a Triveni-hosted checkout page (PayU form, Cashfree SDK) needs to render."""
        async with self.deps.uow_factory() as uow:
            references = await uow.payments.attempt_references(psp_reference)
        if references is None:
            raise NotFound(f"no checkout for {psp_reference}")
        return references

    # ---- cancel ------------------------------------------------------------------------

    async def cancel(self, command: CancelPayment, *, actor: str) -> Payment:
        if not command.payment_id:
            raise ValidationError("id", "is required")
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(command.merchant_id, command.payment_id,
                                             for_update=True)
            if payment.status == PaymentStatus.CANCELLED:
                return payment  # cancelling twice is a no-op, whatever the key
            if payment.status not in CANCELLABLE:
                raise IllegalTransition(
                    f"payment {payment.id} is {payment.status.value}; only CREATED, "
                    "REQUIRES_ACTION or IN_REVIEW payments can be cancelled")
            payment.transition(PaymentStatus.CANCELLED, actor=actor, failure=Failure(
                "CANCELLED", command.reason or "cancelled by the merchant"),
                details={"idempotency_key": command.idempotency_key})
            payment.next_sync_at = None
            await uow.payments.save(payment)
            await uow.commit()
            return payment

    # ---- sync --------------------------------------------------------------------------

    async def sync(self, merchant_id: str | None, payment_id: str, *, actor: str) -> Payment:
        """Ask the PSP about the current attempt now and apply what it says."""
        async with self.deps.uow_factory() as uow:
            payment = (await uow.payments.get(merchant_id, payment_id) if merchant_id
                       else await uow.payments.get_any(payment_id))
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        if any(r.status == RefundStatus.PENDING for r in payment.refunds):
            return await self._sync_refunds(payment, actor=actor)
        attempt = payment.current_attempt
        if attempt is None:
            return payment
        routable = self.deps.accounts.get(attempt.connector)
        if routable is None:
            return payment
        reference = attempt.connector_payment_id or attempt.id
        try:
            result = await routable.connector.get_payment(
                self.deps.accounts.transport, routable.account, reference,
                {**attempt.references, "attempt_id": attempt.id})
        except ConnectorError as exc:
            log.warning("status sync failed", extra={"payment_id": payment_id,
                                                     "error": type(exc).__name__})
            async with self.deps.uow_factory() as uow:
                payment = await uow.payments.get(payment.merchant_id, payment_id, for_update=True)
                retry = self._after_failed_sync(payment, payment.attempts[attempt.number - 1], exc)
                await uow.payments.save(payment)
                await uow.commit()
            if retry:
                return await self._run_attempts(payment.merchant_id, payment_id)
            return payment
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(payment.merchant_id, payment_id, for_update=True)
            current = payment.attempts[attempt.number - 1]
            self._apply_sync_result(payment, current, result, actor=actor)
            await uow.payments.save(payment)
            await uow.commit()
        if payment.status == PaymentStatus.CREATED and payment.current_attempt and \
                payment.current_attempt.status == AttemptStatus.PENDING:
            return await self._run_attempts(payment.merchant_id, payment_id)
        return payment

    async def _sync_refunds(self, payment: Payment, *, actor: str) -> Payment:
        """Ask the PSP about each pending refund and settle those it reports final."""
        results: dict[str, ConnectorRefund] = {}
        for refund in payment.refunds:
            routable = self.deps.accounts.get(refund.connector)
            if refund.status != RefundStatus.PENDING or routable is None:
                continue
            try:
                results[refund.id] = await routable.connector.get_refund(
                    self.deps.accounts.transport, routable.account,
                    refund_input_for(payment, refund), refund.connector_refund_id)
            except ConnectorError as exc:
                log.warning("refund sync failed", extra={"refund_id": refund.id,
                                                         "error": type(exc).__name__})
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(payment.merchant_id, payment.id, for_update=True)
            for refund in payment.refunds:
                result = results.get(refund.id)
                if result is not None:
                    if result.connector_refund_id and not refund.connector_refund_id:
                        refund.connector_refund_id = result.connector_refund_id
                    settle_refund(payment, refund, result.status.value, actor=actor,
                                  error_code=result.error_code,
                                  error_message=result.error_message)
            pending = any(r.status == RefundStatus.PENDING for r in payment.refunds)
            payment.next_sync_at = (self.deps.clock() + self.deps.sync_policy.refund_recheck
                                    if pending else None)
            await uow.payments.save(payment)
            await uow.commit()
        return payment

    def _apply_sync_result(self, payment: Payment, attempt: Attempt, result: ConnectorPayment,
                           *, actor: str) -> None:
        if result.connector_payment_id and not attempt.connector_payment_id:
            attempt.connector_payment_id = result.connector_payment_id
            payment.connector_payment_id = result.connector_payment_id
        if result.status == PspStatus.SUCCEEDED:
            attempt.status = AttemptStatus.SUCCEEDED
        elif result.status in (PspStatus.FAILED, PspStatus.EXPIRED):
            attempt.status = AttemptStatus.FAILED
            attempt.error_code = result.error_code
            attempt.error_message = result.error_message
        failure = Failure(result.error_code or f"PSP_{result.status.value}",
                          result.error_message or f"payment {result.status.value.lower()} at "
                          "the PSP") if result.status in (PspStatus.FAILED,
                                                          PspStatus.EXPIRED) else None
        apply_psp_status(payment, result.status.value, actor=actor, failure=failure,
                         details={"raw_status": result.raw_status, "via": "sync"})
        now = self.deps.clock()
        if payment.status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING) and \
                now - payment.created_at > self.deps.sync_policy.checkout_expiry and \
                payment.status == PaymentStatus.REQUIRES_ACTION:
            payment.transition(PaymentStatus.EXPIRED, actor=actor, failure=Failure(
                "CHECKOUT_EXPIRED", "the customer did not complete the payment in time"))
        self._schedule_sync(payment)

    def _after_failed_sync(self, payment: Payment, attempt: Attempt,
                           error: ConnectorError) -> bool:
        """Reschedule; True when the PSP proved it never got an UNKNOWN attempt (safe to go on)."""
        if attempt.status == AttemptStatus.UNKNOWN and error.http_status == 404:
            # The PSP has no record of our reference: the create never landed. Resending with
            # the same attempt id is safe (PSPs dedupe on it), so make the attempt PENDING again.
            attempt.status = AttemptStatus.PENDING
            payment.record_note("attempt.not_received", actor="worker:sync", details={
                "attempt": attempt.number, "connector": attempt.connector})
            return True
        next_at = self.deps.sync_policy.next_after(payment.created_at, self.deps.clock())
        payment.next_sync_at = next_at or (self.deps.clock() + timedelta(hours=6))
        payment.record_note("sync.failed", actor="worker:sync", details={
            "error": type(error).__name__, "code": error.code})
        return False
