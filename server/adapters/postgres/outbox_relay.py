"""The outbox relay: publishes committed outbox rows to Kafka, at least once, in order per key.

One round (`run_once`), all inside one PostgreSQL transaction:

1. claim up to `batch_size` unpublished rows, lowest id first, `FOR UPDATE SKIP LOCKED` — so
   several relays (threads, processes, hosts) never claim the same row;
2. hold back rows whose key has an earlier unpublished row this relay did not claim (another
   relay is publishing it, or it is being retried): per-payment order beats throughput;
3. publish the rest in one batch, with the `event_id` header (the consumers' dedupe key);
4. per key, mark rows published up to the first failure; the failed row and every later row of
   its key get `attempts + 1` and `last_error` and stay unpublished;
5. commit, releasing the row locks.

A crash between 3 and 5 rolls the transaction back, so those rows are published again by the
next round: at least once, never lost. `run_forever` repeats rounds, waking on
`NOTIFY outbox` (sent by the unit of work after commit) or every `poll_interval`, backs off with
jitter while Kafka or PostgreSQL is down, prunes published rows older than `retention`, and
keeps the outbox gauges current. No exception escapes it; it returns when `stop` is set.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import psycopg
from prometheus_client import Counter, Gauge
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from server.adapters.kafka.ports import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    EventProducer,
    OutgoingMessage,
    PublishResult,
)

__all__ = ["OUTBOX_CHANNEL", "OutboxRelay", "RelayMetrics", "RoundOutcome"]

log = logging.getLogger(__name__)

OUTBOX_CHANNEL: Final = "outbox"
_MAX_ERROR_CHARS: Final = 500
_PRUNE_CHUNK: Final = 5_000

_CLAIM = """
SELECT id, event_id, topic, key, event_type, payload
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

# The earliest unpublished row per key that this relay did not claim (locked by another relay,
# or committed after our claim): our rows of that key after it must wait.
_BLOCKERS = """
SELECT key, min(id)
FROM outbox
WHERE published_at IS NULL
  AND id < %(max_id)s
  AND key = ANY(%(keys)s)
  AND id <> ALL(%(ids)s)
GROUP BY key
"""

_MARK_PUBLISHED = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = ''
WHERE id = ANY(%(ids)s)
"""

_MARK_FAILED = """
UPDATE outbox AS o SET attempts = o.attempts + 1, last_error = f.error
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f(id, error)
WHERE o.id = f.id
"""

_GAUGES = """
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
FROM outbox
WHERE published_at IS NULL
"""

# Walks the table in id order (the primary key) one chunk at a time, deleting the published
# rows older than the retention; rows are roughly in created_at order, so the walk stops at the
# first chunk that holds a row younger than the retention. Unpublished rows are never deleted.
_PRUNE_CHUNK_SQL = """
WITH chunk AS (
    SELECT id, created_at, published_at FROM outbox
    WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
), gone AS (
    DELETE FROM outbox AS o USING chunk AS c
    WHERE o.id = c.id AND c.published_at IS NOT NULL AND c.published_at < now() - %(retention)s
    RETURNING o.id
)
SELECT (SELECT count(*) FROM gone),
       (SELECT max(id) FROM chunk),
       COALESCE((SELECT bool_or(created_at >= now() - %(retention)s) FROM chunk), true)
"""


@dataclass(frozen=True, slots=True)
class RelayMetrics:
    """The Prometheus objects the relay updates (declared in `server.adapters.metrics`)."""

    unpublished_rows: Gauge
    oldest_unpublished_age: Gauge
    published: Counter
    publish_errors: Counter
    dependency_up: Gauge  # labelled by `dependency`

    @classmethod
    def default(cls) -> RelayMetrics:
        from server.adapters import metrics

        return cls(
            unpublished_rows=metrics.OUTBOX_UNPUBLISHED_ROWS,
            oldest_unpublished_age=metrics.OUTBOX_OLDEST_UNPUBLISHED_AGE,
            published=metrics.OUTBOX_PUBLISHED,
            publish_errors=metrics.KAFKA_PUBLISH_ERRORS,
            dependency_up=metrics.DEPENDENCY_UP,
        )


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What one round did: rows claimed, published, failed, and held back for ordering."""

    claimed: int = 0
    published: int = 0
    failed: int = 0
    held_back: int = 0


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    event_id: str
    topic: str
    key: str
    event_type: str
    payload: bytes

    def message(self) -> OutgoingMessage:
        return OutgoingMessage(
            topic=self.topic,
            key=self.key,
            value=self.payload,
            headers=(
                (EVENT_ID_HEADER, self.event_id.encode()),
                (EVENT_TYPE_HEADER, self.event_type.encode()),
            ),
        )


Sleep = Callable[[float], Awaitable[Any]]


class OutboxRelay:
    """Moves outbox rows to Kafka; safe to run as many instances as you like."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        producer: EventProducer,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        retention: timedelta = timedelta(hours=24),
        sleep: Sleep = asyncio.sleep,
        metrics: RelayMetrics | None = None,
        listen: bool = True,
        prune_interval: float = 600.0,
        gauge_interval: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention = retention
        self._sleep = sleep
        self._metrics = metrics or RelayMetrics.default()
        self._listen = listen
        self._prune_interval = prune_interval
        self._gauge_interval = gauge_interval
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()

    # --- one round ---------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Relay one batch; returns how many rows were published (and marked so)."""
        return (await self.relay_batch()).published

    async def relay_batch(self) -> RoundOutcome:
        """Relay one batch and say what happened (see the module docstring for the steps)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(_CLAIM, {"limit": self._batch_size})
            rows = [_Row(*record) for record in await cur.fetchall()]
            if not rows:
                return RoundOutcome()
            sendable, held_back = await self._in_key_order(cur, rows)
            results = await self._publish(sendable)
            published, failed = _settle(sendable, results)
            if published:
                await cur.execute(_MARK_PUBLISHED, {"ids": [row.id for row in published]})
            if failed:
                await cur.execute(_MARK_FAILED, {
                    "ids": [row.id for row, _ in failed],
                    "errors": [error[:_MAX_ERROR_CHARS] for _, error in failed],
                })
        # Counted only once the marks are committed.
        self._record(published=len(published), failed=len(failed))
        return RoundOutcome(
            claimed=len(rows), published=len(published), failed=len(failed),
            held_back=len(held_back),
        )

    async def _in_key_order(self, cur: psycopg.AsyncCursor[Any],
                            rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
        """Split claimed rows into those we may publish now and those an earlier row blocks."""
        await cur.execute(_BLOCKERS, {
            "max_id": rows[-1].id,
            "keys": sorted({row.key for row in rows}),
            "ids": [row.id for row in rows],
        })
        first_blocker: dict[str, int] = {key: blocker for key, blocker in await cur.fetchall()}
        sendable: list[_Row] = []
        held_back: list[_Row] = []
        for row in rows:
            blocker = first_blocker.get(row.key)
            (held_back if blocker is not None and blocker < row.id else sendable).append(row)
        return sendable, held_back

    async def _publish(self, rows: list[_Row]) -> list[PublishResult]:
        if not rows:
            return []
        try:
            results = await self._producer.publish_batch([row.message() for row in rows])
        except Exception as exc:  # the producer should report, not raise; be safe anyway
            log.exception("Kafka producer raised instead of reporting failures")
            return [PublishResult.failed(f"{type(exc).__name__}: {exc}") for _ in rows]
        if len(results) != len(rows):
            error = f"producer returned {len(results)} results for {len(rows)} messages"
            return [PublishResult.failed(error) for _ in rows]
        return results

    def _record(self, *, published: int, failed: int) -> None:
        metrics = self._metrics
        if published:
            metrics.published.inc(published)
        if failed:
            metrics.publish_errors.inc(failed)
        if published or failed:
            # Nothing got through at all: treat Kafka as down until a publish succeeds.
            metrics.dependency_up.labels(dependency="kafka").set(1 if published else 0)

    # --- housekeeping ------------------------------------------------------------------------
    async def prune(self) -> int:
        """Delete published rows older than the retention; returns how many were deleted."""
        deleted_total = 0
        after = 0
        while True:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=tuple_row)
                await cur.execute(_PRUNE_CHUNK_SQL, {
                    "after": after, "limit": _PRUNE_CHUNK, "retention": self._retention,
                })
                record = await cur.fetchone()
            deleted, last_id, reached_young_rows = record or (0, None, True)
            deleted_total += int(deleted)
            if last_id is None or reached_young_rows:
                return deleted_total
            after = int(last_id)

    async def refresh_gauges(self) -> None:
        """Set the unpublished-rows and oldest-unpublished-age gauges from the table."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(_GAUGES)
            record = await cur.fetchone()
            await conn.rollback()
        count, age = record or (0, 0)
        self._metrics.unpublished_rows.set(float(count))
        self._metrics.oldest_unpublished_age.set(float(age))

    # --- the loop ----------------------------------------------------------------------------
    async def run_forever(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; survives Kafka and PostgreSQL outages."""
        listener = asyncio.create_task(self._listen_for_notifications(stop)) if self._listen \
            else None
        failures = 0
        next_prune = time.monotonic()
        next_gauges = time.monotonic()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    outcome = await self.relay_batch()
                    self._postgres_up(True)
                except Exception as exc:
                    failures += 1
                    self._log_round_error(exc, failures)
                    await self._pause(self._backoff(failures), stop, wakeable=False)
                    continue
                now = time.monotonic()
                if now >= next_gauges:
                    next_gauges = now + self._gauge_interval
                    await self._housekeeping(self.refresh_gauges, "refresh outbox gauges")
                if now >= next_prune:
                    next_prune = now + self._prune_interval
                    await self._housekeeping(self.prune, "prune the outbox")
                if outcome.failed and not outcome.published:
                    failures += 1
                    delay = self._backoff(failures)
                    log.warning("outbox relay: %d rows failed to publish, retrying in %.1fs",
                                outcome.failed, delay)
                    await self._pause(delay, stop, wakeable=False)
                    continue
                failures = 0
                if outcome.published and outcome.claimed >= self._batch_size:
                    continue  # a full batch: more is probably waiting
                await self._pause(self._poll_interval, stop, wakeable=True)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            await self._housekeeping(self.refresh_gauges, "refresh outbox gauges")

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the capped delay."""
        growth = float(2 ** min(failures - 1, 16))
        capped = min(self._backoff_max, self._backoff_base * growth)
        return capped / 2 + self._rng.uniform(0, capped / 2)

    async def _pause(self, seconds: float, stop: asyncio.Event, *, wakeable: bool) -> None:
        waiters = [asyncio.ensure_future(self._sleep(seconds)), asyncio.create_task(stop.wait())]
        if wakeable:
            waiters.append(asyncio.create_task(self._wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _housekeeping(self, job: Callable[[], Awaitable[Any]], what: str) -> None:
        try:
            await job()
        except Exception as exc:
            log.warning("outbox relay could not %s: %s", what, exc)

    def _log_round_error(self, exc: Exception, failures: int) -> None:
        if isinstance(exc, psycopg.OperationalError):  # PoolTimeout is one too
            self._postgres_up(False)
            log.warning("outbox relay: PostgreSQL unavailable (%s); attempt %d", exc, failures)
        else:
            log.exception("outbox relay round failed; attempt %d", failures)

    def _postgres_up(self, up: bool) -> None:
        self._metrics.dependency_up.labels(dependency="postgres").set(1 if up else 0)

    async def _listen_for_notifications(self, stop: asyncio.Event) -> None:
        """Set the wake event on every `NOTIFY outbox`; reconnect (with backoff) when dropped."""
        failures = 0
        while not stop.is_set():
            try:
                conninfo, kwargs = await self._listen_params()
                async with await psycopg.AsyncConnection.connect(
                    conninfo, **{**kwargs, "autocommit": True}
                ) as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    failures = 0
                    self._wake.set()  # rows may have been committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.debug("outbox LISTEN connection lost (%s); polling meanwhile", exc)
                await self._pause(self._backoff(failures), stop, wakeable=False)


    async def _listen_params(self) -> tuple[str, dict[str, Any]]:
        """The pool's connection parameters (psycopg_pool allows callables for both)."""
        conninfo: Any = self._pool.conninfo
        kwargs: Any = self._pool.kwargs
        if callable(conninfo):
            conninfo = conninfo()
        if inspect.isawaitable(conninfo):
            conninfo = await conninfo
        if callable(kwargs):
            kwargs = kwargs()
        if inspect.isawaitable(kwargs):
            kwargs = await kwargs
        return str(conninfo), dict(kwargs or {})


def _settle(rows: Sequence[_Row], results: Sequence[PublishResult]
            ) -> tuple[list[_Row], list[tuple[_Row, str]]]:
    """Per key, rows up to the first failure count as published; that one and later ones fail."""
    published: list[_Row] = []
    failed: list[tuple[_Row, str]] = []
    first_failure: dict[str, str] = {}
    for row, result in zip(rows, results, strict=True):
        earlier = first_failure.get(row.key)
        if earlier is not None:
            error = result.error if not result.ok else f"held back: {earlier} failed"
            failed.append((row, error))
        elif result.ok:
            published.append(row)
        else:
            first_failure[row.key] = row.event_id
            failed.append((row, result.error))
    return published, failed
