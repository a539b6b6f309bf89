"""Delayed status checks carried by Kafka: the retry ladder, the message, and the port.

When a payment needs a later look (its create timed out, the customer is on the PSP's page, a
throttled PSP asked us to come back), the service layer asks the unit of work to schedule a
check; the unit of work writes one message to the outbox in the same transaction as the change
(topic `payments.retry.<rung>`, key = payment id) and bumps the payment's *ticket*. The retry
consumer waits until the message is due, checks the ticket (an older ticket means the message
was superseded or redelivered: dropped), runs the sync, and the sync schedules the next rung in
the transaction that stores its result — until the payment is final, or the tail (3 days, for
Razorpay's late authorisations) is reached: then the message goes to `payments.dlq` and a
checkout nobody completed is EXPIRED.

PostgreSQL's `payments.next_sync_at` stays the safety net: it is set to the message's due time
plus a grace period, so the status-sync sweeper only acts on payments whose message the broker
lost or could not deliver in time (Kafka down); the sweeper then follows its own sparse schedule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = [
    "RetryLadder",
    "ScheduledSync",
    "SyncMessage",
    "SyncScheduleRepository",
    "parse_ladder",
]


@dataclass(frozen=True, slots=True)
class RetryLadder:
    """Rung i waits `delays[min(i, last)]` seconds: 5 s → 30 s → 5 min → 1 h → 1 h … until
    `tail` after the payment's creation."""

    delays: tuple[float, ...] = (5.0, 30.0, 300.0, 3600.0)
    tail: timedelta = timedelta(days=3)
    # Where a chain starts for a payment the PSP accepted (REQUIRES_ACTION / PROCESSING): the
    # customer needs a while on the PSP's page, so the first look is the second rung. A create
    # whose outcome is unknown starts at rung 0.
    first_pending_rung: int = 1

    def __post_init__(self) -> None:
        if not self.delays or any(d <= 0 for d in self.delays):
            raise ValueError("retry ladder delays must be positive")

    def delay(self, rung: int) -> float:
        return self.delays[min(max(rung, 0), len(self.delays) - 1)]

    def rung_for_delay(self, seconds: float) -> int:
        """The longest rung not longer than `seconds` (rung 0 when all are longer), so the
        message never waits behind messages due after it."""
        fitting = [i for i, d in enumerate(self.delays) if d <= seconds]
        return fitting[-1] if fitting else 0


def parse_ladder(text: str, tail_seconds: float, first_pending_rung: int = 1) -> RetryLadder:
    """'5,30,300,3600' → RetryLadder; raises ValueError."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    return RetryLadder(delays, timedelta(seconds=tail_seconds), first_pending_rung)


@dataclass(frozen=True, slots=True)
class ScheduledSync:
    """A request to look at a payment again at `due_at` (rung `attempt` of the ladder).

    `supersedes`: only schedule while this ticket is still the payment's current one (the
    consumer continuing its own chain); None replaces whatever is scheduled.
    """

    payment_id: str
    attempt: int
    due_at: datetime
    reason: str
    supersedes: int | None = None


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """The retry message as published (JSON), with the ticket the unit of work assigned."""

    payment_id: str
    ticket: int
    attempt: int
    due_at: datetime
    reason: str = ""

    def encode(self) -> bytes:
        return json.dumps({
            "payment_id": self.payment_id, "ticket": self.ticket, "attempt": self.attempt,
            "due_at": self.due_at.astimezone(UTC).isoformat(), "reason": self.reason,
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> SyncMessage:
        """Raises ValueError for anything that is not a retry message."""
        data: Any = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        payment_id, ticket, attempt = data.get("payment_id"), data.get("ticket"), \
            data.get("attempt")
        if not isinstance(payment_id, str) or not payment_id:
            raise ValueError("payment_id missing")
        if not isinstance(ticket, int) or not isinstance(attempt, int):
            raise ValueError("ticket and attempt must be integers")
        due_at = datetime.fromisoformat(str(data.get("due_at")))
        if due_at.tzinfo is None:
            raise ValueError("due_at needs a time zone")
        return cls(payment_id, ticket, attempt, due_at, str(data.get("reason", "")))


class SyncScheduleRepository(Protocol):
    """The unit of work's view of the Kafka schedule (written at commit, in its transaction)."""

    def schedule(self, request: ScheduledSync) -> None:
        """Queue a retry message for commit (bumps the payment's ticket)."""
        ...

    def dead_letter(self, key: str, body: Mapping[str, object]) -> None:
        """Queue a message for `payments.dlq` for commit."""
        ...

    async def ticket(self, payment_id: str) -> int | None:
        """The payment's current ticket (None: nothing was ever scheduled)."""
        ...

    async def forget(self, payment_id: str) -> None:
        """Drop the payment's schedule row (it is final)."""
        ...
