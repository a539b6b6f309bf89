"""PostgreSQL side of the fraud engine: blocklist, versioned settings, payment-history facts.

Every function takes an open `psycopg.AsyncConnection`, so the caller owns the transaction
(CreatePayment screens inside its own unit of work). Functions that may hit a constraint run
in a savepoint, so a conflict never poisons the caller's transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from server.domain.fraud import (
    HISTORY_LIMIT,
    BlocklistEntry,
    BlocklistHit,
    BlocklistKind,
    BlocklistPage,
    CustomerHistory,
    FraudInput,
    FraudSettings,
    StoredFraudSettings,
    instrument_of,
    normalize_blocklist_value,
    normalize_input,
)
from server.domain.fraud.model import StoredFacts
from server.errors import IllegalTransition, NotFound, ValidationError

__all__ = [
    "MAX_PAGE_SIZE",
    "SUCCESSFUL_STATUSES",
    "PostgresFraudRepository",
    "add_blocklist_entry",
    "customer_history",
    "distinct_instruments",
    "find_blocklist_hits",
    "get_settings",
    "list_blocklist_entries",
    "recent_failures",
    "remove_blocklist_entry",
    "save_settings",
    "settings_history",
]

Conn = psycopg.AsyncConnection[Any]
MAX_PAGE_SIZE = 200
SUCCESSFUL_STATUSES = ("SUCCEEDED", "PARTIALLY_REFUNDED", "REFUNDED")

_LIVE = "removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
_ENTRY_COLUMNS = "id, merchant_id, kind, value, reason, source, created_at, expires_at, removed_at"
# The instrument of a stored payment, computed exactly as domain.fraud.instrument_of does.
_INSTRUMENT_SQL = (
    "CASE WHEN coalesce(method->>'upi_vpa', '') <> '' THEN 'vpa:' || lower(method->>'upi_vpa') "
    "WHEN coalesce(method->>'card_token', '') <> '' THEN 'card:' || (method->>'card_token') END"
)


def _entry(row: Mapping[str, Any]) -> BlocklistEntry:
    return BlocklistEntry(
        id=row["id"], merchant_id=row["merchant_id"], kind=BlocklistKind(row["kind"]),
        value=row["value"], reason=row["reason"], created_at=row["created_at"],
        expires_at=row["expires_at"], removed_at=row["removed_at"], source=row["source"],
    )


# --- blocklist ------------------------------------------------------------------------------

def _blocklist_pairs(inp: FraudInput) -> list[tuple[BlocklistKind, str]]:
    """(kind, value) of every identifier of a normalised payment that a blocklist can name."""
    return [
        (kind, value) for kind, value in (
            (BlocklistKind.VPA, inp.vpa), (BlocklistKind.EMAIL, inp.email),
            (BlocklistKind.PHONE, inp.phone), (BlocklistKind.CARD_TOKEN, inp.card_token),
            (BlocklistKind.CUSTOMER_ID, inp.customer_id),
            (BlocklistKind.CARD_BIN, inp.card_bin[:6]), (BlocklistKind.CARD_BIN, inp.card_bin[:8]),
        ) if value
    ]


async def find_blocklist_hits(conn: Conn, merchant_id: str, inp: FraudInput
                              ) -> list[BlocklistHit]:
    """Live blocklist entries matching any identifier of the payment (IP by CIDR containment)."""
    inp = normalize_input(inp)
    pairs = _blocklist_pairs(inp)
    if not pairs and not inp.ip:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT id, kind, value, reason FROM fraud_blocklist "
            f"WHERE merchant_id = %(merchant)s AND {_LIVE}"
            f" AND (kind, value) IN (SELECT * FROM unnest(%(kinds)s::text[], %(values)s::text[]))"
            f" UNION "
            f"SELECT id, kind, value, reason FROM fraud_blocklist "
            f"WHERE merchant_id = %(merchant)s AND {_LIVE} AND kind = 'IP'"
            f" AND network >>= %(ip)s::inet "
            f"ORDER BY kind, value",
            {"merchant": merchant_id, "kinds": [str(k) for k, _ in pairs],
             "values": [v for _, v in pairs], "ip": inp.ip or None},
        )
        rows = await cur.fetchall()
    return [BlocklistHit(BlocklistKind(r["kind"]), r["value"], r["reason"], r["id"])
            for r in rows]


async def add_blocklist_entry(conn: Conn, merchant_id: str, kind: BlocklistKind, value: str, *,
                              reason: str = "", ttl: timedelta | None = None,
                              source: str = "") -> BlocklistEntry:
    """Add (or refresh: new reason and expiry) the active entry for (kind, value)."""
    if ttl is not None and ttl <= timedelta(0):
        raise ValidationError("ttl_seconds", "must be positive (0 means never expires)")
    normalized = normalize_blocklist_value(kind, value)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # An expired entry no longer blocks; retire it so the new one can take its place.
        await cur.execute(
            "UPDATE fraud_blocklist SET removed_at = expires_at "
            "WHERE merchant_id = %s AND kind = %s AND value = %s AND removed_at IS NULL "
            "AND expires_at <= now()",
            (merchant_id, str(kind), normalized),
        )
        await cur.execute(
            f"INSERT INTO fraud_blocklist (id, merchant_id, kind, value, reason, source, "
            f"expires_at) VALUES (%(id)s, %(merchant)s, %(kind)s, %(value)s, %(reason)s, "
            f"%(source)s, now() + %(ttl)s::interval) "
            f"ON CONFLICT (merchant_id, kind, value) WHERE removed_at IS NULL DO UPDATE "
            f"SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at "
            f"RETURNING {_ENTRY_COLUMNS}",
            {"id": "fbl_" + secrets.token_hex(12), "merchant": merchant_id, "kind": str(kind),
             "value": normalized, "reason": reason, "source": source, "ttl": ttl},
        )
        row = await cur.fetchone()
    assert row is not None
    return _entry(row)


async def remove_blocklist_entry(conn: Conn, merchant_id: str, entry_id: str
                                 ) -> BlocklistEntry:
    """Retire an entry (idempotent). NotFound when the merchant has no such entry."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"UPDATE fraud_blocklist SET removed_at = coalesce(removed_at, now()) "
            f"WHERE merchant_id = %s AND id = %s RETURNING {_ENTRY_COLUMNS}",
            (merchant_id, entry_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"blocklist entry {entry_id} not found")
    return _entry(row)


def _encode_token(created_at: datetime, entry_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), entry_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, entry_id = json.loads(raw)
        return datetime.fromisoformat(created), str(entry_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValidationError("page_token", "is not a token this API returned") from exc


async def list_blocklist_entries(conn: Conn, merchant_id: str, *,
                                 kind: BlocklistKind | None = None, page_size: int = 50,
                                 page_token: str = "", include_inactive: bool = False
                                 ) -> BlocklistPage:
    """Newest first; live entries only unless `include_inactive`."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    size = page_size or 50
    clauses = ["merchant_id = %(merchant)s"]
    params: dict[str, Any] = {"merchant": merchant_id, "limit": size + 1}
    if not include_inactive:
        clauses.append(_LIVE)
    if kind is not None:
        clauses.append("kind = %(kind)s")
        params["kind"] = str(kind)
    if page_token:
        params["after_created"], params["after_id"] = _decode_token(page_token)
        clauses.append("(created_at, id) < (%(after_created)s, %(after_id)s)")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM fraud_blocklist WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            params,
        )
        rows = await cur.fetchall()
    entries = tuple(_entry(r) for r in rows[:size])
    next_token = ""
    if len(rows) > size:
        last = entries[-1]
        next_token = _encode_token(last.created_at, last.id)
    return BlocklistPage(entries, next_token)


# --- settings -------------------------------------------------------------------------------

def _stored(merchant_id: str, row: Mapping[str, Any]) -> StoredFraudSettings:
    return StoredFraudSettings(
        merchant_id=merchant_id, version=int(row["version"]),
        settings=FraudSettings.from_dict(row["settings"]), updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def get_settings(conn: Conn, merchant_id: str) -> StoredFraudSettings:
    """The merchant's latest settings; the defaults as version 0 when never saved."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT version, settings, updated_at, updated_by FROM fraud_settings "
            "WHERE merchant_id = %s ORDER BY version DESC LIMIT 1",
            (merchant_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return StoredFraudSettings(merchant_id, 0, FraudSettings())
    return _stored(merchant_id, row)


async def save_settings(conn: Conn, merchant_id: str, settings: FraudSettings, *,
                        expected_version: int, updated_by: str = "") -> StoredFraudSettings:
    """Store a new version. IllegalTransition when `expected_version` is not the current one."""
    settings.validate("settings.")
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO fraud_settings (merchant_id, version, settings, updated_by) "
                "SELECT %(merchant)s, %(expected)s + 1, %(settings)s, %(by)s "
                "WHERE coalesce((SELECT max(version) FROM fraud_settings "
                "                WHERE merchant_id = %(merchant)s), 0) = %(expected)s "
                "RETURNING version, settings, updated_at, updated_by",
                {"merchant": merchant_id, "expected": expected_version,
                 "settings": Jsonb(settings.to_dict()), "by": updated_by},
            )
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation as exc:  # a concurrent writer took that version
        raise IllegalTransition(
            f"fraud settings changed concurrently (expected version {expected_version})"
        ) from exc
    if row is None:
        current = await get_settings(conn, merchant_id)
        raise IllegalTransition(
            f"fraud settings are at version {current.version}, not the expected "
            f"{expected_version}; re-read and retry")
    return _stored(merchant_id, row)


async def settings_history(conn: Conn, merchant_id: str, *, limit: int = 20
                           ) -> list[StoredFraudSettings]:
    """Newest first: who changed what, when."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT version, settings, updated_at, updated_by FROM fraud_settings "
            "WHERE merchant_id = %s ORDER BY version DESC LIMIT %s",
            (merchant_id, limit),
        )
        rows = await cur.fetchall()
    return [_stored(merchant_id, r) for r in rows]


# --- payment history ------------------------------------------------------------------------

async def customer_history(conn: Conn, merchant_id: str, customer_id: str, *,
                           instrument: str = "") -> CustomerHistory:
    """The customer's recent successful payments (up to HISTORY_LIMIT): how many, their
    median amount, and whether any used `instrument` (as `instrument_of` spells it)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            f"SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_minor),"
            f" coalesce(bool_or(instrument = %(instrument)s::text), false) "
            f"FROM (SELECT amount_minor, {_INSTRUMENT_SQL} AS instrument FROM payments"
            f"      WHERE merchant_id = %(merchant)s AND customer->>'id' = %(customer)s"
            f"      AND status = ANY(%(statuses)s)"
            f"      ORDER BY created_at DESC LIMIT %(limit)s) recent",
            {"merchant": merchant_id, "customer": customer_id, "instrument": instrument,
             "statuses": list(SUCCESSFUL_STATUSES), "limit": HISTORY_LIMIT},
        )
        row = await cur.fetchone()
    count, median, known = (row if row is not None else (0, None, False))
    return CustomerHistory(int(count), int(median) if median is not None else None,
                           bool(known) if instrument else None)


async def distinct_instruments(conn: Conn, merchant_id: str, *, since: timedelta,
                               customer_id: str = "", ip: str = "", exclude: str = "") -> int:
    """Distinct VPAs / card tokens used by the customer (or from the IP) within `since`,
    not counting `exclude` (the screened payment's own instrument)."""
    if bool(customer_id) == bool(ip):
        raise ValueError("give exactly one of customer_id or ip")
    column, value = ("customer->>'id'", customer_id) if customer_id else ("ip_address", ip)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            f"SELECT count(DISTINCT instrument) FROM ("
            f" SELECT {_INSTRUMENT_SQL} AS instrument FROM payments"
            f" WHERE merchant_id = %s AND {column} = %s AND created_at > now() - %s) p "
            f"WHERE instrument IS NOT NULL AND instrument <> %s",
            (merchant_id, value, since, exclude),
        )
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def recent_failures(conn: Conn, merchant_id: str, inp: FraudInput, *,
                          since: timedelta) -> int:
    """FAILED payments within `since` sharing the customer id, IP or instrument of `inp`."""
    inp = normalize_input(inp)
    instrument = instrument_of(inp)
    if not (inp.customer_id or inp.ip or instrument):
        return 0
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            f"SELECT count(*) FROM payments "
            f"WHERE merchant_id = %(merchant)s AND status = 'FAILED' "
            f"AND created_at > now() - %(since)s AND ("
            f" (%(customer)s::text <> '' AND customer->>'id' = %(customer)s::text)"
            f" OR (%(ip)s::text <> '' AND ip_address = %(ip)s::text)"
            f" OR (%(instrument)s::text <> '' AND {_INSTRUMENT_SQL} = %(instrument)s::text))",
            {"merchant": merchant_id, "since": since, "customer": inp.customer_id,
             "ip": inp.ip, "instrument": instrument},
        )
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


_ALL_FACTS = f"""
WITH matching AS (
    -- Two index lookups (exact values; IP ranges through the GiST index) rather than one OR,
    -- which would scan every entry of the merchant.
    SELECT id, kind, value, reason FROM fraud_blocklist
    WHERE merchant_id = %(merchant)s AND {_LIVE}
      AND (kind, value) IN (SELECT * FROM unnest(%(kinds)s::text[], %(values)s::text[]))
    UNION
    SELECT id, kind, value, reason FROM fraud_blocklist
    WHERE merchant_id = %(merchant)s AND {_LIVE} AND kind = 'IP' AND network >>= %(ip)s::inet
), hits AS (
    SELECT coalesce(json_agg(json_build_object('id', id, 'kind', kind, 'value', value,
                                               'reason', reason) ORDER BY kind, value),
                    '[]'::json) AS rows
    FROM matching
), history AS (
    SELECT count(*) AS n, percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_minor) AS median,
           coalesce(bool_or(instrument = %(instrument)s::text), false) AS known
    FROM (SELECT amount_minor, {_INSTRUMENT_SQL} AS instrument FROM payments
          WHERE merchant_id = %(merchant)s AND %(customer)s::text <> ''
            AND customer->>'id' = %(customer)s::text AND status = ANY(%(statuses)s)
          ORDER BY created_at DESC LIMIT %(limit)s) recent
), by_customer AS (
    SELECT count(DISTINCT instrument) AS n FROM (
        SELECT {_INSTRUMENT_SQL} AS instrument FROM payments
        WHERE merchant_id = %(merchant)s AND %(customer)s::text <> ''
          AND customer->>'id' = %(customer)s::text
          AND created_at > now() - %(instrument_since)s) p
    WHERE instrument IS NOT NULL AND instrument <> %(instrument)s::text
), by_ip AS (
    SELECT count(DISTINCT instrument) AS n FROM (
        SELECT {_INSTRUMENT_SQL} AS instrument FROM payments
        WHERE merchant_id = %(merchant)s AND %(ip_text)s::text <> ''
          AND ip_address = %(ip_text)s::text AND created_at > now() - %(instrument_since)s) p
    WHERE instrument IS NOT NULL AND instrument <> %(instrument)s::text
), failures AS (
    SELECT count(*) AS n FROM payments
    WHERE merchant_id = %(merchant)s AND status = 'FAILED'
      AND created_at > now() - %(failure_since)s AND (
        (%(customer)s::text <> '' AND customer->>'id' = %(customer)s::text)
        OR (%(ip_text)s::text <> '' AND ip_address = %(ip_text)s::text)
        OR (%(instrument)s::text <> '' AND {_INSTRUMENT_SQL} = %(instrument)s::text))
), settings AS (
    SELECT version, settings, updated_at, updated_by FROM fraud_settings
    WHERE merchant_id = %(merchant)s ORDER BY version DESC LIMIT 1
)
SELECT hits.rows AS hits, history.n AS history_n, history.median AS history_median,
       history.known AS history_known, by_customer.n AS by_customer, by_ip.n AS by_ip,
       failures.n AS failures, settings.version, settings.settings, settings.updated_at,
       settings.updated_by
FROM hits, history, by_customer, by_ip, failures LEFT JOIN settings ON true
"""


async def all_facts(conn: Conn, merchant_id: str, inp: FraudInput, *,
                    instrument_since: timedelta, failure_since: timedelta
                    ) -> tuple[StoredFraudSettings, StoredFacts]:
    """Settings, blocklist hits, history, instruments and failures in ONE statement: the same
    answers as the separate functions above, one round trip instead of six."""
    inp = normalize_input(inp)
    instrument = instrument_of(inp)
    pairs = _blocklist_pairs(inp)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ALL_FACTS, {
            "merchant": merchant_id, "kinds": [str(k) for k, _ in pairs],
            "values": [v for _, v in pairs], "ip": inp.ip or None, "ip_text": inp.ip,
            "customer": inp.customer_id, "instrument": instrument,
            "statuses": list(SUCCESSFUL_STATUSES), "limit": HISTORY_LIMIT,
            "instrument_since": instrument_since, "failure_since": failure_since,
        })
        row = await cur.fetchone()
    assert row is not None
    settings = (_stored(merchant_id, row) if row["version"] is not None
                else StoredFraudSettings(merchant_id, 0, FraudSettings()))
    hits = tuple(BlocklistHit(BlocklistKind(h["kind"]), h["value"], h["reason"], h["id"])
                 for h in row["hits"])
    history = (CustomerHistory(int(row["history_n"]), None if row["history_median"] is None
                               else int(row["history_median"]),
                               bool(row["history_known"]) if instrument else None)
               if inp.customer_id else None)
    return settings, StoredFacts(hits, history, int(row["by_customer"]), int(row["by_ip"]),
                                 int(row["failures"]))


class PostgresFraudRepository:
    """The functions above behind one object: the port `FraudScreening` and servicers use."""

    async def all_facts(self, conn: Conn, merchant_id: str, inp: FraudInput, *,
                        instrument_since: timedelta, failure_since: timedelta
                        ) -> tuple[StoredFraudSettings, StoredFacts]:
        return await all_facts(conn, merchant_id, inp, instrument_since=instrument_since,
                               failure_since=failure_since)

    async def get_settings(self, conn: Conn, merchant_id: str) -> StoredFraudSettings:
        return await get_settings(conn, merchant_id)

    async def find_blocklist_hits(self, conn: Conn, merchant_id: str, inp: FraudInput
                                  ) -> list[BlocklistHit]:
        return await find_blocklist_hits(conn, merchant_id, inp)

    async def customer_history(self, conn: Conn, merchant_id: str, customer_id: str, *,
                               instrument: str = "") -> CustomerHistory:
        return await customer_history(conn, merchant_id, customer_id, instrument=instrument)

    async def distinct_instruments(self, conn: Conn, merchant_id: str, *, since: timedelta,
                                   customer_id: str = "", ip: str = "", exclude: str = ""
                                   ) -> int:
        return await distinct_instruments(conn, merchant_id, since=since,
                                          customer_id=customer_id, ip=ip, exclude=exclude)

    async def recent_failures(self, conn: Conn, merchant_id: str, inp: FraudInput, *,
                              since: timedelta) -> int:
        return await recent_failures(conn, merchant_id, inp, since=since)
