"""MerchantEventStream with a fake tail: cursors, filtering, heartbeats, limits, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2

from server.adapters.kafka.merchant_stream import (
    MerchantEventStream,
    decode_cursor,
    encode_cursor,
)
from server.adapters.kafka.ports import IncomingMessage
from server.errors import DependencyUnavailable, RateLimited, ValidationError


def record(partition: int, offset: int, merchant_id: str, sequence: int = 1) -> IncomingMessage:
    event = events_pb2.PaymentEvent(
        event_id=f"evt_{partition}_{offset}", type="payment.created", sequence=sequence,
        merchant_id=merchant_id, payment=pb.Payment(id=f"pay_{partition}"))
    return IncomingMessage(topic="payments.events", partition=partition, offset=offset,
                           key=f"pay_{partition}", value=event.SerializeToString())


@dataclass
class FakeTail:
    batches: list[list[IncomingMessage]]
    end: dict[int, int] = field(default_factory=lambda: {0: 10, 1: 20})
    started_with: Mapping[int, int] | None = None
    closed: bool = False

    async def start(self, cursor: Mapping[int, int] | None) -> dict[int, int]:
        self.started_with = cursor
        return dict(self.end if cursor is None else {**{0: 0, 1: 0}, **cursor})

    async def poll(self, timeout_s: float, max_records: int) -> list[IncomingMessage]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_s)
        return []

    def close(self) -> None:
        self.closed = True


async def take(stream: MerchantEventStream, merchant_id: str, cursor: str, count: int
               ) -> list[tuple[events_pb2.PaymentEvent | None, str]]:
    items: list[tuple[events_pb2.PaymentEvent | None, str]] = []
    async with contextlib.aclosing(stream.watch(merchant_id, cursor)) as watch:
        async for item in watch:
            items.append(item)
            if len(items) == count:
                break
    return items


def test_cursor_round_trips_and_refuses_foreign_text() -> None:
    cursor = encode_cursor({1: 20, 0: 7})
    assert cursor.startswith("c1.") and "=" not in cursor
    assert decode_cursor(cursor) == {0: 7, 1: 20}
    for bad in ("", "c1.", "c2.MDo3", "c1.@@@", encode_cursor({0: -1}), "c1.MDp4"):
        with pytest.raises(ValidationError):
            decode_cursor(bad)


async def test_stream_starts_with_a_cursor_then_yields_only_the_merchants_events() -> None:
    tail = FakeTail([[record(0, 10, "mer_other"), record(1, 20, "mer_me")],
                     [record(0, 11, "mer_me", 2)]])
    stream = MerchantEventStream(lambda: tail, heartbeat_seconds=60, poll_seconds=0.01)
    items = await take(stream, "mer_me", "", 3)
    assert items[0] == (None, encode_cursor({0: 10, 1: 20}))
    first, second = items[1][0], items[2][0]
    assert first is not None and first.event_id == "evt_1_20"
    assert items[1][1] == encode_cursor({0: 11, 1: 21})  # past the other merchant's record too
    assert second is not None and second.event_id == "evt_0_11"
    assert items[2][1] == encode_cursor({0: 12, 1: 21})
    assert tail.closed and stream.active_streams == 0


async def test_stream_resumes_from_the_cursor_given() -> None:
    tail = FakeTail([])
    stream = MerchantEventStream(lambda: tail, heartbeat_seconds=60, poll_seconds=0.01)
    [(event, cursor)] = await take(stream, "mer_me", encode_cursor({0: 3}), 1)
    assert event is None and tail.started_with == {0: 3}
    assert decode_cursor(cursor) == {0: 3, 1: 0}


async def test_idle_streams_get_heartbeats_whose_cursor_moves_past_others_events() -> None:
    tail = FakeTail([[record(0, 10, "mer_other")]])
    stream = MerchantEventStream(lambda: tail, heartbeat_seconds=0.05, poll_seconds=0.02)
    items = await take(stream, "mer_me", "", 2)
    assert [event for event, _ in items] == [None, None]
    assert items[1][1] == encode_cursor({0: 11, 1: 20})


async def test_streams_beyond_the_limit_are_refused() -> None:
    stream = MerchantEventStream(lambda: FakeTail([]), heartbeat_seconds=60,
                                 poll_seconds=0.01, max_streams=1)
    first = stream.watch("mer_me", "")
    await anext(first)
    with pytest.raises(RateLimited):
        await take(stream, "mer_me", "", 1)
    await first.aclose()
    assert stream.active_streams == 0


async def test_shutdown_ends_open_streams_unavailable() -> None:
    stream = MerchantEventStream(lambda: FakeTail([]), heartbeat_seconds=60, poll_seconds=0.01)
    watch = stream.watch("mer_me", "")
    await anext(watch)
    stream.shutdown()
    with pytest.raises(DependencyUnavailable):
        await anext(watch)
    with pytest.raises(DependencyUnavailable):
        await take(stream, "mer_me", "", 1)


async def test_a_republished_copy_of_an_event_is_skipped() -> None:
    tail = FakeTail([[record(0, 10, "mer_me", 1), record(0, 11, "mer_me", 2),
                      record(0, 12, "mer_me", 1), record(0, 13, "mer_me", 2),
                      record(0, 14, "mer_me", 3)]])
    stream = MerchantEventStream(lambda: tail, heartbeat_seconds=60, poll_seconds=0.01)
    items = await take(stream, "mer_me", "", 4)
    assert [event.sequence for event, _ in items[1:] if event is not None] == [1, 2, 3]
    assert decode_cursor(items[3][1]) == {0: 15, 1: 20}
