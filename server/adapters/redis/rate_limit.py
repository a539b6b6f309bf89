"""Per-merchant request rate limit: a fixed one-second window counter in Redis (shared by all
server processes). Redis down → fail open (counted in metrics): availability beats throttling."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.adapters.metrics import DEPENDENCY_UP, RATE_LIMITED
from server.errors import RateLimited

__all__ = ["RedisRateLimiter"]


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, *, per_second: int, prefix: str = "triveni:rl"
                 ) -> None:
        self._client = client
        self._per_second = per_second
        self._prefix = prefix

    async def __call__(self, merchant_id: str) -> None:
        if self._per_second <= 0:
            return
        second = int(time.time())
        key = f"{self._prefix}:{merchant_id}:{second}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 2)
                count, _ = await pipe.execute()
        except (RedisError, OSError):
            DEPENDENCY_UP.labels(dependency="redis").set(0)
            return
        if int(count) > self._per_second:
            RATE_LIMITED.inc()
            raise RateLimited(
                f"rate limit of {self._per_second} requests/s exceeded for this merchant",
                retry_after_seconds=1.0)
