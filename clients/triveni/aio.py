"""The asyncio client: `async with triveni.AsyncClient(target, api_key) as client: ...`."""

# `timeout=` is the gRPC deadline sent to the server (which stops work when it passes), not a
# local cancel scope, and it keeps this surface identical to the sync Client's.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from triveni import _common
from triveni._common import ChannelOptions, RetryPolicy
from triveni.errors import error_from_status
from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fraud_pb
from triveni.v1 import fraud_service_pb2_grpc as fraud_grpc
from triveni.v1 import payment_service_pb2 as pay_pb
from triveni.v1 import payment_service_pb2_grpc as pay_grpc

__all__ = ["AsyncClient"]

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


class AsyncClient:
    """asyncio client for PaymentService and FraudService; the same surface as `Client`.

    Create it inside a running event loop (grpc.aio binds the channel to it).

    Every unary call gets a deadline (`timeout` seconds per attempt unless the call overrides
    it), the API key as `authorization: Bearer <key>`, and retries with exponential backoff and
    jitter: UNAVAILABLE always (mutations resend the same idempotency key, generated here when
    the caller gives none), DEADLINE_EXCEEDED only for reads. Failures raise `TriveniError`
    subclasses (see `triveni.errors`).
    """

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        options: ChannelOptions = (),
    ) -> None:
        _common.validate_timeout(timeout)
        self._metadata = _common.auth_metadata(api_key)
        self._timeout = timeout
        self._retry = RetryPolicy(max_retries, initial_backoff, max_backoff)
        credentials = _common.channel_credentials(tls, root_certificates)
        all_options = _common.channel_options(options)
        self._channel = (
            grpc.aio.insecure_channel(target, options=all_options)
            if credentials is None
            else grpc.aio.secure_channel(target, credentials, options=all_options)
        )
        self._payments = pay_grpc.PaymentServiceStub(self._channel)
        self._fraud = fraud_grpc.FraudServiceStub(self._channel)
        self._closed = False

    async def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        self._closed = True
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # PaymentService

    async def create_payment(
        self,
        *,
        amount: pb.Money,
        method: pb.PaymentMethod | None = None,
        upi_vpa: str | None = None,
        upi_flow: pb.UpiFlow.ValueType | None = None,
        customer: pb.Customer | None = None,
        ip_address: str = "",
        country: str = "",
        description: str = "",
        return_url: str = "",
        metadata: Mapping[str, str] | None = None,
        preferred_connector: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> pb.Payment:
        """Start a payment. A fraud block is not an error: check `payment.status`."""
        request = _common.create_payment_request(
            amount=amount,
            method=method,
            upi_vpa=upi_vpa,
            upi_flow=upi_flow,
            customer=customer,
            ip_address=ip_address,
            country=country,
            description=description,
            return_url=return_url,
            metadata=metadata,
            preferred_connector=preferred_connector,
            idempotency_key=idempotency_key,
        )
        return await self._unary(
            self._payments.CreatePayment,
            request,
            read=False,
            timeout=timeout,
            idempotency_key=request.idempotency_key,
        )

    async def get_payment(self, payment_id: str, *, timeout: float | None = None) -> pb.Payment:
        """Fetch one payment by id."""
        request = pay_pb.GetPaymentRequest(id=payment_id)
        return await self._unary(self._payments.GetPayment, request, read=True, timeout=timeout)

    async def list_payments(
        self,
        *,
        status: pb.PaymentStatus.ValueType | None = None,
        connector: str = "",
        created_from: datetime | Timestamp | None = None,
        created_to: datetime | Timestamp | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> pay_pb.ListPaymentsResponse:
        """One page of payments, newest first; see `iter_payments` for all of them."""
        request = _common.list_payments_request(
            status=status,
            connector=connector,
            created_from=created_from,
            created_to=created_to,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._unary(self._payments.ListPayments, request, read=True, timeout=timeout)

    async def iter_payments(
        self,
        *,
        status: pb.PaymentStatus.ValueType | None = None,
        connector: str = "",
        created_from: datetime | Timestamp | None = None,
        created_to: datetime | Timestamp | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.Payment]:
        """Every matching payment, fetching pages as the iteration reaches them."""
        page_token = ""
        while True:
            page = await self.list_payments(
                status=status,
                connector=connector,
                created_from=created_from,
                created_to=created_to,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
            for payment in page.payments:
                yield payment
            page_token = page.next_page_token
            if not page_token:
                return

    async def cancel_payment(
        self,
        payment_id: str,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> pb.Payment:
        """Cancel a payment that has not been paid (CREATED, REQUIRES_ACTION, IN_REVIEW)."""
        request = pay_pb.CancelPaymentRequest(
            id=payment_id,
            idempotency_key=_common.idempotency_key_or_new(idempotency_key),
            reason=reason,
        )
        return await self._unary(
            self._payments.CancelPayment,
            request,
            read=False,
            timeout=timeout,
            idempotency_key=request.idempotency_key,
        )

    async def refund_payment(
        self,
        payment_id: str,
        *,
        amount: pb.Money | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> pb.Refund:
        """Refund `amount` of a succeeded payment (None: everything not yet refunded)."""
        request = _common.refund_payment_request(
            payment_id, amount=amount, reason=reason, idempotency_key=idempotency_key
        )
        return await self._unary(
            self._payments.RefundPayment,
            request,
            read=False,
            timeout=timeout,
            idempotency_key=request.idempotency_key,
        )

    async def sync_payment(self, payment_id: str, *, timeout: float | None = None) -> pb.Payment:
        """Ask the PSP for the payment's status now and return the updated payment."""
        request = pay_pb.SyncPaymentRequest(id=payment_id)
        return await self._unary(self._payments.SyncPayment, request, read=False, timeout=timeout)

    def watch_payment(
        self, payment_id: str, *, timeout: float | None = None
    ) -> AsyncIterator[pb.Payment]:
        """The payment's current state, then every change, until the stream ends.

        No deadline unless `timeout` is given (the total for the whole watch). A dropped stream
        (UNAVAILABLE) is reopened up to `max_retries` times in a row; states already yielded
        (by `version`) are skipped. Close the iterator (or break out of the loop) to stop.
        """
        self._check_open()
        _common.validate_timeout(timeout)
        return self._watch(pay_pb.WatchPaymentRequest(id=payment_id), timeout)

    async def _watch(
        self, request: pay_pb.WatchPaymentRequest, timeout: float | None
    ) -> AsyncIterator[pb.Payment]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last_version = 0
        failures = 0
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            stream = self._payments.WatchPayment(
                request, timeout=remaining, metadata=self._metadata
            )
            try:
                async for payment in stream:
                    failures = 0
                    if last_version and payment.version and payment.version <= last_version:
                        continue
                    last_version = payment.version
                    yield payment
                return
            except grpc.aio.AioRpcError as exc:
                code, details, trailers = _status(exc)
                if not self._retry.should_retry(code, read=False, retries_done=failures):
                    raise error_from_status(code, details, trailers) from exc
                await asyncio.sleep(self._retry.backoff(failures))
                failures += 1
            finally:
                stream.cancel()

    # FraudService

    async def check_transaction(
        self,
        *,
        amount: pb.Money,
        method: pb.PaymentMethod | None = None,
        upi_vpa: str | None = None,
        customer: pb.Customer | None = None,
        ip_address: str = "",
        country: str = "",
        record: bool = False,
        timeout: float | None = None,
    ) -> pb.FraudAssessment:
        """Score a prospective transaction; `record=True` counts it in the velocity windows."""
        request = _common.check_transaction_request(
            amount=amount,
            method=method,
            upi_vpa=upi_vpa,
            customer=customer,
            ip_address=ip_address,
            country=country,
            record=record,
        )
        return await self._unary(
            self._fraud.CheckTransaction, request, read=not record, timeout=timeout
        )

    async def add_blocklist_entry(
        self,
        kind: fraud_pb.BlocklistKind.ValueType,
        value: str,
        *,
        reason: str = "",
        ttl_seconds: int = 0,
        timeout: float | None = None,
    ) -> fraud_pb.BlocklistEntry:
        """Block an IP/CIDR, VPA, email, phone, card token or BIN, customer id (0 TTL: forever)."""
        request = fraud_pb.AddBlocklistEntryRequest(
            kind=kind, value=value, reason=reason, ttl_seconds=ttl_seconds
        )
        return await self._unary(
            self._fraud.AddBlocklistEntry, request, read=False, timeout=timeout
        )

    async def remove_blocklist_entry(self, entry_id: str, *, timeout: float | None = None) -> None:
        """Remove a blocklist entry by id."""
        request = fraud_pb.RemoveBlocklistEntryRequest(id=entry_id)
        await self._unary(self._fraud.RemoveBlocklistEntry, request, read=False, timeout=timeout)

    async def list_blocklist_entries(
        self,
        *,
        kind: fraud_pb.BlocklistKind.ValueType | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> fraud_pb.ListBlocklistEntriesResponse:
        """One page of blocklist entries; see `iter_blocklist_entries` for all of them."""
        request = fraud_pb.ListBlocklistEntriesRequest(
            kind=fraud_pb.BLOCKLIST_KIND_UNSPECIFIED if kind is None else kind,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._unary(
            self._fraud.ListBlocklistEntries, request, read=True, timeout=timeout
        )

    async def iter_blocklist_entries(
        self,
        *,
        kind: fraud_pb.BlocklistKind.ValueType | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[fraud_pb.BlocklistEntry]:
        """Every blocklist entry (of `kind`, if given), page by page."""
        page_token = ""
        while True:
            page = await self.list_blocklist_entries(
                kind=kind, page_size=page_size, page_token=page_token, timeout=timeout
            )
            for entry in page.entries:
                yield entry
            page_token = page.next_page_token
            if not page_token:
                return

    async def get_fraud_settings(self, *, timeout: float | None = None) -> fraud_pb.FraudSettings:
        """The merchant's fraud rule settings."""
        request = fraud_pb.GetFraudSettingsRequest()
        return await self._unary(self._fraud.GetFraudSettings, request, read=True, timeout=timeout)

    async def update_fraud_settings(
        self,
        settings: fraud_pb.FraudSettings,
        *,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> fraud_pb.FraudSettings:
        """Replace the settings; `expected_version` defaults to `settings.version`."""
        request = _common.update_fraud_settings_request(settings, expected_version)
        return await self._unary(
            self._fraud.UpdateFraudSettings, request, read=False, timeout=timeout
        )

    async def report_fraud(
        self,
        payment_id: str,
        *,
        kind: fraud_pb.FraudKind.ValueType = fraud_pb.FRAUD_KIND_UNSPECIFIED,
        note: str = "",
        timeout: float | None = None,
    ) -> fraud_pb.ReportFraudResponse:
        """Mark a payment as fraudulent; its instruments are blocklisted."""
        request = fraud_pb.ReportFraudRequest(payment_id=payment_id, kind=kind, note=note)
        return await self._unary(self._fraud.ReportFraud, request, read=False, timeout=timeout)

    async def approve_review(
        self,
        payment_id: str,
        *,
        note: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> pb.Payment:
        """Release a payment held IN_REVIEW to its PSP."""
        request = fraud_pb.ReviewDecisionRequest(
            payment_id=payment_id,
            idempotency_key=_common.idempotency_key_or_new(idempotency_key),
            note=note,
        )
        return await self._unary(
            self._fraud.ApproveReview,
            request,
            read=False,
            timeout=timeout,
            idempotency_key=request.idempotency_key,
        )

    async def reject_review(
        self,
        payment_id: str,
        *,
        note: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> pb.Payment:
        """Block a payment held IN_REVIEW."""
        request = fraud_pb.ReviewDecisionRequest(
            payment_id=payment_id,
            idempotency_key=_common.idempotency_key_or_new(idempotency_key),
            note=note,
        )
        return await self._unary(
            self._fraud.RejectReview,
            request,
            read=False,
            timeout=timeout,
            idempotency_key=request.idempotency_key,
        )

    # plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Triveni client is closed")

    async def _unary(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        *,
        read: bool,
        timeout: float | None,
        idempotency_key: str | None = None,
    ) -> _Resp:
        self._check_open()
        _common.validate_timeout(timeout)
        per_attempt = self._timeout if timeout is None else timeout
        retries_done = 0
        while True:
            try:
                return await rpc(request, timeout=per_attempt, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                code, details, trailers = _status(exc)
                if not self._retry.should_retry(code, read=read, retries_done=retries_done):
                    raise error_from_status(
                        code, details, trailers, idempotency_key=idempotency_key
                    ) from exc
            await asyncio.sleep(self._retry.backoff(retries_done))
            retries_done += 1


def _status(
    exc: grpc.aio.AioRpcError,
) -> tuple[grpc.StatusCode, str | None, tuple[tuple[str, str | bytes], ...]]:
    trailers = tuple((key, value) for key, value in exc.trailing_metadata() or ())
    return exc.code(), exc.details(), trailers
