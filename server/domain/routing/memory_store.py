"""The routing state kept in memory: the same semantics as the Redis store, for one process.

Used by the routing simulator and by tests; `server.adapters.redis.routing_store` is the
shared, multi-process version (its Lua scripts implement these same transitions).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.health import (
    Admission,
    HealthConfig,
    HealthState,
    Outcome,
    Override,
    admit,
    record_outcome,
    set_override,
)
from server.domain.routing.success_rate import ScoringConfig, WindowStats

__all__ = ["InMemoryRoutingStore"]


@dataclass
class _Capacity:
    leases: dict[str, float] = field(default_factory=dict)  # lease id -> expiry
    second: int = -1
    count: int = 0


class InMemoryRoutingStore:
    """Sliding success-rate windows, circuit state and capacity leases per account."""

    def __init__(
        self, scoring: ScoringConfig | None = None, health: HealthConfig | None = None, *,
        lease_ttl_seconds: float = 60.0,
    ) -> None:
        self.scoring = scoring or ScoringConfig()
        self.health_config = health or HealthConfig()
        self.lease_ttl_seconds = lease_ttl_seconds
        self._windows: dict[tuple[str, str], deque[tuple[float, bool]]] = {}
        self._health: dict[str, HealthState] = {}
        self._capacity: dict[str, _Capacity] = {}
        self._lease_ids = itertools.count(1)

    # ---- success-rate windows -------------------------------------------------------------

    def record_outcome(self, account: str, dimension: str, success: bool, now: float) -> None:
        window = self._windows.get((account, dimension))
        if window is None or window.maxlen != self.scoring.window_size:
            window = deque(window or (), maxlen=self.scoring.window_size)
            self._windows[(account, dimension)] = window
        window.appendleft((now, success))

    def read_windows(
        self, accounts: Sequence[str], dimension: str, now: float,
    ) -> dict[str, WindowStats]:
        cutoff = now - self.scoring.window_max_age_seconds
        stats: dict[str, WindowStats] = {}
        for account in accounts:
            window = self._windows.get((account, dimension), deque())
            recent = [ok for at, ok in window if at >= cutoff]
            stats[account] = WindowStats(sum(recent), len(recent))
        return stats

    # ---- health ---------------------------------------------------------------------------

    def read_health(self, accounts: Sequence[str]) -> dict[str, HealthState]:
        return {a: self._health.get(a, HealthState()) for a in accounts}

    def admit(self, account: str, now: float) -> Admission:
        admission = admit(self._health.get(account, HealthState()), now, self.health_config)
        self._health[account] = admission.state
        return admission

    def record_health(self, account: str, outcome: Outcome, now: float) -> HealthState:
        state = record_outcome(
            self._health.get(account, HealthState()), outcome, now, self.health_config,
        )
        self._health[account] = state
        return state

    def set_override(self, account: str, override: Override) -> None:
        self._health[account] = set_override(self._health.get(account, HealthState()), override)

    # ---- capacity -------------------------------------------------------------------------

    def acquire(self, account: str, limit: CapacityLimit, now: float) -> str | None:
        """A lease id when the account has room (in flight and this second), else None."""
        slot = self._capacity.setdefault(account, _Capacity())
        self._expire(slot, now)
        second = int(now)
        count = slot.count if slot.second == second else 0
        if limit.max_tps is not None and count >= limit.max_tps:
            return None
        if limit.max_in_flight is not None and len(slot.leases) >= limit.max_in_flight:
            return None
        slot.second, slot.count = second, count + 1
        lease = f"lease-{next(self._lease_ids)}"
        slot.leases[lease] = now + self.lease_ttl_seconds
        return lease

    def release(self, account: str, lease: str) -> None:
        slot = self._capacity.get(account)
        if slot is not None:
            slot.leases.pop(lease, None)

    def read_capacity(
        self, accounts: Sequence[str], limits: Mapping[str, CapacityLimit], now: float,
    ) -> dict[str, CapacityState]:
        states: dict[str, CapacityState] = {}
        for account in accounts:
            slot = self._capacity.setdefault(account, _Capacity())
            self._expire(slot, now)
            count = slot.count if slot.second == int(now) else 0
            states[account] = CapacityState(
                len(slot.leases), count, limits.get(account, CapacityLimit()),
            )
        return states

    @staticmethod
    def _expire(slot: _Capacity, now: float) -> None:
        for lease in [k for k, expiry in slot.leases.items() if expiry <= now]:
            del slot.leases[lease]
