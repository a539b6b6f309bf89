"""Router: the routing domain's decide() fed with live state from the routing store.

Redis down → decide() runs with no stats/health/capacity (static priority + rules), marked
degraded on the payment and counted in triveni_routing_degraded_total.

Which policy: the payment's merchant's latest stored policy when a `PolicySource` is given
(PostgreSQL, cached per process and invalidated by NOTIFY), else the global policy
(`self.policy`: TRIVENI_ROUTING_FILE or the built-in seed rule). Circuit breakers, capacity caps
and success-rate windows belong to the shared connector accounts and always follow the global
policy.
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
from server.domain.routing import (
    RetryPolicy,
    RoutingContext,
    RoutingPolicy,
    decide,
    parse_policy,
)
from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.health import (
    Admission,
    Availability,
    CircuitState,
    HealthState,
    Outcome,
    Override,
    availability,
)
from server.domain.routing.success_rate import EMPTY_WINDOW, WindowStats, posterior_mean
from server.errors import ConfigurationError, DependencyUnavailable, ValidationError

__all__ = [
    "AccountStatus",
    "Claim",
    "MethodWindow",
    "PolicyRouter",
    "PolicySource",
    "RoutingStateStore",
    "load_policy",
    "load_policy_document",
]

log = logging.getLogger(__name__)
_CIRCUIT_GAUGE = {CircuitState.CLOSED: 1.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 0.0}
_METHODS = ("upi", "card", "netbanking", "wallet")


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
    async def set_override(self, account: str, override: Override) -> None: ...


class PolicySource(Protocol):
    async def policy_for(self, merchant_id: str) -> RoutingPolicy:
        """The policy routing uses for this merchant's payments now."""
        ...


@dataclass(frozen=True, slots=True)
class MethodWindow:
    """One success-rate window of an account: outcomes and the Beta-prior estimate."""

    method: str
    stats: WindowStats
    estimated_success_rate: float


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """A connector account as routing sees it right now (RoutingService)."""

    name: str
    psp: str
    tier: str
    priority: int
    circuit: CircuitState | None  # None: unknown (Redis down)
    eliminated: bool  # routing sends it no traffic now (circuit open or forced down)
    override: Override
    windows: tuple[MethodWindow, ...]
    in_flight: int
    degraded: bool
    note: str = ""


def load_policy_document(path: Path | None, premium_threshold_minor: int) -> dict[str, Any]:
    """The global policy document: the routing policy file (JSON or TOML), or the built-in
    default (the seed premium rule)."""
    data: dict[str, Any] = {"version": 1, "premium_threshold_minor": premium_threshold_minor}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"routing policy {path}: {exc}") from exc
    return data


def load_policy(path: Path | None, premium_threshold_minor: int,
                accounts: Sequence[ConnectorAccount]) -> RoutingPolicy:
    """The routing policy file (JSON or TOML), or the built-in default (seed premium rule)."""
    data = load_policy_document(path, premium_threshold_minor)
    try:
        return parse_policy(data, known_accounts=[a.name for a in accounts])
    except ValidationError as exc:
        raise ConfigurationError(f"routing policy: {exc}") from exc


class PolicyRouter:
    def __init__(self, accounts: Sequence[ConnectorAccount], policy: RoutingPolicy,
                 store: RoutingStateStore, *, rng: random.Random | None = None,
                 policies: PolicySource | None = None) -> None:
        self._accounts = list(accounts)
        self._names = [a.name for a in accounts]
        self.policy = policy
        self._store = store
        self._rng = rng or random.Random()
        self._policies = policies

    @property
    def account_names(self) -> list[str]:
        return list(self._names)

    async def policy_for(self, merchant_id: str) -> RoutingPolicy:
        """The merchant's own policy when one is stored, else the global policy."""
        if self._policies is None or not merchant_id:
            return self.policy
        return await self._policies.policy_for(merchant_id)

    async def retry_policy(self, merchant_id: str) -> RetryPolicy:
        return (await self.policy_for(merchant_id)).retry

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
        policy = await self.policy_for(payment.merchant_id)
        stats = health = capacity = None
        try:
            snap = await self._store.snapshot(self._names, payment.method.type,
                                              self.policy.capacity)
            stats, health, capacity = snap.stats, snap.health, snap.capacity
        except DependencyUnavailable as exc:
            ROUTING_DEGRADED.inc()
            log.warning("routing degraded: redis unavailable", extra={"error": str(exc)})
        decision = decide(ctx, self._accounts, policy, stats, health, capacity,
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

    async def set_override(self, connector: str, override: Override) -> None:
        """The manual switch (seed-compatible `processor:<name>:health`); raises
        DependencyUnavailable when Redis is down."""
        await self._store.set_override(connector, override)

    async def account_statuses(self) -> list[AccountStatus]:
        """Every account with its circuit, override, windows per method and in-flight calls;
        `degraded` (and nothing live) when Redis cannot be read. Refreshes the
        triveni_connector_health gauge (forced down reads 0, forced up 1)."""
        now = time.time()
        snapshots: dict[str, _Snapshot] = {}
        try:
            for method in _METHODS:
                snapshots[method] = await self._store.snapshot(self._names, method,
                                                               self.policy.capacity, now=now)
        except DependencyUnavailable as exc:
            log.warning("account status without redis", extra={"error": str(exc)})
            return [AccountStatus(a.name, a.psp, a.tier, a.priority, None, False, Override.NONE,
                                  (), 0, True, "redis unavailable") for a in self._accounts]
        first = snapshots[_METHODS[0]]
        statuses: list[AccountStatus] = []
        for account in self._accounts:
            health = first.health.get(account.name, HealthState())
            verdict, note = availability(health, now, self.policy.health)
            capacity = first.capacity.get(account.name)
            windows = tuple(
                MethodWindow(method, stats, round(posterior_mean(stats, self.policy.scoring), 6))
                for method in _METHODS if method in account.capabilities.methods
                for stats in (snapshots[method].stats.get(account.name, EMPTY_WINDOW),)
            )
            statuses.append(AccountStatus(
                name=account.name, psp=account.psp, tier=account.tier,
                priority=account.priority, circuit=health.state,
                eliminated=verdict is Availability.UNAVAILABLE, override=health.override,
                windows=windows, in_flight=capacity.in_flight if capacity else 0,
                degraded=False, note=note))
            gauge = {Override.FORCED_DOWN: 0.0, Override.FORCED_UP: 1.0}.get(
                health.override, _CIRCUIT_GAUGE[health.state])
            CONNECTOR_HEALTH.labels(connector=account.name).set(gauge)
        return statuses
