"""Scheduled status checks are written in the commit pipeline: a new ticket per message, the
outbox row only when the schedule row was written, and a stale `supersedes` writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.adapters.postgres.sync_schedule import SYNC_DUE_EVENT
from server.adapters.postgres.uow import PostgresUnitOfWork
from server.service_layer.sync_schedule import ScheduledSync, SyncMessage
from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration


async def _schedule(stack: Stack, payment_id: str, supersedes: int | None) -> int | None:
    """Schedule one message; the payment's ticket afterwards."""
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        uow.sync_schedule.schedule(ScheduledSync(
            payment_id, 1, datetime.now(UTC) + timedelta(minutes=5), "test", supersedes))
        await uow.commit()
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        return await uow.sync_schedule.ticket(payment_id)


async def _messages(stack: Stack, payment_id: str) -> list[SyncMessage]:
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM outbox WHERE key = %s AND event_type = %s ORDER BY id",
            (payment_id, SYNC_DUE_EVENT))
        return [SyncMessage.decode(bytes(row["payload"])) for row in await cur.fetchall()]


async def test_each_message_carries_the_ticket_it_made_current_and_stale_ones_write_nothing(
        stack: Stack) -> None:
    payment = await create(stack, upi_request(5_100))
    before = len(await _messages(stack, payment.id))  # create may have scheduled one already

    first = await _schedule(stack, payment.id, supersedes=None)
    second = await _schedule(stack, payment.id, supersedes=first)
    assert first is not None and second is not None and second != first
    assert 0 < second < 2**53  # exact for JSON consumers in any language

    stale = await _schedule(stack, payment.id, supersedes=first)  # first was superseded
    assert stale == second

    messages = (await _messages(stack, payment.id))[before:]
    assert [m.ticket for m in messages] == [first, second]  # nothing for the stale request
    assert all(m.payment_id == payment.id for m in messages)
