"""The one executor that talks to PSPs: pooled httpx, per-account timeouts, safe retries, metrics.

`HttpExecutor` implements the `Transport` seam of `server.connectors.base`. Connectors build an
`HttpRequest`; the executor sends it and either returns the `HttpResponse` (2xx, and 4xx other
than 401/403/429, which the connector parses because only it knows the PSP's error shape) or
raises one of the contract's errors:

| what happened                                   | read (GET/HEAD)  | write (POST, ...)   |
|-------------------------------------------------|------------------|---------------------|
| connect refused / connect timeout / pool full   | TransientError   | TransientError      |
| timeout or broken connection after sending      | TransientError   | UnknownOutcome      |
| HTTP 5xx                                        | TransientError   | UnknownOutcome      |
| HTTP 429                                        | RateLimited      | RateLimited         |
| HTTP 401 / 403, any redirect, bad URL           | Misconfigured    | Misconfigured       |

Why every 5xx on a write is UnknownOutcome: a 502/504 comes from a gateway in front of the PSP
that may already have forwarded the request; a 503 can come from a load balancer after the
application accepted the work; a 500 is the application failing at a point we cannot see, maybe
after its commit (Stripe documents 500s as "indeterminate" for the same reason). Calling it
UnknownOutcome costs one status query before failing over; calling it TransientError risks a
second charge at another PSP.

Timeouts: `account.timeout_seconds` bounds each exchange as a whole (an asyncio deadline, which
also holds for in-process ASGI transports) and each httpx phase; the connect phase gets the
shorter `connect_timeout_seconds`, so a host that cannot be reached is reported as not reached.
When the whole-exchange deadline fires we cannot tell how far the request got, so it counts as
"after sending".

Retries (tenacity, exponential backoff with jitter, `Retry-After` honoured up to a cap) happen
only when `request.safe_to_retry`: reads, and writes the PSP deduplicates (an idempotency key or
a unique reference). When a retried write finally fails, the error is UnknownOutcome if any
attempt may have reached the PSP, even when the last attempt failed before sending, because
idempotency only makes repeating harmless; it does not mean nothing happened.

Logs carry the account, operation, method and URL path only: never credentials, headers
(see `redact_headers`), query strings or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from server.connectors.aiohttp_transport import AiohttpTransport
from server.connectors.base import (
    ConnectorAccount,
    HttpRequest,
    HttpResponse,
    Misconfigured,
    RateLimited,
    TransientError,
    UnknownOutcome,
)
from server.connectors.metrics import PSP_REQUEST_DURATION_SECONDS, PSP_REQUESTS_TOTAL, Outcome

__all__ = [
    "READ_ONLY_METHODS",
    "HttpExecutor",
    "RetryPolicy",
    "parse_retry_after",
    "redact_headers",
    "redact_url",
]

logger = logging.getLogger(__name__)

# Requests with these methods never change state at the PSP, so a failure after sending them
# is transient, not unknown. POSTs that only read (PayU verify_payment) are treated as writes:
# the conservative direction, costing at most one extra status query.
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Where PSPs put "come back in N seconds": the standard header, then Cashfree's.
RETRY_AFTER_HEADERS = ("retry-after", "x-ratelimit-retry")

REDACTED = "[REDACTED]"
_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)
_SENSITIVE_MARKERS = ("auth", "token", "secret", "key", "password", "signature", "salt", "cookie")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` safe to log: credential-like values replaced by "[REDACTED]"."""
    safe: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        sensitive = lowered in _SENSITIVE_HEADERS or any(m in lowered for m in _SENSITIVE_MARKERS)
        safe[name] = REDACTED if sensitive else value
    return safe


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: drops user info, query and fragment (they may carry keys)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def parse_retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait from a Retry-After style header (delta-seconds or HTTP-date), if any."""
    for name in RETRY_AFTER_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        value = raw.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - now).total_seconds()
        if not math.isfinite(seconds):
            continue
        return max(0.0, seconds)
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How safe-to-retry requests are retried. One per PSP if needed."""

    max_attempts: int = 3
    initial_backoff_seconds: float = 0.1
    max_backoff_seconds: float = 2.0
    multiplier: float = 2.0
    # A 429 asking for a longer wait than this is not retried here: the error goes up with its
    # retry_after so the caller can route elsewhere instead of holding the request open.
    max_retry_after_seconds: float = 5.0

    def backoff(self, attempt_number: int, jitter: float) -> float:
        """Equal-jitter exponential backoff after attempt `attempt_number` (1-based)."""
        ceiling = min(
            self.max_backoff_seconds,
            self.initial_backoff_seconds * self.multiplier ** (attempt_number - 1),
        )
        return ceiling / 2 + ceiling / 2 * jitter


Sleep = Callable[[float], Awaitable[None]]


class HttpExecutor:
    """Sends connector-built requests to PSPs over one pooled `httpx.AsyncClient`.

    The network goes through `AiohttpTransport` (a tenth of httpcore's CPU per request; see
    its module). `transport` swaps the network for anything httpx accepts (e.g.
    `httpx.ASGITransport` around the simulator app, `httpx.MockTransport` in unit tests) so the
    same code runs in every mode.
    `sleep`, `clock` (monotonic seconds, for durations) and `jitter` (a float in [0, 1]) are
    seams for tests.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        retry_policy: RetryPolicy | None = None,
        retry_policies: Mapping[str, RetryPolicy] | None = None,
        connect_timeout_seconds: float = 3.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        user_agent: str = "triveni-connectors/0.1",
    ) -> None:
        limits = limits or httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self._client = httpx.AsyncClient(
            transport=transport or AiohttpTransport(limits=limits),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": user_agent},
        )
        self._default_policy = retry_policy or RetryPolicy()
        self._policies = dict(retry_policies or {})
        self._connect_timeout = connect_timeout_seconds
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def policy_for(self, psp: str) -> RetryPolicy:
        """The retry policy used for `psp` (its own, or the default)."""
        return self._policies.get(psp, self._default_policy)

    async def send(self, account: ConnectorAccount, request: HttpRequest) -> HttpResponse:
        """Send `request` for `account`; see the module docstring for the error mapping."""
        policy = self.policy_for(account.psp)
        attempts = policy.max_attempts if request.safe_to_retry else 1
        possibly_processed = False

        async def attempt() -> HttpResponse:
            nonlocal possibly_processed
            try:
                return await self._exchange(account, request)
            except UnknownOutcome:
                possibly_processed = True
                raise

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, RateLimited):
                wait = exc.retry_after_seconds
                return wait is None or wait <= policy.max_retry_after_seconds
            return isinstance(exc, TransientError | UnknownOutcome)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, RateLimited) and exc.retry_after_seconds is not None:
                return exc.retry_after_seconds
            return policy.backoff(state.attempt_number, self._jitter())

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "psp request retry account=%s psp=%s operation=%s %s %s attempt=%d "
                "error=%s sleep=%.3fs",
                account.name, account.psp, request.operation or "unspecified", request.method,
                redact_url(request.url), state.attempt_number, type(exc).__name__, delay,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except (TransientError, UnknownOutcome) as exc:
            if possibly_processed and not isinstance(exc, UnknownOutcome):
                raise UnknownOutcome(
                    f"{exc.message}; an earlier attempt may have reached the PSP",
                    code=exc.code, http_status=exc.http_status,
                ) from exc
            raise

    async def _exchange(self, account: ConnectorAccount, request: HttpRequest) -> HttpResponse:
        """One HTTP exchange: send, classify, record metrics. Never retries."""
        read_only = request.method.upper() in READ_ONLY_METHODS
        where = f"{request.method} {redact_url(request.url)}"
        timeout = httpx.Timeout(
            account.timeout_seconds,
            connect=min(self._connect_timeout, account.timeout_seconds),
        )
        started = self._clock()
        logger.debug(
            "psp request account=%s operation=%s %s headers=%s", account.name,
            request.operation, where, redact_headers(request.headers),
        )

        def record(outcome: Outcome) -> None:
            labels = (account.name, account.psp, request.operation or "unspecified", outcome.value)
            PSP_REQUEST_DURATION_SECONDS.labels(*labels).observe(self._clock() - started)
            PSP_REQUESTS_TOTAL.labels(*labels).inc()

        def after_send(reason: str, http_status: int | None = None) -> Exception:
            if read_only:
                record(Outcome.TRANSIENT)
                return TransientError(f"{where}: {reason}", code="PSP_UNAVAILABLE",
                                      http_status=http_status)
            record(Outcome.UNKNOWN)
            return UnknownOutcome(f"{where}: {reason}; the PSP may have processed it",
                                  code="PSP_OUTCOME_UNKNOWN", http_status=http_status)

        try:
            async with asyncio.timeout(account.timeout_seconds):
                response = await self._client.request(
                    request.method, request.url, headers=dict(request.headers),
                    content=request.body, timeout=timeout,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                httpx.ProxyError) as exc:
            # The request never left this process: nothing can have happened at the PSP.
            record(Outcome.TRANSIENT)
            raise TransientError(f"{where}: {type(exc).__name__} before sending",
                                 code="PSP_UNREACHABLE") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            record(Outcome.MISCONFIGURED)
            raise Misconfigured(f"account {account.name}: cannot send {where}: "
                                f"{type(exc).__name__}") from exc
        except (httpx.TransportError, TimeoutError) as exc:
            raise after_send(f"{type(exc).__name__} after sending") from exc

        status = response.status_code
        headers = {name.lower(): value for name, value in response.headers.items()}
        if 200 <= status < 300:
            record(Outcome.OK)
            return HttpResponse(status=status, headers=headers, body=response.content)
        if status in (401, 403):
            record(Outcome.MISCONFIGURED)
            raise Misconfigured(f"account {account.name}: {where} refused with HTTP {status} "
                                "(credentials or account permissions)",
                                code=f"HTTP_{status}", http_status=status)
        if status == 429:
            record(Outcome.RATE_LIMITED)
            retry_after = parse_retry_after(headers, datetime.now(UTC))
            raise RateLimited(f"{where}: rate limited by the PSP", retry_after_seconds=retry_after)
        if 300 <= status < 400:
            record(Outcome.MISCONFIGURED)
            raise Misconfigured(f"account {account.name}: {where} redirected (HTTP {status}); "
                                "check base_url and the path's trailing slash",
                                code=f"HTTP_{status}", http_status=status)
        if 400 <= status < 500:
            record(Outcome.DECLINED)
            return HttpResponse(status=status, headers=headers, body=response.content)
        raise after_send(f"HTTP {status}", http_status=status)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
