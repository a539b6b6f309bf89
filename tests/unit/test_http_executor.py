"""HttpExecutor: error mapping, safe-only retries, Retry-After, timeouts, metrics, redaction."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.connectors.base import (
    ConnectorAccount,
    HttpRequest,
    Misconfigured,
    RateLimited,
    TransientError,
    UnknownOutcome,
)
from server.connectors.http import (
    HttpExecutor,
    RetryPolicy,
    parse_retry_after,
    redact_headers,
    redact_url,
)
from tests.fakes.server import free_port, serve_app

Step = httpx.Response | Exception


def make_account(timeout: float = 5.0, psp: str = "testpsp") -> ConnectorAccount:
    return ConnectorAccount(name=f"acct_{uuid.uuid4().hex[:10]}", psp=psp,
                            base_url="http://psp.test", timeout_seconds=timeout)


class Script:
    """A MockTransport handler that plays a list of responses/exceptions and records calls."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def executor(script: Script, sleeps: Sleeps | None = None, *,
             policy: RetryPolicy | None = None, jitter: Callable[[], float] = lambda: 1.0,
             clock: Callable[[], float] | None = None) -> HttpExecutor:
    extra = {"clock": clock} if clock else {}
    return HttpExecutor(transport=httpx.MockTransport(script), sleep=sleeps or Sleeps(),
                        retry_policy=policy, jitter=jitter, **extra)  # type: ignore[arg-type]


def get(url: str = "http://psp.test/v1/thing", **kw: object) -> HttpRequest:
    return HttpRequest(method="GET", url=url, safe_to_retry=True, operation="get_status",
                       **kw)  # type: ignore[arg-type]


def post(safe: bool = False, **kw: object) -> HttpRequest:
    return HttpRequest(method="POST", url="http://psp.test/v1/payments", body=b"{}",
                       safe_to_retry=safe, operation="create_payment",
                       **kw)  # type: ignore[arg-type]


def read_timeout() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out")


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("refused")


# ---- success and pass-through ----------------------------------------------------------

async def test_2xx_is_returned_with_lowercase_headers_and_raw_body() -> None:
    script = Script(httpx.Response(201, headers={"X-Request-Id": "r1"}, content=b'{"id":1}'))
    async with executor(script) as ex:
        response = await ex.send(make_account(), post())
    assert response.status == 201
    assert response.headers["x-request-id"] == "r1"
    assert response.json() == {"id": 1}


async def test_request_is_sent_exactly_as_built() -> None:
    script = Script(httpx.Response(200, json={}))
    async with executor(script) as ex:
        await ex.send(make_account(), HttpRequest(
            method="POST", url="http://psp.test/v2/x/?a=1", headers={"X-Custom": "v"},
            body=b"amount=10.00", operation="op"))
    sent = script.requests[0]
    assert (sent.method, str(sent.url), sent.content) == (
        "POST", "http://psp.test/v2/x/?a=1", b"amount=10.00")
    assert sent.headers["x-custom"] == "v"


@pytest.mark.parametrize("status", [400, 402, 404, 409, 422])
async def test_other_4xx_are_returned_to_the_connector_to_parse(status: int) -> None:
    script = Script(httpx.Response(status, json={"error": {"code": "BAD_REQUEST_ERROR"}}))
    async with executor(script) as ex:
        response = await ex.send(make_account(), get())
    assert response.status == status
    assert len(script.requests) == 1  # a 4xx is an answer, never retried


# ---- credentials and configuration -----------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_misconfigured_and_never_retried(status: int) -> None:
    script = Script(httpx.Response(status, json={"error": "Invalid Client Id"}))
    async with executor(script) as ex:
        with pytest.raises(Misconfigured) as info:
            await ex.send(make_account(), get())
    assert info.value.http_status == status
    assert len(script.requests) == 1


async def test_redirect_is_misconfigured_not_followed() -> None:
    script = Script(httpx.Response(301, headers={"Location": "http://psp.test/v2/x/"}))
    async with executor(script) as ex:
        with pytest.raises(Misconfigured, match="trailing slash"):
            await ex.send(make_account(), post())
    assert len(script.requests) == 1


async def test_unsupported_url_scheme_is_misconfigured() -> None:
    async with HttpExecutor() as ex:
        with pytest.raises(Misconfigured):
            await ex.send(make_account(), HttpRequest(method="GET", url="ftp://psp.test/x"))


# ---- failures before sending -----------------------------------------------------------

async def test_connect_error_on_a_write_is_transient_and_not_retried() -> None:
    script = Script(connect_error())
    async with executor(script) as ex:
        with pytest.raises(TransientError) as info:
            await ex.send(make_account(), post(safe=False))
    assert not isinstance(info.value, UnknownOutcome)
    assert len(script.requests) == 1


async def test_connect_error_on_a_safe_read_is_retried_until_attempts_run_out() -> None:
    script = Script(connect_error())
    async with executor(script, policy=RetryPolicy(max_attempts=4)) as ex:
        with pytest.raises(TransientError):
            await ex.send(make_account(), get())
    assert len(script.requests) == 4


async def test_refused_connection_on_a_real_socket_is_transient() -> None:
    port = free_port()  # nothing listens there
    async with HttpExecutor(sleep=Sleeps()) as ex:
        with pytest.raises(TransientError) as info:
            await ex.send(make_account(), HttpRequest(
                method="POST", url=f"http://127.0.0.1:{port}/v1/payments", body=b"{}"))
    assert not isinstance(info.value, UnknownOutcome)


# ---- failures after sending ------------------------------------------------------------

async def test_read_timeout_on_a_write_is_unknown_outcome_and_not_retried() -> None:
    script = Script(read_timeout())
    async with executor(script) as ex:
        with pytest.raises(UnknownOutcome):
            await ex.send(make_account(), post(safe=False))
    assert len(script.requests) == 1


async def test_read_timeout_on_a_read_is_retried_then_transient() -> None:
    script = Script(read_timeout())
    async with executor(script, policy=RetryPolicy(max_attempts=3)) as ex:
        with pytest.raises(TransientError) as info:
            await ex.send(make_account(), get())
    assert not isinstance(info.value, UnknownOutcome)
    assert len(script.requests) == 3


async def test_read_timeout_on_an_idempotent_write_is_retried_then_unknown() -> None:
    script = Script(read_timeout())
    async with executor(script, policy=RetryPolicy(max_attempts=3)) as ex:
        with pytest.raises(UnknownOutcome):
            await ex.send(make_account(), post(safe=True))
    assert len(script.requests) == 3


async def test_idempotent_write_that_timed_out_once_stays_unknown_even_if_last_try_never_sent(
) -> None:
    script = Script(read_timeout(), connect_error(), connect_error())
    async with executor(script, policy=RetryPolicy(max_attempts=3)) as ex:
        with pytest.raises(UnknownOutcome, match="earlier attempt"):
            await ex.send(make_account(), post(safe=True))


async def test_idempotent_write_recovers_when_a_retry_succeeds() -> None:
    script = Script(read_timeout(), httpx.Response(200, json={"id": "same"}))
    async with executor(script) as ex:
        response = await ex.send(make_account(), post(safe=True))
    assert response.json() == {"id": "same"}
    assert len(script.requests) == 2


async def test_remote_disconnect_on_a_write_is_unknown() -> None:
    script = Script(httpx.RemoteProtocolError("Server disconnected without sending a response"))
    async with executor(script) as ex:
        with pytest.raises(UnknownOutcome):
            await ex.send(make_account(), post())


# ---- 5xx -------------------------------------------------------------------------------

async def test_5xx_on_a_read_is_retried_and_success_returned() -> None:
    script = Script(httpx.Response(503), httpx.Response(502), httpx.Response(200, json={}))
    sleeps = Sleeps()
    async with executor(script, sleeps) as ex:
        response = await ex.send(make_account(), get())
    assert response.status == 200
    assert len(script.requests) == 3
    assert len(sleeps.calls) == 2


async def test_5xx_on_a_read_exhausted_is_transient_with_the_status() -> None:
    script = Script(httpx.Response(500))
    async with executor(script) as ex:
        with pytest.raises(TransientError) as info:
            await ex.send(make_account(), get())
    assert info.value.http_status == 500
    assert not isinstance(info.value, UnknownOutcome)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_on_a_non_retriable_write_is_unknown_outcome(status: int) -> None:
    script = Script(httpx.Response(status))
    async with executor(script) as ex:
        with pytest.raises(UnknownOutcome) as info:
            await ex.send(make_account(), post(safe=False))
    assert info.value.http_status == status
    assert len(script.requests) == 1


# ---- 429 -------------------------------------------------------------------------------

async def test_429_on_a_safe_request_waits_retry_after_then_retries() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200))
    sleeps = Sleeps()
    async with executor(script, sleeps) as ex:
        response = await ex.send(make_account(), get())
    assert response.status == 200
    assert sleeps.calls == [2.0]


async def test_429_without_retry_after_uses_backoff() -> None:
    script = Script(httpx.Response(429), httpx.Response(200))
    sleeps = Sleeps()
    policy = RetryPolicy(initial_backoff_seconds=0.5)
    async with executor(script, sleeps, policy=policy) as ex:
        await ex.send(make_account(), get())
    assert sleeps.calls == [0.5]


async def test_cashfree_style_ratelimit_retry_header_is_honoured() -> None:
    script = Script(httpx.Response(429, headers={"x-ratelimit-retry": "3"}), httpx.Response(200))
    sleeps = Sleeps()
    async with executor(script, sleeps) as ex:
        await ex.send(make_account(), get())
    assert sleeps.calls == [3.0]


async def test_429_asking_longer_than_the_cap_is_raised_at_once() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "120"}))
    sleeps = Sleeps()
    async with executor(script, sleeps, policy=RetryPolicy(max_retry_after_seconds=5)) as ex:
        with pytest.raises(RateLimited) as info:
            await ex.send(make_account(), get())
    assert info.value.retry_after_seconds == 120.0
    assert sleeps.calls == []
    assert len(script.requests) == 1


async def test_429_on_a_non_retriable_write_is_rate_limited_with_retry_after() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}))
    async with executor(script) as ex:
        with pytest.raises(RateLimited) as info:
            await ex.send(make_account(), post())
    assert info.value.retry_after_seconds == 1.0
    assert info.value.http_status == 429
    assert len(script.requests) == 1


async def test_429_exhausted_is_rate_limited() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "0"}))
    async with executor(script, policy=RetryPolicy(max_attempts=2)) as ex:
        with pytest.raises(RateLimited):
            await ex.send(make_account(), get())
    assert len(script.requests) == 2


def test_retry_after_accepts_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    headers = {"retry-after": "Thu, 01 Jan 2026 12:00:07 GMT"}
    assert parse_retry_after(headers, now) == 7.0


def test_retry_after_ignores_garbage_and_never_goes_negative() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "soon"}, now) is None
    assert parse_retry_after({"retry-after": "nan"}, now) is None
    assert parse_retry_after({"retry-after": "-5"}, now) == 0.0
    assert parse_retry_after({}, now) is None


# ---- backoff policy --------------------------------------------------------------------

async def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    script = Script(httpx.Response(503))
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=5, initial_backoff_seconds=0.1, multiplier=2,
                         max_backoff_seconds=0.3)
    async with executor(script, sleeps, policy=policy, jitter=lambda: 1.0) as ex:
        with pytest.raises(TransientError):
            await ex.send(make_account(), get())
    assert sleeps.calls == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_jitter_spreads_backoff_between_half_and_full() -> None:
    policy = RetryPolicy(initial_backoff_seconds=1.0, max_backoff_seconds=10)
    assert policy.backoff(2, 0.0) == pytest.approx(1.0)
    assert policy.backoff(2, 1.0) == pytest.approx(2.0)
    assert policy.backoff(2, 0.5) == pytest.approx(1.5)


async def test_per_psp_retry_policy_overrides_the_default() -> None:
    script = Script(httpx.Response(503))
    ex = HttpExecutor(transport=httpx.MockTransport(script), sleep=Sleeps(),
                      retry_policy=RetryPolicy(max_attempts=3),
                      retry_policies={"slowpsp": RetryPolicy(max_attempts=5)})
    async with ex:
        with pytest.raises(TransientError):
            await ex.send(make_account(psp="slowpsp"), get())
    assert len(script.requests) == 5


# ---- timeouts on real sockets ----------------------------------------------------------

def _slow_app(delay: float) -> Starlette:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(delay)
        return JSONResponse({"late": True})

    return Starlette(routes=[Route("/slow", slow, methods=["GET", "POST"])])


async def test_account_timeout_bounds_a_slow_write_and_reports_unknown() -> None:
    with serve_app(_slow_app(1.5)) as base:
        async with HttpExecutor(sleep=Sleeps()) as ex:
            started = asyncio.get_running_loop().time()
            with pytest.raises(UnknownOutcome):
                await ex.send(make_account(timeout=0.3),
                              HttpRequest(method="POST", url=f"{base}/slow", body=b"{}"))
            assert asyncio.get_running_loop().time() - started < 1.2


async def test_slow_response_within_the_account_timeout_succeeds() -> None:
    with serve_app(_slow_app(0.05)) as base:
        async with HttpExecutor() as ex:
            response = await ex.send(make_account(timeout=2.0),
                                     HttpRequest(method="GET", url=f"{base}/slow"))
    assert response.json() == {"late": True}


async def test_in_process_asgi_transport_also_honours_the_account_timeout() -> None:
    ex = HttpExecutor(transport=httpx.ASGITransport(app=_slow_app(5.0)), sleep=Sleeps())
    async with ex:
        with pytest.raises(TransientError):
            await ex.send(make_account(timeout=0.1),
                          HttpRequest(method="GET", url="http://sim/slow", safe_to_retry=True))


# ---- metrics ---------------------------------------------------------------------------

def _count(account: ConnectorAccount, operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("triveni_psp_requests_total", {
        "connector_account": account.name, "psp": account.psp, "operation": operation,
        "outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize(("step", "outcome", "error"), [
    (httpx.Response(200), "ok", None),
    (httpx.Response(400), "declined", None),
    (httpx.Response(401), "misconfigured", Misconfigured),
    (httpx.Response(429), "rate_limited", RateLimited),
    (httpx.Response(503), "unknown", UnknownOutcome),
    (httpx.ConnectError("refused"), "transient", TransientError),
    (httpx.ReadTimeout("slow"), "unknown", UnknownOutcome),
])
async def test_each_exchange_is_counted_with_its_outcome(
        step: Step, outcome: str, error: type[Exception] | None) -> None:
    account = make_account()
    async with executor(Script(step)) as ex:
        if error is None:
            await ex.send(account, post())
        else:
            with pytest.raises(error):
                await ex.send(account, post())
    assert _count(account, "create_payment", outcome) == 1.0


async def test_retries_are_counted_per_exchange() -> None:
    account = make_account()
    script = Script(httpx.Response(503), httpx.Response(200))
    async with executor(script) as ex:
        await ex.send(account, get())
    assert _count(account, "get_status", "transient") == 1.0
    assert _count(account, "get_status", "ok") == 1.0


async def test_duration_histogram_uses_the_injected_clock() -> None:
    ticks = iter([100.0, 100.25])
    account = make_account()
    async with executor(Script(httpx.Response(200)), clock=lambda: next(ticks)) as ex:
        await ex.send(account, get())
    labels = {"connector_account": account.name, "psp": account.psp,
              "operation": "get_status", "outcome": "ok"}
    assert REGISTRY.get_sample_value(
        "triveni_psp_request_duration_seconds_sum", labels) == pytest.approx(0.25)
    assert REGISTRY.get_sample_value(
        "triveni_psp_request_duration_seconds_count", labels) == 1.0


# ---- redaction -------------------------------------------------------------------------

def test_redact_headers_hides_credentials_case_insensitively() -> None:
    redacted = redact_headers({
        "Authorization": "Basic cnpwX3Rlc3Q6c2VjcmV0", "x-api-key": "k", "X-Auth-Token": "t",
        "x-client-secret": "s", "Cookie": "session=1", "X-Razorpay-Signature": "abc",
        "Content-Type": "application/json", "X-Request-Id": "req_1"})
    assert redacted == {
        "Authorization": "[REDACTED]", "x-api-key": "[REDACTED]", "X-Auth-Token": "[REDACTED]",
        "x-client-secret": "[REDACTED]", "Cookie": "[REDACTED]",
        "X-Razorpay-Signature": "[REDACTED]", "Content-Type": "application/json",
        "X-Request-Id": "req_1"}


def test_redact_headers_does_not_modify_its_input() -> None:
    headers = {"Authorization": "Bearer x"}
    redact_headers(headers)
    assert headers == {"Authorization": "Bearer x"}


def test_redact_url_drops_user_info_and_query() -> None:
    assert redact_url("https://user:pw@api.psp.test:8443/v1/x?key=secret#f") == \
        "https://api.psp.test:8443/v1/x"


async def test_logs_carry_no_credentials_bodies_or_query_strings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="server.connectors.http")
    script = Script(httpx.Response(503), httpx.Response(200))
    request = HttpRequest(
        method="GET", url="http://psp.test/v1/x?client_secret=qs_SECRET",
        headers={"Authorization": "Bearer sk_live_SECRET", "X-Auth-Token": "tok_SECRET"},
        body=b"client_secret=body_SECRET", safe_to_retry=True, operation="get_status")
    async with executor(script) as ex:
        await ex.send(make_account(), request)
    assert "retry" in caplog.text  # the retry was logged...
    assert "SECRET" not in caplog.text  # ...without any secret in it
    assert "[REDACTED]" in caplog.text


async def test_aclose_closes_the_shared_client() -> None:
    ex = HttpExecutor(transport=httpx.MockTransport(Script(httpx.Response(200))))
    await ex.send(make_account(), get())
    await ex.aclose()
    with pytest.raises(RuntimeError):
        await ex.send(make_account(), get())
