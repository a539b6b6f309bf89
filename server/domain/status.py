"""Payment and refund statuses and the explicit transition table (the state machine)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CANCELLABLE",
    "TERMINAL",
    "TRANSITIONS",
    "AttemptStatus",
    "PaymentStatus",
    "RefundStatus",
    "can_transition",
]


class PaymentStatus(StrEnum):
    CREATED = "CREATED"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    BLOCKED = "BLOCKED"
    IN_REVIEW = "IN_REVIEW"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    EXPIRED = "EXPIRED"


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class AttemptStatus(StrEnum):
    PENDING = "PENDING"  # persisted, PSP not called yet or customer still on the PSP's page
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # request sent, outcome unknown: resolve by status sync, never resend


S = PaymentStatus
# Late success (FAILED/EXPIRED/CANCELLED → SUCCEEDED) is allowed on purpose: when a PSP reports
# money captured after we gave up (Razorpay late authorisation), the record must say so, so the
# merchant can fulfil or refund. Everything else out of a terminal state is refused.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.CREATED: frozenset(
        {S.REQUIRES_ACTION, S.PROCESSING, S.SUCCEEDED, S.FAILED, S.BLOCKED, S.IN_REVIEW,
         S.CANCELLED}
    ),
    S.IN_REVIEW: frozenset({S.CREATED, S.BLOCKED, S.CANCELLED}),
    S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PROCESSING: frozenset({S.REQUIRES_ACTION, S.SUCCEEDED, S.FAILED, S.EXPIRED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FAILED: frozenset({S.SUCCEEDED}),
    S.EXPIRED: frozenset({S.SUCCEEDED}),
    S.CANCELLED: frozenset({S.SUCCEEDED}),
    S.BLOCKED: frozenset(),
    S.REFUNDED: frozenset(),
}

TERMINAL = frozenset(
    {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.BLOCKED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.EXPIRED}
)
CANCELLABLE = frozenset({S.CREATED, S.REQUIRES_ACTION, S.IN_REVIEW})


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    """True when the state machine allows current → target."""
    return target in TRANSITIONS[current]
