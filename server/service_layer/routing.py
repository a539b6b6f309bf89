"""Router: the routing domain's decide() fed with live state from the routing store.

Redis down → decide() runs with no stats/health/capacity (static priority + rules), marked
degraded on the payment and counted in triveni_routing_degraded_total.
"""

from __future__ import annotations

import json
import logging
import random
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from server.adapters.metrics import CONNECTOR_HEALTH, ROUTING_DEGRADED
from server.connectors.base import ConnectorAccount
from server.domain.payment import Payment, RoutingCandidateInfo, RoutingSummary
from server.domain.routing import RoutingContext, RoutingPolicy, decide, parse_policy
from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.health import Admission, CircuitState, HealthState, Outcome
from server.domain.routing.success_rate import WindowStats
from server.errors import ConfigurationError, DependencyUnavailable, ValidationError

__all__ = ["Claim", "PolicyRouter", "RoutingStateStore", "load_policy"]

log = logging.getLogger(__name__)
_CIRCUIT_GAUGE = {CircuitState.CLOSED: 1.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 0.0}


class _Snapshot(Protocol):
    @property
    def stats(self) -> Mapping[str, WindowStats]: ...
    @property
    def health(self) -> Mapping[str, HealthState]: ...
    @property
    def capacity(self) -> Mapping[str, CapacityState]: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to call a connector now: a capacity lease (if capped) and a probe flag."""

    connector: str
    lease: str | None = None
    probe: bool = False


class RoutingStateStore(Protocol):
    async def snapshot(self, accounts: Sequence[str], dimension: str,
                       limits: Mapping[str, CapacityLimit], *, now: float | None = None
                       ) -> _Snapshot: ...
    async def record_health(self, account: str, outcome: Outcome, *, now: float | None = None
                            ) -> CircuitState: ...
    async def record_outcome(self, account: str, dimension: str, success: bool, *,
                             now: float | None = None) -> None: ...
    async def admit(self, account: str, *, now: float | None = None) -> Admission: ...
    async def acquire(self, account: str, limit: CapacityLimit, *, now: float | None = None
                      ) -> str | None: ...
    async def release(self, account: str, lease: str) -> None: ...


def load_policy(path: Path | None, premium_threshold_minor: int,
                accounts: Sequence[ConnectorAccount]) -> RoutingPolicy:
    """The routing policy file (JSON or TOML), or the built-in default (seed premium rule)."""
    data: dict[str, Any] = {"version": 1, "premium_threshold_minor": premium_threshold_minor}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"routing policy {path}: {exc}") from exc
    try:
        return parse_policy(data, known_accounts=[a.name for a in accounts])
    except ValidationError as exc:
        raise ConfigurationError(f"routing policy: {exc}") from exc


class PolicyRouter:
    def __init__(self, accounts: Sequence[ConnectorAccount], policy: RoutingPolicy,
                 store: RoutingStateStore, *, rng: random.Random | None = None) -> None:
        self._accounts = list(accounts)
        self._names = [a.name for a in accounts]
        self.policy = policy
        self._store = store
        self._rng = rng or random.Random()

    async def route(self, payment: Payment) -> RoutingSummary:
        ctx = RoutingContext(
            payment_id=payment.id, amount=payment.amount, method=payment.method.type,
            merchant_id=payment.merchant_id, card_network=payment.method.card_network,
            upi_flow=payment.method.upi_flow, bank_code=payment.method.bank_code,
            wallet=payment.method.wallet, metadata=payment.metadata,
            preferred_connector=payment.preferred_connector,
            attempt=len(payment.attempts) + 1,
            already_tried=frozenset(a.connector for a in payment.attempts),
        )
        stats = health = capacity = None
        try:
            snap = await self._store.snapshot(self._names, payment.method.type,
                                              self.policy.capacity)
            stats, health, capacity = snap.stats, snap.health, snap.capacity
        except DependencyUnavailable as exc:
            ROUTING_DEGRADED.inc()
            log.warning("routing degraded: redis unavailable", extra={"error": str(exc)})
        decision = decide(ctx, self._accounts, self.policy, stats, health, capacity,
                          rng=self._rng, now=time.time())
        return RoutingSummary(
            algorithm=decision.algorithm, chosen=decision.chosen, reason=decision.reason,
            degraded=decision.degraded, fallbacks=decision.fallbacks,
            candidates=tuple(RoutingCandidateInfo(c.connector, c.score, c.note)
                             for c in decision.candidates),
        )

    async def claim(self, connector: str) -> Claim | None:
        """Take a circuit slot (a probe when half-open) and a capacity lease before calling
        `connector`; None when it must not be called now. Redis down → proceed (degraded)."""
        try:
            admission = await self._store.admit(connector)
            if not admission.admitted:
                return None
            limit = self.policy.capacity.get(connector)
            if limit is None:
                return Claim(connector, None, admission.probe)
            lease = await self._store.acquire(connector, limit)
            return None if lease is None else Claim(connector, lease, admission.probe)
        except DependencyUnavailable:
            ROUTING_DEGRADED.inc()
            return Claim(connector)

    async def release(self, claim: Claim) -> None:
        if claim.lease is None:
            return
        try:
            await self._store.release(claim.connector, claim.lease)
        except DependencyUnavailable:
            ROUTING_DEGRADED.inc()  # the lease expires by itself (TTL)

    async def record_call(self, connector: str, outcome: str) -> None:
        """Feed the circuit breaker: outcome is success | declined | failure | timeout."""
        try:
            state = await self._store.record_health(connector, Outcome(outcome))
            CONNECTOR_HEALTH.labels(connector=connector).set(_CIRCUIT_GAUGE[state])
        except DependencyUnavailable:
            ROUTING_DEGRADED.inc()

    async def record_result(self, connector: str, method: str, *, success: bool) -> None:
        """Feed the success-rate window with a payment's final outcome on `connector`."""
        try:
            await self._store.record_outcome(connector, method, success)
        except DependencyUnavailable:
            ROUTING_DEGRADED.inc()
