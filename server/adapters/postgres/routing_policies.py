"""Per-merchant routing policies in PostgreSQL, and the per-process cache in front of them.

`PostgresRoutingPolicies` keeps every version (`routing_policies`, migration 0005) and writes
the admin audit trail (`admin_audit`). `PolicyCache` answers "which policy routes this
merchant's payment" without a query per payment: entries live `ttl_seconds` (the safety net)
and are dropped at once when the insert trigger's `NOTIFY routing_policy, '<merchant id>'`
reaches this process's LISTEN connection, so every server process routes by a new policy
within milliseconds (at most the TTL when a notification is lost). While the listener is
reconnecting, the whole cache is cleared on reconnect (notifications may have been missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.domain.routing import RoutingPolicy
from server.errors import DependencyUnavailable, TriveniError
from server.service_layer.routing_admin import StoredPolicy, VersionConflict

__all__ = ["POLICY_CHANNEL", "PolicyCache", "PostgresAdminAudit", "PostgresRoutingPolicies"]

log = logging.getLogger(__name__)

POLICY_CHANNEL: Final = "routing_policy"

_LATEST = (
    "SELECT merchant_id, version, policy, updated_at, updated_by FROM routing_policies"
    " WHERE merchant_id = %s ORDER BY version DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO routing_policies (merchant_id, version, policy, updated_by)"
    " VALUES (%s, %s, %s, %s) RETURNING merchant_id, version, policy, updated_at, updated_by"
)
_AUDIT = (
    "INSERT INTO admin_audit (merchant_id, actor, action, target, details)"
    " VALUES (%s, %s, %s, %s, %s)"
)


def _stored(row: Mapping[str, Any]) -> StoredPolicy:
    document = row["policy"]
    if isinstance(document, str):
        document = json.loads(document)
    return StoredPolicy(
        merchant_id=str(row["merchant_id"]), version=int(row["version"]),
        document=dict(document), updated_at=row["updated_at"],
        updated_by=str(row["updated_by"]),
    )


class PostgresRoutingPolicies:
    """Versioned routing policies; `save` is optimistic (expected version) and audited."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def latest(self, merchant_id: str) -> StoredPolicy | None:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(_LATEST, (merchant_id,))
            row = await cur.fetchone()
        return _stored(row) if row else None

    async def save(self, merchant_id: str, document: Mapping[str, Any], *,
                   expected_version: int, actor: str) -> StoredPolicy:
        """Store version expected_version + 1; VersionConflict when someone was faster."""
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT COALESCE(max(version), 0) AS v FROM routing_policies"
                " WHERE merchant_id = %s", (merchant_id,))
            row = await cur.fetchone()
            current = int(str(row["v"])) if row else 0
            if current != expected_version:
                raise VersionConflict(current, expected_version)
            try:
                cur = await conn.execute(_INSERT, (merchant_id, expected_version + 1,
                                                   Jsonb(dict(document)), actor))
            except UniqueViolation:  # a concurrent writer took this version
                await conn.rollback()
                raise VersionConflict(expected_version + 1, expected_version) from None
            stored = await cur.fetchone()
            assert stored is not None
            await conn.execute(_AUDIT, (merchant_id, actor, "routing_policy.set", merchant_id,
                                        Jsonb({"version": expected_version + 1})))
            await conn.commit()
        return _stored(stored)


class PostgresAdminAudit:
    """Appends to `admin_audit` (admin actions that are not payment changes)."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def record(self, *, merchant_id: str, actor: str, action: str, target: str,
                     details: Mapping[str, object]) -> None:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            await conn.execute(_AUDIT, (merchant_id, actor, action, target,
                                        Jsonb(dict(details))))
            await conn.commit()


@dataclass(slots=True)
class _Entry:
    policy: RoutingPolicy
    version: int
    expires_at: float


class PolicyCache:
    """The routing policy for a merchant: their latest stored version, else the global one.

    `effective` turns a stored document into the policy routing uses (validated against the
    configured accounts, platform-wide settings taken from the global policy); a stored
    document that no longer validates (an account was removed since) routes by the global
    policy and is logged.
    """

    def __init__(
        self,
        policies: PostgresRoutingPolicies,
        listen_url: str,
        global_policy: RoutingPolicy,
        effective: Callable[[Mapping[str, Any], Collection[str]], RoutingPolicy],
        known_accounts: Collection[str],
        *,
        ttl_seconds: float = 1.0,
        reconnect_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policies = policies
        self._url = listen_url
        self.global_policy = global_policy
        self._effective = effective
        self._known = frozenset(known_accounts)
        self._ttl = ttl_seconds
        self._reconnect_delay = reconnect_delay
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[_Entry]] = {}
        # Bumped by every invalidation: a load that raced one is used but not cached.
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        """Start the LISTEN task (call from a running event loop)."""
        if self._url:
            self._task = asyncio.create_task(self._listen(), name="routing-policy-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def invalidate(self, merchant_id: str | None = None) -> None:
        """Forget one merchant's cached policy (all when None)."""
        self._generation += 1
        if merchant_id is None:
            self._entries.clear()
        else:
            self._entries.pop(merchant_id, None)

    async def policy_for(self, merchant_id: str) -> RoutingPolicy:
        entry = self._entries.get(merchant_id)
        if entry is not None and entry.expires_at > self._clock():
            return entry.policy
        loading = self._loading.get(merchant_id)
        if loading is None:
            loading = asyncio.get_running_loop().create_future()
            self._loading[merchant_id] = loading
            try:
                fresh = await self._load(merchant_id, entry)
                loading.set_result(fresh)
            except BaseException as exc:
                loading.set_exception(exc)
                loading.exception()  # retrieved: waiters re-raise it themselves
                raise
            finally:
                self._loading.pop(merchant_id, None)
            return fresh.policy
        return (await asyncio.shield(loading)).policy

    async def _load(self, merchant_id: str, stale: _Entry | None) -> _Entry:
        generation = self._generation
        try:
            stored = await self._policies.latest(merchant_id)
        except DependencyUnavailable as exc:
            # Routing must not fail because the policy could not be re-read: keep what we had.
            log.warning("routing policy unavailable, using %s",
                        "the cached copy" if stale else "the global policy",
                        extra={"merchant_id": merchant_id, "error": str(exc)})
            return stale or _Entry(self.global_policy, 0, 0.0)
        entry = _Entry(self.global_policy, 0, self._clock() + self._ttl)
        if stored is not None:
            try:
                entry.policy = self._effective(stored.document, self._known)
                entry.version = stored.version
            except TriveniError as exc:
                log.error("stored routing policy no longer valid; routing by the global policy",
                          extra={"merchant_id": merchant_id, "version": stored.version,
                                 "error": str(exc)})
        if generation == self._generation:
            self._entries[merchant_id] = entry
        return entry

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {POLICY_CHANNEL}")
                    self.invalidate()  # anything may have changed while we were away
                    self.listening.set()
                    async for notify in conn.notifies():
                        self.invalidate(notify.payload or None)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("routing policy listener disconnected, retrying",
                            extra={"error": str(exc)})
                await asyncio.sleep(self._reconnect_delay)
