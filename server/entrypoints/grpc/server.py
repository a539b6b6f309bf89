"""gRPC server factory: services, health, reflection, interceptor. Tests bind port 0."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from triveni.v1 import (
    fraud_service_pb2,
    fraud_service_pb2_grpc,
    payment_service_pb2,
    payment_service_pb2_grpc,
)

__all__ = ["SERVICE_NAMES", "build_grpc_server", "set_serving"]

SERVICE_NAMES = (
    payment_service_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
    fraud_service_pb2.DESCRIPTOR.services_by_name["FraudService"].full_name,
)


def build_grpc_server(
    *, payment_servicer: payment_service_pb2_grpc.PaymentServiceServicer,
    fraud_servicer: fraud_service_pb2_grpc.FraudServiceServicer,
    interceptors: Sequence[grpc.aio.ServerInterceptor], address: str,
    reuse_port: bool = False, tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Returns (server, bound port, health servicer); health starts NOT_SERVING."""
    options = [("grpc.so_reuseport", 1 if reuse_port else 0),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.min_ping_interval_without_data_ms", 10_000)]
    server = grpc.aio.server(interceptors=list(interceptors), options=options)
    payment_service_pb2_grpc.add_PaymentServiceServicer_to_server(payment_servicer, server)
    fraud_service_pb2_grpc.add_FraudServiceServicer_to_server(fraud_servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls is not None:
        key, cert = tls
        credentials = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    return server, port, health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
