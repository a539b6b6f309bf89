"""Per-account circuit breaker ("elimination") as pure state transitions.

    CLOSED ──(N consecutive failures, or error rate > X over >= min volume)──▶ OPEN
    OPEN ──(cool-down elapsed; next request)──▶ HALF_OPEN (admits up to `half_open_probes`)
    HALF_OPEN ──probe succeeds──▶ CLOSED          HALF_OPEN ──probe fails──▶ OPEN (timer restarts)

What counts: a technical failure (5xx, refused connection, rate limit) or a timeout counts
against the account; a decline (insufficient funds, wrong PIN) does not -- the PSP answered,
and declines are the success-rate window's business, not the breaker's.

A manual override (`forced_up` / `forced_down`, the seed's `processor:<name>:health` key) wins
over the circuit. Every function here takes `now` (epoch seconds) and returns a new state, so
the Redis adapter runs the same transitions in Lua and the simulator runs them in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from server.domain.routing._fields import as_mapping, check_keys, opt_float, opt_int

__all__ = [
    "Admission",
    "Availability",
    "CircuitState",
    "HealthConfig",
    "HealthState",
    "Outcome",
    "Override",
    "admit",
    "availability",
    "parse_health",
    "record_outcome",
    "set_override",
]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Override(StrEnum):
    NONE = ""
    FORCED_UP = "up"
    FORCED_DOWN = "down"


class Outcome(StrEnum):
    SUCCESS = "success"
    DECLINED = "declined"  # PSP answered and refused: healthy for the breaker
    FAILURE = "failure"  # technical failure
    TIMEOUT = "timeout"

    @property
    def counts_as_failure(self) -> bool:
        return self in (Outcome.FAILURE, Outcome.TIMEOUT)


class Availability(StrEnum):
    AVAILABLE = "available"
    PROBE = "probe"  # half-open (or cooled-down open) with a free probe slot
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    failure_threshold: int = 5  # consecutive failures/timeouts that open the circuit
    error_rate_threshold: float = 0.5  # ... or this failure share in the current error window
    error_rate_min_volume: int = 20  # ... once the window holds at least this many calls
    error_window_seconds: float = 60.0
    cooldown_seconds: float = 30.0
    half_open_probes: int = 1  # concurrent probe requests let through while half-open
    # A probe that never reports back (crashed process) frees its slot after this long.
    probe_timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class HealthState:
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    window_started_at: float = 0.0
    window_calls: int = 0
    window_failures: int = 0
    opened_at: float = 0.0
    probes_in_flight: int = 0
    probe_started_at: float = 0.0
    override: Override = Override.NONE
    reason: str = ""  # why the circuit last opened


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    probe: bool
    state: HealthState
    note: str


def _open(state: HealthState, now: float, reason: str) -> HealthState:
    return replace(
        state, state=CircuitState.OPEN, opened_at=now, probes_in_flight=0, probe_started_at=0.0,
        consecutive_failures=0, window_started_at=now, window_calls=0, window_failures=0,
        reason=reason,
    )


def _close(state: HealthState, now: float) -> HealthState:
    return replace(
        state, state=CircuitState.CLOSED, consecutive_failures=0, window_started_at=now,
        window_calls=0, window_failures=0, opened_at=0.0, probes_in_flight=0,
        probe_started_at=0.0, reason="",
    )


def _free_probe_slots(state: HealthState, now: float, config: HealthConfig) -> int:
    in_flight = state.probes_in_flight
    if in_flight and now - state.probe_started_at >= config.probe_timeout_seconds:
        in_flight = 0
    return config.half_open_probes - in_flight


def availability(state: HealthState, now: float, config: HealthConfig) -> tuple[Availability, str]:
    """Read-only view for routing: may this account get the next request, and why (not)."""
    if state.override is Override.FORCED_DOWN:
        return Availability.UNAVAILABLE, "unhealthy: forced down"
    if state.override is Override.FORCED_UP:
        return Availability.AVAILABLE, "healthy: forced up"
    if state.state is CircuitState.CLOSED:
        return Availability.AVAILABLE, "healthy"
    if state.state is CircuitState.OPEN and now - state.opened_at < config.cooldown_seconds:
        return Availability.UNAVAILABLE, "unhealthy: circuit open"
    if _free_probe_slots(state, now, config) > 0:
        return Availability.PROBE, "half-open: probe"
    return Availability.UNAVAILABLE, "unhealthy: half-open, probes in flight"


def admit(state: HealthState, now: float, config: HealthConfig) -> Admission:
    """Claim the right to send one request (a probe slot when half-open)."""
    verdict, note = availability(state, now, config)
    if verdict is Availability.UNAVAILABLE:
        return Admission(False, False, state, note)
    if verdict is Availability.AVAILABLE:
        return Admission(True, False, state, note)
    in_flight = config.half_open_probes - _free_probe_slots(state, now, config)
    probing = replace(
        state, state=CircuitState.HALF_OPEN, probes_in_flight=in_flight + 1,
        probe_started_at=now,
    )
    return Admission(True, True, probing, note)


def record_outcome(
    state: HealthState, outcome: Outcome, now: float, config: HealthConfig,
) -> HealthState:
    """Apply the outcome of one request to the account's circuit."""
    failed = outcome.counts_as_failure
    cooled = now - state.opened_at >= config.cooldown_seconds
    if state.state is CircuitState.OPEN and not cooled:
        # A straggler that started before the circuit opened tells us nothing new.
        return state
    if state.state is not CircuitState.CLOSED:
        # HALF_OPEN, or OPEN past its cool-down when the caller skipped `admit`: a probe.
        if failed:
            return _open(state, now, f"probe {outcome.value}")
        return _close(state, now)
    # CLOSED
    if now - state.window_started_at >= config.error_window_seconds:
        state = replace(state, window_started_at=now, window_calls=0, window_failures=0)
    calls = state.window_calls + 1
    failures = state.window_failures + (1 if failed else 0)
    consecutive = state.consecutive_failures + 1 if failed else 0
    if failed and consecutive >= config.failure_threshold:
        return _open(state, now, f"{consecutive} consecutive failures")
    if (
        failed
        and calls >= config.error_rate_min_volume
        and failures / calls > config.error_rate_threshold
    ):
        return _open(state, now, f"error rate {failures}/{calls} above "
                                 f"{config.error_rate_threshold:.0%}")
    return replace(
        state, consecutive_failures=consecutive, window_calls=calls, window_failures=failures,
    )


def set_override(state: HealthState, override: Override) -> HealthState:
    """Operator switch; clearing it (NONE) returns control to the circuit."""
    return replace(state, override=override)


def parse_health(data: Any, path: str = "health") -> HealthConfig:
    if data is None:
        return HealthConfig()
    section = as_mapping(data, path)
    check_keys(section, set(HealthConfig.__dataclass_fields__), path)
    base = HealthConfig()
    return HealthConfig(
        failure_threshold=opt_int(section, "failure_threshold", path, base.failure_threshold,
                                  minimum=1) or base.failure_threshold,
        error_rate_threshold=opt_float(section, "error_rate_threshold", path,
                                       base.error_rate_threshold, minimum=0.0, maximum=1.0),
        error_rate_min_volume=opt_int(section, "error_rate_min_volume", path,
                                      base.error_rate_min_volume, minimum=1)
        or base.error_rate_min_volume,
        error_window_seconds=opt_float(section, "error_window_seconds", path,
                                       base.error_window_seconds, minimum=1.0),
        cooldown_seconds=opt_float(section, "cooldown_seconds", path, base.cooldown_seconds,
                                   minimum=0.0),
        half_open_probes=opt_int(section, "half_open_probes", path, base.half_open_probes,
                                 minimum=1, maximum=1000) or base.half_open_probes,
        probe_timeout_seconds=opt_float(section, "probe_timeout_seconds", path,
                                        base.probe_timeout_seconds, minimum=1.0),
    )
