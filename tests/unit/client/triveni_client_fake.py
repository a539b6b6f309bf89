"""A tiny scriptable PaymentService + FraudService on a real gRPC server (127.0.0.1:0).

It records every call (request, metadata, deadline left) and can be told to fail the next N
calls of a method with a status code, to stall, or to break a watch stream midway.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fraud_pb
from triveni.v1 import fraud_service_pb2_grpc as fraud_grpc
from triveni.v1 import payment_service_pb2 as pay_pb
from triveni.v1 import payment_service_pb2_grpc as pay_grpc

API_KEY = "sk_test_client_0123456789"


@dataclass(frozen=True)
class Call:
    method: str
    request: Message
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class Failure:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str], ...]


@dataclass
class FakeTriveni(pay_grpc.PaymentServiceServicer, fraud_grpc.FraudServiceServicer):
    """PaymentService and FraudService that answer from memory and obey a script."""

    calls: list[Call] = field(default_factory=list)
    payments: dict[str, pb.Payment] = field(default_factory=dict)
    listing: list[pb.Payment] = field(default_factory=list)
    watch_script: list[pb.Payment] = field(default_factory=list)
    # Break the first watch stream with UNAVAILABLE after this many messages (None: never).
    watch_break_after: int | None = None
    stall_seconds: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, list[Failure]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str = "",
        *,
        times: int = 1,
        trailing_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Make the next `times` calls of `method` fail with `code`."""
        with self._lock:
            self._failures[method].extend([Failure(code, details, trailing_metadata)] * times)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def _enter(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        with self._lock:
            self.calls.append(Call(method, request, metadata, context.time_remaining()))
            failure = self._failures[method].pop(0) if self._failures[method] else None
        if metadata.get("authorization") != f"Bearer {API_KEY}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        if method in self.stall_seconds:
            time.sleep(self.stall_seconds[method])
        if failure is not None:
            if failure.trailing_metadata:
                context.set_trailing_metadata(failure.trailing_metadata)
            context.abort(failure.code, failure.details)

    # PaymentService

    def CreatePayment(
        self, request: pay_pb.CreatePaymentRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("CreatePayment", request, context)
        with self._lock:
            payment = pb.Payment(
                id=f"pay_{len(self.payments) + 1:024d}",
                merchant_id="mer_test",
                amount=request.amount,
                status=pb.PAYMENT_STATUS_REQUIRES_ACTION,
                redirect_url="upi://pay?pa=triveni@axis&am=15000.00",
                idempotency_key=request.idempotency_key,
                version=1,
            )
            self.payments[payment.id] = payment
        return payment

    def GetPayment(
        self, request: pay_pb.GetPaymentRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("GetPayment", request, context)
        with self._lock:
            payment = self.payments.get(request.id)
        if payment is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"payment {request.id} not found")
        return payment

    def ListPayments(
        self, request: pay_pb.ListPaymentsRequest, context: grpc.ServicerContext
    ) -> pay_pb.ListPaymentsResponse:
        self._enter("ListPayments", request, context)
        start = int(request.page_token or "0")
        end = start + (request.page_size or 20)
        more = end < len(self.listing)
        return pay_pb.ListPaymentsResponse(
            payments=self.listing[start:end], next_page_token=str(end) if more else ""
        )

    def CancelPayment(
        self, request: pay_pb.CancelPaymentRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("CancelPayment", request, context)
        return pb.Payment(id=request.id, status=pb.PAYMENT_STATUS_CANCELLED)

    def RefundPayment(
        self, request: pay_pb.RefundPaymentRequest, context: grpc.ServicerContext
    ) -> pb.Refund:
        self._enter("RefundPayment", request, context)
        return pb.Refund(
            id="rfnd_1", payment_id=request.payment_id, amount=request.amount, reason=request.reason
        )

    def SyncPayment(
        self, request: pay_pb.SyncPaymentRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("SyncPayment", request, context)
        return pb.Payment(id=request.id, status=pb.PAYMENT_STATUS_SUCCEEDED)

    def WatchPayment(
        self, request: pay_pb.WatchPaymentRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Payment]:
        self._enter("WatchPayment", request, context)
        with self._lock:
            break_after, self.watch_break_after = self.watch_break_after, None
        for sent, payment in enumerate(self.watch_script):
            if sent == break_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "stream reset")
            yield payment

    # FraudService

    def CheckTransaction(
        self, request: fraud_pb.CheckTransactionRequest, context: grpc.ServicerContext
    ) -> pb.FraudAssessment:
        self._enter("CheckTransaction", request, context)
        return pb.FraudAssessment(decision=pb.FRAUD_DECISION_ALLOW, score=5)

    def AddBlocklistEntry(
        self, request: fraud_pb.AddBlocklistEntryRequest, context: grpc.ServicerContext
    ) -> fraud_pb.BlocklistEntry:
        self._enter("AddBlocklistEntry", request, context)
        return fraud_pb.BlocklistEntry(
            id="bl_1", kind=request.kind, value=request.value, reason=request.reason
        )

    def RemoveBlocklistEntry(
        self, request: fraud_pb.RemoveBlocklistEntryRequest, context: grpc.ServicerContext
    ) -> fraud_pb.RemoveBlocklistEntryResponse:
        self._enter("RemoveBlocklistEntry", request, context)
        return fraud_pb.RemoveBlocklistEntryResponse()

    def ListBlocklistEntries(
        self, request: fraud_pb.ListBlocklistEntriesRequest, context: grpc.ServicerContext
    ) -> fraud_pb.ListBlocklistEntriesResponse:
        self._enter("ListBlocklistEntries", request, context)
        entries = [fraud_pb.BlocklistEntry(id=f"bl_{i}", kind=request.kind) for i in range(3)]
        if request.page_token:
            return fraud_pb.ListBlocklistEntriesResponse(entries=entries[2:])
        return fraud_pb.ListBlocklistEntriesResponse(entries=entries[:2], next_page_token="2")

    def GetFraudSettings(
        self, request: fraud_pb.GetFraudSettingsRequest, context: grpc.ServicerContext
    ) -> fraud_pb.FraudSettings:
        self._enter("GetFraudSettings", request, context)
        return fraud_pb.FraudSettings(block_amount_minor=10_000_000, review_score=50, version=3)

    def UpdateFraudSettings(
        self, request: fraud_pb.UpdateFraudSettingsRequest, context: grpc.ServicerContext
    ) -> fraud_pb.FraudSettings:
        self._enter("UpdateFraudSettings", request, context)
        updated = fraud_pb.FraudSettings()
        updated.CopyFrom(request.settings)
        updated.version = request.expected_version + 1
        return updated

    def ReportFraud(
        self, request: fraud_pb.ReportFraudRequest, context: grpc.ServicerContext
    ) -> fraud_pb.ReportFraudResponse:
        self._enter("ReportFraud", request, context)
        return fraud_pb.ReportFraudResponse(added=[fraud_pb.BlocklistEntry(id="bl_9")])

    def ApproveReview(
        self, request: fraud_pb.ReviewDecisionRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("ApproveReview", request, context)
        return pb.Payment(id=request.payment_id, status=pb.PAYMENT_STATUS_PROCESSING)

    def RejectReview(
        self, request: fraud_pb.ReviewDecisionRequest, context: grpc.ServicerContext
    ) -> pb.Payment:
        self._enter("RejectReview", request, context)
        return pb.Payment(id=request.payment_id, status=pb.PAYMENT_STATUS_BLOCKED)


@contextmanager
def serve(fake: FakeTriveni) -> Iterator[str]:
    """Run `fake` on a real gRPC server on 127.0.0.1 (free port); yields its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pay_grpc.add_PaymentServiceServicer_to_server(fake, server)
    fraud_grpc.add_FraudServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
