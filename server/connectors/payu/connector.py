"""PayU India hosted-checkout connector: signed form, verify_payment, refunds, webhooks.

create_payment makes no HTTP call: PayU has no "create order" API, the customer's browser
POSTs a signed form to PayU's `_payment` URL. We build that form (request hash over the exact
amount string we post) and return REQUIRES_ACTION with
`redirect_url = {checkout_base_url}/checkout/payu/{txnid}`: a Triveni-hosted page that
auto-submits the form (checkout.py renders it from the references). The form travels in
`references`: `payu_form_action` (the `_payment` URL) and `payu_form_fields` (JSON object of
the exact fields, hash included), so the service layer must persist references with the
attempt and the page handler reads them back; no PII is put in the URL.

Identity: `txnid` is our attempt id (or, when longer than PayU's 25 characters or not
alphanumeric, a deterministic digest of it), so a retried create produces the same form and
PayU itself refuses a txnid that already succeeded: one attempt can be charged at most once.
udf1 = our payment id, udf2 = our attempt id (echoed back in responses and webhooks).
surl/furl = the merchant's return_url (webhook URL when absent): the browser's post there is
informational; the result is taken from the webhook (reverse hash) or verify_payment.

Credentials: `key`, `salt`. Options: `checkout_base_url` (default: origin of the webhook URL),
`payment_url` (default: base_url + /_payment; live is https://secure.payu.in/_payment while
the command API is https://info.payu.in), `productinfo` (default: the description).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from server.connectors.base import (
    ConnectorAccount,
    ConnectorError,
    ConnectorPayment,
    ConnectorRefund,
    CreatePaymentInput,
    Declined,
    HttpRequest,
    HttpResponse,
    Misconfigured,
    PspStatus,
    RateLimited,
    RefundInput,
    TransientError,
    Transport,
    UnknownOutcome,
    WebhookEvent,
)
from server.connectors.payu import webhooks
from server.connectors.payu.models import (
    CHECK_ACTION_STATUS_BY_PAYUID,
    CHECKOUT_PATH,
    NOT_FOUND_STATUS,
    PAYMENT_PATH,
    POSTSERVICE_PATH,
    REFUND_ALREADY_QUEUED_CODE,
    REFUND_TOKEN_EXISTS_CODE,
    TXNID_MAX_LENGTH,
    command_hash,
    money_from_rupees,
    payment_status,
    refund_status,
    request_hash,
)

__all__ = ["PayuConnector", "txnid_for"]

_TXNID_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_HASH_UNSAFE = re.compile(r"[|\r\n]")  # '|' would shift every field after it in the hash
_NO_ERROR = frozenset({"", "E000", "NO ERROR"})
_FORM = "application/x-www-form-urlencoded"


def txnid_for(attempt_id: str) -> str:
    """Our attempt id when PayU accepts it as a txnid, else a stable 25-char digest of it."""
    if len(attempt_id) <= TXNID_MAX_LENGTH and _TXNID_CHARS.match(attempt_id):
        return attempt_id
    return "t" + hashlib.sha256(attempt_id.encode()).hexdigest()[: TXNID_MAX_LENGTH - 1]


class PayuConnector:
    """Stateless translator for PayU India (hosted checkout + postservice commands)."""

    psp = "payu"

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """Build the signed _payment form; REQUIRES_ACTION with our auto-submit page."""
        del transport  # no PayU call: the customer's browser posts the form
        key, salt = account.credential("key"), account.credential("salt")
        if not data.customer_email or not data.customer_phone:
            raise Declined("PayU checkout needs the customer's email and phone",
                           code="missing_customer_contact")
        txnid = txnid_for(data.attempt_id)
        amount = data.amount.to_major_string()  # formatted once: posted and hashed as is
        productinfo = _clean(account.options.get("productinfo") or data.description, "Payment")
        firstname = _clean(data.customer_name.split(" ")[0] if data.customer_name else "",
                           "Customer")
        email = _clean(data.customer_email, "")
        udf = [_clean(data.payment_id, ""), _clean(data.attempt_id, ""), "", "", ""]
        fields = {
            "key": key,
            "txnid": txnid,
            "amount": amount,
            "productinfo": productinfo,
            "firstname": firstname,
            "email": email,
            "phone": _clean(data.customer_phone, ""),
            "surl": data.return_url or data.webhook_url,
            "furl": data.return_url or data.webhook_url,
            "udf1": udf[0],
            "udf2": udf[1],
            "hash": request_hash(key=key, txnid=txnid, amount=amount, productinfo=productinfo,
                                 firstname=firstname, email=email, udf=udf, salt=salt),
        }
        redirect = f"{_checkout_base_url(account, data.webhook_url)}{CHECKOUT_PATH}/" \
                   f"{quote(txnid, safe='')}"
        return ConnectorPayment(
            connector_payment_id=txnid,
            status=PspStatus.REQUIRES_ACTION,
            redirect_url=redirect,
            raw_status="form_built",
            references={
                "txnid": txnid,
                "redirect_url": redirect,
                "payu_form_action": _payment_url(account),
                "payu_form_fields": json.dumps(fields, separators=(",", ":")),
            },
        )

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """verify_payment by txnid; 'Not Found' means the form was never posted."""
        entry = await self._verify(transport, account, connector_payment_id)
        status_word = _text(entry.get("status"))
        unmapped = _text(entry.get("unmappedstatus"))
        status = payment_status(status_word, unmapped)
        refs = {"txnid": connector_payment_id, "mihpayid": _text(entry.get("mihpayid")),
                "unmappedstatus": unmapped, "mode": _text(entry.get("mode")),
                "bank_ref_num": _text(entry.get("bank_ref_num"))}
        if status is PspStatus.REQUIRES_ACTION:
            refs["mihpayid"] = ""
        error_code = error_message = ""
        if status is PspStatus.FAILED:
            code = _text(entry.get("error_code"))
            error_code = code if code.upper() not in _NO_ERROR else unmapped or status_word
            error_message = _text(entry.get("error_Message")) or _text(entry.get("field9"))
        captured = None
        if status is PspStatus.SUCCEEDED:
            captured = money_from_rupees(entry.get("transaction_amount") or entry.get("amt"))
        return ConnectorPayment(
            connector_payment_id=connector_payment_id,
            status=status,
            redirect_url=references.get("redirect_url", "")
            if status is PspStatus.REQUIRES_ACTION else "",
            raw_status=status_word if not unmapped else f"{status_word}/{unmapped}",
            error_code=error_code,
            error_message=error_message,
            amount_captured=captured,
            references={k: v for k, v in refs.items() if v},
        )

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """cancel_refund_transaction(var1=mihpayid, var2=our refund id, var3=rupees)."""
        mihpayid = data.references.get("mihpayid", "")
        if not mihpayid:
            entry = await self._verify(transport, account, data.connector_payment_id)
            mihpayid = _text(entry.get("mihpayid"))
            if not mihpayid or mihpayid == NOT_FOUND_STATUS:
                raise Declined(f"PayU has no transaction {data.connector_payment_id}",
                               code="txn_not_found")
        body = await self._command(
            transport, account, "cancel_refund_transaction", mihpayid,
            {"var2": data.refund_id, "var3": data.amount.to_major_string()},
            mutating=True, operation="refund",
        )
        if _text(body.get("status")) == "1" and _text(body.get("request_id")):
            return ConnectorRefund(connector_refund_id=_text(body["request_id"]),
                                   status=PspStatus.PENDING, raw_status=_text(body.get("msg")))
        code = _text(body.get("error_code"))
        if code in (REFUND_TOKEN_EXISTS_CODE, REFUND_ALREADY_QUEUED_CODE):
            # Our refund id was already used: this is a retry, so report the existing refund.
            existing = await self._find_refund_by_token(transport, account, mihpayid,
                                                        data.refund_id)
            if existing is not None:
                return existing
            raise UnknownOutcome(f"PayU refund token {data.refund_id} exists but was not found",
                                 code=code)
        raise Declined(f"PayU refused the refund: {_text(body.get('msg')) or 'no message'}",
                       code=code or "refund_refused")

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """check_action_status by request_id (or by mihpayid + our token when it is unknown)."""
        if not connector_refund_id:
            mihpayid = data.references.get("mihpayid", "")
            if not mihpayid:
                entry = await self._verify(transport, account, data.connector_payment_id)
                mihpayid = _text(entry.get("mihpayid"))
            found = await self._find_refund_by_token(transport, account, mihpayid,
                                                     data.refund_id)
            if found is None:
                raise Declined(f"PayU has no refund {data.refund_id}", code="refund_not_found")
            return found
        body = await self._command(transport, account, "check_action_status",
                                   connector_refund_id, {}, mutating=False,
                                   operation="get_refund")
        for entry in _refund_entries(body):
            if _text(entry.get("request_id")) in ("", connector_refund_id):
                return _refund_view(entry, connector_refund_id)
        raise Declined(f"PayU has no refund request {connector_refund_id}",
                       code="refund_not_found")

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify the reverse hash (constant time) BEFORE trusting a field; see webhooks.py."""
        return webhooks.parse_webhook(account, headers, body, now)

    # ---- postservice --------------------------------------------------------------------

    async def _verify(self, transport: Transport, account: ConnectorAccount, txnid: str
                      ) -> dict[str, Any]:
        body = await self._command(transport, account, "verify_payment", txnid, {},
                                   mutating=False, operation="get_status")
        details = body.get("transaction_details")
        entry = details.get(txnid) if isinstance(details, dict) else None
        if isinstance(entry, dict):
            return entry
        if _text(body.get("status")) == "0":
            # "0 out of 1 Transactions Fetched" with no entry: the txnid is unknown. [P]
            return {"status": NOT_FOUND_STATUS, "mihpayid": NOT_FOUND_STATUS}
        raise TransientError("PayU verify_payment answer has no transaction_details",
                             code="malformed_response")

    async def _find_refund_by_token(self, transport: Transport, account: ConnectorAccount,
                                    mihpayid: str, token: str) -> ConnectorRefund | None:
        body = await self._command(transport, account, "check_action_status", mihpayid,
                                   {"var2": CHECK_ACTION_STATUS_BY_PAYUID}, mutating=False,
                                   operation="get_refund")
        for entry in _refund_entries(body):
            if _text(entry.get("token")) == token and _text(entry.get("request_id")):
                return _refund_view(entry, _text(entry["request_id"]))
        return None

    async def _command(self, transport: Transport, account: ConnectorAccount, command: str,
                       var1: str, extra: Mapping[str, str], *, mutating: bool,
                       operation: str) -> dict[str, Any]:
        key, salt = account.credential("key"), account.credential("salt")
        form = {"key": key, "command": command, "var1": var1, **extra,
                "hash": command_hash(key=key, command=command, var1=var1, salt=salt)}
        response = await transport.send(account, HttpRequest(
            method="POST",
            url=f"{account.base_url.rstrip('/')}{POSTSERVICE_PATH}",
            headers={"content-type": _FORM, "accept": "application/json"},
            body=urlencode(form).encode(),
            # verify/check are reads; a refund repeats safely: PayU refuses a reused token.
            safe_to_retry=True,
            operation=operation,
        ))
        if not 200 <= response.status < 300:
            raise _error_for(response)
        try:
            body = json.loads(response.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.body[:200].decode("utf-8", "replace")
            if "hash" in text.lower() or "key" in text.lower():
                raise Misconfigured(f"PayU refused the {command} call: {text}",
                                    code="invalid_hash", http_status=response.status)
            kind = UnknownOutcome if mutating else TransientError
            raise kind(f"PayU {command} answer is not a JSON object",
                       code="malformed_response", http_status=response.status)
        message = _text(body.get("msg")).lower()
        if _text(body.get("status")) == "0" and ("hash" in message or "key" in message):
            raise Misconfigured(f"PayU refused the {command} call: {body.get('msg')}",
                                code="invalid_hash", http_status=response.status)
        return body


# ---- helpers ---------------------------------------------------------------------------

def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _clean(value: str, default: str) -> str:
    """Remove characters that would corrupt PayU's pipe-joined hash."""
    cleaned = _HASH_UNSAFE.sub(" ", value).strip()
    return cleaned or default


def _payment_url(account: ConnectorAccount) -> str:
    return account.options.get("payment_url") or f"{account.base_url.rstrip('/')}{PAYMENT_PATH}"


def _checkout_base_url(account: ConnectorAccount, webhook_url: str) -> str:
    base = account.options.get("checkout_base_url", "")
    if not base and webhook_url:
        parts = urlsplit(webhook_url)
        base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    if not base:
        raise Misconfigured(f"account {account.name}: no checkout_base_url option and no "
                            "webhook URL to derive the Triveni checkout page from")
    return base.rstrip("/")


def _error_for(response: HttpResponse) -> ConnectorError:
    status = response.status
    text = response.body[:200].decode("utf-8", "replace")
    message = f"PayU HTTP {status}: {text or 'no body'}"
    if status == 429:
        lowered = {k.lower(): v for k, v in response.headers.items()}
        try:
            retry_after: float | None = float(lowered.get("retry-after", ""))
        except ValueError:
            retry_after = None
        return RateLimited(message, retry_after_seconds=retry_after, http_status=status)
    if status in (401, 403):
        return Misconfigured(message, code=f"http_{status}", http_status=status)
    if status >= 500 or status == 408:
        return TransientError(message, code=f"http_{status}", http_status=status)
    return Declined(message, code=f"http_{status}", http_status=status)


def _refund_entries(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every refund record in a check_action_status answer. [P] its nesting is unconfirmed
    (transaction_details → request_id → record, sometimes one level flatter), so we collect
    every object that carries a refund `status` and a request_id or token."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "status" in node and ("request_id" in node or "token" in node):
                found.append(node)
                return
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(body.get("transaction_details"))
    return found


def _refund_view(entry: Mapping[str, Any], request_id: str) -> ConnectorRefund:
    raw = _text(entry.get("status"))
    status = refund_status(raw)
    failed = status is PspStatus.FAILED
    return ConnectorRefund(
        connector_refund_id=request_id,
        status=status,
        raw_status=raw,
        error_code=(_text(entry.get("error_code")) or raw) if failed else "",
        error_message=_text(entry.get("msg") or entry.get("error_Message")) if failed else "",
    )
