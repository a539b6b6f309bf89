"""WatchPayments over real gRPC and Kafka: a merchant's changes only, resumable by cursor across
server processes with no gap and no repeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from triveni.v1 import payment_service_pb2 as ps

from tests.fixtures.stack import Stack, running_server
from tests.integration.merchant_webhook_support import Merchant, new_merchant

pytestmark = pytest.mark.integration

Key = tuple[str, int]  # (payment id, sequence)


@dataclass
class Watch:
    """One WatchPayments stream, read in the background."""

    merchant: Merchant
    target: str
    after_cursor: str = ""
    events: list[tuple[Key, str]] = field(default_factory=list)  # (event, cursor after it)
    cursor: str = ""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    error: grpc.StatusCode | None = None

    @property
    def keys(self) -> list[Key]:
        return [key for key, _ in self.events]

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = self.merchant.stack.payments(channel).WatchPayments(
                ps.WatchPaymentsRequest(after_cursor=self.after_cursor),
                metadata=self.merchant.metadata())
            try:
                async for response in call:
                    self.cursor = response.cursor
                    if response.HasField("event"):
                        event = response.event
                        assert event.merchant_id == self.merchant.merchant_id
                        self.events.append(((event.payment.id, event.sequence),
                                            response.cursor))
                    self.started.set()
            except grpc.aio.AioRpcError as exc:
                self.error = exc.code()


@contextlib.asynccontextmanager
async def watching(merchant: Merchant, target: str, after_cursor: str = ""
                   ) -> AsyncIterator[Watch]:
    watch = Watch(merchant, target, after_cursor)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.started.wait(), timeout=15)
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(watch: Watch, keys: set[Key], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not keys <= set(watch.keys):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"missing {keys - set(watch.keys)}; got {watch.keys}")
        await asyncio.sleep(0.05)


async def test_watch_payments_streams_only_the_merchants_changes_in_order(stack: Stack) -> None:
    merchant, other = await new_merchant(stack), await new_merchant(stack)
    async with watching(merchant, stack.grpc_target) as watch:
        assert watch.cursor.startswith("c1.")  # the first response is the starting cursor
        assert watch.events == []
        mine = await merchant.payment()
        theirs = await other.payment()
        await merchant.pay(mine)
        await other.pay(theirs)
        await until(watch, {(mine.id, 1), (mine.id, 2), (mine.id, 3)})
        await asyncio.sleep(0.5)
    assert watch.keys == [(mine.id, 1), (mine.id, 2), (mine.id, 3)]
    cursors = [cursor for _, cursor in watch.events]
    assert len(set(cursors)) == 3


async def test_reconnecting_with_the_last_cursor_resumes_without_gap_or_repeat_across_servers(
        stack: Stack) -> None:
    merchant = await new_merchant(stack)
    async with watching(merchant, stack.grpc_target) as watch:
        first = await merchant.payment()
        await until(watch, {(first.id, 1), (first.id, 2)})
    start_cursor = watch.cursor  # the client goes away after the first two events
    # While no stream is open: the first payment completes, a second one starts.
    await merchant.pay(first)
    second = await merchant.payment()
    await merchant.pay(second)
    wanted = {(first.id, 3), (second.id, 1), (second.id, 2), (second.id, 3)}
    # Another server process serves the resumed stream, and shuts down mid-stream.
    async with running_server(stack.settings_with(run_workers=False)) as server:
        resumed = Watch(merchant, server.grpc_target, start_cursor)
        task = asyncio.create_task(resumed.run())
        await until(resumed, {(first.id, 3)})
    await asyncio.wait_for(task, timeout=5)
    assert resumed.error == grpc.StatusCode.UNAVAILABLE
    assert set(resumed.keys) <= wanted
    # The client reconnects to the session's server with the last cursor it received.
    async with watching(merchant, stack.grpc_target, resumed.cursor) as rest:
        await until(rest, wanted - set(resumed.keys))
        await asyncio.sleep(0.5)
    combined = resumed.keys + rest.keys
    assert sorted(combined) == sorted(wanted)  # nothing missing, nothing twice
    assert (first.id, 1) not in combined and (first.id, 2) not in combined
    assert [key for key in combined if key[0] == second.id] == [
        (second.id, 1), (second.id, 2), (second.id, 3)]


async def test_a_stream_ends_unavailable_when_its_server_shuts_down(stack: Stack) -> None:
    merchant = await new_merchant(stack)
    async with running_server(stack.settings_with(run_workers=False)) as server:
        watch = Watch(merchant, server.grpc_target)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(watch.started.wait(), timeout=15)
    await asyncio.wait_for(task, timeout=5)
    assert watch.error == grpc.StatusCode.UNAVAILABLE


async def test_a_cursor_that_is_not_ours_is_invalid_argument(stack: Stack) -> None:
    merchant = await new_merchant(stack)
    for cursor in ("nonsense", "c1.!!!", "c1."):
        watch = Watch(merchant, stack.grpc_target, cursor)
        await asyncio.wait_for(watch.run(), timeout=10)
        assert watch.error == grpc.StatusCode.INVALID_ARGUMENT, cursor
