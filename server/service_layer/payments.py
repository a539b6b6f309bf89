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
    RateLimited,
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
from server.domain.routing.retry import (
    ErrorCategory,
    RetryAction,
    RetryDecision,
    RetryPolicy,
    decide_retry,
)
from server.domain.routing.taxonomy import ERROR_CLASSES, ErrorTaxonomy, default_taxonomy
from server.domain.status import CANCELLABLE, AttemptStatus, PaymentStatus, RefundStatus
from server.errors import (
    ConcurrentUpdate,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ValidationError,
)
from server.service_layer.commands import CancelPayment, CreatePayment, ListPayments, request_hash
from server.service_layer.ports import AccountDirectory, FraudScreener, Router, UnitOfWork
from server.service_layer.psp_inputs import refund_input_for
from server.service_layer.sync_schedule import RetryLadder, ScheduledSync, SyncMessage

__all__ = ["PaymentDeps", "PaymentService", "SyncPolicy"]

log = logging.getLogger(__name__)
# Statuses in which a payment still waits for the PSP (or for a scheduled retry).
_PENDING = frozenset({PaymentStatus.CREATED, PaymentStatus.REQUIRES_ACTION,
                      PaymentStatus.PROCESSING})


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
    # With the Kafka retry path on, the PostgreSQL sweeper looks at a payment only this long
    # after its retry message was due (it catches what the broker lost or delivered late).
    kafka_grace: timedelta = timedelta(seconds=60)

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
    # The Kafka retry ladder; None: no retry messages (the PostgreSQL sweeper does it all).
    retry_ladder: RetryLadder | None = None
    # (psp, code) → retry category for failed create calls.
    taxonomy: ErrorTaxonomy = field(default_factory=default_taxonomy)


def _error_class(error: ConnectorError) -> str:
    """The most specific class of the connector error tree the taxonomy knows ("" if none)."""
    for kind in type(error).__mro__:
        if kind.__name__ in ERROR_CLASSES:
            return kind.__name__
    return ""


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
        return await self._run_attempts(payment.merchant_id, payment.id, committed=payment)

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

    async def _run_attempts(self, merchant_id: str, payment_id: str,
                            committed: Payment | None = None) -> Payment:
        """Call the PSP for the current attempt; fail over on errors that moved no money.

        `committed` is the payment exactly as just committed by the caller (saves a re-read).
        """
        retry_policy: RetryPolicy | None = None
        while True:
            if committed is not None:
                payment, committed = committed, None
            else:
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
            if error is not None and retry_policy is None:
                retry_policy = await self._retry_policy(merchant_id)
            # Optimistic first: apply the result to the copy we hold and write it only if nobody
            # (a webhook, a sync) changed the payment meanwhile; else lock, re-read, re-apply.
            held_version = payment.version
            for locked in (False, True):
                async with self.deps.uow_factory() as uow:
                    if locked:
                        payment = await uow.payments.get(merchant_id, payment_id,
                                                         for_update=True)
                    current = payment.attempts[attempt.number - 1]
                    current.latency_ms = latency_ms
                    current.updated_at = self.deps.clock()
                    retry = False
                    if error is None:
                        assert outcome is not None
                        self._apply_create_result(uow, payment, current, outcome)
                    else:
                        assert retry_policy is not None
                        retry = self._apply_create_error(uow, payment, current, error,
                                                         retry_policy)
                    if locked:
                        await uow.payments.save(payment)
                    else:
                        await uow.payments.save_if_version(payment, held_version)
                    try:
                        await uow.commit()
                    except ConcurrentUpdate:
                        if locked:
                            raise
                        continue  # changed under us: nothing was written, take the lock
                break
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

    async def _retry_policy(self, merchant_id: str) -> RetryPolicy:
        """The merchant policy's retry settings, capped by TRIVENI_MAX_ATTEMPTS."""
        policy = await self.deps.router.retry_policy(merchant_id)
        return RetryPolicy(max_attempts=min(policy.max_attempts, self.deps.max_attempts),
                           base_delay_seconds=policy.base_delay_seconds,
                           max_delay_seconds=policy.max_delay_seconds)

    def _apply_create_result(self, uow: UnitOfWork, payment: Payment, attempt: Attempt,
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
        if self.deps.retry_ladder is not None and payment.status in _PENDING:
            self._schedule_kafka(uow, payment, rung=self.deps.retry_ladder.first_pending_rung,
                                 reason=f"{payment.status.value.lower()} after create")

    def classify(self, connector: str, error: ConnectorError) -> ErrorCategory:
        """The taxonomy's retry category for a failed call to `connector`."""
        routable = self.deps.accounts.get(connector)
        psp = routable.account.psp if routable is not None else connector
        return self.deps.taxonomy.classify(
            psp, error.code, error_class=_error_class(error), http_status=error.http_status,
        ).category

    def _apply_create_error(self, uow: UnitOfWork, payment: Payment, attempt: Attempt,
                            error: ConnectorError, retry_policy: RetryPolicy) -> bool:
        """Record a failed create call and act on the taxonomy's retry decision; True when
        another attempt should be made now."""
        actor = f"connector:{attempt.connector}"
        category = self.classify(attempt.connector, error)
        code = error.code or type(error).__name__
        attempt.error_code = f"{category.value}:{code}"
        attempt.error_message = error.message[:500]
        fallbacks = [c for c in payment.routing.fallbacks
                     if c not in {a.connector for a in payment.attempts}]
        decision = decide_retry(
            category, len(payment.attempts), policy=retry_policy,
            other_connectors_available=bool(fallbacks),
            retry_after_seconds=error.retry_after_seconds if isinstance(error, RateLimited)
            else None)
        note = {"attempt": attempt.number, "connector": attempt.connector, "error": code,
                "category": category.value, "action": decision.action.value,
                "why": decision.reason}
        if decision.action is RetryAction.SYNC_FIRST:
            # The PSP may have the payment: never fail over before status sync says otherwise.
            attempt.status = AttemptStatus.UNKNOWN
            payment.connector = attempt.connector
            apply_psp_status(payment, "PENDING", actor=actor,
                             details={**note, "unknown_outcome": error.code})
            payment.next_sync_at = self.deps.clock() + self.deps.sync_policy.unknown_outcome_delay
            self._schedule_kafka(uow, payment, rung=0, reason="unknown outcome of create")
            return False
        attempt.status = AttemptStatus.FAILED
        if decision.action is RetryAction.RETRY_OTHER_CONNECTOR:
            payment.new_attempt(fallbacks[0])
            payment.record_note("payment.failover", actor=actor,
                                details={**note, "from": attempt.connector, "to": fallbacks[0]})
            return True
        if decision.action is RetryAction.RETRY_SAME_LATER:
            self._schedule_retry_same(uow, payment, attempt, decision, note, actor)
            return False
        payment.next_sync_at = None
        declined = category is ErrorCategory.DO_NOT_RETRY
        apply_psp_status(payment, "FAILED", actor=actor, failure=Failure(
            "PSP_DECLINED" if declined else "PSP_UNAVAILABLE",
            attempt.error_message or "the payment service provider refused the payment"),
            details=note)
        return False

    def _schedule_retry_same(self, uow: UnitOfWork, payment: Payment, attempt: Attempt,
                             decision: RetryDecision, note: dict[str, object],
                             actor: str) -> None:
        """The payment stays CREATED with its failed attempt current until the delay has
        passed; the next sync (Kafka message, else the sweeper) makes a new attempt on the same
        connector account."""
        delay = max(decision.delay_seconds, 0.0)
        payment.record_note("payment.retry_scheduled", actor=actor,
                            details={**note, "delay_seconds": delay})
        payment.next_sync_at = self.deps.clock() + timedelta(seconds=delay)
        ladder = self.deps.retry_ladder
        if ladder is not None:
            self._schedule_kafka(uow, payment, rung=ladder.rung_for_delay(delay), delay=delay,
                                 reason=f"retry on {attempt.connector}: {decision.reason}")

    def _schedule_kafka(self, uow: UnitOfWork, payment: Payment, *, rung: int,
                        reason: str, delay: float | None = None,
                        supersedes: int | None = None) -> bool:
        """Queue a Kafka status check (rung `rung`, or after `delay` seconds) and move the
        sweeper's safety net behind it. False when Kafka retries are off or the tail has
        passed."""
        ladder = self.deps.retry_ladder
        if ladder is None:
            return False
        now = self.deps.clock()
        due = now + timedelta(seconds=ladder.delay(rung) if delay is None else delay)
        if due > payment.created_at + ladder.tail:
            return False
        uow.sync_schedule.schedule(ScheduledSync(payment.id, rung, due, reason, supersedes))
        safety = due + self.deps.sync_policy.kafka_grace
        if payment.next_sync_at is None or payment.next_sync_at < safety:
            payment.next_sync_at = safety
        return True

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

    async def sync(self, merchant_id: str | None, payment_id: str, *, actor: str,
                   retry: SyncMessage | None = None) -> Payment:
        """Ask the PSP about the current attempt now and apply what it says.

        `retry`: the Kafka retry message this sync answers; while the payment stays pending,
        the next rung is scheduled in the transaction that stores the result.
        """
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
        if attempt.status == AttemptStatus.FAILED and payment.status == PaymentStatus.CREATED:
            # A retry on the same account was scheduled (RETRY_SAME_LATER): its time has come.
            return await self._retry_same_connector(payment.merchant_id, payment_id, actor=actor)
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
                resend = self._after_failed_sync(payment, payment.attempts[attempt.number - 1],
                                                 exc)
                if retry is not None and not resend:
                    self._continue_chain(uow, payment, retry, actor=actor)
                await uow.payments.save(payment)
                await uow.commit()
            if resend:
                return await self._run_attempts(payment.merchant_id, payment_id)
            return payment
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(payment.merchant_id, payment_id, for_update=True)
            current = payment.attempts[attempt.number - 1]
            self._apply_sync_result(payment, current, result, actor=actor)
            if retry is not None:
                self._continue_chain(uow, payment, retry, actor=actor)
            await uow.payments.save(payment)
            await uow.commit()
        if payment.status == PaymentStatus.CREATED and payment.current_attempt and \
                payment.current_attempt.status == AttemptStatus.PENDING:
            return await self._run_attempts(payment.merchant_id, payment_id)
        return payment

    async def _retry_same_connector(self, merchant_id: str, payment_id: str, *,
                                    actor: str) -> Payment:
        """Make the scheduled new attempt on the account whose last attempt failed."""
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get(merchant_id, payment_id, for_update=True)
            failed = payment.current_attempt
            if payment.status != PaymentStatus.CREATED or failed is None or \
                    failed.status != AttemptStatus.FAILED:
                return payment  # another worker got here first
            attempt = payment.new_attempt(failed.connector)
            payment.record_note("payment.retry_started", actor=actor, details={
                "attempt": attempt.number, "connector": attempt.connector})
            payment.next_sync_at = self.deps.clock() + self.deps.sync_policy.unknown_outcome_delay
            await uow.payments.save(payment)
            await uow.commit()
        return await self._run_attempts(merchant_id, payment_id)

    def _continue_chain(self, uow: UnitOfWork, payment: Payment, retry: SyncMessage, *,
                        actor: str) -> None:
        """Schedule the next rung while the payment is pending; past the tail, dead-letter the
        chain and expire a checkout nobody completed."""
        ladder = self.deps.retry_ladder
        if ladder is None or payment.status not in _PENDING:
            return
        if self._schedule_kafka(uow, payment, rung=retry.attempt + 1, supersedes=retry.ticket,
                                reason=f"still {payment.status.value.lower()}"):
            return
        reason = (f"still {payment.status.value} when the {ladder.tail} status-sync tail "
                  "ended")
        uow.sync_schedule.dead_letter(payment.id, _dead_letter_body(retry, reason, payment))
        payment.record_note("sync.dead_lettered", actor=actor, details={
            "reason": reason, "ticket": retry.ticket, "attempt": retry.attempt})
        if payment.status == PaymentStatus.REQUIRES_ACTION:
            payment.transition(PaymentStatus.EXPIRED, actor=actor, failure=Failure(
                "CHECKOUT_EXPIRED", "the customer did not complete the payment in time"))
        payment.next_sync_at = None

    async def run_scheduled_sync(self, message: SyncMessage, *, actor: str) -> str:
        """Act on one Kafka retry message: "dropped_final" (the payment is final: nothing to
        do), "dropped_stale" (a newer message superseded it, or it was redelivered) or
        "synced". Raises NotFound for an unknown payment."""
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get_any(message.payment_id)
            if payment is None:
                raise NotFound(f"payment {message.payment_id} not found")
            if payment.status not in _PENDING:
                await uow.sync_schedule.forget(payment.id)
                await uow.commit()
                return "dropped_final"
            if await uow.sync_schedule.ticket(payment.id) != message.ticket:
                return "dropped_stale"
        await self.sync(None, message.payment_id, actor=actor, retry=message)
        return "synced"

    async def dead_letter_sync(self, key: str, body: dict[str, object], *,
                               actor: str) -> None:
        """Send a retry message the worker cannot process to payments.dlq (via the outbox),
        noting it on the payment when there is one."""
        async with self.deps.uow_factory() as uow:
            payment = await uow.payments.get_any(key, for_update=True) if key else None
            uow.sync_schedule.dead_letter(key or "unknown", body)
            if payment is not None:
                payment.record_note("sync.dead_lettered", actor=actor, details={
                    "reason": str(body.get("reason", ""))[:500]})
                await uow.payments.save(payment)
            await uow.commit()

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
        """Reschedule; True when the PSP proved it never got the attempt (safe to send it).

        That covers an UNKNOWN attempt (timed out) and a PENDING one never answered (the
        process died between committing the attempt and calling the PSP)."""
        never_answered = attempt.status == AttemptStatus.UNKNOWN or (
            attempt.status == AttemptStatus.PENDING and not attempt.connector_payment_id)
        if never_answered and error.http_status == 404:
            # The PSP has no record of our reference: the create never landed. Resending with
            # the same attempt id is safe (PSPs dedupe on it), so the attempt is PENDING again.
            attempt.status = AttemptStatus.PENDING
            payment.record_note("attempt.not_received", actor="worker:sync", details={
                "attempt": attempt.number, "connector": attempt.connector})
            return True
        next_at = self.deps.sync_policy.next_after(payment.created_at, self.deps.clock())
        payment.next_sync_at = next_at or (self.deps.clock() + timedelta(hours=6))
        payment.record_note("sync.failed", actor="worker:sync", details={
            "error": type(error).__name__, "code": error.code})
        return False


def _dead_letter_body(retry: SyncMessage, reason: str, payment: Payment) -> dict[str, object]:
    return {"payment_id": payment.id, "merchant_id": payment.merchant_id, "reason": reason,
            "status": payment.status.value, "ticket": retry.ticket, "attempt": retry.attempt,
            "due_at": retry.due_at.isoformat(), "created_at": payment.created_at.isoformat()}
