"""The retry worker's consumer logic against an in-memory consumer: waiting for due messages
without blocking the group, committing only what is finished, retries and the DLQ."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from server.adapters.kafka.ports import IncomingMessage, TopicPartition, commit_offsets
from server.entrypoints.workers.sync_retry import RetryTopicWorker, RetryWorkerOptions
from server.errors import DependencyUnavailable, NotFound
from server.service_layer.sync_schedule import SyncMessage

TOPIC = "payments.retry.5s"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class MemoryConsumer:
    """One topic in memory; poll honours pause (hold) and position like a group member."""

    def __init__(self, partitions: int = 2) -> None:
        self.log: dict[TopicPartition, list[IncomingMessage]] = {
            TopicPartition(TOPIC, p): [] for p in range(partitions)}
        self.position = dict.fromkeys(self.log, 0)
        self.paused: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.polls = 0

    def append(self, partition: int, value: bytes, key: str = "pay_x") -> IncomingMessage:
        tp = TopicPartition(TOPIC, partition)
        message = IncomingMessage(TOPIC, partition, len(self.log[tp]), key, value)
        self.log[tp].append(message)
        return message

    async def poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        self.polls += 1
        out: list[IncomingMessage] = []
        for tp, records in self.log.items():
            if tp in self.paused:
                continue
            batch = records[self.position[tp]:self.position[tp] + max_records]
            self.position[tp] += len(batch)
            out.extend(batch)
        return out

    async def commit(self, messages: Sequence[IncomingMessage]) -> None:
        for tp, offset in commit_offsets(messages).items():
            assert offset > self.committed.get(tp, 0), "commits only move forward"
            self.committed[tp] = offset

    async def lag(self) -> dict[TopicPartition, int]:
        return {}

    async def assignment(self) -> set[TopicPartition]:
        return set(self.log)

    async def hold(self, partition: TopicPartition, offset: int) -> None:
        self.paused.add(partition)
        self.position[partition] = offset

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        self.paused.difference_update(partitions)

    async def close(self) -> None:
        pass


def message(payment_id: str, due_in: float, clock: Clock, ticket: int = 1) -> bytes:
    due = datetime.fromtimestamp(clock.now + due_in, UTC)
    return SyncMessage(payment_id, ticket, 0, due).encode()


class Recorder:
    def __init__(self, outcomes: dict[str, list[object]] | None = None) -> None:
        self.calls: list[str] = []
        self.outcomes = outcomes or {}
        self.dead: list[tuple[str, dict[str, object]]] = []

    async def handle(self, msg: SyncMessage) -> str:
        self.calls.append(msg.payment_id)
        planned = self.outcomes.get(msg.payment_id)
        result = planned.pop(0) if planned else "synced"
        if isinstance(result, BaseException):
            raise result
        return str(result)

    async def dead_letter(self, key: str, body: dict[str, object]) -> None:
        self.dead.append((key, body))


def worker(consumer: MemoryConsumer, recorder: Recorder, clock: Clock,
           **options: object) -> RetryTopicWorker:
    opts = RetryWorkerOptions(**{"max_failures": 3, "failure_backoff_seconds": 1.0,
                                 **options})  # type: ignore[arg-type]
    return RetryTopicWorker(consumer, TOPIC, "g", recorder.handle, recorder.dead_letter, opts,
                            clock=clock)


async def test_a_due_message_is_handled_and_committed() -> None:
    clock, consumer, recorder = Clock(), MemoryConsumer(), Recorder()
    consumer.append(0, message("pay_a", -1, clock))
    assert await worker(consumer, recorder, clock).run_once() == 1
    assert recorder.calls == ["pay_a"]
    assert consumer.committed == {TopicPartition(TOPIC, 0): 1}


async def test_a_message_not_yet_due_holds_its_partition_until_due_while_polling_goes_on(
) -> None:
    clock, consumer, recorder = Clock(), MemoryConsumer(), Recorder()
    consumer.append(0, message("pay_early", -1, clock))
    consumer.append(0, message("pay_later", 30, clock))
    consumer.append(1, message("pay_other", -1, clock))
    w = worker(consumer, recorder, clock)
    await w.run_once()
    assert recorder.calls == ["pay_early", "pay_other"]
    tp0 = TopicPartition(TOPIC, 0)
    assert consumer.committed[tp0] == 1  # up to, not including, the held message
    assert tp0 in consumer.paused and consumer.position[tp0] == 1
    clock.now += 10
    assert await w.run_once() == 0  # still held; the poll keeps the membership alive
    assert recorder.calls == ["pay_early", "pay_other"]
    clock.now += 21
    assert await w.run_once() == 1
    assert recorder.calls[-1] == "pay_later"
    assert consumer.committed[tp0] == 2 and not consumer.paused


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered() -> None:
    clock, consumer = Clock(), MemoryConsumer()
    boom = RuntimeError("psp adapter exploded")
    recorder = Recorder({"pay_bad": [boom, boom, boom]})
    consumer.append(0, message("pay_bad", -1, clock))
    w = worker(consumer, recorder, clock)
    await w.run_once()
    assert recorder.calls == ["pay_bad"] and not consumer.committed
    clock.now += 1.0  # first backoff: 1 s
    await w.run_once()
    assert len(recorder.calls) == 2 and not recorder.dead
    clock.now += 1.5
    await w.run_once()
    assert len(recorder.calls) == 2  # second backoff is 2 s
    clock.now += 0.5
    await w.run_once()
    assert len(recorder.calls) == 3
    assert [key for key, _ in recorder.dead] == ["pay_bad"]
    body = recorder.dead[0][1]
    assert "handler failed 3 times" in str(body["reason"])
    assert "psp adapter exploded" in str(body["reason"])
    assert body["topic"] == TOPIC and body["offset"] == 0
    assert consumer.committed == {TopicPartition(TOPIC, 0): 1}


async def test_dependency_outages_back_off_without_counting_towards_the_dlq() -> None:
    clock, consumer = Clock(), MemoryConsumer()
    down = DependencyUnavailable("postgres", "gone")
    recorder = Recorder({"pay_a": [down, down, down, down, "synced"]})
    consumer.append(0, message("pay_a", -1, clock))
    w = worker(consumer, recorder, clock, dependency_backoff_seconds=0.5)
    for _ in range(5):
        await w.run_once()
        clock.now += 0.5
    assert recorder.calls == ["pay_a"] * 5
    assert not recorder.dead
    assert consumer.committed == {TopicPartition(TOPIC, 0): 1}


async def test_malformed_messages_and_unknown_payments_go_to_the_dlq_at_once() -> None:
    clock, consumer = Clock(), MemoryConsumer()
    recorder = Recorder({"pay_gone": [NotFound("payment pay_gone not found")]})
    consumer.append(0, b"{not json", key="pay_junk")
    consumer.append(0, message("pay_gone", -1, clock))
    await worker(consumer, recorder, clock).run_once()
    assert [(key, str(body["reason"])[:18]) for key, body in recorder.dead] == [
        ("pay_junk", "malformed retry me"), ("pay_gone", "no such payment: p")]
    assert consumer.committed == {TopicPartition(TOPIC, 0): 2}


async def test_after_a_failure_later_messages_of_the_partition_wait_for_it() -> None:
    clock, consumer = Clock(), MemoryConsumer(partitions=1)
    recorder = Recorder({"pay_1": [RuntimeError("once"), "synced"]})
    consumer.append(0, message("pay_1", -1, clock))
    consumer.append(0, message("pay_2", -1, clock))
    w = worker(consumer, recorder, clock)
    await w.run_once()
    # pay_2 may have been handled in the same round, but nothing is committed past pay_1.
    assert consumer.committed == {}
    clock.now += 1.0
    await w.run_once()
    assert recorder.calls.count("pay_1") == 2
    assert consumer.committed == {TopicPartition(TOPIC, 0): 2}
