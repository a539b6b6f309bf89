"""The in-memory routing store: windows, circuit and capacity leases."""

from __future__ import annotations

from server.domain.routing.capacity import CapacityLimit
from server.domain.routing.health import CircuitState, HealthConfig, Outcome, Override
from server.domain.routing.memory_store import InMemoryRoutingStore
from server.domain.routing.success_rate import ScoringConfig, WindowStats


def test_window_keeps_the_last_n_outcomes() -> None:
    store = InMemoryRoutingStore(ScoringConfig(window_size=10))
    for i in range(30):
        store.record_outcome("a", "upi", i >= 25, float(i))
    assert store.read_windows(["a"], "upi", 30.0)["a"] == WindowStats(5, 10)


def test_window_forgets_outcomes_older_than_the_max_age() -> None:
    store = InMemoryRoutingStore(ScoringConfig(window_max_age_seconds=60))
    store.record_outcome("a", "upi", False, 0.0)
    store.record_outcome("a", "upi", True, 50.0)
    assert store.read_windows(["a"], "upi", 100.0)["a"] == WindowStats(1, 1)
    assert store.read_windows(["b"], "upi", 100.0)["b"] == WindowStats(0, 0)


def test_windows_are_per_dimension() -> None:
    store = InMemoryRoutingStore()
    store.record_outcome("a", "upi", True, 0.0)
    assert store.read_windows(["a"], "card", 0.0)["a"] == WindowStats(0, 0)


def test_health_transitions_and_override() -> None:
    store = InMemoryRoutingStore(health=HealthConfig(failure_threshold=2, cooldown_seconds=10))
    store.record_health("a", Outcome.FAILURE, 0.0)
    assert store.record_health("a", Outcome.TIMEOUT, 1.0).state is CircuitState.OPEN
    assert not store.admit("a", 5.0).admitted
    assert store.admit("a", 11.0).probe
    assert store.record_health("a", Outcome.SUCCESS, 12.0).state is CircuitState.CLOSED
    store.set_override("a", Override.FORCED_DOWN)
    assert store.read_health(["a"])["a"].override is Override.FORCED_DOWN


def test_capacity_leases_cap_in_flight_and_expire() -> None:
    store = InMemoryRoutingStore(lease_ttl_seconds=30)
    limit = CapacityLimit(max_in_flight=2)
    first = store.acquire("a", limit, 0.0)
    assert first and store.acquire("a", limit, 0.0)
    assert store.acquire("a", limit, 0.0) is None
    store.release("a", first)
    assert store.acquire("a", limit, 0.0) is not None
    assert store.acquire("a", limit, 1.0) is None
    assert store.acquire("a", limit, 31.0) is not None  # leases of a crashed caller lapse


def test_tps_cap_is_per_second() -> None:
    store = InMemoryRoutingStore()
    limit = CapacityLimit(max_tps=3)
    assert all(store.acquire("a", limit, 10.1) for _ in range(3))
    assert store.acquire("a", limit, 10.9) is None
    assert store.acquire("a", limit, 11.0) is not None
    state = store.read_capacity(["a"], {"a": limit}, 11.5)["a"]
    assert state.this_second == 1
    assert state.in_flight == 4
