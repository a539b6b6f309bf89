"""Versioned SQL migrations: migrations/NNNN_name.sql applied in order, once, under a lock."""

from __future__ import annotations

import importlib.resources
import logging

import psycopg

__all__ = ["apply_migrations", "available_migrations"]

log = logging.getLogger(__name__)
_LOCK_ID = 0x7472_6976  # "triv": one migrator at a time across processes


def available_migrations() -> list[tuple[str, str]]:
    """(version, sql) pairs sorted by version."""
    folder = importlib.resources.files("server.adapters.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def apply_migrations(url: str) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, sql in available_migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("migration applied", extra={"version": version})
                applied_now.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now
