"""Instamojo wire facts: paths, status maps and the uncertain ([P]) facts, one constant each.

Status maps (anything not listed is PENDING):

| Instamojo                                           | PspStatus                       |
|-----------------------------------------------------|---------------------------------|
| payment request Pending / Sent                      | REQUIRES_ACTION (not paid yet)  |
| payment request Failed (an email/SMS did not go out) | REQUIRES_ACTION (link works)   |
| payment request Completed                           | SUCCEEDED                       |
| v2 payment status true / false / null               | SUCCEEDED / FAILED / PENDING    |
| v1.1 payment and webhook status Credit / Failed     | SUCCEEDED / FAILED              |
| v2 refund resolution_status FINI_CONC               | SUCCEEDED (refunded)            |
| v2 refund resolution_status FINI_DENY / FINI_WITH   | FAILED (denied / withdrawn)     |
| v2 refund resolution_status null / FINI_INIT        | PENDING (open / "closed")       |
| v1.1 refund Refunded / Rejected, Cancelled, Failed  | SUCCEEDED / FAILED [P]          |

A payment request's own status only says whether it was paid; the payments under it say how
each try went, so `get_payment` reads both: a successful try (or a Completed request) →
SUCCEEDED; else the newest try failed → FAILED (the buyer may still retry on the same link, and
the payment state machine accepts that late success); else a try in flight → PENDING; no try
yet → the request's status (REQUIRES_ACTION).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from server.connectors.base import PspStatus

__all__ = [
    "ALLOWED_REFUND_TYPES",
    "DEFAULT_REFUND_TYPE",
    "DEFAULT_TOKEN_TTL_SECONDS",
    "MAX_PAYMENTS_CHECKED",
    "PAYMENT_REQUEST_STATUS_MAP",
    "PURPOSE_MAX_CHARS",
    "REFUND_RESOLUTION_STATUS_MAP",
    "REFUND_TRANSACTION_ID_DEDUPES",
    "TOKEN_PATH",
    "TOKEN_REFRESH_MARGIN_SECONDS",
    "V1_PAYMENT_PATH",
    "V1_PAYMENT_REQUESTS_PATH",
    "V1_PAYMENT_STATUS_MAP",
    "V1_REFUNDS_PATH",
    "V1_REFUND_PATH",
    "V1_REFUND_STATUS_MAP",
    "V2_CREATE_REFUND_PATH",
    "V2_PAYMENT_PATH",
    "V2_PAYMENT_REQUESTS_PATH",
    "V2_REFUND_PATH",
    "error_message",
    "map_v2_payment_status",
    "parse_json_object",
]

# ---- paths (v2 paths sit under /v2/, the token endpoint does not; every path ends in /) ----
TOKEN_PATH: Final = "/oauth2/token/"
V2_PAYMENT_REQUESTS_PATH: Final = "/v2/payment_requests/"
V2_PAYMENT_PATH: Final = "/v2/payments/{payment_id}/"
V2_CREATE_REFUND_PATH: Final = "/v2/payments/{payment_id}/refund/"
# [P] The v2 "get details of a refund" path is taken from the docs' reference page title only.
V2_REFUND_PATH: Final = "/v2/refunds/{refund_id}/"
V1_PAYMENT_REQUESTS_PATH: Final = "/api/1.1/payment-requests/"
V1_PAYMENT_PATH: Final = "/api/1.1/payments/{payment_id}/"
V1_REFUNDS_PATH: Final = "/api/1.1/refunds/"
V1_REFUND_PATH: Final = "/api/1.1/refunds/{refund_id}/"

# ---- limits and defaults --------------------------------------------------------------------
PURPOSE_MAX_CHARS: Final = 30  # [V] for v1.1; we apply it to v2 as well
# Used only when a token response carries no expires_in (it always should; a short life is the
# safe guess, and a 401 triggers a refresh anyway).
DEFAULT_TOKEN_TTL_SECONDS: Final = 300
# Refresh this long before expiry (capped at half the token's life for short-lived tokens).
TOKEN_REFRESH_MARGIN_SECONDS: Final = 60
# A payment request with allow_repeated_payments=false has one successful payment at most but
# may collect several failed tries; status reads look at the newest few.
MAX_PAYMENTS_CHECKED: Final = 5
ALLOWED_REFUND_TYPES: Final = frozenset({"RFD", "TNR", "QFL", "QNR", "EWN", "TAN", "PTH"})
DEFAULT_REFUND_TYPE: Final = "PTH"  # "problem not described above": the generic reason code

# [P] The docs call v2 `transaction_id` an anti-replay key (required from the second refund on
# a payment). We assume a repeat with the same transaction_id cannot create a second refund,
# which is what makes a v2 refund safe for the executor to retry. v1.1 has no such key.
REFUND_TRANSACTION_ID_DEDUPES: Final = True

# ---- status maps ---------------------------------------------------------------------------
PAYMENT_REQUEST_STATUS_MAP: Mapping[str, PspStatus] = {
    "Pending": PspStatus.REQUIRES_ACTION,
    "Sent": PspStatus.REQUIRES_ACTION,
    "Failed": PspStatus.REQUIRES_ACTION,  # notification delivery failed, not the payment
    "Completed": PspStatus.SUCCEEDED,
}

V1_PAYMENT_STATUS_MAP: Mapping[str, PspStatus] = {
    "Credit": PspStatus.SUCCEEDED,
    "Failed": PspStatus.FAILED,
}

REFUND_RESOLUTION_STATUS_MAP: Mapping[str, PspStatus] = {
    "FINI_CONC": PspStatus.SUCCEEDED,
    "FINI_DENY": PspStatus.FAILED,
    "FINI_WITH": PspStatus.FAILED,
    "FINI_INIT": PspStatus.PENDING,
}

# [P] v1.1 refund status strings are not in the public docs; these are the plausible ones.
V1_REFUND_STATUS_MAP: Mapping[str, PspStatus] = {
    "Refunded": PspStatus.SUCCEEDED,
    "Rejected": PspStatus.FAILED,
    "Cancelled": PspStatus.FAILED,
    "Failed": PspStatus.FAILED,
}


def map_v2_payment_status(value: Any) -> PspStatus:
    """v2 payment `status`: true = success, false = failed, null (or anything else) = pending."""
    if value is True:
        return PspStatus.SUCCEEDED
    if value is False:
        return PspStatus.FAILED
    return PspStatus.PENDING


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def error_message(body: bytes, fallback: str) -> str:
    """Instamojo's error text from any of its shapes: {"message": str | {field: [..]}},
    {"error": str}, or a bare {field: [..]} (v2 validation)."""
    data = parse_json_object(body)
    if data is None:
        return fallback
    for key in ("message", "error", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value[:300]
        if isinstance(value, dict) and value:
            return _field_errors(value) or fallback
    return _field_errors({k: v for k, v in data.items() if k != "success"}) or fallback


def _field_errors(errors: Mapping[str, Any]) -> str:
    parts = []
    for field, problems in errors.items():
        if isinstance(problems, list):
            parts.append(f"{field}: {'; '.join(str(p) for p in problems)}")
        elif isinstance(problems, str):
            parts.append(f"{field}: {problems}")
    return ", ".join(parts)[:300]
