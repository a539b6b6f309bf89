"""Payment repository: payments with their attempts and refunds, idempotency records, listing."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from server.adapters.postgres.pool import Conn
from server.adapters.postgres.rows import (
    attempt_from_row,
    attempt_params,
    payment_from_row,
    payment_params,
    refund_from_row,
    refund_params,
)
from server.domain.payment import Payment
from server.domain.status import PaymentStatus
from server.errors import NotFound, PermissionDenied, ValidationError
from server.service_layer.commands import ListPayments

__all__ = ["PostgresPaymentRepository"]

_PAYMENT_COLUMNS = (
    "id, merchant_id, idempotency_key, amount_minor, currency, status, method, customer, "
    "ip_address, country, description, return_url, metadata, preferred_connector, connector, "
    "connector_payment_id, redirect_url, fraud, routing, amount_refunded_minor, failure_code, "
    "failure_message, version, next_sync_at, created_at, updated_at"
)
_INSERT_PAYMENT = (
    f"INSERT INTO payments ({_PAYMENT_COLUMNS}) VALUES ("
    + ", ".join(f"%({c.strip()})s" for c in _PAYMENT_COLUMNS.split(","))
    + ")"
)
_MUTABLE = ("status", "connector", "connector_payment_id", "redirect_url", "fraud", "routing",
            "amount_refunded_minor", "failure_code", "failure_message", "version",
            "next_sync_at", "updated_at")
_UPDATE_PAYMENT = (
    "UPDATE payments SET " + ", ".join(f"{c} = %({c})s" for c in _MUTABLE) + " WHERE id = %(id)s"
)
# Checked in the same pipeline as the rest of the commit (see 0006_optimistic_writes.sql).
_UPDATE_PAYMENT_IF_VERSION = (
    f"WITH updated AS ({_UPDATE_PAYMENT} AND version = %(expected_version)s RETURNING 1)"
    " SELECT triveni_expect_updated((SELECT count(*) FROM updated), 'payment ' || %(id)s)"
)
_UPSERT_ATTEMPT = """
INSERT INTO payment_attempts (id, payment_id, number, connector, connector_payment_id, status,
    error_code, error_message, latency_ms, references_json, created_at, updated_at)
VALUES (%(id)s, %(payment_id)s, %(number)s, %(connector)s, %(connector_payment_id)s, %(status)s,
    %(error_code)s, %(error_message)s, %(latency_ms)s, %(references_json)s, %(created_at)s,
    %(updated_at)s)
ON CONFLICT (id) DO UPDATE SET connector_payment_id = EXCLUDED.connector_payment_id,
    status = EXCLUDED.status, error_code = EXCLUDED.error_code,
    error_message = EXCLUDED.error_message, latency_ms = EXCLUDED.latency_ms,
    references_json = EXCLUDED.references_json, updated_at = EXCLUDED.updated_at
"""
_UPSERT_REFUND = """
INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, reason,
    connector, connector_refund_id, failure_code, failure_message, created_at, updated_at)
VALUES (%(id)s, %(payment_id)s, %(merchant_id)s, %(amount_minor)s, %(currency)s, %(status)s,
    %(reason)s, %(connector)s, %(connector_refund_id)s, %(failure_code)s, %(failure_message)s,
    %(created_at)s, %(updated_at)s)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
    connector_refund_id = EXCLUDED.connector_refund_id, failure_code = EXCLUDED.failure_code,
    failure_message = EXCLUDED.failure_message, updated_at = EXCLUDED.updated_at
"""


# Refunds exist only once a payment has succeeded; other payments skip that query.
_MAY_HAVE_REFUNDS = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED,
                               PaymentStatus.REFUNDED})


class PostgresPaymentRepository:
    """Works inside the caller's transaction (the unit of work owns commit/rollback).

    `add` and `save` queue their writes; the unit of work `flush`es them in its commit
    pipeline, so a transaction's writes travel to PostgreSQL together (one round trip).
    Nothing in a use case reads a payment back after writing it in the same transaction.
    """

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.seen: dict[str, Payment] = {}
        self.wrote = False  # any write issued or queued (the unit of work must not COMMIT blind)
        # (INSERT | UPDATE | children only, payment, extra parameters)
        self._queued: list[tuple[str, Payment, dict[str, Any]]] = []

    async def add(self, payment: Payment) -> None:
        self._queue(_INSERT_PAYMENT, payment)

    async def save(self, payment: Payment) -> None:
        self._queue(_UPDATE_PAYMENT, payment)

    async def save_if_version(self, payment: Payment, expected_version: int) -> None:
        """Queued first-class: the check runs in the commit pipeline, before the other writes,
        and aborts the transaction (ConcurrentUpdate at commit) if the row moved on."""
        self._queue(_UPDATE_PAYMENT_IF_VERSION, payment, expected_version=expected_version)

    def _queue(self, statement: str, payment: Payment, **extra: Any) -> None:
        self.wrote = True
        self._queued.append((statement, payment, extra))
        self.seen[payment.id] = payment

    async def flush(self) -> None:
        """Write everything queued, payments first, then their attempts and refunds (the row
        values are read now, so they are the payment as committed)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        attempts: dict[str, dict[str, Any]] = {}
        refunds: dict[str, dict[str, Any]] = {}
        async with self._conn.cursor() as cur:
            for statement, payment, extra in queued:
                if statement:
                    await cur.execute(statement, {**payment_params(payment), **extra})
                attempts.update((a.id, attempt_params(a)) for a in payment.attempts)
                refunds.update((r.id, refund_params(r)) for r in payment.refunds)
            if attempts:
                await cur.executemany(_UPSERT_ATTEMPT, list(attempts.values()))
            if refunds:
                await cur.executemany(_UPSERT_REFUND, list(refunds.values()))

    async def get(self, merchant_id: str, payment_id: str, *, for_update: bool = False) -> Payment:
        """The merchant's payment; NotFound if absent, PermissionDenied if another merchant's."""
        payment = await self.get_any(payment_id, for_update=for_update)
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        if payment.merchant_id != merchant_id:
            raise PermissionDenied(f"payment {payment_id} belongs to another merchant")
        return payment

    async def get_any(self, payment_id: str, *, for_update: bool = False) -> Payment | None:
        """A payment regardless of merchant (webhooks, workers)."""
        lock = " FOR UPDATE" if for_update else ""
        cur = await self._conn.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE id = %s{lock}", (payment_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        payment = payment_from_row(row)
        cur = await self._conn.execute(
            "SELECT * FROM payment_attempts WHERE payment_id = %s ORDER BY number", (payment_id,))
        payment.attempts = [attempt_from_row(r) for r in await cur.fetchall()]
        if payment.status in _MAY_HAVE_REFUNDS:
            cur = await self._conn.execute(
                "SELECT * FROM refunds WHERE payment_id = %s ORDER BY created_at, id",
                (payment_id,))
            payment.refunds = [refund_from_row(r) for r in await cur.fetchall()]
        self.seen[payment.id] = payment
        return payment

    async def find_by_connector_reference(self, connector: str, reference: str) -> str | None:
        """Our payment id for a PSP reference of one of its attempts (or the attempt id itself)."""
        cur = await self._conn.execute(
            "SELECT payment_id FROM payment_attempts WHERE connector = %s"
            " AND (connector_payment_id = %s OR id = %s OR payment_id = %s) LIMIT 1",
            (connector, reference, reference, reference))
        row = await cur.fetchone()
        return None if row is None else str(row["payment_id"])

    async def find_account_for_reference(self, reference: str) -> tuple[str, str] | None:
        """(connector, PSP reference) of the newest attempt whose PSP reference, id or payment
        id matches `reference`."""
        cur = await self._conn.execute(
            "SELECT connector, connector_payment_id, id FROM payment_attempts"
            " WHERE connector_payment_id = %s OR id = %s OR payment_id = %s"
            " ORDER BY number DESC LIMIT 1", (reference, reference, reference))
        row = await cur.fetchone()
        if row is None:
            return None
        return str(row["connector"]), str(row["connector_payment_id"] or row["id"])

    async def attempt_references(self, psp_reference: str) -> dict[str, str] | None:
        """The stored PSP references of the attempt with this PSP reference (hosted checkout)."""
        cur = await self._conn.execute(
            "SELECT references_json FROM payment_attempts WHERE connector_payment_id = %s"
            " ORDER BY created_at DESC LIMIT 1", (psp_reference,))
        row = await cur.fetchone()
        if row is None:
            return None
        stored: dict[str, object] = row["references_json"]  # type: ignore[assignment]
        return {str(k): str(v) for k, v in stored.items()}

    async def find_by_refund_reference(self, connector: str, reference: str) -> str | None:
        cur = await self._conn.execute(
            "SELECT payment_id FROM refunds WHERE connector = %s"
            " AND (connector_refund_id = %s OR id = %s) LIMIT 1", (connector, reference, reference))
        row = await cur.fetchone()
        return None if row is None else str(row["payment_id"])

    async def claim_idempotency_key(self, merchant_id: str, operation: str, key: str,
                                    request_hash: str, resource_id: str) -> tuple[str, str] | None:
        """Record key → resource. None if we won; else the (request_hash, resource_id) stored.

        A concurrent duplicate blocks on the unique index until the winner commits, then sees
        its row: PostgreSQL, not an in-memory lock, makes "one key → one payment" true across
        processes.
        """
        self.wrote = True
        cur = await self._conn.execute(
            "INSERT INTO idempotency_records (merchant_id, operation, idempotency_key,"
            " request_hash, resource_id) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING resource_id",
            (merchant_id, operation, key, request_hash, resource_id))
        if await cur.fetchone() is not None:
            return None
        cur = await self._conn.execute(
            "SELECT request_hash, resource_id FROM idempotency_records"
            " WHERE merchant_id = %s AND operation = %s AND idempotency_key = %s",
            (merchant_id, operation, key))
        row = await cur.fetchone()
        assert row is not None  # the conflicting row is committed by now
        return str(row["request_hash"]), str(row["resource_id"])

    async def list_page(self, query: ListPayments) -> tuple[list[Payment], str]:
        """Newest first, keyset-paginated on (created_at, id)."""
        clauses = ["merchant_id = %(merchant_id)s"]
        params: dict[str, Any] = {"merchant_id": query.merchant_id,
                                  "limit": query.page_size + 1}
        if query.status is not None:
            clauses.append("status = %(status)s")
            params["status"] = query.status.value
        if query.connector:
            clauses.append("connector = %(connector)s")
            params["connector"] = query.connector
        if query.created_from is not None:
            clauses.append("created_at >= %(created_from)s")
            params["created_from"] = query.created_from
        if query.created_to is not None:
            clauses.append("created_at < %(created_to)s")
            params["created_to"] = query.created_to
        if query.page_token:
            after_created, after_id = _decode_page_token(query.page_token)
            clauses.append("(created_at, id) < (%(after_created)s, %(after_id)s)")
            params.update(after_created=after_created, after_id=after_id)
        cur = await self._conn.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, id DESC LIMIT %(limit)s", params)
        rows = await cur.fetchall()
        payments = [payment_from_row(r) for r in rows[: query.page_size]]
        await self._load_children(payments)
        token = ""
        if len(rows) > query.page_size and payments:
            last = payments[-1]
            token = _encode_page_token(last.created_at, last.id)
        return payments, token

    async def _load_children(self, payments: list[Payment]) -> None:
        if not payments:
            return
        by_id = {p.id: p for p in payments}
        ids = list(by_id)
        cur = await self._conn.execute(
            "SELECT * FROM payment_attempts WHERE payment_id = ANY(%s) ORDER BY number", (ids,))
        for row in await cur.fetchall():
            by_id[str(row["payment_id"])].attempts.append(attempt_from_row(row))
        cur = await self._conn.execute(
            "SELECT * FROM refunds WHERE payment_id = ANY(%s) ORDER BY created_at, id", (ids,))
        for row in await cur.fetchall():
            by_id[str(row["payment_id"])].refunds.append(refund_from_row(row))

    async def due_for_sync(self, now: datetime, limit: int) -> list[str]:
        """Payments whose status-sync time has come, locked so parallel workers split them."""
        cur = await self._conn.execute(
            "SELECT id FROM payments WHERE next_sync_at <= %s ORDER BY next_sync_at"
            " LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit))
        return [str(r["id"]) for r in await cur.fetchall()]


def _encode_page_token(created_at: datetime, payment_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{payment_id}".encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created, payment_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), payment_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationError("page_token", "is not a token returned by ListPayments") from exc
