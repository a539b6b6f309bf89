"""Status-sync worker: asks PSPs about payments that are not final yet, on a durable schedule
kept in PostgreSQL (payments.next_sync_at), so nothing is lost across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.domain.payment import utcnow
from server.errors import TriveniError
from server.service_layer.payments import PaymentService

__all__ = ["StatusSyncWorker"]

log = logging.getLogger(__name__)


class StatusSyncWorker:
    """Claims due payments with a lease (so parallel workers split them) and syncs each."""

    def __init__(self, pool: AsyncConnectionPool[Conn], payments: PaymentService, *,
                 batch_size: int = 50, interval: float = 1.0,
                 lease: timedelta = timedelta(seconds=30),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._pool = pool
        self._payments = payments
        self._batch_size = batch_size
        self._interval = interval
        self._lease = lease
        self._clock = clock

    async def claim_due(self) -> list[str]:
        """Due payment ids; their next_sync_at moves one lease ahead in the same statement."""
        now = self._clock()
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE payments SET next_sync_at = %s WHERE id IN ("
                " SELECT id FROM payments WHERE next_sync_at <= %s ORDER BY next_sync_at"
                " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
                (now + self._lease, now, self._batch_size))
            return [str(row["id"]) for row in await cur.fetchall()]

    async def run_once(self) -> int:
        ids = await self.claim_due()
        for payment_id in ids:
            try:
                await self._payments.sync(None, payment_id, actor="worker:sync")
            except TriveniError as exc:
                log.warning("sync failed", extra={"payment_id": payment_id,
                                                  "error": type(exc).__name__})
        return len(ids)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except TriveniError as exc:
                log.warning("sync worker cannot reach its dependencies",
                            extra={"error": str(exc)})
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._interval)
