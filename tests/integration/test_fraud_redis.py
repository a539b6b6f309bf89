"""RedisVelocityStore against a real Redis: atomicity, windows, TTLs, Redis down."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.adapters.redis.velocity import RedisVelocityStore
from server.domain.fraud import FraudInput, VelocityKey, Window, WindowStats, velocity_keys
from server.domain.money import Money
from server.errors import DependencyUnavailable
from tests.integration.fraud_support import servers

pytestmark = pytest.mark.integration
T0 = 1_750_000_000.0  # an injected clock: windows are tested without waiting for them


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    return servers(request).redis_url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisVelocityStore]:
    velocity = RedisVelocityStore.from_url(redis_url,
                                           key_prefix=f"test:{secrets.token_hex(6)}:")
    yield velocity
    await velocity.aclose()


def _keys(**fields: str) -> list[VelocityKey]:
    base = {"ip": "49.36.1.1", "vpa": f"u{secrets.token_hex(4)}@ybl",
            "merchant_id": f"mer_{secrets.token_hex(6)}"}
    return velocity_keys(FraudInput(Money(100), **(base | fields)))


async def test_two_hundred_concurrent_records_lose_no_increment(redis_url: str) -> None:
    # 200 connections at once: generous timeouts so a busy test machine cannot flake it.
    store = RedisVelocityStore.from_url(redis_url, key_prefix=f"test:{secrets.token_hex(6)}:",
                                        max_connections=200, socket_timeout=5,
                                        operation_timeout=10)
    keys = _keys()
    try:
        results = await asyncio.gather(*(
            store.record_and_read(keys, 100 + i, f"evt_{i}", now=T0) for i in range(200)))
        final = await store.read(keys, now=T0)
    finally:
        await store.aclose()
    # Atomic: each call saw a distinct running total, 1..200, and nothing was lost.
    assert sorted(r[keys[0]][Window.MINUTE].count for r in results) == list(range(1, 201))
    expected = WindowStats(200, sum(100 + i for i in range(200)))
    assert final[keys[0]] == {Window.MINUTE: expected, Window.HOUR: expected}
    assert final[keys[1]] == {w: expected for w in (Window.MINUTE, Window.HOUR, Window.DAY)}


async def test_reading_does_not_count(store: RedisVelocityStore) -> None:
    keys = _keys()
    for _ in range(3):
        assert (await store.read(keys, now=T0))[keys[0]][Window.MINUTE] == WindowStats(0, 0)


async def test_the_same_event_is_counted_once(store: RedisVelocityStore) -> None:
    keys = _keys()
    await store.record_and_read(keys, 500, "pay_same", now=T0)
    again = await store.record_and_read(keys, 500, "pay_same", now=T0 + 1)
    assert again[keys[0]][Window.MINUTE] == WindowStats(1, 500)


async def test_the_minute_window_slides_while_longer_windows_keep_counting(
        store: RedisVelocityStore) -> None:
    keys = _keys()
    await store.record_and_read(keys, 700, "evt_a", now=T0)
    await store.record_and_read(keys, 300, "evt_b", now=T0 + 30)
    at_59 = await store.read(keys, now=T0 + 59)
    at_61 = await store.read(keys, now=T0 + 61)
    at_91 = await store.read(keys, now=T0 + 91)
    ip = keys[0]
    assert at_59[ip][Window.MINUTE] == WindowStats(2, 1000)
    assert at_61[ip][Window.MINUTE] == WindowStats(1, 300)
    assert at_91[ip][Window.MINUTE] == WindowStats(0, 0)
    assert at_91[ip][Window.HOUR] == WindowStats(2, 1000)
    vpa = keys[1]
    day_later = await store.read(keys, now=T0 + 86_400 + 1800)
    assert day_later[vpa][Window.DAY] == WindowStats(0, 0)


async def test_hashes_expire_and_stay_small(store: RedisVelocityStore, redis_url: str) -> None:
    keys = _keys()
    for second in range(0, 300, 2):  # five minutes of traffic, one payment every 2 s
        await store.record_and_read(keys, 1, f"evt_{second}", now=T0 + second)
    client: Redis = Redis.from_url(redis_url)
    try:
        minute_key = store._hash_key(keys[0], Window.MINUTE)
        ttl_ms = await client.pttl(minute_key)
        assert 0 < ttl_ms <= 61_000
        fields: dict[bytes, bytes] = await client.hgetall(minute_key)  # type: ignore[misc]
        assert len(fields) <= 2 * 61  # count + amount per 1 s bucket
        day_ttl = await client.pttl(store._hash_key(keys[1], Window.DAY))
        assert 86_400_000 < day_ttl <= 86_400_000 + 1_440_000
    finally:
        await client.aclose()


async def test_no_identifier_in_clear_in_redis_keys(store: RedisVelocityStore,
                                                    redis_url: str) -> None:
    keys = _keys(vpa="secret.person@okaxis")
    await store.record_and_read(keys, 1, "evt_pii", now=T0)
    client: Redis = Redis.from_url(redis_url)
    try:
        found = [k async for k in client.scan_iter(match=f"{store._prefix}*")]
    finally:
        await client.aclose()
    assert found
    assert not any(b"secret.person" in key or b"49.36.1.1" in key for key in found)


async def test_server_clock_is_used_when_no_time_is_given(store: RedisVelocityStore) -> None:
    keys = _keys()
    await store.record_and_read(keys, 42, "evt_live")
    assert (await store.read(keys))[keys[0]][Window.MINUTE] == WindowStats(1, 42)


async def test_dedupe_marker_expires(redis_url: str) -> None:
    store = RedisVelocityStore.from_url(redis_url, key_prefix=f"test:{secrets.token_hex(6)}:",
                                        dedupe_ttl=0.2)
    try:
        keys = _keys()
        await store.record_and_read(keys, 1, "evt_x", now=T0)
        await asyncio.sleep(0.3)
        later = await store.record_and_read(keys, 1, "evt_x", now=T0 + 1)
        assert later[keys[0]][Window.MINUTE].count == 2
    finally:
        await store.aclose()


async def test_nothing_to_count_needs_no_round_trip() -> None:
    store = RedisVelocityStore.from_url("redis://127.0.0.1:1/0")
    assert await store.record_and_read([], 1, "evt") == {}
    await store.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_raises_dependency_unavailable_quickly() -> None:
    store = RedisVelocityStore.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as caught:
        await store.record_and_read(_keys(), 1, "evt_down")
    assert caught.value.dependency == "redis"
    assert time.monotonic() - started < 1.0
    await store.aclose()


async def test_a_redis_that_never_answers_times_out_quickly() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accept, read, never reply

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisVelocityStore.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(DependencyUnavailable):
            await store.read(_keys())
        assert time.monotonic() - started < 1.5
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()
