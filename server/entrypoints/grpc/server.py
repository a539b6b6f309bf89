"""gRPC server factory: services, health, reflection, interceptor. Tests bind port 0."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from triveni.v1 import (
    fraud_service_pb2,
    fraud_service_pb2_grpc,
    payment_service_pb2,
    payment_service_pb2_grpc,
    routing_service_pb2,
    routing_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)

__all__ = [
    "FRAUD_SERVICE",
    "PAYMENT_SERVICE",
    "REGISTRATIONS",
    "ROUTING_SERVICE",
    "WEBHOOK_SERVICE",
    "build_grpc_server",
    "set_serving",
]

# (add_XServicer_to_server, full service name) for every service a servicer can be given for.
Registration = tuple[Callable[[Any, grpc.aio.Server], None], str]

PAYMENT_SERVICE = payment_service_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
FRAUD_SERVICE = fraud_service_pb2.DESCRIPTOR.services_by_name["FraudService"].full_name
ROUTING_SERVICE = routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name
WEBHOOK_SERVICE = webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name
REGISTRATIONS: dict[str, Callable[[Any, grpc.aio.Server], None]] = {
    PAYMENT_SERVICE: payment_service_pb2_grpc.add_PaymentServiceServicer_to_server,
    FRAUD_SERVICE: fraud_service_pb2_grpc.add_FraudServiceServicer_to_server,
    ROUTING_SERVICE: routing_service_pb2_grpc.add_RoutingServiceServicer_to_server,
    WEBHOOK_SERVICE: webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server,
}


def build_grpc_server(
    *, servicers: Mapping[str, Any], interceptors: Sequence[grpc.aio.ServerInterceptor],
    address: str, reuse_port: bool = False, tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Returns (server, bound port, health servicer); health starts NOT_SERVING.

    `servicers` maps full service names (PAYMENT_SERVICE, ...) to servicer instances.
    """
    options = [("grpc.so_reuseport", 1 if reuse_port else 0),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.min_ping_interval_without_data_ms", 10_000)]
    server = grpc.aio.server(interceptors=list(interceptors), options=options)
    for name, servicer in servicers.items():
        REGISTRATIONS[name](servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*servicers, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls is not None:
        key, cert = tls
        credentials = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    server.triveni_services = tuple(servicers)  # type: ignore[attr-defined]
    return server, port, health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool,
                      services: Sequence[str] = tuple(REGISTRATIONS)) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", *services):
        await health_servicer.set(name, status)
