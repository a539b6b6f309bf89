"""Read-only queries behind the merchant dashboard, aggregated in PostgreSQL.

Tenant isolation: every statement filters by the merchant id it is given (attempts, which carry
no merchant id, through a join on their payment). Each call runs in one READ ONLY transaction
with a statement timeout, so a dashboard can never write or hold a connection for long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable

__all__ = [
    "BUCKET_ORIGIN",
    "SUCCESS_STATUSES",
    "Breakdown",
    "DashboardQueries",
    "LatencyRow",
    "PaymentDetailRows",
    "SeriesPoint",
    "SummaryRows",
]

Row = dict[str, Any]

# Payments that took the customer's money (refunds happen after a success).
SUCCESS_STATUSES = ("SUCCEEDED", "PARTIALLY_REFUNDED", "REFUNDED")
# Time buckets start at midnight IST, so hourly and 6-hourly buckets read naturally in India.
BUCKET_ORIGIN = "2000-01-01 00:00:00+05:30"
_STATEMENT_TIMEOUT = "5s"
_AUDIT_LIMIT = 200
_DELIVERY_LIMIT = 100
# Columns a merchant webhook delivery row may have that are safe to show (never payloads,
# signatures, secrets or endpoint URLs); the table belongs to another module and may evolve.
_DELIVERY_FIELDS = (
    "id", "endpoint_id", "event_id", "event_type", "sequence", "status", "attempts",
    "attempt_count", "response_status", "last_status_code", "last_response_status", "last_error",
    "next_attempt_at", "delivered_at", "finished_at", "redelivery_of", "created_at", "updated_at",
)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket_start: datetime
    payments: int
    succeeded: int
    failed: int
    blocked: int
    volume_minor: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Outcome counts for one connector, one method, or one (connector, method) pair."""

    connector: str | None
    method: str | None
    payments: int
    succeeded: int
    failed: int
    volume_minor: int


@dataclass(frozen=True, slots=True)
class LatencyRow:
    connector: str | None  # None: every connector together
    attempts: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class SummaryRows:
    since: datetime
    until: datetime
    bucket: timedelta
    series: list[SeriesPoint]
    by_connector: list[Breakdown]
    by_method: list[Breakdown]
    by_connector_method: list[Breakdown]
    totals: Breakdown
    blocked: int
    latency: list[LatencyRow]
    fraud_decisions: dict[str, int]
    fraud_reasons: list[tuple[str, str, int]]  # (code, message, payments)


@dataclass(frozen=True, slots=True)
class PaymentDetailRows:
    payment: Row
    attempts: list[Row]
    refunds: list[Row]
    audit: list[Row]
    # None when the webhook_deliveries table does not exist (merchant webhooks not deployed).
    webhook_deliveries: list[Row] | None


_SERIES_SQL = """
WITH agg AS (
    SELECT date_bin(%(bucket)s, created_at, %(origin)s::timestamptz) AS bucket_start,
           count(*) AS payments,
           count(*) FILTER (WHERE status = ANY(%(ok)s)) AS succeeded,
           count(*) FILTER (WHERE status = 'FAILED') AS failed,
           count(*) FILTER (WHERE status = 'BLOCKED') AS blocked,
           coalesce(sum(amount_minor) FILTER (WHERE status = ANY(%(ok)s)), 0) AS volume_minor
      FROM payments
     WHERE merchant_id = %(merchant_id)s AND created_at >= %(since)s AND created_at < %(until)s
     GROUP BY 1
)
SELECT b.bucket_start,
       coalesce(agg.payments, 0) AS payments, coalesce(agg.succeeded, 0) AS succeeded,
       coalesce(agg.failed, 0) AS failed, coalesce(agg.blocked, 0) AS blocked,
       coalesce(agg.volume_minor, 0) AS volume_minor
  FROM generate_series(date_bin(%(bucket)s, %(since)s, %(origin)s::timestamptz),
                       %(until)s, %(bucket)s) AS b(bucket_start)
  LEFT JOIN agg USING (bucket_start)
 WHERE b.bucket_start < %(until)s
 ORDER BY b.bucket_start
"""

# One scan, four groupings: per connector, per method, per (connector, method), and overall.
_BREAKDOWN_SQL = """
SELECT connector, method->>'type' AS method,
       GROUPING(connector, method->>'type') AS grouping_id,
       count(*) AS payments,
       count(*) FILTER (WHERE status = ANY(%(ok)s)) AS succeeded,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'BLOCKED') AS blocked,
       coalesce(sum(amount_minor) FILTER (WHERE status = ANY(%(ok)s)), 0) AS volume_minor
  FROM payments
 WHERE merchant_id = %(merchant_id)s AND created_at >= %(since)s AND created_at < %(until)s
 GROUP BY GROUPING SETS ((connector), (method->>'type'), (connector, method->>'type'), ())
 ORDER BY payments DESC, connector, method
"""

# Attempts carry no merchant id: the join on payments is the tenant filter. Attempts still in
# flight (latency 0) are left out. The payments.created_at bound lets the index narrow the join
# (a retry or failover happens within minutes of its payment's creation).
_LATENCY_SQL = """
SELECT a.connector, GROUPING(a.connector) AS grouping_id, count(*) AS attempts,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY a.latency_ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY a.latency_ms) AS p99
  FROM payment_attempts a
  JOIN payments p ON p.id = a.payment_id
 WHERE p.merchant_id = %(merchant_id)s
   AND p.created_at >= %(since)s - interval '1 day'
   AND a.created_at >= %(since)s AND a.created_at < %(until)s
   AND a.latency_ms > 0
 GROUP BY GROUPING SETS ((a.connector), ())
 ORDER BY grouping_id DESC, attempts DESC, a.connector
"""

_FRAUD_DECISIONS_SQL = """
SELECT coalesce(nullif(fraud->>'decision', ''), 'NONE') AS decision, count(*) AS payments
  FROM payments
 WHERE merchant_id = %(merchant_id)s AND created_at >= %(since)s AND created_at < %(until)s
 GROUP BY 1
"""

_FRAUD_REASONS_SQL = """
SELECT reason->>'code' AS code, max(reason->>'message') AS message, count(*) AS payments
  FROM payments p
 CROSS JOIN LATERAL jsonb_array_elements(
       CASE WHEN jsonb_typeof(p.fraud->'reasons') = 'array' THEN p.fraud->'reasons'
            ELSE '[]'::jsonb END) AS reason
 WHERE p.merchant_id = %(merchant_id)s AND p.created_at >= %(since)s
   AND p.created_at < %(until)s
 GROUP BY 1
 ORDER BY payments DESC, code
 LIMIT 10
"""

_PAYMENT_LIST_COLUMNS = """
id, status, amount_minor, currency, amount_refunded_minor, method, customer, connector,
connector_payment_id, fraud->>'decision' AS fraud_decision, fraud->>'score' AS fraud_score,
failure_code, failure_message, created_at, updated_at
"""

_PAYMENT_DETAIL_SQL = f"""
SELECT {_PAYMENT_LIST_COLUMNS}, merchant_id, description, ip_address, country,
       preferred_connector, fraud, routing, version
  FROM payments
 WHERE merchant_id = %(merchant_id)s AND id = %(payment_id)s
"""

_ATTEMPTS_SQL = """
SELECT a.id, a.number, a.connector, a.connector_payment_id, a.status, a.error_code,
       a.error_message, a.latency_ms, a.created_at, a.updated_at
  FROM payment_attempts a
  JOIN payments p ON p.id = a.payment_id
 WHERE p.merchant_id = %(merchant_id)s AND a.payment_id = %(payment_id)s
 ORDER BY a.number
"""

_REFUNDS_SQL = """
SELECT id, amount_minor, currency, status, reason, connector, connector_refund_id,
       failure_code, failure_message, created_at, updated_at
  FROM refunds
 WHERE merchant_id = %(merchant_id)s AND payment_id = %(payment_id)s
 ORDER BY created_at, id
"""

_AUDIT_SQL = f"""
SELECT id, action, actor, before_status, after_status, details, created_at
  FROM audit_log
 WHERE merchant_id = %(merchant_id)s AND payment_id = %(payment_id)s
 ORDER BY id
 LIMIT {_AUDIT_LIMIT}
"""

# Resolved through search_path exactly like the unqualified name in the query that follows;
# no rows when the table does not exist.
_DELIVERY_COLUMNS_SQL = """
SELECT attname AS column_name FROM pg_attribute
 WHERE attrelid = to_regclass('webhook_deliveries') AND attnum > 0 AND NOT attisdropped
"""


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


class DashboardQueries:
    """The dashboard's reads; each method takes the merchant it reads for."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _read_only(self) -> AsyncIterator[Conn]:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            # The connection is not in autocommit: this opens the transaction the block reads in,
            # and the pool rolls it back (nothing to keep) when the block ends.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            await conn.execute(f"SET LOCAL statement_timeout = '{_STATEMENT_TIMEOUT}'")
            try:
                yield conn
            finally:
                await conn.rollback()

    async def session_merchant_name(self, merchant_id: str, key_id: str) -> str | None:
        """The merchant's name while `key_id` is one of its unrevoked keys, else None."""
        async with self._read_only() as conn:
            cur = await conn.execute(
                "SELECT m.name FROM api_keys k JOIN merchants m ON m.id = k.merchant_id"
                " WHERE k.id = %s AND k.merchant_id = %s AND k.revoked_at IS NULL",
                (key_id, merchant_id))
            row = await cur.fetchone()
        return None if row is None else str(row["name"])

    async def summary(self, merchant_id: str, *, since: datetime, until: datetime,
                      bucket: timedelta) -> SummaryRows:
        """Volume and success over time, per connector and method, latency and fraud."""
        params = {"merchant_id": merchant_id, "since": since, "until": until, "bucket": bucket,
                  "origin": BUCKET_ORIGIN, "ok": list(SUCCESS_STATUSES)}
        async with self._read_only() as conn:
            series = await _fetch(conn, _SERIES_SQL, params)
            breakdown = await _fetch(conn, _BREAKDOWN_SQL, params)
            latency = await _fetch(conn, _LATENCY_SQL, params)
            decisions = await _fetch(conn, _FRAUD_DECISIONS_SQL, params)
            reasons = await _fetch(conn, _FRAUD_REASONS_SQL, params)
        groups: dict[int, list[Breakdown]] = {0: [], 1: [], 2: [], 3: []}
        blocked = 0
        for row in breakdown:
            groups[int(row["grouping_id"])].append(_breakdown(row))
            if int(row["grouping_id"]) == 3:
                blocked = int(row["blocked"])
        # GROUPING(connector, method) is a bit mask: 1 = method rolled up, 2 = connector.
        totals = groups[3][0] if groups[3] else Breakdown(None, None, 0, 0, 0, 0)
        return SummaryRows(
            since=since, until=until, bucket=bucket,
            series=[SeriesPoint(r["bucket_start"], int(r["payments"]), int(r["succeeded"]),
                                int(r["failed"]), int(r["blocked"]), int(r["volume_minor"]))
                    for r in series],
            by_connector=groups[1], by_method=groups[2], by_connector_method=groups[0],
            totals=totals, blocked=blocked,
            latency=[LatencyRow(None if int(r["grouping_id"]) else str(r["connector"]),
                                int(r["attempts"]), float(r["p50"]), float(r["p95"]),
                                float(r["p99"])) for r in latency if int(r["attempts"])],
            fraud_decisions={str(r["decision"]): int(r["payments"]) for r in decisions},
            fraud_reasons=[(str(r["code"]), str(r["message"] or ""), int(r["payments"]))
                           for r in reasons],
        )

    async def recent_payments(self, merchant_id: str, *, search: str = "",
                              status: str = "", limit: int = 50) -> list[Row]:
        """The newest payments, optionally by status and by id (prefix) or PSP reference."""
        clauses = ["merchant_id = %(merchant_id)s"]
        params: dict[str, Any] = {"merchant_id": merchant_id, "limit": limit}
        if status:
            clauses.append("status = %(status)s")
            params["status"] = status
        if search:
            clauses.append("(id LIKE %(prefix)s OR connector_payment_id = %(search)s"
                           " OR idempotency_key = %(search)s)")
            params["prefix"] = _like_prefix(search)
            params["search"] = search
        query = (f"SELECT {_PAYMENT_LIST_COLUMNS} FROM payments WHERE {' AND '.join(clauses)}"
                 " ORDER BY created_at DESC, id DESC LIMIT %(limit)s")
        async with self._read_only() as conn:
            return await _fetch(conn, query, params)

    async def payment_detail(self, merchant_id: str, payment_id: str) -> PaymentDetailRows | None:
        """One payment with its attempts, refunds, audit trail and webhook deliveries."""
        params = {"merchant_id": merchant_id, "payment_id": payment_id}
        async with self._read_only() as conn:
            found = await _fetch(conn, _PAYMENT_DETAIL_SQL, params)
            if not found:
                return None
            return PaymentDetailRows(
                payment=found[0],
                attempts=await _fetch(conn, _ATTEMPTS_SQL, params),
                refunds=await _fetch(conn, _REFUNDS_SQL, params),
                audit=await _fetch(conn, _AUDIT_SQL, params),
                webhook_deliveries=await _webhook_deliveries(conn, params),
            )


async def _fetch(conn: Conn, query: str | sql.Composable,
                 params: Mapping[str, Any]) -> list[Row]:
    cur = await conn.execute(query, params)  # type: ignore[arg-type]
    return [dict(row) for row in await cur.fetchall()]


def _breakdown(row: Row) -> Breakdown:
    return Breakdown(
        connector=row["connector"], method=row["method"], payments=int(row["payments"]),
        succeeded=int(row["succeeded"]), failed=int(row["failed"]),
        volume_minor=int(row["volume_minor"]))


async def _webhook_deliveries(conn: Conn, params: Mapping[str, Any]) -> list[Row] | None:
    """Deliveries of this payment's merchant webhooks, or None where the table is absent.

    The table is owned by the merchant-webhooks module, so only known-safe columns are read,
    by name, after looking them up; the payment id is only ever this merchant's payment (the
    sub-select), and a merchant_id column, when the table has one, is filtered too.
    """
    cur = await conn.execute(_DELIVERY_COLUMNS_SQL)
    columns = {str(row["column_name"]) for row in await cur.fetchall()}
    if "payment_id" not in columns:
        return None
    wanted = [name for name in _DELIVERY_FIELDS if name in columns]
    if not wanted:
        return None
    where = [sql.SQL("d.payment_id = (SELECT id FROM payments WHERE id = %(payment_id)s"
                     " AND merchant_id = %(merchant_id)s)")]
    if "merchant_id" in columns:
        where.append(sql.SQL("d.merchant_id = %(merchant_id)s"))
    order = sql.SQL("d.created_at DESC" if "created_at" in columns else "1")
    query = sql.SQL("SELECT {columns} FROM webhook_deliveries d WHERE {where}"
                    " ORDER BY {order} LIMIT {limit}").format(
        columns=sql.SQL(", ").join(sql.Identifier("d", name) for name in wanted),
        where=sql.SQL(" AND ").join(where), order=order, limit=sql.Literal(_DELIVERY_LIMIT))
    return await _fetch(conn, query, params)
