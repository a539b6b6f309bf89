"""A fake PayU India for contract tests, served by `serve_app`.

Endpoints: `POST /_payment` (the browser's signed form; request hash checked, a txnid that
already succeeded refused) and `POST /merchant/postservice.php?form=2` with the commands
`verify_payment`, `cancel_refund_transaction` and `check_action_status` (hash
sha512(key|command|var1|salt) checked). Tests play the customer (`complete`), settle refunds,
inject faults per operation (5xx, 429 with Retry-After, slow answers before or after acting)
and build/deliver webhooks: form-encoded or JSON payment posts signed with the reverse hash
(optionally with additionalCharges), unsigned JSON refund callbacks, duplicates, out of order.
Every hash here is computed from the reference, never by importing the connector.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

__all__ = ["Delivery", "PayuFake", "RecordedRequest"]

IST = timezone(timedelta(hours=5, minutes=30))
OPERATIONS = ("payment_form", "verify_payment", "cancel_refund_transaction",
              "check_action_status")
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")
# outcome (PayU's unmappedstatus) → (status, error_code, error_Message)
_OUTCOMES = {
    "captured": ("success", "E000", "NO ERROR"),
    "auth": ("success", "E000", "NO ERROR"),
    "failed": ("failure", "E308", "Transaction declined by the issuing bank"),
    "userCancelled": ("failure", "E1605", "Transaction cancelled by the customer"),
    "bounced": ("failure", "E500", "Customer bounced from the payment page"),
    "dropped": ("failure", "E501", "No response from the bank"),
    "pending": ("pending", "E000", "Awaiting bank confirmation"),
}


def sha512(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


@dataclass
class _Fault:
    status: int | None = None
    delay: float = 0.0
    after: bool = False
    retry_after: int = 7


@dataclass(frozen=True)
class RecordedRequest:
    operation: str
    fields: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class _Txn:
    form: dict[str, str]
    mihpayid: str = ""
    unmapped: str = "initiated"
    additional_charges: str = ""
    addedon: str = ""
    attempts: list[str] = field(default_factory=list)  # unmapped status of each attempt

    @property
    def status(self) -> str:
        return _OUTCOMES[self.unmapped][0] if self.unmapped in _OUTCOMES else "pending"


class PayuFake:
    """State and behaviour of one fake PayU merchant (key + salt)."""

    def __init__(self, key: str = "payu_key_test", salt: str = "payu_salt_test",
                 *, same_amount_guard: bool = True) -> None:
        self.key = key
        self.salt = salt
        self.same_amount_guard = same_amount_guard
        self.txns: dict[str, _Txn] = {}
        self.refunds: dict[str, dict[str, Any]] = {}  # request_id → record
        self.requests: list[RecordedRequest] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._ids = itertools.count(403993715524045001)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/_payment", self._payment_form, methods=["POST"]),
            Route("/merchant/postservice.php", self._postservice, methods=["POST"]),
        ])

    # ---- test controls -------------------------------------------------------------------

    def inject(self, operation: str, *, status: int | None = None, delay: float = 0.0,
               after: bool = False, times: int = 1, retry_after: int = 7) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation}")
        with self._lock:
            self._faults.setdefault(operation, []).extend(
                [_Fault(status, delay, after, retry_after)] * times)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation == operation]

    def complete(self, txnid: str, outcome: str = "captured", *,
                 additional_charges: str = "") -> dict[str, str]:
        """The customer finishes on PayU's page; returns the surl/furl post fields."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {outcome}")
        with self._lock:
            txn = self.txns[txnid]
            if txn.status == "success":
                raise ValueError(f"txnid {txnid} already succeeded")
            txn.mihpayid = str(next(self._ids))
            txn.unmapped = outcome
            txn.additional_charges = additional_charges
            txn.addedon = datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")
            txn.attempts.append(outcome)
        return self.callback_fields(txnid)

    def charges(self, txnid: str) -> int:
        return sum(1 for a in self.txns[txnid].attempts if _OUTCOMES[a][0] == "success")

    def settle_refund(self, request_id: str, status: str = "success") -> None:
        with self._lock:
            self.refunds[request_id]["status"] = status
            self.refunds[request_id]["bank_arn"] = f"ARN{next(self._ids)}" \
                if status == "success" else None

    def mihpayid(self, txnid: str) -> str:
        return self.txns[txnid].mihpayid

    # ---- hashes (reference §4.2-4.4) -------------------------------------------------------

    def expected_request_hash(self, form: dict[str, str]) -> str:
        g = form.get
        return sha512(f"{g('key', '')}|{g('txnid', '')}|{g('amount', '')}|"
                      f"{g('productinfo', '')}|{g('firstname', '')}|{g('email', '')}|"
                      f"{g('udf1', '')}|{g('udf2', '')}|{g('udf3', '')}|{g('udf4', '')}|"
                      f"{g('udf5', '')}||||||{self.salt}")

    def reverse_hash(self, fields: dict[str, str], salt: str | None = None) -> str:
        g = fields.get
        text = (f"{salt if salt is not None else self.salt}|{g('status', '')}||||||"
                f"{g('udf5', '')}|{g('udf4', '')}|{g('udf3', '')}|{g('udf2', '')}|"
                f"{g('udf1', '')}|{g('email', '')}|{g('firstname', '')}|"
                f"{g('productinfo', '')}|{g('amount', '')}|{g('txnid', '')}|{g('key', '')}")
        if g("additionalCharges"):
            text = f"{g('additionalCharges')}|{text}"
        return sha512(text)

    # ---- webhooks ------------------------------------------------------------------------

    def callback_fields(self, txnid: str, salt: str | None = None) -> dict[str, str]:
        """What PayU posts to surl/furl and to the payment webhook, hash included."""
        with self._lock:
            txn = self.txns[txnid]
            form = dict(txn.form)
        status, error, message = _OUTCOMES.get(txn.unmapped, ("pending", "E000", ""))
        fields = {
            "mihpayid": txn.mihpayid, "mode": "UPI", "status": status,
            "unmappedstatus": txn.unmapped, "key": form["key"], "txnid": txnid,
            "amount": f"{Decimal(form['amount']):.2f}", "addedon": txn.addedon,
            "productinfo": form.get("productinfo", ""), "firstname": form.get("firstname", ""),
            "lastname": "", "email": form.get("email", ""), "phone": form.get("phone", ""),
            **{f"udf{i}": form.get(f"udf{i}", "") for i in range(1, 11)},
            "field9": message, "PG_TYPE": "UPI-PG", "bank_ref_num": str(next(self._ids)),
            "bankcode": "UPI", "error": error, "error_Message": message,
            "net_amount_debit": form["amount"],
        }
        if txn.additional_charges:
            fields["additionalCharges"] = txn.additional_charges
        fields["hash"] = self.reverse_hash(fields, salt)
        return fields

    def payment_webhook(self, txnid: str, *, as_json: bool = False,
                        salt: str | None = None) -> Delivery:
        fields = self.callback_fields(txnid, salt)
        if as_json:
            return Delivery({"content-type": "application/json"}, json.dumps(fields).encode())
        return Delivery({"content-type": "application/x-www-form-urlencoded"},
                        urlencode(fields).encode())

    def refund_webhook(self, request_id: str) -> Delivery:
        """PayU's refund callback: JSON, no hash (reference §4.6)."""
        with self._lock:
            record = dict(self.refunds[request_id])
        payload = {"mihpayid": record["mihpayid"], "merchantTxnId": record["txnid"],
                   "request_id": request_id, "token": record["token"], "amt": record["amt"],
                   "status": "success" if record["status"] == "success" else record["status"],
                   "bank_arn": record.get("bank_arn"), "refund_mode": "back_to_source",
                   "action": "refund"}
        return Delivery({"content-type": "application/json"}, json.dumps(payload).encode())

    async def deliver(self, url: str, deliveries: Sequence[Delivery] | Delivery, *,
                      duplicate: bool = False, reverse: bool = False) -> list[int]:
        """POST deliveries (PayU's retries resend the identical body; no timestamp)."""
        batch = [deliveries] if isinstance(deliveries, Delivery) else list(deliveries)
        if reverse:
            batch.reverse()
        if duplicate:
            batch = [d for item in batch for d in (item, item)]
        statuses = []
        async with httpx.AsyncClient(timeout=5) as client:
            for delivery in batch:
                answer = await client.post(url, content=delivery.body, headers=delivery.headers)
                statuses.append(answer.status_code)
        return statuses

    # ---- HTTP plumbing -------------------------------------------------------------------

    async def _enter(self, operation: str, fields: dict[str, str], body: bytes
                     ) -> tuple[_Fault | None, Response | None]:
        with self._lock:
            self.requests.append(RecordedRequest(operation, fields, body))
            queue = self._faults.get(operation) or []
            fault = queue.pop(0) if queue else None
        if fault and not fault.after and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.status:
            if fault.status == 429:
                return fault, Response("Too Many Requests", 429,
                                       headers={"Retry-After": str(fault.retry_after)})
            return fault, Response("<html>Service Unavailable</html>", fault.status)
        return fault, None

    async def _leave(self, fault: _Fault | None, answer: Response) -> Response:
        if fault and fault.after and fault.delay:
            await asyncio.sleep(fault.delay)
        return answer

    # ---- hosted checkout -----------------------------------------------------------------

    async def _payment_form(self, request: Request) -> Response:
        body = await request.body()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        fault, answer = await self._enter("payment_form", form, body)
        if answer is None:
            answer = self._accept_form(form)
        return await self._leave(fault, answer)

    def _accept_form(self, form: dict[str, str]) -> Response:
        required = ("key", "txnid", "amount", "productinfo", "firstname", "email", "phone",
                    "surl", "furl", "hash")
        missing = [name for name in required if not form.get(name)]
        if missing:
            return HTMLResponse(f"Error: missing {', '.join(missing)}", 400)
        if form["key"] != self.key:
            return HTMLResponse("Error: invalid key", 400)
        if not hmac.compare_digest(form["hash"], self.expected_request_hash(form)):
            return HTMLResponse("Error: invalid hash (checksum mismatch)", 400)
        if len(form["txnid"]) > 25:
            return HTMLResponse("Error: txnid longer than 25 characters", 400)
        if not _AMOUNT.match(form["amount"]):
            return HTMLResponse("Error: invalid amount", 400)
        with self._lock:
            existing = self.txns.get(form["txnid"])
            if existing and existing.status == "success":
                return HTMLResponse("Error: duplicate transaction id (already successful)", 400)
            if existing:
                existing.form = form
            else:
                self.txns[form["txnid"]] = _Txn(form=form)
        return HTMLResponse(f"<html>PayU checkout for {form['txnid']}</html>")

    # ---- command API ---------------------------------------------------------------------

    async def _postservice(self, request: Request) -> Response:
        body = await request.body()
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        command = fields.get("command", "")
        operation = command if command in OPERATIONS else "verify_payment"
        fault, answer = await self._enter(operation, fields, body)
        if answer is None:
            answer = self._command(request.query_params.get("form", ""), fields)
        return await self._leave(fault, answer)

    def _command(self, form_param: str, fields: dict[str, str]) -> Response:
        if form_param != "2":
            return Response("form=2 is required", 400)
        key, command, var1 = fields.get("key", ""), fields.get("command", ""), \
            fields.get("var1", "")
        expected = sha512(f"{key}|{command}|{var1}|{self.salt}")
        if key != self.key or not hmac.compare_digest(fields.get("hash", ""), expected):
            return JSONResponse({"status": 0, "msg": "Invalid Hash."})
        if command == "verify_payment":
            return JSONResponse(self._verify(var1.split("|")))
        if command == "cancel_refund_transaction":
            return JSONResponse(self._refund(var1, fields.get("var2", ""),
                                             fields.get("var3", "")))
        if command == "check_action_status":
            return JSONResponse(self._action_status(var1, fields.get("var2", "")))
        return JSONResponse({"status": 0, "msg": f"Invalid command {command}"})

    def _verify(self, txnids: list[str]) -> dict[str, Any]:
        details: dict[str, Any] = {}
        found = 0
        with self._lock:
            for txnid in txnids:
                txn = self.txns.get(txnid)
                if txn is None or not txn.mihpayid:
                    details[txnid] = {"mihpayid": "Not Found", "status": "Not Found"}
                    continue
                found += 1
                status, error, message = _OUTCOMES[txn.unmapped]
                details[txnid] = {
                    "mihpayid": txn.mihpayid, "request_id": "", "bank_ref_num": "",
                    "amt": txn.form["amount"], "transaction_amount": txn.form["amount"],
                    "txnid": txnid, "additional_charges": txn.additional_charges or "0.00",
                    "productinfo": txn.form.get("productinfo", ""),
                    "firstname": txn.form.get("firstname", ""), "bankcode": "UPI",
                    **{f"udf{i}": txn.form.get(f"udf{i}", "") for i in range(1, 6)},
                    "field9": message, "error_code": error, "addedon": txn.addedon,
                    "payment_source": "payu", "card_type": "", "error_Message": message,
                    "net_amount_debit": txn.form["amount"], "disc": "0.00", "mode": "UPI",
                    "PG_TYPE": "UPI-PG", "card_no": "", "status": status,
                    "unmappedstatus": txn.unmapped, "Settled_At": "0000-00-00 00:00:00",
                }
        return {"status": 1 if found else 0,
                "msg": f"{found} out of {len(txnids)} Transactions Fetched Successfully",
                "transaction_details": details}

    def _refund(self, mihpayid: str, token: str, amount: str) -> dict[str, Any]:
        def error(code: int, msg: str) -> dict[str, Any]:
            return {"status": 0, "msg": msg, "error_code": code, "mihpayid": mihpayid}

        with self._lock:
            txn = next((t for t in self.txns.values() if t.mihpayid == mihpayid
                        and mihpayid), None)
            if txn is None:
                return error(116, "Transaction not found")
            if not token:
                return error(105, "Token is mandatory")
            if any(r["token"] == token for r in self.refunds.values()):
                return error(106, "Token already exists")
            if txn.unmapped != "captured":
                return error(111, "Invalid transaction status for refund")
            try:
                value = Decimal(amount)
            except InvalidOperation:
                return error(105, "Invalid amount")
            if not _AMOUNT.match(amount) or value <= 0:
                return error(105, "Invalid amount")
            mine = [r for r in self.refunds.values() if r["mihpayid"] == mihpayid
                    and r["status"] != "failure"]
            if sum((Decimal(r["amt"]) for r in mine), Decimal(0)) + value > \
                    Decimal(txn.form["amount"]):
                return error(105, "Refund amount exceeds the refundable amount")
            if self.same_amount_guard and any(
                    Decimal(r["amt"]) == value and time.time() - r["at"] < 300 for r in mine):
                return error(214, "Same amount refund on the same transaction within 5 minutes")
            request_id = str(next(self._ids))
            self.refunds[request_id] = {
                "request_id": request_id, "mihpayid": mihpayid,
                "txnid": txn.form["txnid"], "token": token, "amt": amount,
                "status": "queued", "action": "refund", "bank_arn": None, "at": time.time(),
            }
        return {"status": 1, "msg": "Refund Request Queued", "request_id": request_id,
                "bank_ref_num": None, "mihpayid": mihpayid, "error_code": 102}

    def _action_status(self, var1: str, var2: str) -> dict[str, Any]:
        with self._lock:
            if var2 == "payuid":
                records = [r for r in self.refunds.values() if r["mihpayid"] == var1]
            else:
                records = [r for r in self.refunds.values() if r["request_id"] == var1]
            shown = {r["request_id"]: {k: v for k, v in r.items() if k != "at"}
                     for r in records}
        if not shown:
            return {"status": 0, "msg": "0 out of 1 Transactions Fetched Successfully",
                    "transaction_details": {}}
        return {"status": 1, "msg": f"{len(shown)} out of {len(shown)} Transactions Fetched",
                "transaction_details": {var1: shown}}
