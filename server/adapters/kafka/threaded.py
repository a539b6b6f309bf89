"""What both Kafka clients share: blocking clients live on one thread each, and the consumer's
async surface (closed check, offsets to commit) is the same whichever client sits below it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from server.adapters.kafka.ports import (
    IncomingMessage,
    KafkaSettings,
    TopicPartition,
    commit_offsets,
)

__all__ = ["ThreadWorker", "ThreadedConsumer"]


class ThreadWorker:
    """One thread that owns a blocking client; every call to that client goes through it."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)


class ThreadedConsumer:
    """`EventConsumer` whose blocking client methods (`_poll`, `_commit`, `_lag`, `_hold`,
    `_resume`, `_client`, `_close_client`) run on the consumer's own thread."""

    def __init__(self, settings: KafkaSettings, group: str, topics: Sequence[str]) -> None:
        self._settings = settings
        self._group = group
        self._topics = list(topics)
        self._worker = ThreadWorker(f"kafka-consumer-{group}")
        self._closed = False

    @property
    def group(self) -> str:
        return self._group

    async def poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        messages: list[IncomingMessage] = await self._call(self._poll, max_records, timeout_s)
        return messages

    async def commit(self, messages: Sequence[IncomingMessage]) -> None:
        offsets = commit_offsets(messages)
        if offsets:
            await self._call(self._commit, offsets)

    async def lag(self) -> dict[TopicPartition, int]:
        lag: dict[TopicPartition, int] = await self._call(self._lag)
        return lag

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._worker.run(self._close_client)
        self._worker.shutdown()

    async def assignment(self) -> set[TopicPartition]:
        assigned: set[TopicPartition] = await self._call(self._assignment)
        return assigned

    async def hold(self, partition: TopicPartition, offset: int) -> None:
        await self._call(self._hold, partition, offset)

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._resume, list(partitions))

    async def _call(self, func: Any, *args: Any) -> Any:
        if self._closed:
            raise RuntimeError("consumer is closed")
        return await self._worker.run(func, *args)

    # --- in the consumer thread: what each client implements -------------------------------
    def _assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._client().assignment()}

    def _client(self) -> Any:
        raise NotImplementedError

    def _poll(self, max_records: int, timeout_s: float) -> list[IncomingMessage]:
        raise NotImplementedError

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise NotImplementedError

    def _lag(self) -> dict[TopicPartition, int]:
        raise NotImplementedError

    def _hold(self, partition: TopicPartition, offset: int) -> None:
        raise NotImplementedError

    def _resume(self, partitions: list[TopicPartition]) -> None:
        raise NotImplementedError

    def _close_client(self) -> None:
        raise NotImplementedError
