"""RoutingService: connector accounts' live state, manual overrides, per-merchant policies.

Thin: proto → RoutingAdmin (server/service_layer/routing_admin.py, which also says who may
write) → proto. Reads work with any API key; writes need an admin key (PERMISSION_DENIED).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from triveni.v1 import routing_service_pb2 as pb
from triveni.v1 import routing_service_pb2_grpc

from server.adapters.protobuf import timestamp
from server.domain.routing import CircuitState, Override
from server.entrypoints.grpc.interceptor import current_principal
from server.errors import DependencyUnavailable
from server.service_layer.routing import AccountStatus
from server.service_layer.routing_admin import Caller, RoutingAdmin, StoredPolicy

__all__ = ["RoutingServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]

_CIRCUIT = {CircuitState.CLOSED: pb.CIRCUIT_STATE_CLOSED, CircuitState.OPEN: pb.CIRCUIT_STATE_OPEN,
            CircuitState.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN}
_OVERRIDE_TO_PROTO = {Override.NONE: pb.CONNECTOR_OVERRIDE_AUTO,
                      Override.FORCED_UP: pb.CONNECTOR_OVERRIDE_FORCE_UP,
                      Override.FORCED_DOWN: pb.CONNECTOR_OVERRIDE_FORCE_DOWN}
_OVERRIDE_FROM_PROTO = {v: k for k, v in _OVERRIDE_TO_PROTO.items()}


def _caller() -> Caller:
    principal = current_principal()
    return Caller(principal.merchant_id, principal.actor, principal.is_admin)


def _status_to_proto(status: AccountStatus) -> pb.ConnectorAccountStatus:
    return pb.ConnectorAccountStatus(
        name=status.name, psp=status.psp, tier=status.tier, priority=status.priority,
        circuit=_CIRCUIT[status.circuit] if status.circuit else pb.CIRCUIT_STATE_UNSPECIFIED,
        eliminated=status.eliminated,
        override=(pb.CONNECTOR_OVERRIDE_UNSPECIFIED if status.degraded
                  else _OVERRIDE_TO_PROTO[status.override]),
        windows=[pb.SuccessRateWindow(method=w.method, successes=w.stats.successes,
                                      attempts=w.stats.attempts,
                                      estimated_success_rate=w.estimated_success_rate)
                 for w in status.windows],
        in_flight=status.in_flight, degraded=status.degraded,
    )


def _policy_to_proto(stored: StoredPolicy) -> pb.RoutingPolicy:
    return pb.RoutingPolicy(policy_json=json.dumps(stored.document, sort_keys=True),
                            version=stored.version, updated_at=timestamp(stored.updated_at))


class RoutingServicer(routing_service_pb2_grpc.RoutingServiceServicer):
    def __init__(self, admin: RoutingAdmin | None) -> None:
        self._admin_or_none = admin

    @property
    def _admin(self) -> RoutingAdmin:
        if self._admin_or_none is None:
            raise DependencyUnavailable("routing", "routing administration is not configured")
        return self._admin_or_none

    async def ListConnectorAccounts(self, request: pb.ListConnectorAccountsRequest,
                                    context: Ctx) -> pb.ListConnectorAccountsResponse:
        current_principal()  # authenticated by the interceptor; any key may read
        statuses = await self._admin.list_accounts()
        return pb.ListConnectorAccountsResponse(accounts=[_status_to_proto(s) for s in statuses])

    async def SetConnectorOverride(self, request: pb.SetConnectorOverrideRequest,
                                   context: Ctx) -> pb.ConnectorAccountStatus:
        status = await self._admin.set_override(
            _caller(), request.name, _OVERRIDE_FROM_PROTO.get(request.override), request.reason)
        return _status_to_proto(status)

    async def GetRoutingPolicy(self, request: pb.GetRoutingPolicyRequest,
                               context: Ctx) -> pb.RoutingPolicy:
        return _policy_to_proto(await self._admin.get_policy(_caller()))

    async def SetRoutingPolicy(self, request: pb.SetRoutingPolicyRequest,
                               context: Ctx) -> pb.RoutingPolicy:
        stored = await self._admin.set_policy(_caller(), request.policy_json,
                                              request.expected_version)
        return _policy_to_proto(stored)
