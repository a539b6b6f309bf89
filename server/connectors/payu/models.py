"""PayU India wire formats: the SHA-512 hash schemes, constants and the status maps.

Payment status map (PayU `status` / `unmappedstatus` → PspStatus):

    status     unmappedstatus                          → PspStatus
    success    captured (or absent)                    → SUCCEEDED
    success    auth (authorised, not yet captured)     → PENDING
    failure    failed, userCancelled, bounced, dropped → FAILED
    pending    any                                     → PENDING   (PayU: "treat as failed"
                                                                    for fulfilment, but it may
                                                                    still succeed, so we wait)
    Not Found  (verify_payment, unknown txnid) [P]     → REQUIRES_ACTION (form not yet posted)
    anything else                                      → PENDING

Refund status map (check_action_status / refund callback `status`):
    success → SUCCEEDED; failure, failed, cancelled → FAILED; anything else (queued,
    pending, requested, …) → PENDING.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from server.connectors.base import PspStatus
from server.domain.money import Money

__all__ = [
    "CHECKOUT_PATH",
    "CHECK_ACTION_STATUS_BY_PAYUID",
    "NOT_FOUND_STATUS",
    "PAYMENT_PATH",
    "POSTSERVICE_PATH",
    "REFUND_ALREADY_QUEUED_CODE",
    "REFUND_TOKEN_EXISTS_CODE",
    "TXNID_MAX_LENGTH",
    "command_hash",
    "money_from_rupees",
    "payment_status",
    "refund_status",
    "request_hash",
    "response_hash",
]

PAYMENT_PATH = "/_payment"
POSTSERVICE_PATH = "/merchant/postservice.php?form=2"
TXNID_MAX_LENGTH = 25
# Our redirect_url: a Triveni-hosted page that auto-submits the signed form to PayU,
# `{checkout_base_url}/checkout/payu/{txnid}` (see checkout.py).
CHECKOUT_PATH = "/checkout/payu"

# [P] verify_payment answers an unknown txnid with mihpayid/status "Not Found" ("0 out of 1").
NOT_FOUND_STATUS = "Not Found"
# [P] The refund failure envelope is `{"status": 0, "msg", "error_code"}`; codes are documented.
REFUND_TOKEN_EXISTS_CODE = "106"
REFUND_ALREADY_QUEUED_CODE = "102"
# [P] check_action_status looks refunds up by mihpayid when var2 is "payuid" (used only when a
# refund's request_id was never received, e.g. the refund call timed out).
CHECK_ACTION_STATUS_BY_PAYUID = "payuid"

_FAILED_REFUND = frozenset({"failure", "failed", "cancelled"})


def _sha512(text: str) -> str:
    return hashlib.sha512(text.encode("utf-8")).hexdigest()


def request_hash(*, key: str, txnid: str, amount: str, productinfo: str, firstname: str,
                 email: str, udf: Sequence[str], salt: str) -> str:
    """sha512(key|txnid|amount|productinfo|firstname|email|udf1..udf5||||||SALT), lower hex."""
    udfs = list(udf) + [""] * (5 - len(udf))
    if len(udfs) != 5:
        raise ValueError("PayU's request hash takes at most 5 UDFs (udf1..udf5)")
    return _sha512("|".join([key, txnid, amount, productinfo, firstname, email, *udfs,
                             "", "", "", "", "", salt]))


def response_hash(fields: Mapping[str, str], salt: str) -> str:
    """The reverse hash over the values exactly as PayU posted them (reference §4.3).

    sha512([additionalCharges|]SALT|status||||||udf5|udf4|udf3|udf2|udf1|email|firstname|
    productinfo|amount|txnid|key)
    """
    def get(name: str) -> str:
        return fields.get(name, "")

    parts = [salt, get("status"), "", "", "", "", "",
             get("udf5"), get("udf4"), get("udf3"), get("udf2"), get("udf1"),
             get("email"), get("firstname"), get("productinfo"), get("amount"),
             get("txnid"), get("key")]
    charges = get("additionalCharges")
    if charges:
        parts.insert(0, charges)
    return _sha512("|".join(parts))


def command_hash(*, key: str, command: str, var1: str, salt: str) -> str:
    """sha512(key|command|var1|SALT): the hash of every postservice command."""
    return _sha512(f"{key}|{command}|{var1}|{salt}")


def payment_status(status: str, unmapped: str = "") -> PspStatus:
    """PayU status/unmappedstatus → PspStatus (map in the module docstring)."""
    normalized = status.strip().lower()
    if status.strip() == NOT_FOUND_STATUS:
        return PspStatus.REQUIRES_ACTION
    if normalized == "success":
        return PspStatus.PENDING if unmapped.strip().lower() == "auth" else PspStatus.SUCCEEDED
    if normalized == "failure":
        return PspStatus.FAILED
    return PspStatus.PENDING


def refund_status(status: str) -> PspStatus:
    normalized = status.strip().lower()
    if normalized == "success":
        return PspStatus.SUCCEEDED
    if normalized in _FAILED_REFUND:
        return PspStatus.FAILED
    return PspStatus.PENDING


def money_from_rupees(value: object, currency: str = "INR") -> Money | None:
    """'10.00' / 10 / Decimal('10.5') → Money; None when absent or not a whole paisa."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        paise = Decimal(str(value).strip()) * 100
    except InvalidOperation:
        return None
    if not paise.is_finite() or paise != paise.to_integral_value():
        return None
    return Money(int(paise), currency)
