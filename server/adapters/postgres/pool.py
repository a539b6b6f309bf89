"""The PostgreSQL connection pool; driver connection errors become DependencyUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server.errors import DependencyUnavailable

__all__ = ["Conn", "create_pool", "postgres_errors_as_unavailable"]

Conn = psycopg.AsyncConnection[dict[str, object]]


async def _configure(conn: Conn) -> None:
    conn.row_factory = dict_row  # type: ignore[assignment]


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 16,
                      acquire_timeout: float = 5.0) -> AsyncConnectionPool[Conn]:
    """An opened pool; connections start in a transaction (autocommit off), dict rows."""
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, timeout=acquire_timeout, open=False,
        configure=_configure, kwargs={"connect_timeout": 5},
        name="triveni",
    )
    await pool.open(wait=False)
    return pool


@asynccontextmanager
async def postgres_errors_as_unavailable() -> AsyncIterator[None]:
    """Connection-level failures become DependencyUnavailable (→ gRPC UNAVAILABLE)."""
    try:
        yield
    except PoolTimeout as exc:
        raise DependencyUnavailable("postgres", "no connection available") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DependencyUnavailable("postgres", type(exc).__name__) from exc
