"""A merchant's webhook receiver for tests: records every request, fails or hangs on demand.

Served on a real loopback port with `tests.fakes.server.serve_app(receiver.app())`; the app
runs in uvicorn's thread, so the state is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from triveni import webhooks

__all__ = ["Receipt", "Receiver"]


@dataclass(frozen=True)
class Receipt:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def event_id(self) -> str:
        return self.headers.get(webhooks.EVENT_ID_HEADER.lower(), "")

    @property
    def sequence(self) -> int:
        return int(self.headers.get(webhooks.SEQUENCE_HEADER.lower(), "0"))

    @property
    def signature(self) -> str:
        return self.headers.get(webhooks.SIGNATURE_HEADER.lower(), "")

    @property
    def event_type(self) -> str:
        return str(webhooks.parse_event(self.body)["type"])


@dataclass
class Receiver:
    """Answers 2xx unless told otherwise: `fail_first` requests get `fail_status`; every
    request fails when `always_fail`; the first `hang_first` requests wait `hang_seconds`."""

    fail_first: int = 0
    fail_status: int = 500
    always_fail: bool = False
    hang_first: int = 0
    hang_seconds: float = 0.0
    receipts: list[Receipt] = field(default_factory=list)
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self._seen += 1
            number = self._seen
        if number <= self.hang_first:
            await asyncio.sleep(self.hang_seconds)
        failing = self.always_fail or number <= self.fail_first
        status = self.fail_status if failing else 200
        with self._lock:
            self.receipts.append(Receipt(
                path=request.url.path, headers={k.lower(): v for k, v in request.headers.items()},
                body=body, status=status, at=time.monotonic()))
        return PlainTextResponse("nope" if failing else "ok", status_code=status)

    def all(self, path: str | None = None) -> list[Receipt]:
        with self._lock:
            return [r for r in self.receipts if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Receipt]:
        """The requests answered 2xx, in arrival order."""
        return [r for r in self.all(path) if 200 <= r.status < 300]
