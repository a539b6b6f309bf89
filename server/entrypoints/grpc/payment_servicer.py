"""PaymentService: thin — proto → command → use case → proto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from triveni.v1 import common_pb2, payment_service_pb2, payment_service_pb2_grpc

from server.adapters.kafka.merchant_stream import MerchantEventStream
from server.adapters.postgres.notifications import PaymentChangeFeed
from server.adapters.protobuf import (
    create_command_from_proto,
    from_timestamp,
    money_from_proto,
    payment_status_from_proto,
    payment_to_proto,
    refund_to_proto,
)
from server.domain.status import TRANSITIONS
from server.entrypoints.grpc.interceptor import current_principal
from server.errors import DependencyUnavailable, ValidationError
from server.service_layer.commands import CancelPayment, ListPayments, RefundPayment
from server.service_layer.payments import PaymentService
from server.service_layer.refunds import RefundService

__all__ = ["PaymentServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class PaymentServicer(payment_service_pb2_grpc.PaymentServiceServicer):
    def __init__(self, payments: PaymentService, refunds: RefundService,
                 feed: PaymentChangeFeed, *, watch_poll_seconds: float = 15.0,
                 events: MerchantEventStream | None = None) -> None:
        self._events = events
        self._payments = payments
        self._refunds = refunds
        self._feed = feed
        self._watch_poll_seconds = watch_poll_seconds

    async def CreatePayment(self, request: payment_service_pb2.CreatePaymentRequest,
                            context: Ctx) -> common_pb2.Payment:
        principal = current_principal()
        command = create_command_from_proto(request, principal.merchant_id)
        payment = await self._payments.create(command, actor=principal.actor)
        return payment_to_proto(payment)

    async def GetPayment(self, request: payment_service_pb2.GetPaymentRequest,
                         context: Ctx) -> common_pb2.Payment:
        payment = await self._payments.get(current_principal().merchant_id, request.id)
        return payment_to_proto(payment)

    async def ListPayments(self, request: payment_service_pb2.ListPaymentsRequest,
                           context: Ctx) -> payment_service_pb2.ListPaymentsResponse:
        query = ListPayments(
            merchant_id=current_principal().merchant_id,
            status=payment_status_from_proto(request.status),
            connector=request.connector,
            created_from=from_timestamp(request.created_from)
            if request.HasField("created_from") else None,
            created_to=from_timestamp(request.created_to)
            if request.HasField("created_to") else None,
            page_size=request.page_size or 20,
            page_token=request.page_token,
        )
        if not 0 <= request.page_size <= 100:
            raise ValidationError("page_size", "must be between 0 and 100")
        payments, token = await self._payments.list(query)
        return payment_service_pb2.ListPaymentsResponse(
            payments=[payment_to_proto(p) for p in payments], next_page_token=token)

    async def CancelPayment(self, request: payment_service_pb2.CancelPaymentRequest,
                            context: Ctx) -> common_pb2.Payment:
        principal = current_principal()
        if not request.idempotency_key:
            raise ValidationError("idempotency_key", "is required")
        payment = await self._payments.cancel(CancelPayment(
            merchant_id=principal.merchant_id, payment_id=request.id,
            idempotency_key=request.idempotency_key, reason=request.reason),
            actor=principal.actor)
        return payment_to_proto(payment)

    async def RefundPayment(self, request: payment_service_pb2.RefundPaymentRequest,
                            context: Ctx) -> common_pb2.Refund:
        principal = current_principal()
        refund = await self._refunds.refund(RefundPayment(
            merchant_id=principal.merchant_id, payment_id=request.payment_id,
            idempotency_key=request.idempotency_key,
            amount=money_from_proto(request.amount, "amount")
            if request.HasField("amount") else None,
            reason=request.reason), actor=principal.actor)
        return refund_to_proto(refund)

    async def SyncPayment(self, request: payment_service_pb2.SyncPaymentRequest,
                          context: Ctx) -> common_pb2.Payment:
        principal = current_principal()
        if not request.id:
            raise ValidationError("id", "is required")
        payment = await self._payments.sync(principal.merchant_id, request.id,
                                            actor=principal.actor)
        return payment_to_proto(payment)

    async def WatchPayment(self, request: payment_service_pb2.WatchPaymentRequest,
                           context: Ctx) -> AsyncIterator[common_pb2.Payment]:
        merchant_id = current_principal().merchant_id
        queue = self._feed.subscribe(request.id)
        try:
            payment = await self._payments.get(merchant_id, request.id)
            yield payment_to_proto(payment)
            version = payment.version
            while TRANSITIONS[payment.status]:
                # Re-read on every wake-up and on a timer, so a missed NOTIFY costs latency only.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=self._watch_poll_seconds)
                payment = await self._payments.get(merchant_id, request.id)
                if payment.version > version:
                    version = payment.version
                    yield payment_to_proto(payment)
        finally:
            self._feed.unsubscribe(request.id, queue)

    async def WatchPayments(
            self, request: payment_service_pb2.WatchPaymentsRequest, context: Ctx
    ) -> AsyncIterator[payment_service_pb2.WatchPaymentsResponse]:
        """Every change of the merchant's payments, read from Kafka; resumable by cursor.

        A response without `event` is a heartbeat: the first one carries the starting cursor,
        later ones (every 15 s without events) keep idle streams alive and the cursor fresh.
        """
        merchant_id = current_principal().merchant_id
        if self._events is None:
            raise DependencyUnavailable("kafka", "WatchPayments needs KAFKA_BOOTSTRAP")
        async for event, cursor in self._events.watch(merchant_id, request.after_cursor):
            response = payment_service_pb2.WatchPaymentsResponse(cursor=cursor)
            if event is not None:
                response.event.CopyFrom(event)
            yield response
