"""Cross-process change feed: PostgreSQL NOTIFY on commit, one LISTEN connection per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import psycopg

from server.adapters.postgres.uow import PAYMENT_CHANNEL

__all__ = ["PaymentChangeFeed"]

log = logging.getLogger(__name__)


class PaymentChangeFeed:
    """Fan-out of `payment_changes` notifications to in-process subscribers (WatchPayment)."""

    def __init__(self, url: str, *, reconnect_delay: float = 1.0) -> None:
        self._url = url
        self._reconnect_delay = reconnect_delay
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="payment-change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, payment_id: str) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=100)
        self._subscribers[payment_id].add(queue)
        return queue

    def unsubscribe(self, payment_id: str, queue: asyncio.Queue[int]) -> None:
        queues = self._subscribers.get(payment_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._subscribers[payment_id]

    def _dispatch(self, payload: str) -> None:
        payment_id, _, version = payload.partition(":")
        for queue in list(self._subscribers.get(payment_id, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a slow watcher re-reads anyway
                queue.put_nowait(int(version or 0))

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {PAYMENT_CHANNEL}")
                    self.connected.set()
                    # Wake every watcher: changes may have happened while we were disconnected.
                    for payment_id in list(self._subscribers):
                        self._dispatch(f"{payment_id}:0")
                    async for notify in conn.notifies():
                        self._dispatch(notify.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                log.warning("change feed disconnected, retrying", extra={"error": str(exc)})
                await asyncio.sleep(self._reconnect_delay)
