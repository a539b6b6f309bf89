"""The Payment aggregate: its value objects, its state machine, and the events it records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from server.domain.ids import new_id
from server.domain.money import Money
from server.domain.status import AttemptStatus, PaymentStatus, RefundStatus, can_transition
from server.errors import IllegalTransition

__all__ = [
    "Attempt",
    "CustomerInfo",
    "Failure",
    "FraudReasonInfo",
    "FraudSummary",
    "MethodSummary",
    "Payment",
    "Refund",
    "RoutingCandidateInfo",
    "RoutingSummary",
    "StateChange",
    "event_type_for",
    "settle_refund",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class MethodSummary:
    """What was used to pay. Never a card number (RBI card-on-file rule)."""

    type: str  # upi | card | netbanking | wallet
    upi_vpa: str = ""
    upi_flow: str = ""
    card_network: str = ""
    card_last4: str = ""
    card_token: str = ""
    bank_code: str = ""
    wallet: str = ""

    def details(self) -> dict[str, str]:
        """Non-empty fields other than type, for connectors."""
        return {k: v for k, v in self.as_dict().items() if v and k != "type"}

    def as_dict(self) -> dict[str, str]:
        return {
            "type": self.type, "upi_vpa": self.upi_vpa, "upi_flow": self.upi_flow,
            "card_network": self.card_network, "card_last4": self.card_last4,
            "card_token": self.card_token, "bank_code": self.bank_code, "wallet": self.wallet,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> MethodSummary:
        return cls(**{k: str(v) for k, v in data.items() if k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    id: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "email": self.email, "phone": self.phone}


@dataclass(frozen=True, slots=True)
class FraudReasonInfo:
    code: str
    message: str
    score: int
    hard_block: bool = False


@dataclass(frozen=True, slots=True)
class FraudSummary:
    decision: str = ""  # ALLOW | REVIEW | BLOCK
    score: int = 0
    reasons: tuple[FraudReasonInfo, ...] = ()
    unavailable_signals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingCandidateInfo:
    connector: str
    score: float
    note: str


@dataclass(frozen=True, slots=True)
class RoutingSummary:
    algorithm: str = ""
    chosen: str = ""
    reason: str = ""
    degraded: bool = False
    candidates: tuple[RoutingCandidateInfo, ...] = ()
    fallbacks: tuple[str, ...] = ()  # ordered failover list after `chosen`


@dataclass(slots=True)
class Attempt:
    id: str
    payment_id: str
    number: int
    connector: str
    status: AttemptStatus = AttemptStatus.PENDING
    connector_payment_id: str = ""
    error_code: str = ""
    error_message: str = ""
    latency_ms: int = 0
    references: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Refund:
    id: str
    payment_id: str
    merchant_id: str
    amount: Money
    status: RefundStatus
    connector: str
    reason: str = ""
    connector_refund_id: str = ""
    failure: Failure | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One recorded change: becomes an audit row and an outbox event in the same transaction."""

    event_id: str
    event_type: str
    payment_id: str
    merchant_id: str
    before: PaymentStatus | None
    after: PaymentStatus
    actor: str
    version: int
    occurred_at: datetime
    details: Mapping[str, object] = field(default_factory=dict)


def event_type_for(status: PaymentStatus) -> str:
    return f"payment.{status.value.lower()}"


@dataclass(slots=True)
class Payment:
    id: str
    merchant_id: str
    idempotency_key: str
    amount: Money
    method: MethodSummary
    status: PaymentStatus = PaymentStatus.CREATED
    customer: CustomerInfo = field(default_factory=CustomerInfo)
    ip_address: str = ""
    country: str = ""
    description: str = ""
    return_url: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    preferred_connector: str = ""
    connector: str = ""
    connector_payment_id: str = ""
    redirect_url: str = ""
    fraud: FraudSummary = field(default_factory=FraudSummary)
    routing: RoutingSummary = field(default_factory=RoutingSummary)
    amount_refunded: Money | None = None
    failure: Failure | None = None
    version: int = 1
    next_sync_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    attempts: list[Attempt] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    # Changes recorded since load; drained by the unit of work into audit_log + outbox.
    changes: list[StateChange] = field(default_factory=list)

    @classmethod
    def create(cls, *, merchant_id: str, idempotency_key: str, amount: Money,
               method: MethodSummary, actor: str, **fields: object) -> Payment:
        """A new payment in CREATED, with its creation recorded as a change."""
        now = utcnow()
        payment = cls(id=new_id("pay"), merchant_id=merchant_id, idempotency_key=idempotency_key,
                      amount=amount, method=method, created_at=now, updated_at=now,
                      amount_refunded=Money(0, amount.currency), **fields)  # type: ignore[arg-type]
        payment._record(None, PaymentStatus.CREATED, actor, {})
        return payment

    @property
    def refunded(self) -> Money:
        return self.amount_refunded or Money(0, self.amount.currency)

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def transition(self, target: PaymentStatus, *, actor: str,
                   failure: Failure | None = None, details: Mapping[str, object] | None = None
                   ) -> None:
        """Move to `target` or raise IllegalTransition. Records the change."""
        if not can_transition(self.status, target):
            raise IllegalTransition(
                f"payment {self.id} cannot go from {self.status.value} to {target.value}"
            )
        before = self.status
        self.status = target
        if failure is not None:
            self.failure = failure
        elif target in (PaymentStatus.SUCCEEDED, PaymentStatus.CREATED):
            self.failure = None
        self.version += 1
        self.updated_at = utcnow()
        self._record(before, target, actor, dict(details or {}))

    def record_note(self, action: str, *, actor: str, details: Mapping[str, object]) -> None:
        """An audited non-transition (e.g. a stale webhook ignored); no version bump, no event."""
        self.changes.append(StateChange(
            event_id=new_id("evt"), event_type=action, payment_id=self.id,
            merchant_id=self.merchant_id, before=self.status, after=self.status, actor=actor,
            version=self.version, occurred_at=utcnow(), details=dict(details),
        ))

    def new_attempt(self, connector: str) -> Attempt:
        attempt = Attempt(id=new_id("att"), payment_id=self.id, number=len(self.attempts) + 1,
                          connector=connector)
        self.attempts.append(attempt)
        self.connector = connector
        self.connector_payment_id = ""
        return attempt

    def add_refund(self, refund: Refund) -> None:
        self.refunds.append(refund)

    def refundable(self) -> Money:
        """What can still be refunded: captured minus refunded and pending refunds."""
        pending = sum(r.amount.amount_minor for r in self.refunds
                      if r.status == RefundStatus.PENDING)
        return Money(self.amount.amount_minor - self.refunded.amount_minor - pending,
                     self.amount.currency)

    def apply_refund_success(self, refund: Refund, *, actor: str) -> None:
        """Count a succeeded refund and move to PARTIALLY_REFUNDED / REFUNDED."""
        refunded = self.refunded + refund.amount
        target = (PaymentStatus.REFUNDED if refunded.amount_minor >= self.amount.amount_minor
                  else PaymentStatus.PARTIALLY_REFUNDED)
        if not can_transition(self.status, target):
            raise IllegalTransition(
                f"payment {self.id} cannot be refunded from {self.status.value}")
        self.amount_refunded = refunded
        self.transition(target, actor=actor, details={
            "refund_id": refund.id, "refund_amount_minor": refund.amount.amount_minor})

    def snapshot(self) -> Payment:
        """A copy without pending changes (for events and watchers)."""
        return replace(self, changes=[], attempts=list(self.attempts), refunds=list(self.refunds))

    def _record(self, before: PaymentStatus | None, after: PaymentStatus, actor: str,
                details: dict[str, object]) -> None:
        self.changes.append(StateChange(
            event_id=new_id("evt"),
            event_type="payment.created" if before is None else event_type_for(after),
            payment_id=self.id, merchant_id=self.merchant_id, before=before, after=after,
            actor=actor, version=self.version, occurred_at=self.updated_at, details=details,
        ))


def apply_psp_status(payment: Payment, status: str, *, actor: str,
                     failure: Failure | None = None, details: Mapping[str, object] | None = None
                     ) -> bool:
    """Apply a PSP-reported status (a PspStatus value). Returns True when the payment changed.

    A report that the state machine refuses (e.g. FAILED for a SUCCEEDED payment, a late
    duplicate) is recorded in the audit log and ignored — never applied backwards.
    """
    target = {
        "REQUIRES_ACTION": PaymentStatus.REQUIRES_ACTION,
        "PENDING": PaymentStatus.PROCESSING,
        "SUCCEEDED": PaymentStatus.SUCCEEDED,
        "FAILED": PaymentStatus.FAILED,
        "EXPIRED": PaymentStatus.EXPIRED,
    }[status]
    if target == payment.status:
        return False
    if not can_transition(payment.status, target):
        payment.record_note("psp_status.ignored", actor=actor, details={
            "reported": status, "current": payment.status.value, **dict(details or {})})
        return False
    if target == PaymentStatus.PROCESSING and payment.status == PaymentStatus.REQUIRES_ACTION:
        return False  # "still pending" adds nothing while the customer is on the PSP's page
    payment.transition(target, actor=actor, failure=failure, details=details)
    return True


def settle_refund(payment: Payment, refund: Refund, status: str, *, actor: str,
                  error_code: str = "", error_message: str = "") -> bool:
    """Move a PENDING refund to its final state from a PSP status (a PspStatus value).

    Returns True when something changed; a refund already final, or a status still pending,
    changes nothing.
    """
    if refund.status != RefundStatus.PENDING or status not in ("SUCCEEDED", "FAILED", "EXPIRED"):
        return False
    refund.updated_at = utcnow()
    if status == "SUCCEEDED":
        refund.status = RefundStatus.SUCCEEDED
        payment.apply_refund_success(refund, actor=actor)
    else:
        refund.status = RefundStatus.FAILED
        refund.failure = Failure(error_code or "REFUND_FAILED",
                                 error_message or "the PSP refused the refund")
        payment.record_note("refund.failed", actor=actor, details={"refund_id": refund.id})
    return True
