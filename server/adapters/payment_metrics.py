"""Counting committed payment changes in Prometheus (called by the unit of work after COMMIT,
so a rolled-back change is never counted)."""

from __future__ import annotations

from collections.abc import Iterable

from server.adapters.metrics import (
    FAILOVERS,
    NO_CONNECTOR,
    PAYMENT_FINAL_SUCCESS,
    PAYMENT_FIRST_ATTEMPT_SUCCESS,
    PAYMENT_TRANSITIONS,
    PAYMENTS_CREATED,
    RETRIES,
)
from server.domain.payment import Payment, StateChange
from server.domain.status import PaymentStatus

__all__ = ["observe_committed"]


def observe_committed(payment: Payment, changes: Iterable[StateChange]) -> None:
    connector = payment.connector or NO_CONNECTOR
    for change in changes:
        if change.before is None:
            PAYMENTS_CREATED.labels(method=payment.method.type or "unknown",
                                    connector=connector).inc()
        elif change.before != change.after:
            PAYMENT_TRANSITIONS.labels(from_status=change.before.value,
                                       to_status=change.after.value, connector=connector).inc()
            if change.after == PaymentStatus.SUCCEEDED:
                PAYMENT_FINAL_SUCCESS.inc()
                if len(payment.attempts) == 1:
                    PAYMENT_FIRST_ATTEMPT_SUCCESS.labels(connector=connector).inc()
        elif change.event_type == "payment.failover":
            FAILOVERS.labels(from_connector=str(change.details.get("from", "")),
                             to_connector=str(change.details.get("to", ""))).inc()
            RETRIES.labels(reason="failover").inc()
        elif change.event_type == "attempt.not_received":
            RETRIES.labels(reason="resend_after_sync").inc()
