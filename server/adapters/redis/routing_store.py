"""Routing state in Redis, shared by every server process.

Keys (prefix default "triveni:routing:"):
  {p}sr:{account}:{dimension}   list of "1:<ts>" / "0:<ts>", newest first, trimmed to the window
  {p}health:{account}           hash: the circuit (state, counters, opened_at, probes)
  processor:{account}:health    the seed's manual switch: "down" forces the account out,
                                "up" forces it in; any other value (the seed wrote "healthy")
                                or no key leaves the circuit in charge
  {p}leases:{account}           sorted set of in-flight leases scored by expiry time, so a
                                crashed process's leases lapse after `lease_ttl_seconds`
  {p}tps:{account}:{second}     calls started in that second (expires after 2 s)

Health transitions and capacity acquires run as Lua scripts, so concurrent processes agree;
they implement `server.domain.routing.health` exactly (a test replays random sequences through
both). A routing decision reads everything it needs in one round trip (`snapshot`). Every
method raises DependencyUnavailable("redis", ...) on connection errors or timeouts, after a
short socket timeout and no client-side retries, so callers degrade to static routing quickly.
Scripts touch several keys, so on Redis Cluster an account's keys need one hash tag.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.health import (
    Admission,
    CircuitState,
    HealthConfig,
    HealthState,
    Outcome,
    Override,
)
from server.domain.routing.success_rate import ScoringConfig, WindowStats
from server.errors import DependencyUnavailable

__all__ = ["RedisRoutingStore", "RoutingSnapshot"]

T = TypeVar("T")

_READ_WINDOWS = """
local cutoff = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, size - 1)
  local s, a = 0, 0
  for _, item in ipairs(items) do
    local sep = string.find(item, ':', 1, true)
    if sep and tonumber(string.sub(item, sep + 1)) >= cutoff then
      a = a + 1
      if string.sub(item, 1, 1) == '1' then s = s + 1 end
    end
  end
  out[2 * i - 1] = s
  out[2 * i] = a
end
return out
"""

# KEYS: health hash, override key. ARGV: now, cooldown, probes, probe_timeout.
# Returns {admitted, probe, note}; mirrors health.admit().
_ADMIT = """
local ov = redis.call('GET', KEYS[2])
if ov == 'down' then return {0, 0, 'unhealthy: forced down'} end
if ov == 'up' then return {1, 0, 'healthy: forced up'} end
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probes', 'probe_at')
local state = h[1] or 'closed'
if state == 'closed' then return {1, 0, 'healthy'} end
local now = tonumber(ARGV[1])
local probes = tonumber(h[3] or '0')
if state == 'open' and now - tonumber(h[2] or '0') < tonumber(ARGV[2]) then
  return {0, 0, 'unhealthy: circuit open'}
end
if probes > 0 and now - tonumber(h[4] or '0') >= tonumber(ARGV[4]) then probes = 0 end
if probes >= tonumber(ARGV[3]) then return {0, 0, 'unhealthy: half-open, probes in flight'} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probes', tostring(probes + 1),
           'probe_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, 1, 'half-open: probe'}
"""

# KEYS: health hash. ARGV: failed (1/0), now, failure_threshold, error_rate_threshold,
# min_volume, window_seconds, outcome name, threshold text, ttl, cooldown.
# Mirrors health.record_outcome().
_RECORD = """
local key = KEYS[1]
local failed = ARGV[1] == '1'
local now_s = ARGV[2]
local now = tonumber(now_s)
local ttl = ARGV[9]
local h = redis.call('HMGET', key, 'state', 'consecutive', 'window_at', 'calls', 'failures')
local state = h[1] or 'closed'
local function reopen(reason)
  redis.call('HSET', key, 'state', 'open', 'opened_at', now_s, 'probes', '0', 'probe_at', '0',
             'consecutive', '0', 'window_at', now_s, 'calls', '0', 'failures', '0',
             'reason', reason)
  redis.call('EXPIRE', key, ttl)
  return 'open'
end
local opened_at = tonumber(redis.call('HGET', key, 'opened_at') or '0')
if state == 'open' and now - opened_at < tonumber(ARGV[10]) then return 'open' end
if state ~= 'closed' then
  if failed then return reopen('probe ' .. ARGV[7]) end
  redis.call('HSET', key, 'state', 'closed', 'consecutive', '0', 'window_at', now_s,
             'calls', '0', 'failures', '0', 'opened_at', '0', 'probes', '0', 'probe_at', '0',
             'reason', '')
  redis.call('EXPIRE', key, ttl)
  return 'closed'
end
local window_at = h[3] or '0'
local calls = tonumber(h[4] or '0')
local failures = tonumber(h[5] or '0')
local consecutive = tonumber(h[2] or '0')
if now - tonumber(window_at) >= tonumber(ARGV[6]) then
  window_at = now_s
  calls = 0
  failures = 0
end
calls = calls + 1
if failed then
  failures = failures + 1
  consecutive = consecutive + 1
else
  consecutive = 0
end
if failed and consecutive >= tonumber(ARGV[3]) then
  return reopen(string.format('%d consecutive failures', consecutive))
end
if failed and calls >= tonumber(ARGV[5]) and failures / calls > tonumber(ARGV[4]) then
  return reopen(string.format('error rate %d/%d above %s', failures, calls, ARGV[8]))
end
redis.call('HSET', key, 'state', 'closed', 'consecutive', tostring(consecutive),
           'window_at', window_at, 'calls', tostring(calls), 'failures', tostring(failures))
redis.call('EXPIRE', key, ttl)
return 'closed'
"""

# KEYS: leases zset, this second's counter. ARGV: now, expiry, max_in_flight (-1 = none),
# max_tps (-1 = none), lease id, key ttl. Returns {1, lease} or {0, why, current}.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local max_tps = tonumber(ARGV[4])
local max_in_flight = tonumber(ARGV[3])
if max_tps >= 0 then
  local count = tonumber(redis.call('GET', KEYS[2]) or '0')
  if count >= max_tps then return {0, 'tps', count} end
end
if max_in_flight >= 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= max_in_flight then return {0, 'in_flight', n} end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 2)
return {1, ARGV[5]}
"""

_HEALTH_TTL_SECONDS = 86_400
_SUCCESS_OUTCOMES = frozenset({Outcome.SUCCESS})


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """Everything `decide` needs from Redis, read in one round trip."""

    stats: Mapping[str, WindowStats]
    health: Mapping[str, HealthState]
    capacity: Mapping[str, CapacityState]


class RedisRoutingStore:
    """Success-rate windows, circuit state and capacity leases in Redis (redis.asyncio)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "triveni:routing:",
        scoring: ScoringConfig | None = None,
        health: HealthConfig | None = None,
        lease_ttl_seconds: float = 60.0,
        override_key: str = "processor:{account}:health",
    ) -> None:
        self._redis = client
        self.prefix = prefix
        self.scoring = scoring or ScoringConfig()
        self.health_config = health or HealthConfig()
        self.lease_ttl_seconds = lease_ttl_seconds
        self._override_key = override_key
        self._read_windows = client.register_script(_READ_WINDOWS)
        self._admit = client.register_script(_ADMIT)
        self._record = client.register_script(_RECORD)
        self._acquire = client.register_script(_ACQUIRE)
        self._scripts_loaded = False

    @classmethod
    def from_url(
        cls, url: str, *, socket_timeout: float = 0.25, max_connections: int = 64,
        pool_timeout: float = 1.0, **options: Any,
    ) -> RedisRoutingStore:
        """A store with its own client: short timeouts and no client-side retries.

        The pool blocks up to `pool_timeout` for a free connection under bursts rather than
        failing at once; past that the call raises DependencyUnavailable like an outage.
        """
        pool = redis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            timeout=pool_timeout,
        )
        return cls(redis.Redis(connection_pool=pool), **options)

    async def aclose(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    # ---- keys -----------------------------------------------------------------------------

    def _window_key(self, account: str, dimension: str) -> str:
        return f"{self.prefix}sr:{account}:{dimension}"

    def _health_key(self, account: str) -> str:
        return f"{self.prefix}health:{account}"

    def override_key(self, account: str) -> str:
        return self._override_key.format(account=account)

    def _lease_key(self, account: str) -> str:
        return f"{self.prefix}leases:{account}"

    def _tps_key(self, account: str, now: float) -> str:
        return f"{self.prefix}tps:{account}:{int(now)}"

    # ---- error mapping --------------------------------------------------------------------

    async def _guard(self, what: str, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            raise DependencyUnavailable("redis", f"{what}: {exc}") from exc

    # ---- success-rate windows -------------------------------------------------------------

    async def record_outcome(
        self, account: str, dimension: str, success: bool, *, now: float | None = None,
    ) -> None:
        """Append one outcome to the (account, dimension) window."""
        at = time.time() if now is None else now
        key = self._window_key(account, dimension)
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(key, f"{1 if success else 0}:{at!r}")
        pipe.ltrim(key, 0, self.scoring.window_size - 1)
        pipe.expire(key, self.scoring.window_max_age_seconds)
        await self._guard("record outcome", pipe.execute())

    async def read_windows(
        self, accounts: Sequence[str], dimension: str, *, now: float | None = None,
    ) -> dict[str, WindowStats]:
        """Window stats for many accounts in one round trip."""
        if not accounts:
            return {}
        at = time.time() if now is None else now
        raw = await self._guard("read windows", self._read_windows(
            keys=[self._window_key(a, dimension) for a in accounts],
            args=[repr(at - self.scoring.window_max_age_seconds), self.scoring.window_size],
        ))
        return _windows_from(accounts, raw)

    # ---- health ---------------------------------------------------------------------------

    async def read_health(self, accounts: Sequence[str]) -> dict[str, HealthState]:
        """Circuit state (with the manual override) for many accounts in one round trip."""
        if not accounts:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for account in accounts:
            pipe.hgetall(self._health_key(account))
            pipe.get(self.override_key(account))
        raw = await self._guard("read health", pipe.execute())
        return {a: _health_from(raw[2 * i], raw[2 * i + 1]) for i, a in enumerate(accounts)}

    def _pipe_script(self, pipe: Any, script: Any, keys: Sequence[str],
                     args: Sequence[Any]) -> None:
        """EVALSHA inside a pipeline without redis-py's per-execute SCRIPT EXISTS round trip;
        `_execute` loads the scripts and retries when Redis answers NOSCRIPT (after a restart)."""
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    async def _load_scripts(self) -> None:
        for script in (self._read_windows, self._admit, self._record, self._acquire):
            await self._guard("load scripts", self._redis.script_load(script.script))
        self._scripts_loaded = True

    async def _execute(self, what: str, build: Callable[[], Any], *,
                       idempotent: bool = True) -> list[Any]:
        """Run a pipeline that calls scripts by SHA. Scripts are loaded before first use; a
        NOSCRIPT (Redis restarted and lost its script cache) reloads them and, when the
        pipeline is safe to repeat, runs it again."""
        if not self._scripts_loaded:
            await self._load_scripts()
        try:
            return list(await self._guard(what, build().execute()))
        except NoScriptError:
            await self._load_scripts()
            if not idempotent:
                raise DependencyUnavailable("redis", f"{what}: script cache was lost") from None
            return list(await self._guard(what, build().execute()))

    async def admit(self, account: str, *, now: float | None = None) -> Admission:
        """Claim the right to call `account` now (atomically takes a probe slot if half-open)."""
        at = time.time() if now is None else now
        cfg = self.health_config

        def build() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            self._pipe_script(pipe, self._admit,
                              [self._health_key(account), self.override_key(account)],
                              [repr(at), repr(cfg.cooldown_seconds), cfg.half_open_probes,
                               repr(cfg.probe_timeout_seconds), _HEALTH_TTL_SECONDS])
            pipe.hgetall(self._health_key(account))
            pipe.get(self.override_key(account))
            return pipe

        (admitted, probe, note), fields, override = await self._execute("admit", build)
        return Admission(bool(admitted), bool(probe), _health_from(fields, override), str(note))

    async def record_health(
        self, account: str, outcome: Outcome, *, now: float | None = None,
    ) -> CircuitState:
        """Apply one call's outcome to the account's circuit; returns the new circuit state."""
        at = time.time() if now is None else now
        cfg = self.health_config
        result = await self._guard("record health", self._record(
            keys=[self._health_key(account)],
            args=_record_args(outcome, at, cfg),
        ))
        return CircuitState(str(result))

    async def record_attempt(
        self, account: str, dimension: str, outcome: Outcome, *, probe: bool = False,
        now: float | None = None,
    ) -> CircuitState:
        """Window outcome and circuit outcome of one PSP call, in one round trip.

        A half-open probe (`Admission.probe`) only feeds the circuit: its outcome speaks to
        availability, and outage-era probe failures would otherwise keep a recovered account
        out of traffic until they age out of the window.
        """
        at = time.time() if now is None else now
        key = self._window_key(account, dimension)
        success = outcome in _SUCCESS_OUTCOMES
        def build() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            if not probe:
                pipe.lpush(key, f"{1 if success else 0}:{at!r}")
                pipe.ltrim(key, 0, self.scoring.window_size - 1)
                pipe.expire(key, self.scoring.window_max_age_seconds)
            self._pipe_script(pipe, self._record, [self._health_key(account)],
                              _record_args(outcome, at, self.health_config))
            return pipe

        # Not repeated on NOSCRIPT: the window push before the script would count twice.
        results = await self._execute("record attempt", build, idempotent=False)
        return CircuitState(str(results[-1]))

    async def set_override(self, account: str, override: Override) -> None:
        """Write (or clear, with Override.NONE) the seed-compatible manual switch."""
        key = self.override_key(account)
        if override is Override.NONE:
            await self._guard("clear override", self._redis.delete(key))
        else:
            await self._guard("set override", self._redis.set(key, override.value))

    # ---- capacity -------------------------------------------------------------------------

    async def acquire(
        self, account: str, limit: CapacityLimit, *, now: float | None = None,
    ) -> str | None:
        """A lease id when `account` has room (in flight and this second), else None."""
        at = time.time() if now is None else now
        lease = uuid.uuid4().hex
        result = await self._guard("acquire capacity", self._acquire(
            keys=[self._lease_key(account), self._tps_key(account, at)],
            args=[
                repr(at), repr(at + self.lease_ttl_seconds),
                -1 if limit.max_in_flight is None else limit.max_in_flight,
                -1 if limit.max_tps is None else limit.max_tps,
                lease, math.ceil(self.lease_ttl_seconds) + 1,
            ],
        ))
        return str(result[1]) if int(result[0]) == 1 else None

    async def release(self, account: str, lease: str) -> None:
        await self._guard("release capacity", self._redis.zrem(self._lease_key(account), lease))

    async def read_capacity(
        self, accounts: Sequence[str], limits: Mapping[str, CapacityLimit], *,
        now: float | None = None,
    ) -> dict[str, CapacityState]:
        if not accounts:
            return {}
        at = time.time() if now is None else now
        pipe = self._redis.pipeline(transaction=False)
        self._queue_capacity(pipe, accounts, at)
        raw = await self._guard("read capacity", pipe.execute())
        return _capacity_from(accounts, limits, raw)

    def _queue_capacity(self, pipe: Any, accounts: Sequence[str], at: float) -> None:
        for account in accounts:
            pipe.zcount(self._lease_key(account), f"({at!r}", "+inf")
            pipe.get(self._tps_key(account, at))

    # ---- everything for one decision ------------------------------------------------------

    async def snapshot(
        self, accounts: Sequence[str], dimension: str, limits: Mapping[str, CapacityLimit], *,
        now: float | None = None,
    ) -> RoutingSnapshot:
        """Windows, health and capacity for `accounts` in a single round trip."""
        at = time.time() if now is None else now
        if not accounts:
            return RoutingSnapshot({}, {}, {})
        def build() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            self._pipe_script(
                pipe, self._read_windows, [self._window_key(a, dimension) for a in accounts],
                [repr(at - self.scoring.window_max_age_seconds), self.scoring.window_size])
            for account in accounts:
                pipe.hgetall(self._health_key(account))
                pipe.get(self.override_key(account))
            self._queue_capacity(pipe, accounts, at)
            return pipe

        raw = await self._execute("routing snapshot", build)
        n = len(accounts)
        health = {a: _health_from(raw[1 + 2 * i], raw[2 + 2 * i]) for i, a in enumerate(accounts)}
        return RoutingSnapshot(
            stats=_windows_from(accounts, raw[0]),
            health=health,
            capacity=_capacity_from(accounts, limits, raw[1 + 2 * n:]),
        )


def _record_args(outcome: Outcome, at: float, cfg: HealthConfig) -> list[Any]:
    return [
        "1" if outcome.counts_as_failure else "0", repr(at), cfg.failure_threshold,
        repr(cfg.error_rate_threshold), cfg.error_rate_min_volume,
        repr(cfg.error_window_seconds), outcome.value, f"{cfg.error_rate_threshold:.0%}",
        _HEALTH_TTL_SECONDS, repr(cfg.cooldown_seconds),
    ]


def _windows_from(accounts: Sequence[str], raw: Sequence[Any]) -> dict[str, WindowStats]:
    return {
        a: WindowStats(int(raw[2 * i]), int(raw[2 * i + 1])) for i, a in enumerate(accounts)
    }


def _override_from(value: str | None) -> Override:
    if value == Override.FORCED_DOWN.value:
        return Override.FORCED_DOWN
    if value == Override.FORCED_UP.value:
        return Override.FORCED_UP
    return Override.NONE


def _health_from(fields: Mapping[str, str], override: str | None) -> HealthState:
    def num(name: str) -> float:
        return float(fields.get(name) or 0)

    return HealthState(
        state=CircuitState(fields.get("state") or CircuitState.CLOSED.value),
        consecutive_failures=int(num("consecutive")),
        window_started_at=num("window_at"),
        window_calls=int(num("calls")),
        window_failures=int(num("failures")),
        opened_at=num("opened_at"),
        probes_in_flight=int(num("probes")),
        probe_started_at=num("probe_at"),
        override=_override_from(override),
        reason=fields.get("reason", ""),
    )


def _capacity_from(
    accounts: Sequence[str], limits: Mapping[str, CapacityLimit], raw: Sequence[Any],
) -> dict[str, CapacityState]:
    return {
        a: CapacityState(
            in_flight=int(raw[2 * i]),
            this_second=int(raw[2 * i + 1] or 0),
            limit=limits.get(a, CapacityLimit()),
        )
        for i, a in enumerate(accounts)
    }
