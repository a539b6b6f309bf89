"""Merchants and their API keys. Keys are shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.domain.ids import new_id
from server.errors import Unauthenticated

__all__ = ["MerchantStore", "Principal", "hash_api_key"]

# High-entropy random keys make a fast hash safe (no dictionary to attack); a slow KDF would
# cost a core per request at 1,000 payments/s.


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    merchant_id: str
    key_id: str
    # Admin keys may change platform-wide routing state (RoutingService writes).
    is_admin: bool = False

    @property
    def actor(self) -> str:
        return f"api:{self.key_id}"


class MerchantStore:
    def __init__(self, pool: AsyncConnectionPool[Conn], *, cache_seconds: float = 30.0) -> None:
        self._pool = pool
        # hash → (principal or None, expiry). Revocation takes effect within cache_seconds.
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._cache_seconds = cache_seconds

    async def create_merchant(self, name: str, *, merchant_id: str | None = None,
                              api_key: str | None = None, env: str = "test",
                              admin: bool = False) -> tuple[str, str]:
        """Create a merchant (or reuse `merchant_id`) with a new API key; returns (id, key).

        `admin` flags the key as an admin key (an existing key is only ever promoted)."""
        merchant_id = merchant_id or new_id("mer")
        api_key = api_key or f"trv_{env}_{secrets.token_urlsafe(32)}"
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO merchants (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (merchant_id, name))
            await conn.execute(
                "INSERT INTO api_keys (id, merchant_id, key_hash, prefix, is_admin)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key_hash) DO UPDATE"
                " SET is_admin = api_keys.is_admin OR EXCLUDED.is_admin",
                (new_id("key"), merchant_id, hash_api_key(api_key), api_key[:12], admin))
        return merchant_id, api_key

    async def authenticate(self, api_key: str) -> Principal:
        if not api_key:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        digest = hash_api_key(api_key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            principal = cached[0]
        else:
            async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT id, merchant_id, is_admin FROM api_keys WHERE key_hash = %s"
                    " AND revoked_at IS NULL", (digest,))
                row = await cur.fetchone()
            principal = Principal(str(row["merchant_id"]), str(row["id"]),
                                  bool(row["is_admin"])) if row else None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + self._cache_seconds)
        if principal is None:
            raise Unauthenticated("invalid API key")
        return principal

    async def revoke(self, key_id: str) -> None:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (key_id,))
        self._cache.clear()
