"""FraudService: the same engine CreatePayment uses, plus blocklists, settings and reviews."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
from triveni.v1 import common_pb2, fraud_service_pb2, fraud_service_pb2_grpc

from server.adapters.postgres import fraud_repository as repo
from server.adapters.postgres.pool import postgres_errors_as_unavailable
from server.adapters.protobuf import (
    create_command_from_proto,
    fraud_to_proto,
    payment_to_proto,
    timestamp,
)
from server.domain.fraud.model import BlocklistEntry, BlocklistKind, FraudInput
from server.domain.fraud.settings import FraudSettings, ReviewAction, VelocityFailMode
from server.entrypoints.grpc.interceptor import current_principal
from server.errors import ValidationError
from server.service_layer.fraud_bridge import summary_of

if TYPE_CHECKING:
    from server.bootstrap import App

__all__ = ["FraudServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]
_KIND_FROM_PROTO = {
    fraud_service_pb2.BLOCKLIST_KIND_IP: BlocklistKind.IP,
    fraud_service_pb2.BLOCKLIST_KIND_VPA: BlocklistKind.VPA,
    fraud_service_pb2.BLOCKLIST_KIND_EMAIL: BlocklistKind.EMAIL,
    fraud_service_pb2.BLOCKLIST_KIND_PHONE: BlocklistKind.PHONE,
    fraud_service_pb2.BLOCKLIST_KIND_CARD_TOKEN: BlocklistKind.CARD_TOKEN,
    fraud_service_pb2.BLOCKLIST_KIND_CARD_BIN: BlocklistKind.CARD_BIN,
    fraud_service_pb2.BLOCKLIST_KIND_CUSTOMER_ID: BlocklistKind.CUSTOMER_ID,
}
_KIND_TO_PROTO = {v: k for k, v in _KIND_FROM_PROTO.items()}
_REVIEW_ACTION = {fraud_service_pb2.REVIEW_ACTION_HOLD: ReviewAction.HOLD,
                  fraud_service_pb2.REVIEW_ACTION_PROCEED_AND_FLAG: ReviewAction.PROCEED_AND_FLAG}
_FAIL_MODE = {fraud_service_pb2.VELOCITY_FAIL_MODE_OPEN: VelocityFailMode.OPEN,
              fraud_service_pb2.VELOCITY_FAIL_MODE_CLOSED: VelocityFailMode.CLOSED}


def _entry_to_proto(entry: BlocklistEntry) -> fraud_service_pb2.BlocklistEntry:
    return fraud_service_pb2.BlocklistEntry(
        id=entry.id, kind=_KIND_TO_PROTO[entry.kind], value=entry.value, reason=entry.reason,
        created_at=timestamp(entry.created_at), expires_at=timestamp(entry.expires_at))


def _settings_to_proto(settings: FraudSettings, version: int,
                       updated_at: Any) -> fraud_service_pb2.FraudSettings:
    return fraud_service_pb2.FraudSettings(
        block_amount_minor=settings.block_amount_minor, review_score=settings.review_score,
        block_score=settings.block_score,
        ip_velocity_per_minute=settings.ip_velocity_per_minute,
        allowed_countries=list(settings.allowed_countries),
        review_action={v: k for k, v in _REVIEW_ACTION.items()}[settings.review_action],
        velocity_fail_mode={v: k for k, v in _FAIL_MODE.items()}[settings.velocity_fail_mode],
        version=version, updated_at=timestamp(updated_at))


def _kind(value: int, field: str) -> BlocklistKind:
    try:
        return _KIND_FROM_PROTO[value]  # type: ignore[index]
    except KeyError as exc:
        raise ValidationError(field, "must be one of IP, VPA, EMAIL, PHONE, CARD_TOKEN, "
                              "CARD_BIN, CUSTOMER_ID") from exc


class FraudServicer(fraud_service_pb2_grpc.FraudServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    async def CheckTransaction(self, request: fraud_service_pb2.CheckTransactionRequest,
                               context: Ctx) -> common_pb2.FraudAssessment:
        merchant_id = current_principal().merchant_id
        # Same validation as CreatePayment (card numbers refused, fields named).
        probe = create_command_from_proto(_as_create_request(request), merchant_id)
        command = dataclasses.replace(probe, idempotency_key="check").validated()
        inp = FraudInput(
            amount=command.amount, method_type=command.method.type, vpa=command.method.upi_vpa,
            email=command.customer.email, phone=command.customer.phone,
            customer_id=command.customer.id, card_token=command.method.card_token,
            ip=command.ip_address, country=command.country, merchant_id=merchant_id)
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            assessment = await self._app.fraud.screen(conn, merchant_id, inp,
                                                      record=request.record)
        return fraud_to_proto(summary_of(assessment))

    async def AddBlocklistEntry(self, request: fraud_service_pb2.AddBlocklistEntryRequest,
                                context: Ctx) -> fraud_service_pb2.BlocklistEntry:
        kind = _kind(request.kind, "kind")
        if not request.value:
            raise ValidationError("value", "is required")
        if request.ttl_seconds < 0:
            raise ValidationError("ttl_seconds", "must be 0 (never expires) or positive")
        ttl = timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            entry = await repo.add_blocklist_entry(
                conn, current_principal().merchant_id, kind, request.value,
                reason=request.reason, ttl=ttl, source=current_principal().actor)
        return _entry_to_proto(entry)

    async def RemoveBlocklistEntry(
            self, request: fraud_service_pb2.RemoveBlocklistEntryRequest, context: Ctx
    ) -> fraud_service_pb2.RemoveBlocklistEntryResponse:
        if not request.id:
            raise ValidationError("id", "is required")
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            await repo.remove_blocklist_entry(conn, current_principal().merchant_id, request.id)
        return fraud_service_pb2.RemoveBlocklistEntryResponse()

    async def ListBlocklistEntries(
            self, request: fraud_service_pb2.ListBlocklistEntriesRequest, context: Ctx
    ) -> fraud_service_pb2.ListBlocklistEntriesResponse:
        kind = None if request.kind == 0 else _kind(request.kind, "kind")
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            page = await repo.list_blocklist_entries(
                conn, current_principal().merchant_id, kind=kind,
                page_size=request.page_size, page_token=request.page_token)
        return fraud_service_pb2.ListBlocklistEntriesResponse(
            entries=[_entry_to_proto(e) for e in page.entries],
            next_page_token=page.next_page_token)

    async def GetFraudSettings(self, request: fraud_service_pb2.GetFraudSettingsRequest,
                               context: Ctx) -> fraud_service_pb2.FraudSettings:
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            stored = await repo.get_settings(conn, current_principal().merchant_id)
        return _settings_to_proto(stored.settings, stored.version, stored.updated_at)

    async def UpdateFraudSettings(self, request: fraud_service_pb2.UpdateFraudSettingsRequest,
                                  context: Ctx) -> fraud_service_pb2.FraudSettings:
        principal = current_principal()
        incoming = request.settings
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            current = await repo.get_settings(conn, principal.merchant_id)
            changes: dict[str, Any] = {
                "block_amount_minor": incoming.block_amount_minor,
                "review_score": incoming.review_score,
                "block_score": incoming.block_score,
                "ip_velocity_per_minute": incoming.ip_velocity_per_minute,
                "allowed_countries": tuple(c.upper() for c in incoming.allowed_countries),
            }
            # proto3 zero values mean "keep the current value" for every field.
            updated = dataclasses.replace(current.settings, **{
                k: v for k, v in changes.items() if v})
            if incoming.review_action:
                updated = dataclasses.replace(
                    updated, review_action=_REVIEW_ACTION[incoming.review_action])
            if incoming.velocity_fail_mode:
                updated = dataclasses.replace(
                    updated, velocity_fail_mode=_FAIL_MODE[incoming.velocity_fail_mode])
            stored = await repo.save_settings(conn, principal.merchant_id, updated,
                                              expected_version=request.expected_version,
                                              updated_by=principal.actor)
        return _settings_to_proto(stored.settings, stored.version, stored.updated_at)

    async def ReportFraud(self, request: fraud_service_pb2.ReportFraudRequest,
                          context: Ctx) -> fraud_service_pb2.ReportFraudResponse:
        principal = current_principal()
        if not request.payment_id:
            raise ValidationError("payment_id", "is required")
        payment = await self._app.payments.get(principal.merchant_id, request.payment_id)
        instruments = [(BlocklistKind.VPA, payment.method.upi_vpa),
                       (BlocklistKind.CARD_TOKEN, payment.method.card_token),
                       (BlocklistKind.EMAIL, payment.customer.email),
                       (BlocklistKind.PHONE, payment.customer.phone),
                       (BlocklistKind.IP, payment.ip_address)]
        reason = f"reported fraud on {payment.id}: " + fraud_service_pb2.FraudKind.Name(
            request.kind) + (f" ({request.note})" if request.note else "")
        added = []
        async with postgres_errors_as_unavailable(), self._app.pool.connection() as conn:
            for kind, value in instruments:
                if value:
                    added.append(await repo.add_blocklist_entry(
                        conn, principal.merchant_id, kind, value, reason=reason[:255],
                        source=f"report:{payment.id}"))
        return fraud_service_pb2.ReportFraudResponse(added=[_entry_to_proto(e) for e in added])

    async def ApproveReview(self, request: fraud_service_pb2.ReviewDecisionRequest,
                            context: Ctx) -> common_pb2.Payment:
        principal = current_principal()
        _require_review_fields(request)
        payment = await self._app.payments.approve_review(
            principal.merchant_id, request.payment_id, actor=principal.actor)
        return payment_to_proto(payment)

    async def RejectReview(self, request: fraud_service_pb2.ReviewDecisionRequest,
                           context: Ctx) -> common_pb2.Payment:
        principal = current_principal()
        _require_review_fields(request)
        payment = await self._app.payments.reject_review(
            principal.merchant_id, request.payment_id, actor=principal.actor)
        return payment_to_proto(payment)


def _require_review_fields(request: fraud_service_pb2.ReviewDecisionRequest) -> None:
    if not request.payment_id:
        raise ValidationError("payment_id", "is required")
    if not request.idempotency_key:
        raise ValidationError("idempotency_key", "is required")


def _as_create_request(request: fraud_service_pb2.CheckTransactionRequest) -> Any:
    from triveni.v1 import payment_service_pb2

    return payment_service_pb2.CreatePaymentRequest(
        amount=request.amount if request.HasField("amount") else None,
        method=request.method, customer=request.customer, ip_address=request.ip_address,
        country=request.country)


