"""An httpx transport that moves bytes with aiohttp: httpx's API, aiohttp's C HTTP parser.

Why: on this stack the PSP call was the single most expensive library call of a payment.
Measured on the 2-core dev machine (client process CPU per POST to the local simulator):
httpx's default transport (httpcore + h11 + anyio) ~1.1 ms, httpx's client layer over a
transport that does nothing ~0.12 ms, aiohttp ~0.12 ms. Connectors, `HttpExecutor`, its retry
and error mapping, `httpx.MockTransport` / `httpx.ASGITransport` in tests: all unchanged.

The part that matters for payments is the error mapping, because `HttpExecutor` decides from
the httpx exception type whether a write may have reached the PSP:

| aiohttp                                                  | httpx              | reached? |
|----------------------------------------------------------|--------------------|----------|
| connect / pool-wait timeout (ConnectionTimeoutError)     | ConnectTimeout     | no       |
| cannot connect: refused, DNS, TLS (ClientConnectorError) | ConnectError       | no       |
| proxy refused the connection                             | ProxyError         | no       |
| read timeout (SocketTimeoutError, ServerTimeoutError)    | ReadTimeout        | maybe    |
| disconnect, reset, bad response, truncated body, other   | RemoteProtocolError| maybe    |
| URL aiohttp cannot use                                   | InvalidURL         | no       |

(`httpx-aiohttp` exists, but maps every ClientConnectionError — a server disconnect after the
request was written included — to ConnectTimeout, i.e. "never sent": for a POST that can mean
failing over and charging twice.)

Responses are read whole before returning (PSP replies are small JSON), so read errors surface
here, inside the mapping. Bodies are passed to httpx undecoded: httpx applies Content-Encoding.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

_SCHEMES = frozenset({"http", "https"})


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except aiohttp.ClientProxyConnectionError as exc:
        raise httpx.ProxyError(str(exc), request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.InvalidURL(str(exc)) from exc
    except aiohttp.ClientError as exc:
        # Disconnects, resets, malformed or truncated responses: the request may have been
        # written, so nothing here may claim "never sent".
        raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}", request=request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled aiohttp session per event loop, created on first use."""

    def __init__(self, *, limits: httpx.Limits | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        limits = limits or httpx.Limits()
        self._max_connections = limits.max_connections or 0  # 0: aiohttp's "no limit"
        self._keepalive = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._ssl = ssl_context or httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_this_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session belongs to the loop that made it (tests run one loop per test).
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0,
                keepalive_timeout=self._keepalive, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                # httpx already set the headers it wants; aiohttp must not add a Content-Type.
                skip_auto_headers=("Content-Type",))
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in _SCHEMES:
            raise httpx.UnsupportedProtocol(
                f"request URL has an unsupported protocol '{request.url.scheme}://'",
                request=request)
        timeouts = request.extensions.get("timeout", {})
        pool, connect, read = timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read")
        timeout = aiohttp.ClientTimeout(
            total=None,
            # aiohttp's `connect` covers waiting for a pooled connection and opening one.
            connect=None if pool is None and connect is None else (pool or 0) + (connect or 0),
            sock_connect=connect, sock_read=read)
        body = await request.aread()
        session = self._session_for_this_loop()
        with _as_httpx_errors(request):
            async with session.request(
                request.method, str(request.url), headers=request.headers.multi_items(),
                data=body or None, allow_redirects=False, timeout=timeout,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status, headers=list(response.raw_headers),
                    content=content,
                    extensions={"http_version": b"HTTP/1.1",
                                "reason_phrase": (response.reason or "").encode("ascii",
                                                                                "replace")})

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
