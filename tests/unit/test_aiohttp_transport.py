"""AiohttpTransport on real loopback sockets: bytes on the wire, and the "was it sent?" mapping.

Each fake server is a raw asyncio TCP server that misbehaves in one exact way, so the test
knows whether the request reached it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from server.connectors.aiohttp_transport import AiohttpTransport
from server.connectors.base import (
    ConnectorAccount,
    HttpRequest,
    TransientError,
    UnknownOutcome,
)
from server.connectors.http import HttpExecutor
from tests.fakes.server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Behaviour = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Counts the requests whose head it fully received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.received = asyncio.Event()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(raw)
        self.received.set()
        return raw


@asynccontextmanager
async def raw_server(behaviour: Behaviour) -> AsyncIterator[tuple[str, RawServer]]:
    holder: list[RawServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await behaviour(holder[0], reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server_state = RawServer(handle)
    holder.append(server_state)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server_state
    finally:
        server.close()
        await server.wait_closed()


def account(timeout: float = 2.0) -> ConnectorAccount:
    return ConnectorAccount(name=f"acct_{uuid.uuid4().hex[:8]}", psp="testpsp",
                            base_url="http://psp.test", timeout_seconds=timeout)


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def echo(state: RawServer, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
    while True:
        raw = await state.read_request(reader)
        writer.write(reply(json.dumps({"raw": raw.decode()}).encode(),
                           "Content-Type: application/json", "Set-Cookie: a=1",
                           "Set-Cookie: b=2"))
        await writer.drain()


async def hang_up_after_request(state: RawServer, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
    await state.read_request(reader)  # the PSP got it... and the connection dies


def answering(raw: bytes) -> Behaviour:
    """Reads the request, writes `raw` whatever it is, and hangs up."""
    async def behaviour(state: RawServer, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(raw)
        await writer.drain()

    return behaviour


async def silent(state: RawServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    await state.read_request(reader)
    await asyncio.sleep(30)


truncated_body = answering(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
garbage = answering(b"NOT HTTP AT ALL\r\n\r\n")
gzipped = answering(reply(gzip.compress(b'{"ok":true}'), "Content-Encoding: gzip",
                          "Content-Type: application/json"))


# ---- bytes on the wire -----------------------------------------------------------------

async def test_request_goes_out_as_httpx_built_it_and_the_response_comes_back_whole() -> None:
    async with raw_server(echo) as (base, _), httpx.AsyncClient(
            transport=AiohttpTransport()) as client:
        response = await client.post(f"{base}/v1/payments?x=1", content=b'{"a":1}',
                                     headers={"X-Trace": "t1", "Authorization": "Bearer k"})
    raw = response.json()["raw"]
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "POST /v1/payments?x=1 HTTP/1.1"
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:]}
    assert headers["x-trace"] == "t1" and headers["authorization"] == "Bearer k"
    assert headers["content-length"] == "7" and body == '{"a":1}'
    assert "content-type" not in headers  # nothing added that httpx did not send
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"


async def test_connections_are_reused() -> None:
    async with raw_server(echo) as (base, state), httpx.AsyncClient(
            transport=AiohttpTransport()) as client:
        for _ in range(5):
            assert (await client.get(f"{base}/ping")).status_code == 200
    assert len(state.requests) == 5  # one connection served all: echo loops per connection


async def test_gzip_bodies_are_decoded_once() -> None:
    async with raw_server(gzipped) as (base, _), httpx.AsyncClient(
            transport=AiohttpTransport()) as client:
        assert (await client.get(f"{base}/x")).json() == {"ok": True}


async def test_one_transport_serves_successive_event_loops() -> None:
    transport = AiohttpTransport()

    async def once() -> int:
        async with raw_server(echo) as (base, _), httpx.AsyncClient(
                transport=transport) as client:
            return (await client.get(f"{base}/")).status_code

    assert await asyncio.to_thread(asyncio.run, once()) == 200
    assert await asyncio.to_thread(asyncio.run, once()) == 200


# ---- never sent ------------------------------------------------------------------------

async def test_refused_connection_is_connect_error() -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{free_port()}/v1/payments", content=b"{}")


async def test_waiting_for_a_pooled_connection_too_long_is_a_connect_timeout() -> None:
    """Pool full: the second request never leaves this process."""
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    async with raw_server(silent) as (base, state), httpx.AsyncClient(
            transport=transport) as client:
        first = asyncio.create_task(client.post(f"{base}/a", content=b"{}",
                                                timeout=httpx.Timeout(5.0)))
        await asyncio.wait_for(state.received.wait(), 5)
        with pytest.raises(httpx.ConnectTimeout):
            await client.post(f"{base}/b", content=b"{}",
                              timeout=httpx.Timeout(5.0, pool=0.2, connect=0.0))
        first.cancel()
    assert len(state.requests) == 1


async def test_unsupported_scheme_is_refused_before_any_io() -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/x")


# ---- maybe sent: the executor must call writes UnknownOutcome ---------------------------

@pytest.mark.parametrize("behaviour", [hang_up_after_request, truncated_body, garbage],
                         ids=["hang-up", "truncated", "garbage"])
async def test_failures_after_the_request_reached_the_psp_are_never_called_unsent(
        behaviour: Behaviour) -> None:
    async with raw_server(behaviour) as (base, state):
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            with pytest.raises(httpx.TransportError) as info:
                await client.post(f"{base}/v1/payments", content=b"{}")
        assert not isinstance(info.value, httpx.ConnectError | httpx.ConnectTimeout)
        async with HttpExecutor() as executor:
            with pytest.raises(UnknownOutcome):
                await executor.send(account(), HttpRequest(
                    method="POST", url=f"{base}/v1/payments", body=b"{}"))
            with pytest.raises(TransientError) as read_error:
                await executor.send(account(), HttpRequest(method="GET", url=f"{base}/v1/x"))
            assert not isinstance(read_error.value, UnknownOutcome)
    assert state.requests  # it did reach the server


async def test_read_timeout_is_a_read_timeout() -> None:
    async with raw_server(silent) as (base, state), httpx.AsyncClient(
            transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{base}/v1/payments", content=b"{}",
                              timeout=httpx.Timeout(5.0, read=0.2))
    assert len(state.requests) == 1
