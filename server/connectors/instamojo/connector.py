"""Instamojo connector: payment requests (hosted links), status, refunds, webhooks.

API version: v2 by default (OAuth2 client_credentials, credentials `client_id` and
`client_secret`); `account.options["api_version"] == "v1.1"` selects v1.1 (headers X-Api-Key /
X-Auth-Token, credentials `api_key` and `auth_token`). `account.base_url` is the host root
(`https://api.instamojo.com`, `https://test.instamojo.com`, or `https://www.instamojo.com` for
v1.1); every path carries its own version prefix and trailing slash. Bodies are form-encoded
with the amount as a rupee string ("1500.00"), formatted once from Money.

Tokens (v2): fetched from POST {base}/oauth2/token/, cached per account in this connector
object, refreshed TOKEN_REFRESH_MARGIN_SECONDS before `expires_in` runs out, and refreshed once
more when a call is refused with 401 (a token revoked early). The cache is the one piece of
state a connector keeps; it holds no payment data.

Identity and retries: `connector_payment_id` is the payment request id and `redirect_url` its
`longurl`. A payment request is not a charge: the buyer can pay only through a URL that reached
them, we ask Instamojo not to email or SMS it (send_email/send_sms false), and
allow_repeated_payments=false lets each link be paid once. So when a create times out or gets
a 5xx, no money can have moved through the link whose URL we never received; create_payment
reports that as TransientError (fail over now) rather than UnknownOutcome. Instamojo has no
lookup by a merchant reference, so a status sync that has only our attempt id raises a
ConnectorError with http_status 404 ("nothing we can find"), which makes the caller resend.

Refunds need Instamojo's payment id (MOJO…): taken from `references["instamojo_payment_id"]`
when the caller has it, else found by reading the payment request first.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

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
    RefundInput,
    TransientError,
    Transport,
    UnknownOutcome,
    WebhookEvent,
)
from server.connectors.instamojo import models, webhooks
from server.connectors.instamojo.models import (
    DEFAULT_REFUND_TYPE,
    DEFAULT_TOKEN_TTL_SECONDS,
    MAX_PAYMENTS_CHECKED,
    PAYMENT_REQUEST_STATUS_MAP,
    PURPOSE_MAX_CHARS,
    REFUND_RESOLUTION_STATUS_MAP,
    REFUND_TRANSACTION_ID_DEDUPES,
    TOKEN_REFRESH_MARGIN_SECONDS,
    V1_PAYMENT_STATUS_MAP,
    V1_REFUND_STATUS_MAP,
    error_message,
    map_v2_payment_status,
    parse_json_object,
)
from server.domain.money import Money, parse_rupees

__all__ = ["InstamojoConnector"]

ATTEMPT_ID_REFERENCE = "attempt_id"
PAYMENT_ID_REFERENCE = "instamojo_payment_id"
_FORM = "application/x-www-form-urlencoded"
_PAYMENT_URL_ID = re.compile(r"/payments/([^/]+)/?$")


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # monotonic seconds


@dataclass(frozen=True, slots=True)
class _Payment:
    """One try by the buyer, as either API version reports it."""

    payment_id: str
    status: PspStatus
    raw_status: str
    amount: Money | None
    failure_reason: str
    failure_message: str


class InstamojoConnector:
    """Translator for Instamojo v2 (default) and v1.1."""

    psp = "instamojo"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    # ---- flows -------------------------------------------------------------------------

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """Create a payment request; its longurl is the hosted checkout."""
        if data.amount.currency != "INR":
            raise Declined(f"Instamojo takes INR only, not {data.amount.currency}",
                           code="CURRENCY_NOT_SUPPORTED")
        fields = {
            "purpose": _purpose(data),
            "amount": data.amount.to_major_string(),
            "buyer_name": data.customer_name,
            "email": data.customer_email,
            "phone": data.customer_phone,
            "redirect_url": data.return_url,
            "webhook": data.webhook_url,
            "allow_repeated_payments": "False",
            "send_email": "False",
            "send_sms": "False",
        }
        body = urlencode({k: v for k, v in fields.items() if v}).encode()
        try:
            if _is_v1(account):
                response = await transport.send(account, HttpRequest(
                    method="POST", url=_url(account, models.V1_PAYMENT_REQUESTS_PATH),
                    headers=_v1_headers(account, form=True), body=body,
                    operation="create_payment"))
            else:
                response = await self._send_v2(transport, account, lambda token: HttpRequest(
                    method="POST", url=_url(account, models.V2_PAYMENT_REQUESTS_PATH),
                    headers=_v2_headers(token, form=True), body=body,
                    operation="create_payment"))
        except UnknownOutcome as exc:
            raise TransientError(
                f"{exc.message}; an Instamojo payment request whose URL never reached us "
                "cannot be paid, so nothing was charged", code=exc.code,
                http_status=exc.http_status) from exc
        request = _unwrap(_success(response, mutating=True), "payment_request")
        request_id = _str(request, "id")
        if not request_id:
            raise TransientError("Instamojo created no payment request id",
                                 code="MALFORMED_RESPONSE", http_status=response.status)
        raw = _str(request, "status")
        return ConnectorPayment(
            connector_payment_id=request_id, status=PspStatus.REQUIRES_ACTION,
            redirect_url=_str(request, "longurl"), raw_status=raw,
            references={ATTEMPT_ID_REFERENCE: data.attempt_id},
        )

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """Read the payment request and its newest payments."""
        if not connector_payment_id or connector_payment_id == references.get(
                ATTEMPT_ID_REFERENCE):
            raise ConnectorError(
                "Instamojo cannot look a payment request up by our reference; none was "
                "recorded for this attempt", code="NOT_FOUND", http_status=404)
        if _is_v1(account):
            response = await transport.send(account, HttpRequest(
                method="GET", url=_url(account, models.V1_PAYMENT_REQUESTS_PATH,
                                       connector_payment_id),
                headers=_v1_headers(account), safe_to_retry=True, operation="get_payment"))
        else:
            response = await self._send_v2(transport, account, lambda token: HttpRequest(
                method="GET", url=_url(account, models.V2_PAYMENT_REQUESTS_PATH,
                                       connector_payment_id),
                headers=_v2_headers(token), safe_to_retry=True, operation="get_payment"))
        request = _unwrap(_success(response, mutating=False), "payment_request")
        payments = await self._payments_of(transport, account, request)
        return _payment_view(connector_payment_id, request, payments)

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """Refund (part of) the successful payment under the payment request."""
        payment_id = data.references.get(PAYMENT_ID_REFERENCE, "")
        if not payment_id:
            current = await self.get_payment(transport, account, data.connector_payment_id,
                                             data.references)
            payment_id = current.references.get(PAYMENT_ID_REFERENCE, "")
        if not payment_id:
            raise Declined(f"payment request {data.connector_payment_id} has no successful "
                           "payment to refund", code="NOT_REFUNDABLE")
        fields = {
            "type": account.options.get("refund_type", DEFAULT_REFUND_TYPE),
            "body": data.reason or "Refund requested by the merchant",
            "refund_amount": data.amount.to_major_string(),
        }
        if _is_v1(account):
            body = urlencode({"payment_id": payment_id, **fields}).encode()
            response = await transport.send(account, HttpRequest(
                method="POST", url=_url(account, models.V1_REFUNDS_PATH),
                headers=_v1_headers(account, form=True), body=body, operation="refund"))
        else:
            body = urlencode({**fields, "transaction_id": data.refund_id}).encode()
            url = _url(account, models.V2_CREATE_REFUND_PATH.format(
                payment_id=quote(payment_id, safe="")))
            response = await self._send_v2(transport, account, lambda token: HttpRequest(
                method="POST", url=url, headers=_v2_headers(token, form=True), body=body,
                safe_to_retry=REFUND_TRANSACTION_ID_DEDUPES, operation="refund"))
        return _refund_view(_unwrap(_success(response, mutating=True), "refund"))

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """GET one refund by Instamojo's refund id."""
        if not connector_refund_id:
            raise ConnectorError("Instamojo refunds can only be read by their own id",
                                 code="NOT_FOUND", http_status=404)
        refund_path = quote(connector_refund_id, safe="")
        if _is_v1(account):
            response = await transport.send(account, HttpRequest(
                method="GET",
                url=_url(account, models.V1_REFUND_PATH.format(refund_id=refund_path)),
                headers=_v1_headers(account), safe_to_retry=True, operation="get_refund"))
        else:
            url = _url(account, models.V2_REFUND_PATH.format(refund_id=refund_path))
            response = await self._send_v2(transport, account, lambda token: HttpRequest(
                method="GET", url=url, headers=_v2_headers(token), safe_to_retry=True,
                operation="get_refund"))
        return _refund_view(_unwrap(_success(response, mutating=False), "refund"))

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify the form's `mac` (HMAC-SHA1 with the private salt, constant time), then parse."""
        return webhooks.parse_webhook(account, headers, body, now)

    # ---- reading payments ----------------------------------------------------------------

    async def _payments_of(self, transport: Transport, account: ConnectorAccount,
                           request: Mapping[str, Any]) -> list[_Payment]:
        """The newest payments of a request, oldest first (v2 lists URLs; v1.1 objects)."""
        listed = request.get("payments")
        items = listed[-MAX_PAYMENTS_CHECKED:] if isinstance(listed, list) else []
        payments = []
        for item in items:
            if isinstance(item, dict):
                payments.append(_v1_payment(item))
                continue
            if not isinstance(item, str):
                continue
            match = _PAYMENT_URL_ID.search(item)
            payment_id = match.group(1) if match else item
            payments.append(await self._fetch_payment(transport, account, payment_id))
        return payments

    async def _fetch_payment(self, transport: Transport, account: ConnectorAccount,
                             payment_id: str) -> _Payment:
        encoded = quote(payment_id, safe="")
        if _is_v1(account):
            response = await transport.send(account, HttpRequest(
                method="GET",
                url=_url(account, models.V1_PAYMENT_PATH.format(payment_id=encoded)),
                headers=_v1_headers(account), safe_to_retry=True, operation="get_payment"))
            return _v1_payment(_unwrap(_success(response, mutating=False), "payment"))
        url = _url(account, models.V2_PAYMENT_PATH.format(payment_id=encoded))
        response = await self._send_v2(transport, account, lambda token: HttpRequest(
            method="GET", url=url, headers=_v2_headers(token), safe_to_retry=True,
            operation="get_payment"))
        return _v2_payment(_success(response, mutating=False))

    # ---- v2 tokens -------------------------------------------------------------------------

    async def _send_v2(self, transport: Transport, account: ConnectorAccount,
                       build: Callable[[str], HttpRequest]) -> HttpResponse:
        """Send with a cached token; on 401 refresh the token once and send again."""
        token = await self._token(transport, account)
        try:
            return await transport.send(account, build(token))
        except Misconfigured as exc:
            if exc.http_status != 401:
                raise
            # 401 means the request was refused unprocessed, so sending it again is safe.
            token = await self._token(transport, account, stale=token)
            return await transport.send(account, build(token))

    async def _token(self, transport: Transport, account: ConnectorAccount,
                     stale: str = "") -> str:
        key = (account.name, account.base_url, account.credential("client_id"))
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and cached.value != stale and self._clock() < cached.refresh_at:
                return cached.value
            token = await self._fetch_token(transport, account)
            self._tokens[key] = token
            return token.value

    async def _fetch_token(self, transport: Transport, account: ConnectorAccount) -> _Token:
        body = urlencode({"grant_type": "client_credentials",
                          "client_id": account.credential("client_id"),
                          "client_secret": account.credential("client_secret")}).encode()
        try:
            response = await transport.send(account, HttpRequest(
                method="POST", url=_url(account, models.TOKEN_PATH),
                headers={"Content-Type": _FORM, "Accept": "application/json"}, body=body,
                safe_to_retry=True, operation="oauth_token"))
        except UnknownOutcome as exc:
            # Issuing a token moves no money: a lost token response is simply a failed call.
            raise TransientError(f"token request failed: {exc.message}", code=exc.code,
                                 http_status=exc.http_status) from exc
        if response.status == 400:
            raise Misconfigured(f"account {account.name}: Instamojo refused the client "
                                f"credentials: {error_message(response.body, 'HTTP 400')}",
                                code="INVALID_CLIENT", http_status=400)
        data = _success(response, mutating=False)
        value = _str(data, "access_token")
        if not value:
            raise TransientError("Instamojo token response without access_token",
                                 code="MALFORMED_RESPONSE", http_status=response.status)
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and \
            not isinstance(expires_in, bool) and expires_in > 0 else DEFAULT_TOKEN_TTL_SECONDS
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
        return _Token(value=value, refresh_at=self._clock() + lifetime - margin)


# ---- helpers ---------------------------------------------------------------------------------

def _is_v1(account: ConnectorAccount) -> bool:
    return account.options.get("api_version", "v2") == "v1.1"


def _url(account: ConnectorAccount, path: str, *ids: str) -> str:
    suffix = "".join(f"{quote(i, safe='')}/" for i in ids)
    return account.base_url.rstrip("/") + path + suffix


def _v2_headers(token: str, *, form: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if form:
        headers["Content-Type"] = _FORM
    return headers


def _v1_headers(account: ConnectorAccount, *, form: bool = False) -> dict[str, str]:
    headers = {"X-Api-Key": account.credential("api_key"),
               "X-Auth-Token": account.credential("auth_token"),
               "Accept": "application/json"}
    if form:
        headers["Content-Type"] = _FORM
    return headers


def _purpose(data: CreatePaymentInput) -> str:
    text = " ".join(data.description.split()) or f"Payment {data.payment_id}"
    return text[:PURPOSE_MAX_CHARS]


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _unwrap(data: dict[str, Any], key: str) -> dict[str, Any]:
    """v1.1 (and v2 refunds) wrap the object as {"success": true, key: {...}}; v2 is flat."""
    inner = data.get(key)
    return inner if isinstance(inner, dict) else data


def _success(response: HttpResponse, *, mutating: bool) -> dict[str, Any]:
    """The JSON object of a 2xx response; other statuses become the contract's errors."""
    data = parse_json_object(response.body)
    if 200 <= response.status < 300:
        if data is None or data.get("success") is False:
            message = error_message(response.body, "Instamojo answered without a JSON object")
            raise (UnknownOutcome if mutating else TransientError)(
                message, code="MALFORMED_RESPONSE", http_status=response.status)
        return data
    message = error_message(response.body, f"Instamojo refused the request "
                                           f"(HTTP {response.status})")
    if response.status == 404:
        raise ConnectorError(message, code="NOT_FOUND", http_status=404)
    code = "VALIDATION_ERROR" if response.status == 400 else f"HTTP_{response.status}"
    raise Declined(message, code=code, http_status=response.status)


def _money(value: Any, currency: Any) -> Money | None:
    try:
        return Money(parse_rupees(str(value)), currency if isinstance(currency, str) and
                     currency else "INR")
    except ValueError:
        return None


def _failure(data: Mapping[str, Any]) -> tuple[str, str]:
    failure = data.get("failure")
    if isinstance(failure, dict):
        return _str(failure, "reason"), _str(failure, "message")
    return "", ""


def _v1_payment(data: Mapping[str, Any]) -> _Payment:
    raw = _str(data, "status")
    reason, message = _failure(data)
    return _Payment(payment_id=_str(data, "payment_id") or _str(data, "id"),
                    status=V1_PAYMENT_STATUS_MAP.get(raw, PspStatus.PENDING), raw_status=raw,
                    amount=_money(data.get("amount"), data.get("currency")),
                    failure_reason=reason, failure_message=message)


def _v2_payment(data: Mapping[str, Any]) -> _Payment:
    value = data.get("status")
    reason, message = _failure(data)
    return _Payment(payment_id=_str(data, "id") or _str(data, "payment_id"),
                    status=map_v2_payment_status(value), raw_status=str(value).lower(),
                    amount=_money(data.get("amount"), data.get("currency")),
                    failure_reason=reason, failure_message=message)


def _payment_view(request_id: str, request: Mapping[str, Any],
                  payments: list[_Payment]) -> ConnectorPayment:
    raw = _str(request, "status")
    request_status = PAYMENT_REQUEST_STATUS_MAP.get(raw, PspStatus.PENDING)
    redirect = _str(request, "longurl")
    paid = next((p for p in reversed(payments) if p.status == PspStatus.SUCCEEDED), None)
    if paid is not None:
        return ConnectorPayment(
            connector_payment_id=request_id, status=PspStatus.SUCCEEDED, redirect_url=redirect,
            raw_status=raw, amount_captured=paid.amount,
            references={PAYMENT_ID_REFERENCE: paid.payment_id})
    if request_status == PspStatus.SUCCEEDED:
        return ConnectorPayment(connector_payment_id=request_id, status=PspStatus.SUCCEEDED,
                                redirect_url=redirect, raw_status=raw)
    if payments:
        latest = payments[-1]
        if latest.status == PspStatus.FAILED:
            return ConnectorPayment(
                connector_payment_id=request_id, status=PspStatus.FAILED, redirect_url=redirect,
                raw_status=raw, error_code=latest.failure_reason or "Failed",
                error_message=latest.failure_message or
                f"Instamojo payment {latest.payment_id} failed",
                references={PAYMENT_ID_REFERENCE: latest.payment_id})
        return ConnectorPayment(connector_payment_id=request_id, status=PspStatus.PENDING,
                                redirect_url=redirect, raw_status=raw,
                                references={PAYMENT_ID_REFERENCE: latest.payment_id})
    return ConnectorPayment(connector_payment_id=request_id, status=request_status,
                            redirect_url=redirect, raw_status=raw)


def _refund_view(data: Mapping[str, Any]) -> ConnectorRefund:
    refund_id = _str(data, "id")
    if not refund_id:
        raise UnknownOutcome("Instamojo refund without an id", code="MALFORMED_RESPONSE")
    if "resolution_status" in data:
        resolution = data.get("resolution_status")
        raw = resolution if isinstance(resolution, str) else ""
        status = REFUND_RESOLUTION_STATUS_MAP.get(raw, PspStatus.PENDING)
    else:
        raw = _str(data, "status")
        status = V1_REFUND_STATUS_MAP.get(raw, PspStatus.PENDING)
    return ConnectorRefund(connector_refund_id=refund_id, status=status, raw_status=raw)
