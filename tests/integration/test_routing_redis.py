"""RedisRoutingStore against a real Redis: windows, circuits, overrides, capacity, outages."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.adapters.redis.routing_store import RedisRoutingStore
from server.domain.routing.capacity import CapacityLimit
from server.domain.routing.health import (
    CircuitState,
    HealthConfig,
    HealthState,
    Outcome,
    Override,
    admit,
    record_outcome,
)
from server.domain.routing.success_rate import ScoringConfig, WindowStats
from server.errors import DependencyUnavailable
from tests.fixtures.services import ServiceUrls, random_suffix

pytestmark = pytest.mark.integration

HEALTH = HealthConfig(
    failure_threshold=3, error_rate_threshold=0.5, error_rate_min_volume=6,
    error_window_seconds=20, cooldown_seconds=10, half_open_probes=2, probe_timeout_seconds=15,
)


def new_store(url: str, prefix: str, **options: object) -> RedisRoutingStore:
    # Generous timeouts: these tests check semantics, and CI machines are busy.
    return RedisRoutingStore.from_url(
        url, prefix=prefix, health=HEALTH, socket_timeout=5.0, pool_timeout=10.0,
        scoring=ScoringConfig(window_size=20, window_max_age_seconds=600),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def store(service_urls: ServiceUrls) -> AsyncIterator[RedisRoutingStore]:
    prefix = f"test:routing:{random_suffix()}:"
    routing_store = new_store(service_urls.redis_url, prefix)
    yield routing_store
    client = redis.Redis.from_url(service_urls.redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await routing_store.aclose()


def name() -> str:
    return f"acct_{random_suffix()}"


async def test_window_counts_recent_outcomes_for_many_accounts(store: RedisRoutingStore) -> None:
    a, b, c = name(), name(), name()
    now = time.time()
    for i in range(30):
        await store.record_outcome(a, "upi", i % 4 != 0, now=now - 30 + i)
    await store.record_outcome(b, "upi", True, now=now - 700)  # older than the max age
    await store.record_outcome(b, "upi", False, now=now)
    stats = await store.read_windows([a, b, c], "upi", now=now)
    # window_size 20: the last 20 of 30 outcomes, i = 10..29, of which 5 are failures
    assert stats == {a: WindowStats(15, 20), b: WindowStats(0, 1), c: WindowStats(0, 0)}
    assert (await store.read_windows([a], "card", now=now))[a] == WindowStats(0, 0)


async def test_record_attempt_updates_window_and_circuit_together(
    store: RedisRoutingStore,
) -> None:
    account = name()
    now = time.time()
    states = [await store.record_attempt(account, "card", Outcome.FAILURE, now=now + i)
              for i in range(3)]
    assert states == [CircuitState.CLOSED, CircuitState.CLOSED, CircuitState.OPEN]
    assert (await store.read_windows([account], "card", now=now + 3))[account] == (
        WindowStats(0, 3)
    )
    health = (await store.read_health([account]))[account]
    assert health.state is CircuitState.OPEN
    assert health.reason == "3 consecutive failures"


async def test_half_open_probe_success_closes_and_failure_reopens(
    store: RedisRoutingStore,
) -> None:
    account = name()
    for i in range(3):
        await store.record_health(account, Outcome.TIMEOUT, now=100.0 + i)
    assert not (await store.admit(account, now=105.0)).admitted
    probe = await store.admit(account, now=113.0)
    assert probe.admitted and probe.probe
    assert probe.state.state is CircuitState.HALF_OPEN
    assert await store.record_health(account, Outcome.FAILURE, now=114.0) is CircuitState.OPEN
    assert not (await store.admit(account, now=120.0)).admitted
    assert (await store.admit(account, now=124.5)).probe
    assert await store.record_health(account, Outcome.SUCCESS, now=125.0) is CircuitState.CLOSED
    assert (await store.admit(account, now=126.0)).note == "healthy"


async def test_several_processes_agree_on_probe_slots(
    store: RedisRoutingStore, service_urls: ServiceUrls,
) -> None:
    account = name()
    for i in range(3):
        await store.record_health(account, Outcome.FAILURE, now=100.0 + i)
    others = [new_store(service_urls.redis_url, store.prefix) for _ in range(4)]
    try:
        admissions = await asyncio.gather(*(
            s.admit(account, now=200.0) for s in [store, *others] for _ in range(10)
        ))
    finally:
        for other in others:
            await other.aclose()
    assert sum(a.admitted for a in admissions) == HEALTH.half_open_probes


async def test_seed_health_key_is_a_manual_override(store: RedisRoutingStore) -> None:
    account = name()
    legacy = f"processor:{account}:health"
    assert store.override_key(account) == legacy
    client = store._redis
    try:
        await client.set(legacy, "down")
        assert (await store.read_health([account]))[account].override is Override.FORCED_DOWN
        refused = await store.admit(account, now=1.0)
        assert not refused.admitted and refused.note == "unhealthy: forced down"
        await client.set(legacy, "healthy")  # the seed's README value: no override
        assert (await store.read_health([account]))[account].override is Override.NONE
        for i in range(3):
            await store.record_health(account, Outcome.FAILURE, now=10.0 + i)
        await store.set_override(account, Override.FORCED_UP)
        assert await client.get(legacy) == "up"
        assert (await store.admit(account, now=13.0)).note == "healthy: forced up"
        await store.set_override(account, Override.NONE)
        assert await client.get(legacy) is None
        assert not (await store.admit(account, now=13.0)).admitted
    finally:
        await client.delete(legacy)


async def test_concurrency_cap_is_never_exceeded_under_200_concurrent_acquires(
    store: RedisRoutingStore,
) -> None:
    account = name()
    limit = CapacityLimit(max_in_flight=25)
    in_flight = 0
    peak = 0
    granted = 0

    async def one_call() -> None:
        nonlocal in_flight, peak, granted
        lease = await store.acquire(account, limit)
        if lease is None:
            return
        granted += 1
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(random.uniform(0, 0.02))
        in_flight -= 1
        await store.release(account, lease)

    await asyncio.gather(*(one_call() for _ in range(200)))
    assert 25 <= granted <= 200
    assert peak <= 25
    snapshot = await store.read_capacity([account], {account: limit})
    assert snapshot[account].in_flight == 0


async def test_200_concurrent_acquires_without_release_grant_exactly_the_cap(
    store: RedisRoutingStore,
) -> None:
    account = name()
    leases = await asyncio.gather(*(
        store.acquire(account, CapacityLimit(max_in_flight=50), now=1_000.0) for _ in range(200)
    ))
    assert sum(lease is not None for lease in leases) == 50
    state = (await store.read_capacity([account], {}, now=1_000.5))[account]
    assert state.in_flight == 50


async def test_tps_cap_holds_under_concurrency_and_resets_next_second(
    store: RedisRoutingStore,
) -> None:
    account = name()
    limit = CapacityLimit(max_tps=30)
    now = float(int(time.time()))
    leases = await asyncio.gather(*(store.acquire(account, limit, now=now) for _ in range(200)))
    assert sum(lease is not None for lease in leases) == 30
    assert await store.acquire(account, limit, now=now + 1) is not None


async def test_leases_of_a_crashed_process_lapse_after_their_ttl(
    service_urls: ServiceUrls,
) -> None:
    prefix = f"test:routing:{random_suffix()}:"
    short = new_store(service_urls.redis_url, prefix, lease_ttl_seconds=5.0)
    try:
        account = name()
        limit = CapacityLimit(max_in_flight=1)
        assert await short.acquire(account, limit, now=100.0) is not None
        assert await short.acquire(account, limit, now=104.0) is None
        assert await short.acquire(account, limit, now=105.5) is not None
    finally:
        await short._redis.delete(f"{prefix}leases:{account}")
        await short.aclose()


async def test_snapshot_reads_windows_health_and_capacity_together(
    store: RedisRoutingStore,
) -> None:
    a, b = name(), name()
    now = time.time()
    await store.record_outcome(a, "upi", True, now=now)
    for i in range(3):
        await store.record_health(b, Outcome.FAILURE, now=now + i)
    lease = await store.acquire(a, CapacityLimit(max_in_flight=5), now=now)
    limits = {a: CapacityLimit(max_in_flight=5)}
    snap = await store.snapshot([a, b], "upi", limits, now=now + 3)
    assert snap.stats == {a: WindowStats(1, 1), b: WindowStats(0, 0)}
    assert snap.health[a] == HealthState()
    assert snap.health[b].state is CircuitState.OPEN
    assert snap.capacity[a].in_flight == 1 and snap.capacity[a].limit == limits[a]
    assert snap.capacity[b].in_flight == 0
    assert lease is not None


async def test_redis_down_raises_dependency_unavailable_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = RedisRoutingStore.from_url(f"redis://127.0.0.1:{port}/0")
    calls = [
        down.read_windows(["a"], "upi"),
        down.record_outcome("a", "upi", True),
        down.read_health(["a"]),
        down.admit("a"),
        down.record_health("a", Outcome.SUCCESS),
        down.record_attempt("a", "upi", Outcome.SUCCESS),
        down.set_override("a", Override.FORCED_DOWN),
        down.acquire("a", CapacityLimit(max_in_flight=1)),
        down.release("a", "lease"),
        down.read_capacity(["a"], {}),
        down.snapshot(["a"], "upi", {}),
    ]
    try:
        for call in calls:
            started = time.perf_counter()
            with pytest.raises(DependencyUnavailable) as excinfo:
                await call
            assert time.perf_counter() - started < 2.0  # no retries, no backoff
            assert excinfo.value.dependency == "redis"
    finally:
        await down.aclose()


events = st.lists(
    st.tuples(
        st.sampled_from(["admit", *[o.value for o in Outcome]]),
        st.integers(min_value=0, max_value=24),
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=events)
def test_lua_transitions_match_the_pure_state_machine(
    service_urls: ServiceUrls, sequence: list[tuple[str, int]],
) -> None:
    async def scenario() -> None:
        prefix = f"test:routing:{random_suffix()}:"
        lua = new_store(service_urls.redis_url, prefix, override_key=prefix + "ov:{account}")
        account = name()
        state = HealthState()
        now = 1_000.0
        try:
            for event, step in sequence:
                now += step / 2  # half-second steps: exact in both Lua and Python
                if event == "admit":
                    expected = admit(state, now, HEALTH)
                    got = await lua.admit(account, now=now)
                    assert (got.admitted, got.probe, got.note) == (
                        expected.admitted, expected.probe, expected.note)
                    state = expected.state
                else:
                    state = record_outcome(state, Outcome(event), now, HEALTH)
                    assert await lua.record_health(account, Outcome(event), now=now) is (
                        state.state)
                stored = (await lua.read_health([account]))[account]
                assert stored == state
        finally:
            await lua._redis.delete(f"{prefix}health:{account}")
            await lua.aclose()

    asyncio.run(scenario())


async def test_probe_outcomes_feed_the_circuit_but_not_the_window(
    store: RedisRoutingStore,
) -> None:
    account = name()
    now = time.time()
    for i in range(3):
        await store.record_attempt(account, "upi", Outcome.FAILURE, now=now + i)
    probe = await store.admit(account, now=now + 20)
    assert probe.probe
    state = await store.record_attempt(account, "upi", Outcome.SUCCESS, probe=True, now=now + 21)
    assert state is CircuitState.CLOSED
    assert (await store.read_windows([account], "upi", now=now + 21))[account] == (
        WindowStats(0, 3)
    )


async def test_store_recovers_when_redis_loses_its_script_cache(store: RedisRoutingStore) -> None:
    account = f"acct_{random_suffix()}"
    await store.admit(account)
    await store._redis.script_flush()  # what a Redis restart does to EVALSHA
    admission = await store.admit(account)
    assert admission.admitted
    snapshot = await store.snapshot([account], "upi", {})
    assert account in snapshot.health
    await store._redis.script_flush()
    with pytest.raises(DependencyUnavailable):  # not repeated: its window push already ran
        await store.record_attempt(account, "upi", Outcome.SUCCESS)
    assert (await store.record_attempt(account, "upi", Outcome.SUCCESS)) is not None
