"""The Kafka status-sync ladder and its message format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.adapters.postgres.sync_schedule import retry_topic
from server.service_layer.sync_schedule import RetryLadder, SyncMessage, parse_ladder


def test_the_default_ladder_is_5s_30s_5m_then_hourly_for_three_days() -> None:
    ladder = RetryLadder()
    assert [ladder.delay(rung) for rung in range(6)] == [5, 30, 300, 3600, 3600, 3600]
    assert ladder.tail == timedelta(days=3)


def test_rungs_map_to_the_retry_topics_and_stay_on_the_last_one() -> None:
    assert [retry_topic(rung) for rung in range(6)] == [
        "payments.retry.5s", "payments.retry.30s", "payments.retry.5m", "payments.retry.1h",
        "payments.retry.1h", "payments.retry.1h"]


def test_a_delay_goes_to_the_longest_rung_not_longer_than_it() -> None:
    ladder = RetryLadder()
    assert ladder.rung_for_delay(2) == 0  # shorter than every rung: the first
    assert ladder.rung_for_delay(5) == 0
    assert ladder.rung_for_delay(60) == 1
    assert ladder.rung_for_delay(7200) == 3


def test_a_ladder_is_parsed_from_comma_separated_seconds() -> None:
    ladder = parse_ladder("0.2, 0.5,1", tail_seconds=10)
    assert ladder.delays == (0.2, 0.5, 1.0)
    assert ladder.tail == timedelta(seconds=10)
    with pytest.raises(ValueError):
        parse_ladder("5,-1", tail_seconds=10)
    with pytest.raises(ValueError):
        parse_ladder("soon", tail_seconds=10)


def test_a_retry_message_round_trips_through_json() -> None:
    message = SyncMessage("pay_1", 7, 2, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "pending")
    assert SyncMessage.decode(message.encode()) == message


@pytest.mark.parametrize("value", [
    b"not json", b"[]", b'{"ticket": 1, "attempt": 0, "due_at": "2026-01-01T00:00:00+00:00"}',
    b'{"payment_id": "pay_1", "ticket": "1", "attempt": 0, "due_at": "2026-01-01T00:00:00+00:00"}',
    b'{"payment_id": "pay_1", "ticket": 1, "attempt": 0, "due_at": "2026-01-01T00:00:00"}',
    b'{"payment_id": "pay_1", "ticket": 1, "attempt": 0, "due_at": "tomorrow"}',
])
def test_anything_else_is_refused_as_malformed(value: bytes) -> None:
    with pytest.raises(ValueError):
        SyncMessage.decode(value)
