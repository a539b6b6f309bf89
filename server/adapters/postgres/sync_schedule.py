"""The Kafka status-sync schedule inside a unit of work: retry and dead-letter messages are
written to the outbox in the transaction that decided them (the relay publishes any topic).

Each payment has one row in `payment_sync_schedule` whose `ticket` is replaced by every
scheduled message; the message carries its ticket, so the consumer can tell the live message
from superseded or redelivered ones (tickets are compared for equality only). The ticket is
a random 52-bit number (exact in any JSON parser) drawn here, so the message is encoded before
the write, and the schedule row and its outbox row go in one statement in the commit pipeline
with no round trip of their own: the outbox row is written only if the schedule row was. The
topic is the ladder rung's (`payments.retry.5s/30s/5m/1h`; rungs past the last reuse
`payments.retry.1h`), the key the payment id.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Final

from server.adapters.kafka.topics import PAYMENTS_DLQ, PAYMENTS_RETRY
from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.domain.ids import new_id
from server.domain.payment import utcnow
from server.service_layer.sync_schedule import ScheduledSync, SyncMessage

__all__ = ["SYNC_DEAD_LETTER_EVENT", "SYNC_DUE_EVENT", "PostgresSyncSchedule", "retry_topic"]

SYNC_DUE_EVENT: Final = "payment.sync_due"
SYNC_DEAD_LETTER_EVENT: Final = "payment.sync_dead_lettered"
_TICKET_BITS: Final = 52  # below 2**53: JavaScript consumers read it exactly

_BUMP_AND_QUEUE = """
WITH bumped AS (
    INSERT INTO payment_sync_schedule AS s (payment_id, ticket, attempt, due_at)
    VALUES (%(payment_id)s, %(ticket)s, %(attempt)s, %(due_at)s)
    ON CONFLICT (payment_id) DO UPDATE
    SET ticket = EXCLUDED.ticket, attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at,
        updated_at = now()
    WHERE (%(supersedes)s::bigint IS NULL OR s.ticket = %(supersedes)s::bigint)
      AND s.ticket <> EXCLUDED.ticket
    RETURNING 1
)
INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at)
SELECT %(event_id)s, %(topic)s, %(payment_id)s, %(event_type)s, %(payload)s, %(created_at)s
FROM bumped
"""
_OUTBOX = (
    "INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def retry_topic(rung: int) -> str:
    """The retry topic holding messages of ladder rung `rung`."""
    return PAYMENTS_RETRY[min(max(rung, 0), len(PAYMENTS_RETRY) - 1)][1]


class PostgresSyncSchedule:
    """`SyncScheduleRepository` on one unit of work's connection."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._scheduled: list[ScheduledSync] = []
        self._dead: list[tuple[str, dict[str, object]]] = []
        self._deleted = False

    @property
    def pending(self) -> bool:
        """Writes queued or made (the unit of work then must not end with a blind COMMIT)."""
        return bool(self._scheduled or self._dead or self._deleted)

    def schedule(self, request: ScheduledSync) -> None:
        self._scheduled.append(request)

    def dead_letter(self, key: str, body: Mapping[str, object]) -> None:
        self._dead.append((key, dict(body)))

    async def ticket(self, payment_id: str) -> int | None:
        async with postgres_errors_as_unavailable():
            cur = await self._conn.execute(
                "SELECT ticket FROM payment_sync_schedule WHERE payment_id = %s", (payment_id,))
            row = await cur.fetchone()
        return int(str(row["ticket"])) if row else None

    async def forget(self, payment_id: str) -> None:
        self._deleted = True
        async with postgres_errors_as_unavailable():
            await self._conn.execute(
                "DELETE FROM payment_sync_schedule WHERE payment_id = %s", (payment_id,))

    async def flush(self) -> int:
        """Queue the writes (inside the caller's transaction, pipeline-friendly: nothing is
        fetched); returns how many outbox rows were queued (a superseded schedule adds none)."""
        now = utcnow()
        async with self._conn.cursor() as cur:
            scheduled = []
            for request in self._scheduled:
                ticket = secrets.randbits(_TICKET_BITS) + 1
                message = SyncMessage(request.payment_id, ticket, request.attempt,
                                      request.due_at, request.reason)
                scheduled.append({
                    "payment_id": request.payment_id, "ticket": ticket,
                    "attempt": request.attempt, "due_at": request.due_at,
                    "supersedes": request.supersedes, "event_id": new_id("evt"),
                    "topic": retry_topic(request.attempt), "event_type": SYNC_DUE_EVENT,
                    "payload": message.encode(), "created_at": now})
            if scheduled:
                await cur.executemany(_BUMP_AND_QUEUE, scheduled)
            dead = [(new_id("evt"), PAYMENTS_DLQ, key, SYNC_DEAD_LETTER_EVENT,
                     json.dumps(body, default=str, separators=(",", ":")).encode(), now)
                    for key, body in self._dead]
            if dead:
                await cur.executemany(_OUTBOX, dead)
        queued = len(scheduled) + len(dead)
        self._scheduled.clear()
        self._dead.clear()
        return queued

