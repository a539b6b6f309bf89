"""Merchant webhook storage: endpoints, deliveries (the durable schedule) and their attempts.

Deliveries are claimed like outbox rows: `FOR UPDATE SKIP LOCKED`, then a lease
(`lease_owner`, `lease_until`) is committed and the row lock released, so the HTTP call happens
outside any transaction. A worker that dies mid-send leaves the lease to expire and another
worker sends again (at least once; receivers dedupe on the event id). A result is recorded
only by the lease holder, for the attempt it claimed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from server.adapters.kafka.topics import MERCHANT_WEBHOOKS_DLQ
from server.adapters.postgres.pool import Conn, postgres_errors_as_unavailable
from server.adapters.postgres.uow import OUTBOX_CHANNEL
from server.domain.ids import new_id
from server.domain.merchant_webhooks import (
    MAX_ENDPOINTS_PER_MERCHANT,
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from server.errors import (
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from server.service_layer.merchant_notifications import ClaimedDelivery, NewDelivery

__all__ = ["PostgresMerchantWebhooks"]

Row = Mapping[str, Any]

_ENDPOINT_COLUMNS: Final = (
    "id, merchant_id, url, event_types, description, enabled, secret, previous_secret,"
    " previous_secret_expires_at, created_at, deleted_at")
_DELIVERY_COLUMNS: Final = (
    "id, endpoint_id, merchant_id, event_id, event_type, payment_id, sequence, status,"
    " attempt_count, next_attempt_at, created_at, redelivery_of, last_error")

_INSERT_DELIVERY: Final = """
INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id,
                                sequence, body, status, next_attempt_at, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'PENDING', %s, %s, %s)
ON CONFLICT (endpoint_id, event_id) WHERE redelivery_of IS NULL DO NOTHING
"""

# Due, not leased, endpoint still there, and (unless it is a redelivery) no earlier unfinished
# delivery of the same payment to the same endpoint: sequence N+1 waits until N is delivered
# or dead-lettered.
_CLAIM: Final = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries AS d
    JOIN webhook_endpoints AS e ON e.id = d.endpoint_id AND e.deleted_at IS NULL
    WHERE d.status IN ('PENDING', 'RETRYING')
      AND d.next_attempt_at <= %(now)s
      AND (d.lease_until IS NULL OR d.lease_until < %(now)s)
      AND (d.redelivery_of IS NOT NULL OR NOT EXISTS (
            SELECT 1 FROM webhook_deliveries AS p
            WHERE p.endpoint_id = d.endpoint_id AND p.payment_id = d.payment_id
              AND p.status IN ('PENDING', 'RETRYING') AND p.redelivery_of IS NULL
              AND p.sequence < d.sequence))
    ORDER BY d.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries AS w
SET lease_owner = %(owner)s, lease_until = %(lease_until)s
FROM due
WHERE w.id = due.id
RETURNING w.id
"""

_FINISH: Final = """
UPDATE webhook_deliveries
SET status = %(status)s, attempt_count = attempt_count + 1, next_attempt_at = %(next_at)s,
    last_error = %(error)s, lease_owner = NULL, lease_until = NULL, updated_at = %(now)s,
    finished_at = %(finished_at)s
WHERE id = %(id)s AND lease_owner = %(owner)s AND attempt_count = %(attempts_before)s
RETURNING id
"""

_INSERT_ATTEMPT: Final = """
INSERT INTO webhook_delivery_attempts (delivery_id, number, attempted_at, http_status, error,
                                       latency_ms)
VALUES (%s, %s, %s, %s, %s, %s)
"""

_INSERT_OUTBOX: Final = """
INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (event_id) DO NOTHING
"""


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes | bytearray | memoryview)
    return bytes(value)


def _endpoint(row: Row) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"], merchant_id=row["merchant_id"], url=row["url"],
        event_types=tuple(row["event_types"] or ()), description=row["description"],
        enabled=bool(row["enabled"]), created_at=row["created_at"], secret=row["secret"],
        previous_secret=row["previous_secret"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
        deleted_at=row["deleted_at"],
    )


def _delivery(row: Row, attempts: Sequence[DeliveryAttempt] = ()) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"], endpoint_id=row["endpoint_id"], merchant_id=row["merchant_id"],
        event_id=row["event_id"], event_type=row["event_type"], payment_id=row["payment_id"],
        sequence=int(row["sequence"]), status=DeliveryStatus(row["status"]),
        attempt_count=int(row["attempt_count"]), next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"], redelivery_of=row["redelivery_of"],
        last_error=row["last_error"], attempts=tuple(attempts),
    )


def _attempt(row: Row) -> DeliveryAttempt:
    return DeliveryAttempt(number=int(row["number"]), at=row["attempted_at"],
                           http_status=int(row["http_status"]), error=row["error"],
                           latency_ms=int(row["latency_ms"]))


def _owned(kind: str, row: Row | None, resource_id: str, merchant_id: str) -> Row:
    if row is None:
        raise NotFound(f"{kind} {resource_id} not found")
    if row["merchant_id"] != merchant_id:
        raise PermissionDenied(f"{kind} {resource_id} belongs to another merchant")
    return row


def encode_page_token(created_at: datetime, delivery_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{delivery_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created, delivery_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), delivery_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationError("page_token",
                              "is not a token returned by ListWebhookDeliveries") from exc


class PostgresMerchantWebhooks:
    """Every query the webhook RPCs and the notifier need; each method is one transaction."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with (postgres_errors_as_unavailable(), self._pool.connection() as conn,
                    conn.transaction()):
            yield conn

    # --- endpoints --------------------------------------------------------------------------
    async def create_endpoint(self, endpoint: WebhookEndpoint, idempotency_key: str,
                              request_hash: str) -> WebhookEndpoint:
        """Insert `endpoint`, or return the one this idempotency key already created."""
        async with self._transaction() as conn:
            # Serialises creates per merchant, so the endpoint limit holds under races.
            await conn.execute("SELECT id FROM merchants WHERE id = %s FOR UPDATE",
                               (endpoint.merchant_id,))
            cur = await conn.execute(
                "INSERT INTO idempotency_records (merchant_id, operation, idempotency_key,"
                " request_hash, resource_id) VALUES (%s, 'create_webhook_endpoint', %s, %s,"
                " %s) ON CONFLICT DO NOTHING RETURNING resource_id",
                (endpoint.merchant_id, idempotency_key, request_hash, endpoint.id))
            if await cur.fetchone() is None:
                cur = await conn.execute(
                    "SELECT request_hash, resource_id FROM idempotency_records"
                    " WHERE merchant_id = %s AND operation = 'create_webhook_endpoint'"
                    " AND idempotency_key = %s", (endpoint.merchant_id, idempotency_key))
                record = await cur.fetchone()
                assert record is not None
                if record["request_hash"] != request_hash:
                    raise IdempotencyConflict(
                        "idempotency_key was already used with a different request")
                return await self._endpoint_row(conn, endpoint.merchant_id,
                                                str(record["resource_id"]))
            cur = await conn.execute(
                "SELECT count(*) AS n FROM webhook_endpoints"
                " WHERE merchant_id = %s AND deleted_at IS NULL", (endpoint.merchant_id,))
            count = await cur.fetchone()
            if count is not None and _int(count["n"]) >= MAX_ENDPOINTS_PER_MERCHANT:
                raise IllegalTransition(
                    f"a merchant can have at most {MAX_ENDPOINTS_PER_MERCHANT} webhook "
                    "endpoints; delete one first")
            cur = await conn.execute(
                "INSERT INTO webhook_endpoints (id, merchant_id, url, event_types,"
                " description, enabled, secret, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, true, %s, %s, %s)"
                f" RETURNING {_ENDPOINT_COLUMNS}",
                (endpoint.id, endpoint.merchant_id, endpoint.url, list(endpoint.event_types),
                 endpoint.description, endpoint.secret, endpoint.created_at,
                 endpoint.created_at))
            row = await cur.fetchone()
            assert row is not None
            return _endpoint(row)

    async def _endpoint_row(self, conn: Conn, merchant_id: str, endpoint_id: str,
                            *, for_update: bool = False) -> WebhookEndpoint:
        lock = " FOR UPDATE" if for_update else ""
        cur = await conn.execute(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = %s{lock}",
            (endpoint_id,))
        return _endpoint(_owned("webhook endpoint", await cur.fetchone(), endpoint_id,
                                merchant_id))

    async def get_endpoint(self, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
        """The merchant's endpoint (deleted ones included)."""
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            return await self._endpoint_row(conn, merchant_id, endpoint_id)

    async def list_endpoints(self, merchant_id: str) -> list[WebhookEndpoint]:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
                " WHERE merchant_id = %s AND deleted_at IS NULL ORDER BY created_at, id",
                (merchant_id,))
            return [_endpoint(row) for row in await cur.fetchall()]

    async def delete_endpoint(self, merchant_id: str, endpoint_id: str,
                              now: datetime) -> WebhookEndpoint:
        """Soft delete: the endpoint stops receiving; its deliveries stay queryable."""
        async with self._transaction() as conn:
            current = await self._endpoint_row(conn, merchant_id, endpoint_id,
                                               for_update=True)
            if current.deleted_at is not None:
                raise NotFound(f"webhook endpoint {endpoint_id} not found")
            cur = await conn.execute(
                "UPDATE webhook_endpoints SET deleted_at = %s, enabled = false,"
                f" updated_at = %s WHERE id = %s RETURNING {_ENDPOINT_COLUMNS}",
                (now, now, endpoint_id))
            row = await cur.fetchone()
            assert row is not None
            # Unfinished deliveries stay listable but are never due again.
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = NULL, lease_owner = NULL,"
                " lease_until = NULL, updated_at = %s"
                " WHERE endpoint_id = %s AND status IN ('PENDING', 'RETRYING')",
                (now, endpoint_id))
            return _endpoint(row)

    async def rotate_secret(self, merchant_id: str, endpoint_id: str, new_secret: str,
                            previous_expires_at: datetime, now: datetime) -> WebhookEndpoint:
        """The current secret becomes the previous one (replacing any older previous one)."""
        async with self._transaction() as conn:
            current = await self._endpoint_row(conn, merchant_id, endpoint_id,
                                               for_update=True)
            if current.deleted_at is not None:
                raise NotFound(f"webhook endpoint {endpoint_id} not found")
            cur = await conn.execute(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = %s,"
                " previous_secret_expires_at = %s, updated_at = %s"
                f" WHERE id = %s RETURNING {_ENDPOINT_COLUMNS}",
                (new_secret, previous_expires_at, now, endpoint_id))
            row = await cur.fetchone()
            assert row is not None
            return _endpoint(row)

    async def endpoints_for_merchants(self, merchant_ids: Sequence[str]
                                      ) -> dict[str, list[WebhookEndpoint]]:
        """Enabled endpoints by merchant (the fan-out's lookup)."""
        found: dict[str, list[WebhookEndpoint]] = {}
        if not merchant_ids:
            return found
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = ANY(%s)"
                " AND deleted_at IS NULL AND enabled", (list(merchant_ids),))
            for row in await cur.fetchall():
                endpoint = _endpoint(row)
                found.setdefault(endpoint.merchant_id, []).append(endpoint)
        return found

    # --- deliveries -------------------------------------------------------------------------
    async def insert_deliveries(self, deliveries: Sequence[NewDelivery], now: datetime) -> int:
        """Insert fan-out rows, skipping (endpoint, event) pairs that exist; returns the new."""
        if not deliveries:
            return 0
        async with self._transaction() as conn, conn.cursor() as cur:
            inserted = 0
            for d in deliveries:
                await cur.execute(_INSERT_DELIVERY, (
                    new_id("whd"), d.endpoint_id, d.merchant_id, d.event_id, d.event_type,
                    d.payment_id, d.sequence, d.body, now, now, now))
                inserted += max(cur.rowcount, 0)
        return inserted

    async def claim_due(self, *, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> list[ClaimedDelivery]:
        """Lease up to `limit` due deliveries (committed before returning)."""
        async with self._transaction() as conn:
            cur = await conn.execute(_CLAIM, {"now": now, "owner": owner,
                                              "lease_until": lease_until, "limit": limit})
            ids = [str(row["id"]) for row in await cur.fetchall()]
            if not ids:
                return []
            cur = await conn.execute(
                f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY_COLUMNS.split(','))},"
                " d.body, e.url, e.event_types, e.description, e.enabled, e.secret,"
                " e.previous_secret, e.previous_secret_expires_at,"
                " e.created_at AS endpoint_created_at, e.deleted_at"
                " FROM webhook_deliveries AS d JOIN webhook_endpoints AS e"
                " ON e.id = d.endpoint_id WHERE d.id = ANY(%s)"
                " ORDER BY d.next_attempt_at, d.sequence", (ids,))
            rows = await cur.fetchall()
        claimed = []
        for row in rows:
            endpoint = _endpoint({**row, "id": row["endpoint_id"],
                                  "created_at": row["endpoint_created_at"]})
            claimed.append(ClaimedDelivery(delivery=_delivery(row), endpoint=endpoint,
                                           body=_bytes(row["body"]), lease_owner=owner))
        return claimed

    async def finish_attempt(self, claim: ClaimedDelivery, attempt: DeliveryAttempt, *,
                             status: DeliveryStatus, next_attempt_at: datetime | None,
                             now: datetime, dead_letter: bytes | None = None) -> bool:
        """Record the attempt and the delivery's new state; False if the lease was lost."""
        delivery = claim.delivery
        finished = status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD_LETTERED)
        async with self._transaction() as conn:
            cur = await conn.execute(_FINISH, {
                "status": status.value, "next_at": next_attempt_at,
                "error": attempt.error[:500], "now": now,
                "finished_at": now if finished else None, "id": delivery.id,
                "owner": claim.lease_owner, "attempts_before": delivery.attempt_count})
            if await cur.fetchone() is None:
                return False
            await conn.execute(_INSERT_ATTEMPT, (
                delivery.id, attempt.number, attempt.at, attempt.http_status,
                attempt.error[:500], attempt.latency_ms))
            if dead_letter is not None:
                await conn.execute(_INSERT_OUTBOX, (
                    delivery.id, MERCHANT_WEBHOOKS_DLQ, delivery.merchant_id,
                    "webhook.dead_lettered", dead_letter, now))
                await conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
        return True

    async def release(self, claims: Sequence[ClaimedDelivery]) -> None:
        """Give back leases not used (shutting down before sending)."""
        if not claims:
            return
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            for claim in claims:
                await conn.execute(
                    "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL"
                    " WHERE id = %s AND lease_owner = %s",
                    (claim.delivery.id, claim.lease_owner))

    async def get_delivery(self, merchant_id: str, delivery_id: str) -> WebhookDelivery:
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = %s",
                (delivery_id,))
            row = _owned("webhook delivery", await cur.fetchone(), delivery_id, merchant_id)
            return (await self._with_attempts(conn, [row]))[0]

    async def list_deliveries(self, merchant_id: str, *, endpoint_id: str, payment_id: str,
                              page_size: int, page_token: str
                              ) -> tuple[list[WebhookDelivery], str]:
        """Newest first, keyset-paginated on (created_at, id), with their attempts."""
        clauses = ["merchant_id = %(merchant_id)s"]
        params: dict[str, Any] = {"merchant_id": merchant_id, "limit": page_size + 1}
        if endpoint_id:
            clauses.append("endpoint_id = %(endpoint_id)s")
            params["endpoint_id"] = endpoint_id
        if payment_id:
            clauses.append("payment_id = %(payment_id)s")
            params["payment_id"] = payment_id
        if page_token:
            after_created, after_id = decode_page_token(page_token)
            clauses.append("(created_at, id) < (%(after_created)s, %(after_id)s)")
            params.update(after_created=after_created, after_id=after_id)
        async with postgres_errors_as_unavailable(), self._pool.connection() as conn:
            if endpoint_id:
                await self._endpoint_row(conn, merchant_id, endpoint_id)  # NotFound / denied
            cur = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
                f" WHERE {' AND '.join(clauses)}"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s", params)
            rows = await cur.fetchall()
            deliveries = await self._with_attempts(conn, rows[:page_size])
        token = ""
        if len(rows) > page_size and deliveries:
            token = encode_page_token(deliveries[-1].created_at, deliveries[-1].id)
        return deliveries, token

    async def _with_attempts(self, conn: Conn, rows: Sequence[Row]) -> list[WebhookDelivery]:
        attempts: dict[str, list[DeliveryAttempt]] = {str(row["id"]): [] for row in rows}
        if attempts:
            cur = await conn.execute(
                "SELECT * FROM webhook_delivery_attempts WHERE delivery_id = ANY(%s)"
                " ORDER BY delivery_id, number", (list(attempts),))
            for row in await cur.fetchall():
                attempts[str(row["delivery_id"])].append(_attempt(row))
        return [_delivery(row, attempts[str(row["id"])]) for row in rows]

    async def redeliver(self, merchant_id: str, delivery_id: str, idempotency_key: str,
                        now: datetime) -> WebhookDelivery:
        """A new PENDING delivery of the same event and body to the same endpoint."""
        request_hash = json.dumps({"delivery_id": delivery_id})
        new_delivery_id = new_id("whd")
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT d.*, e.deleted_at FROM webhook_deliveries AS d"
                " JOIN webhook_endpoints AS e ON e.id = d.endpoint_id WHERE d.id = %s",
                (delivery_id,))
            original = _owned("webhook delivery", await cur.fetchone(), delivery_id,
                              merchant_id)
            cur = await conn.execute(
                "INSERT INTO idempotency_records (merchant_id, operation, idempotency_key,"
                " request_hash, resource_id) VALUES (%s, 'redeliver_webhook', %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING resource_id",
                (merchant_id, idempotency_key, request_hash, new_delivery_id))
            if await cur.fetchone() is None:
                cur = await conn.execute(
                    "SELECT request_hash, resource_id FROM idempotency_records"
                    " WHERE merchant_id = %s AND operation = 'redeliver_webhook'"
                    " AND idempotency_key = %s", (merchant_id, idempotency_key))
                record = await cur.fetchone()
                assert record is not None
                if record["request_hash"] != request_hash:
                    raise IdempotencyConflict(
                        "idempotency_key was already used with a different request")
                new_delivery_id = str(record["resource_id"])
            else:
                if original["deleted_at"] is not None:
                    raise IllegalTransition(
                        f"webhook endpoint {original['endpoint_id']} was deleted")
                await conn.execute(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id,"
                    " event_type, payment_id, sequence, body, status, next_attempt_at,"
                    " redelivery_of, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'PENDING', %s, %s, %s, %s)",
                    (new_delivery_id, original["endpoint_id"], merchant_id,
                     original["event_id"], original["event_type"], original["payment_id"],
                     original["sequence"], original["body"], now, delivery_id, now, now))
            cur = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = %s",
                (new_delivery_id,))
            row = await cur.fetchone()
            assert row is not None
            return (await self._with_attempts(conn, [row]))[0]
