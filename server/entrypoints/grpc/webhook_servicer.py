"""WebhookService: thin — proto → use case → proto. Secrets appear only in Create / Rotate."""

from __future__ import annotations

from typing import Any

import grpc
from triveni.v1 import webhook_service_pb2 as ws
from triveni.v1 import webhook_service_pb2_grpc

from server.adapters.protobuf import timestamp
from server.domain.merchant_webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from server.domain.payment import utcnow
from server.entrypoints.grpc.interceptor import current_principal
from server.service_layer.merchant_webhooks import EndpointWithSecret, MerchantWebhookService

__all__ = ["WebhookServicer", "delivery_to_proto", "endpoint_to_proto"]

Ctx = grpc.aio.ServicerContext[Any, Any]

_STATUS = {
    DeliveryStatus.PENDING: ws.DELIVERY_STATUS_PENDING,
    DeliveryStatus.DELIVERED: ws.DELIVERY_STATUS_DELIVERED,
    DeliveryStatus.RETRYING: ws.DELIVERY_STATUS_RETRYING,
    DeliveryStatus.DEAD_LETTERED: ws.DELIVERY_STATUS_DEAD_LETTERED,
}


def endpoint_to_proto(endpoint: WebhookEndpoint) -> ws.WebhookEndpoint:
    """Never carries a secret."""
    message = ws.WebhookEndpoint(
        id=endpoint.id, url=endpoint.url, event_types=list(endpoint.event_types),
        description=endpoint.description,
        enabled=endpoint.enabled and endpoint.deleted_at is None,
        created_at=timestamp(endpoint.created_at))
    expiry = endpoint.previous_expiry(utcnow())
    if expiry is not None:
        message.previous_secret_expires_at.FromDatetime(expiry)
    return message


def delivery_to_proto(delivery: WebhookDelivery) -> ws.WebhookDelivery:
    message = ws.WebhookDelivery(
        id=delivery.id, endpoint_id=delivery.endpoint_id, event_id=delivery.event_id,
        event_type=delivery.event_type, payment_id=delivery.payment_id,
        sequence=delivery.sequence, status=_STATUS[delivery.status],
        created_at=timestamp(delivery.created_at),
        attempts=[ws.DeliveryAttempt(number=a.number, at=timestamp(a.at),
                                     http_status=a.http_status, error=a.error,
                                     latency_ms=a.latency_ms) for a in delivery.attempts])
    if delivery.next_attempt_at is not None:
        message.next_attempt_at.FromDatetime(delivery.next_attempt_at)
    return message


def _with_secret(result: EndpointWithSecret) -> ws.CreateWebhookEndpointResponse:
    return ws.CreateWebhookEndpointResponse(endpoint=endpoint_to_proto(result.endpoint),
                                            secret=result.secret)


class WebhookServicer(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, webhooks: MerchantWebhookService) -> None:
        self._webhooks = webhooks

    async def CreateWebhookEndpoint(self, request: ws.CreateWebhookEndpointRequest,
                                    context: Ctx) -> ws.CreateWebhookEndpointResponse:
        result = await self._webhooks.create_endpoint(
            current_principal().merchant_id, url=request.url,
            event_types=list(request.event_types), description=request.description,
            idempotency_key=request.idempotency_key)
        return _with_secret(result)

    async def ListWebhookEndpoints(self, request: ws.ListWebhookEndpointsRequest,
                                   context: Ctx) -> ws.ListWebhookEndpointsResponse:
        endpoints = await self._webhooks.list_endpoints(current_principal().merchant_id)
        return ws.ListWebhookEndpointsResponse(endpoints=[endpoint_to_proto(e)
                                                          for e in endpoints])

    async def DeleteWebhookEndpoint(self, request: ws.DeleteWebhookEndpointRequest,
                                    context: Ctx) -> ws.WebhookEndpoint:
        endpoint = await self._webhooks.delete_endpoint(current_principal().merchant_id,
                                                        request.id)
        return endpoint_to_proto(endpoint)

    async def RotateWebhookSecret(self, request: ws.RotateWebhookSecretRequest,
                                  context: Ctx) -> ws.CreateWebhookEndpointResponse:
        result = await self._webhooks.rotate_secret(
            current_principal().merchant_id, request.id, request.previous_secret_ttl_seconds)
        return _with_secret(result)

    async def ListWebhookDeliveries(self, request: ws.ListWebhookDeliveriesRequest,
                                    context: Ctx) -> ws.ListWebhookDeliveriesResponse:
        deliveries, token = await self._webhooks.list_deliveries(
            current_principal().merchant_id, endpoint_id=request.endpoint_id,
            payment_id=request.payment_id, page_size=request.page_size,
            page_token=request.page_token)
        return ws.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in deliveries], next_page_token=token)

    async def RedeliverWebhook(self, request: ws.RedeliverWebhookRequest,
                               context: Ctx) -> ws.WebhookDelivery:
        delivery = await self._webhooks.redeliver(
            current_principal().merchant_id, request.delivery_id, request.idempotency_key)
        return delivery_to_proto(delivery)
