"""Sends one signed webhook to a merchant endpoint, refusing private targets (SSRF guard).

Before every send the host is resolved and every address checked with
`server.domain.merchant_webhooks.address_refusal`; the connection then goes to the address that
was checked (the URL's host is replaced by it, with the original `Host` header and TLS SNI /
certificate name), so a DNS answer that changes between the check and the connect (DNS
rebinding) cannot redirect the request. Redirects are not followed, proxies from the
environment are ignored, connections are not reused between requests (each TLS session is
verified for the endpoint it carries), and at most 4 KiB of a response is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import httpx

from server.domain.merchant_webhooks import (
    IpAddress,
    SendOutcome,
    WebhookTarget,
    address_refusal,
    check_url,
)
from server.errors import ValidationError

__all__ = [
    "Resolver",
    "UnsafeTarget",
    "WebhookSender",
    "check_webhook_url",
    "resolve_target",
    "system_resolver",
]

USER_AGENT: Final = "Triveni-Webhooks/1.0"
_MAX_RESPONSE_BYTES: Final = 4096
_RESOLVE_TIMEOUT_S: Final = 5.0

Resolver = Callable[[str, int], Awaitable[list[IpAddress]]]


class UnsafeTarget(Exception):
    """The URL's host does not resolve, or resolves to an address Triveni must not call."""


async def system_resolver(host: str, port: int) -> list[IpAddress]:
    """Every address `host` resolves to (the event loop's getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IpAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def resolve_target(target: WebhookTarget, *, allow_private: bool,
                         resolver: Resolver = system_resolver) -> list[IpAddress]:
    """The addresses to connect to; UnsafeTarget if none, or if ANY of them is refused."""
    literal = target.literal_address
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
                addresses = await resolver(target.host, target.port)
        except (OSError, TimeoutError) as exc:
            raise UnsafeTarget(f"host {target.host} does not resolve ({exc})") from None
        if not addresses:
            raise UnsafeTarget(f"host {target.host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                raise UnsafeTarget(f"host {target.host} resolves to a {reason} address")
    return addresses


async def check_webhook_url(url: str, *, allow_private: bool,
                            resolver: Resolver = system_resolver) -> None:
    """ValidationError("url", …) unless `url` is a target Triveni would send to now."""
    target = check_url(url, allow_private=allow_private)
    try:
        await resolve_target(target, allow_private=allow_private, resolver=resolver)
    except UnsafeTarget as exc:
        raise ValidationError("url", str(exc)) from None


class WebhookSender:
    """POSTs bodies to endpoints; never raises for the endpoint's behaviour, it reports it."""

    def __init__(self, *, allow_private: bool, timeout_seconds: float = 10.0,
                 resolver: Resolver = system_resolver,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._allow_private = allow_private
        self._timeout = timeout_seconds
        self._resolver = resolver
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT})

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendOutcome:
        """One POST of `body` to `url` with `headers`; delivered only for a 2xx answer."""
        started = time.perf_counter()

        def outcome(http_status: int = 0, error: str = "") -> SendOutcome:
            latency_ms = int((time.perf_counter() - started) * 1000)
            return SendOutcome(delivered=200 <= http_status < 300, http_status=http_status,
                               error=error, latency_ms=latency_ms)

        try:
            target = check_url(url, allow_private=self._allow_private)
            addresses = await resolve_target(target, allow_private=self._allow_private,
                                             resolver=self._resolver)
        except ValidationError as exc:
            return outcome(error=f"refused: {exc.message}")
        except UnsafeTarget as exc:
            return outcome(error=f"refused: {exc}")
        extensions = {}
        if target.scheme == "https" and target.literal_address is None:
            extensions["sni_hostname"] = target.host
        try:
            request_url = httpx.URL(url)
            pinned = request_url.copy_with(host=str(addresses[0]))
            all_headers = {"Host": request_url.netloc.decode("ascii"),
                           "Content-Type": "application/json", **headers}
            async with asyncio.timeout(self._timeout + 1):
                async with self._client.stream("POST", pinned, content=body,
                                               headers=all_headers,
                                               extensions=extensions) as response:
                    read = 0
                    async for chunk in response.aiter_bytes():
                        read += len(chunk)
                        if read >= _MAX_RESPONSE_BYTES:
                            break
                    status = response.status_code
        except TimeoutError:
            return outcome(error="timed out")
        except httpx.TimeoutException as exc:
            return outcome(error=f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return outcome(error=f"{type(exc).__name__}: {exc}"[:300])
        except (httpx.InvalidURL, ValueError, OSError) as exc:
            return outcome(error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= status < 300:
            return outcome(status)
        return outcome(status, f"HTTP {status}")

    async def aclose(self) -> None:
        await self._client.aclose()
