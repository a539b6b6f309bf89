"""What the dashboard shows: query rows → JSON-ready dicts, with personal data masked.

Nothing here prints a card number: a card is shown as its network and last 4 digits (the only
card data Triveni stores), emails, phones and VPAs are masked partially, and free text (failure
messages, descriptions, audit details) goes through the log redactor, which masks card-number-
like digit runs, secrets, emails, VPAs and Indian mobile numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from server.adapters.postgres.dashboard_queries import (
    Breakdown,
    LatencyRow,
    PaymentDetailRows,
    SummaryRows,
)
from server.logging_setup import redact, redact_text

__all__ = [
    "format_inr",
    "mask_email",
    "mask_phone",
    "mask_vpa",
    "method_label",
    "payment_detail_json",
    "payment_list_json",
    "summary_json",
]

JsonDict = dict[str, Any]
_NOT_ROUTED = "(not routed)"


def format_inr(amount_minor: int, currency: str = "INR") -> str:
    """₹1,50,000.00: Indian digit grouping (lakh, crore)."""
    sign = "-" if amount_minor < 0 else ""
    rupees, paise = divmod(abs(amount_minor), 100)
    digits = str(rupees)
    if len(digits) > 3:
        head, tail = digits[:-3], digits[-3:]
        pairs: list[str] = []
        while len(head) > 2:
            pairs.insert(0, head[-2:])
            head = head[:-2]
        digits = ",".join([head, *pairs, tail])
    symbol = "₹" if currency == "INR" else f"{currency} "
    return f"{sign}{symbol}{digits}.{paise:02d}"


def mask_email(email: str) -> str:
    local, at, domain = email.partition("@")
    if not at:
        return "***" if email else ""
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    digits = "".join(char for char in phone if char.isdigit())
    if len(digits) < 8:
        return "***" if phone else ""
    prefix = "+91 " if phone.strip().startswith("+91") else ""
    return f"{prefix}******{digits[-4:]}"


def mask_vpa(vpa: str) -> str:
    handle, at, bank = vpa.partition("@")
    if not at:
        return "***" if vpa else ""
    return f"{handle[:2]}***@{bank}"


def method_label(method: Mapping[str, Any]) -> JsonDict:
    """The payment method as a merchant may see it: never more than network + last 4."""
    kind = str(method.get("type", "") or "")
    if kind == "card":
        network = str(method.get("card_network", "") or "card").upper()
        last4 = "".join(c for c in str(method.get("card_last4", "") or "") if c.isdigit())[-4:]
        label = f"{network} •••• {last4}" if last4 else f"{network} (hosted checkout)"
    elif kind == "upi":
        flow = str(method.get("upi_flow", "") or "intent").lower()
        vpa = str(method.get("upi_vpa", "") or "")
        label = f"UPI {flow}" + (f" · {mask_vpa(vpa)}" if vpa else "")
    elif kind == "netbanking":
        label = f"Netbanking · {str(method.get('bank_code', '') or '?').upper()}"
    elif kind == "wallet":
        label = f"Wallet · {method.get('wallet', '') or '?'}"
    else:
        label = kind or "unknown"
    return {"type": kind or "unknown", "label": label}


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _rate(succeeded: int, failed: int) -> float | None:
    """Success rate over payments with an outcome (pending ones would only dilute it)."""
    decided = succeeded + failed
    return None if decided == 0 else round(succeeded / decided, 4)


def _breakdown_json(row: Breakdown) -> JsonDict:
    return {
        "connector": (row.connector or _NOT_ROUTED) if row.connector is not None else None,
        "method": row.method, "payments": row.payments, "succeeded": row.succeeded,
        "failed": row.failed, "success_rate": _rate(row.succeeded, row.failed),
        "volume_minor": row.volume_minor, "volume": format_inr(row.volume_minor),
    }


def _latency_json(row: LatencyRow) -> JsonDict:
    return {"connector": row.connector or "all connectors", "attempts": row.attempts,
            "p50_ms": round(row.p50_ms, 1), "p95_ms": round(row.p95_ms, 1),
            "p99_ms": round(row.p99_ms, 1)}


def summary_json(rows: SummaryRows, window: str, merchant_name: str) -> JsonDict:
    totals = _breakdown_json(rows.totals)
    totals["blocked"] = rows.blocked
    return {
        "merchant": merchant_name, "window": window, "since": _iso(rows.since),
        "until": _iso(rows.until), "bucket_seconds": int(rows.bucket / timedelta(seconds=1)),
        "totals": totals,
        "series": [{"start": _iso(p.bucket_start), "payments": p.payments,
                    "succeeded": p.succeeded, "failed": p.failed, "blocked": p.blocked,
                    "success_rate": _rate(p.succeeded, p.failed),
                    "volume_minor": p.volume_minor} for p in rows.series],
        "by_connector": [_breakdown_json(r) for r in rows.by_connector],
        "by_method": [_breakdown_json(r) for r in rows.by_method],
        "by_connector_method": [_breakdown_json(r) for r in rows.by_connector_method],
        "latency": [_latency_json(r) for r in rows.latency],
        "fraud": {
            "decisions": {name: rows.fraud_decisions.get(name, 0)
                          for name in ("ALLOW", "REVIEW", "BLOCK")},
            "reasons": [{"code": code, "message": redact_text(message), "payments": count}
                        for code, message, count in rows.fraud_reasons],
        },
    }


def _customer_json(customer: Mapping[str, Any]) -> JsonDict:
    return {"id": str(customer.get("id", "") or ""),
            "name": str(customer.get("name", "") or ""),
            "email": mask_email(str(customer.get("email", "") or "")),
            "phone": mask_phone(str(customer.get("phone", "") or ""))}


def _payment_row_json(row: Mapping[str, Any]) -> JsonDict:
    score = row.get("fraud_score")
    return {
        "id": row["id"], "status": row["status"], "amount_minor": int(row["amount_minor"]),
        "amount": format_inr(int(row["amount_minor"]), str(row["currency"])),
        "refunded": format_inr(int(row["amount_refunded_minor"]), str(row["currency"])),
        "method": method_label(row["method"] or {}),
        "customer": _customer_json(row["customer"] or {}),
        "connector": row["connector"] or _NOT_ROUTED,
        "connector_payment_id": row["connector_payment_id"],
        "fraud_decision": row["fraud_decision"] or "",
        "fraud_score": int(score) if score not in (None, "") else None,
        "failure": {"code": row["failure_code"], "message": redact_text(row["failure_message"])}
        if row["failure_code"] else None,
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }


def payment_list_json(rows: list[dict[str, Any]]) -> JsonDict:
    return {"payments": [_payment_row_json(row) for row in rows]}


def _routing_json(routing: Mapping[str, Any]) -> JsonDict:
    return {
        "algorithm": str(routing.get("algorithm", "")), "chosen": str(routing.get("chosen", "")),
        "reason": redact_text(str(routing.get("reason", ""))),
        "degraded": bool(routing.get("degraded", False)),
        "fallbacks": [str(name) for name in routing.get("fallbacks", [])],
        "candidates": [{"connector": str(c.get("connector", "")),
                        "score": c.get("score"), "note": redact_text(str(c.get("note", "")))}
                       for c in routing.get("candidates", []) if isinstance(c, Mapping)],
    }


def _fraud_json(fraud: Mapping[str, Any]) -> JsonDict:
    return {
        "decision": str(fraud.get("decision", "")), "score": fraud.get("score"),
        "reasons": [{"code": str(r.get("code", "")), "message": redact_text(str(r.get("message",
                                                                                      ""))),
                     "score": r.get("score"), "hard_block": bool(r.get("hard_block", False))}
                    for r in fraud.get("reasons", []) if isinstance(r, Mapping)],
        "unavailable_signals": [redact_text(str(s))
                                for s in fraud.get("unavailable_signals", [])],
    }


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):  # e.g. a JSONB list of delivery attempts: how many
        return len(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def payment_detail_json(detail: PaymentDetailRows) -> JsonDict:
    payment = detail.payment
    body = _payment_row_json(payment)
    body.update({
        "description": redact_text(str(payment["description"])),
        "ip_address": payment["ip_address"], "country": payment["country"],
        "preferred_connector": payment["preferred_connector"], "version": payment["version"],
        "fraud": _fraud_json(payment["fraud"] or {}),
        "routing": _routing_json(payment["routing"] or {}),
        "attempts": [{
            "id": a["id"], "number": a["number"], "connector": a["connector"],
            "connector_payment_id": a["connector_payment_id"], "status": a["status"],
            "error_code": a["error_code"], "error_message": redact_text(a["error_message"]),
            "latency_ms": int(a["latency_ms"]), "created_at": _iso(a["created_at"]),
            "updated_at": _iso(a["updated_at"]),
        } for a in detail.attempts],
        "refunds": [{
            "id": r["id"], "amount": format_inr(int(r["amount_minor"]), str(r["currency"])),
            "status": r["status"], "reason": redact_text(r["reason"]), "connector": r["connector"],
            "failure_code": r["failure_code"], "created_at": _iso(r["created_at"]),
        } for r in detail.refunds],
        "audit": [{
            "id": e["id"], "action": e["action"], "actor": e["actor"],
            "before_status": e["before_status"], "after_status": e["after_status"],
            "details": redact(e["details"] or {}), "created_at": _iso(e["created_at"]),
        } for e in detail.audit],
        "webhook_deliveries": None if detail.webhook_deliveries is None else [
            {key: _jsonable(redact(value) if isinstance(value, str) else value)
             for key, value in row.items()}
            for row in detail.webhook_deliveries],
    })
    return body
