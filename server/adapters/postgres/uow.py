"""Unit of work around one PostgreSQL transaction: state changes, audit rows and outbox events
are committed together or not at all (transactional outbox)."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Self

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.adapters.payment_metrics import observe_committed
from server.adapters.postgres.payments import PostgresPaymentRepository
from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.adapters.postgres.sync_schedule import PostgresSyncSchedule
from server.adapters.protobuf import event_to_proto
from server.domain.payment import Payment, StateChange
from server.errors import ConcurrentUpdate

__all__ = ["OUTBOX_CHANNEL", "PAYMENTS_TOPIC", "PAYMENT_CHANNEL", "PostgresUnitOfWork"]

PAYMENTS_TOPIC = "payments.events"
PAYMENT_CHANNEL = "payment_changes"  # NOTIFY payload: "<payment_id>:<version>"
OUTBOX_CHANNEL = "outbox"

_INSERT_AUDIT = (
    "INSERT INTO audit_log (merchant_id, payment_id, event_id, action, actor, before_status,"
    " after_status, details, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


class PostgresUnitOfWork:
    """`async with uow: ...; await uow.commit()`; anything not committed is rolled back."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool
        self._conn: Conn | None = None
        self._committed = False

    @property
    def conn(self) -> Conn:
        assert self._conn is not None, "unit of work not entered"
        return self._conn

    async def __aenter__(self) -> Self:
        async with postgres_errors_as_unavailable():
            self._conn = await self._pool.getconn()
        self._committed = False
        self._receipts_written = False
        self.payments = PostgresPaymentRepository(self._conn)
        self.sync_schedule = PostgresSyncSchedule(self._conn)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not self._committed and not conn.closed:
                if exc_type is None and not self._wrote():
                    # Read-only: COMMIT ends it as well, and unlike ROLLBACK it keeps psycopg's
                    # prepared statements (a ROLLBACK makes it DEALLOCATE them all).
                    await conn.commit()
                else:
                    await conn.rollback()
        except Exception:
            pass
        finally:
            await self._pool.putconn(conn)

    def _wrote(self) -> bool:
        return self.payments.wrote or self._receipts_written or self.sync_schedule.pending

    async def commit(self) -> None:
        """Drain recorded changes into audit_log + outbox (+ NOTIFY), and the queued retry /
        dead-letter messages into the outbox, then COMMIT."""
        conn = self.conn
        async with postgres_errors_as_unavailable():
            audit_rows: list[tuple[object, ...]] = []
            outbox_rows: list[tuple[object, ...]] = []
            notify: list[str] = []
            for payment in self.payments.seen.values():
                for change in payment.changes:
                    audit_rows.append(_audit_row(change))
                    if change.after != change.before or change.before is None:
                        outbox_rows.append(_outbox_row(change, payment))
                if payment.changes:
                    notify.append(f"{payment.id}:{payment.version}")
            # The rows, the notifications and the COMMIT in one pipelined round trip.
            try:
                async with conn.pipeline(), conn.cursor() as cur:
                    await self.payments.flush()
                    if audit_rows:
                        await cur.executemany(_INSERT_AUDIT, audit_rows)
                    if outbox_rows:
                        await cur.executemany(_INSERT_OUTBOX, outbox_rows)
                    scheduled = await self.sync_schedule.flush()
                    channels = [(PAYMENT_CHANNEL, payload) for payload in notify]
                    if outbox_rows or scheduled:
                        channels.append((OUTBOX_CHANNEL, ""))
                    if channels:
                        await cur.execute(
                            "SELECT " + ", ".join("pg_notify(%s, %s)" for _ in channels),
                            [value for pair in channels for value in pair])
                    await conn.commit()
            except psycopg.errors.SerializationFailure as exc:
                # A version-checked write found the row moved on; the transaction is aborted.
                raise ConcurrentUpdate(str(exc.diag.message_primary or exc)) from exc
        self._committed = True
        for payment in self.payments.seen.values():
            if payment.changes:
                observe_committed(payment, payment.changes)
            payment.changes.clear()

    async def record_webhook_receipt(self, account: str, dedupe_id: str, payment_id: str) -> bool:
        """False when this delivery was already applied (a duplicate): the caller does nothing."""
        async with postgres_errors_as_unavailable():
            self._receipts_written = True
            cur = await self.conn.execute(
                "INSERT INTO webhook_receipts (account, dedupe_id, payment_id) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING dedupe_id", (account, dedupe_id, payment_id))
            return await cur.fetchone() is not None

    async def rollback(self) -> None:
        async with postgres_errors_as_unavailable():
            await self.conn.rollback()


def _audit_row(change: StateChange) -> tuple[object, ...]:
    return (
        change.merchant_id, change.payment_id, change.event_id, change.event_type, change.actor,
        change.before.value if change.before else None, change.after.value,
        json.dumps(dict(change.details), default=str), change.occurred_at,
    )


def _outbox_row(change: StateChange, payment: Payment) -> tuple[object, ...]:
    event = event_to_proto(change, payment)
    return (change.event_id, PAYMENTS_TOPIC, change.payment_id, change.event_type,
            event.SerializeToString(), change.occurred_at)
