"""Shared set-up for the fraud integration tests: where the servers are, a private schema."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

import psycopg
import pytest


@dataclass(frozen=True)
class FraudServers:
    postgres_url: str
    redis_url: str


def servers(request: pytest.FixtureRequest) -> FraudServers:
    """The session's `service_urls` (tests.fixtures.services), else POSTGRES_URL / REDIS_URL."""
    try:
        urls = request.getfixturevalue("service_urls")
        return FraudServers(urls.postgres_url, urls.redis_url)
    except pytest.FixtureLookupError:
        postgres, redis = os.environ.get("POSTGRES_URL", ""), os.environ.get("REDIS_URL", "")
        if not (postgres and redis):
            pytest.skip("needs PostgreSQL and Redis (service_urls or POSTGRES_URL/REDIS_URL)")
        return FraudServers(postgres, redis)


def _migration(name: str) -> str:
    folder = resources.files("server.adapters.postgres") / "migrations"
    return (folder / name).read_text(encoding="utf-8")


@asynccontextmanager
async def private_schema(postgres_url: str) -> AsyncIterator[str]:
    """A schema holding migrations 0001 + 0003 only, dropped afterwards: no other suite's
    migrations or rows can interfere. Yields the schema name."""
    schema = f"fraud_test_{secrets.token_hex(5)}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            await admin.execute(f"SET search_path TO {schema}")
            for name in ("0001_core.sql", "0003_fraud.sql"):
                await admin.execute(_migration(name).encode())
            yield schema
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def connect(postgres_url: str, schema: str, *, autocommit: bool = True
                  ) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        postgres_url, autocommit=autocommit, options=f"-c search_path={schema}")


async def new_merchant(conn: psycopg.AsyncConnection[Any]) -> str:
    merchant_id = f"mer_{secrets.token_hex(8)}"
    await conn.execute("INSERT INTO merchants (id, name) VALUES (%s, %s)",
                       (merchant_id, "Fraud Test Merchant"))
    return merchant_id


async def add_payment(conn: psycopg.AsyncConnection[Any], merchant_id: str, *,
                      amount_minor: int = 10_000, status: str = "SUCCEEDED",
                      customer_id: str = "", ip: str = "", vpa: str = "",
                      card_token: str = "", age: timedelta = timedelta(minutes=1)) -> str:
    """A stored payment as the payments repository writes it (only the columns fraud reads)."""
    payment_id = f"pay_{secrets.token_hex(12)}"
    method = {"type": "upi" if vpa or not card_token else "card", "upi_vpa": vpa,
              "card_token": card_token}
    await conn.execute(
        "INSERT INTO payments (id, merchant_id, idempotency_key, amount_minor, currency, status,"
        " method, customer, ip_address, created_at)"
        " VALUES (%s, %s, %s, %s, 'INR', %s, %s, %s, %s, now() - %s)",
        (payment_id, merchant_id, payment_id, amount_minor, status, json.dumps(method),
         json.dumps({"id": customer_id}), ip, age),
    )
    return payment_id
