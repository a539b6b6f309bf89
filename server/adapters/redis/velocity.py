"""Velocity counters in Redis: sliding windows of payment count and amount per identifier.

Each (velocity key, window) is one Redis hash of 60 time buckets, two fields per bucket:
``c<bucket>`` (payments) and ``a<bucket>`` (paise). One Lua script increments the current
bucket of every window, drops buckets that slid out, and sums the rest, so a read-and-record
is atomic and takes one round trip. A window therefore slides in steps of 1/60 of its length
(1 s for the minute, 1 min for the hour, 24 min for the day); every hash expires one window
after its last write, so memory stays bounded by the identifiers active in the last day.

Keys: ``<prefix>{<merchant>}:<kind>:<sha256 of the identifier>:<window>`` (no PII in Redis;
the hash tag keeps one payment's keys in one Cluster slot). An event id recorded once is not
counted again for ``dedupe_ttl`` seconds (a retried CreatePayment does not inflate velocity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.domain.fraud import VelocityKey, VelocityReadings, Window, WindowStats
from server.errors import DependencyUnavailable

__all__ = ["BUCKETS_PER_WINDOW", "RedisVelocityStore"]

BUCKETS_PER_WINDOW = 60

# KEYS[1]: the event's dedupe marker; KEYS[2..]: one hash per (velocity key, window).
# ARGV[1]: now in ms ('' = Redis server time); ARGV[2]: '1' to record; ARGV[3]: amount (paise);
# ARGV[4]: dedupe ttl in ms; then for each hash: window ms, bucket ms.
# Returns {duplicate (0/1), count_1, amount_1, count_2, amount_2, ...}.
_SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local record = ARGV[2] == '1'
local amount = tonumber(ARGV[3])
local duplicate = 0
if record then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) then
    record = false
    duplicate = 1
  end
end
local out = {duplicate}
for i = 2, #KEYS do
  local window = tonumber(ARGV[3 + 2 * (i - 1)])
  local bucket = tonumber(ARGV[4 + 2 * (i - 1)])
  local current = math.floor(now / bucket)
  local oldest = current - math.floor(window / bucket) + 1
  if record then
    redis.call('HINCRBY', KEYS[i], 'c' .. current, 1)
    redis.call('HINCRBY', KEYS[i], 'a' .. current, amount)
    redis.call('PEXPIRE', KEYS[i], window + bucket)
  end
  local flat = redis.call('HGETALL', KEYS[i])
  local count, total, stale = 0, 0, {}
  for j = 1, #flat, 2 do
    local field = flat[j]
    local b = tonumber(string.sub(field, 2))
    if b < oldest then
      stale[#stale + 1] = field
    elseif b <= current then
      if string.sub(field, 1, 1) == 'c' then
        count = count + tonumber(flat[j + 1])
      else
        total = total + tonumber(flat[j + 1])
      end
    end
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[i], unpack(stale))
  end
  out[#out + 1] = count
  out[#out + 1] = total
end
return out
"""


class RedisVelocityStore:
    """Sliding-window payment counters; raises DependencyUnavailable("redis") when Redis is down."""

    def __init__(self, redis: Redis, *, key_prefix: str = "triveni:fraud:v1:",
                 dedupe_ttl: float = 600.0, operation_timeout: float = 0.5) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._dedupe_ttl_ms = int(dedupe_ttl * 1000)
        self._timeout = operation_timeout
        self._script = redis.register_script(_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = "triveni:fraud:v1:",
                 socket_timeout: float = 0.25, dedupe_ttl: float = 600.0,
                 operation_timeout: float = 0.5, max_connections: int = 64
                 ) -> RedisVelocityStore:
        """A store with its own bounded pool: short timeouts, no retries (a down Redis fails
        fast, and screening carries on per the merchant's velocity_fail_mode)."""
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=operation_timeout,
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        return cls(Redis(connection_pool=pool), key_prefix=key_prefix, dedupe_ttl=dedupe_ttl,
                   operation_timeout=operation_timeout)

    async def read(self, keys: Sequence[VelocityKey], *, now: float | None = None
                   ) -> VelocityReadings:
        """Current figures of every window of `keys` (this payment not counted)."""
        return await self._run(keys, amount_minor=0, event_id="", record=False, now=now)

    async def record_and_read(self, keys: Sequence[VelocityKey], amount_minor: int,
                              event_id: str, *, now: float | None = None) -> VelocityReadings:
        """Count one payment of `amount_minor` in every window of `keys`; figures include it.

        Recording the same `event_id` again within the dedupe TTL counts nothing and returns
        the current figures. `now` (Unix seconds) overrides Redis' clock, for tests.
        """
        if not event_id:
            raise ValueError("event_id is required to record a payment")
        return await self._run(keys, amount_minor=amount_minor, event_id=event_id, record=True,
                               now=now)

    async def aclose(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    def _hash_key(self, key: VelocityKey, window: Window) -> str:
        return f"{self._prefix}{{{key.merchant_id}}}:{key.kind}:{key.digest}:{window}"

    def _marker_key(self, keys: Sequence[VelocityKey], event_id: str) -> str:
        merchant = keys[0].merchant_id if keys else ""
        return f"{self._prefix}{{{merchant}}}:event:{event_id}"

    async def _run(self, keys: Sequence[VelocityKey], *, amount_minor: int, event_id: str,
                   record: bool, now: float | None) -> VelocityReadings:
        slots = [(key, window) for key in keys for window in key.windows]
        if not slots:
            return {}
        redis_keys = [self._marker_key(keys, event_id)]
        args: list[Any] = ["" if now is None else int(now * 1000), "1" if record else "0",
                           int(amount_minor), self._dedupe_ttl_ms]
        for key, window in slots:
            redis_keys.append(self._hash_key(key, window))
            window_ms = window.seconds * 1000
            args += [window_ms, window_ms // BUCKETS_PER_WINDOW]
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._script(keys=redis_keys, args=args)
        except (RedisError, TimeoutError, OSError) as exc:
            # Connection refused, socket timeout, or a server refusing work (OOM, LOADING…).
            raise DependencyUnavailable("redis", f"velocity counters: {exc!r}") from exc
        figures = [int(value) for value in raw[1:]]
        readings: dict[VelocityKey, dict[Window, WindowStats]] = {}
        for index, (key, window) in enumerate(slots):
            count, amount = figures[2 * index], figures[2 * index + 1]
            readings.setdefault(key, {})[window] = WindowStats(count, amount)
        return readings
