"""The version-checked save travels in the commit pipeline: it wins whole or writes nothing."""

from __future__ import annotations

import pytest
from triveni.v1 import common_pb2 as pb

from server.adapters.postgres.uow import PostgresUnitOfWork
from server.domain.status import PaymentStatus
from server.errors import ConcurrentUpdate
from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration


async def _counts(stack: Stack, payment_id: str) -> tuple[int, int, int]:
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT version FROM payments WHERE id = %(id)s) AS version,"
            " (SELECT count(*) FROM audit_log WHERE payment_id = %(id)s) AS audit,"
            " (SELECT count(*) FROM outbox WHERE key = %(id)s) AS outbox", {"id": payment_id})
        row = await cur.fetchone()
        assert row is not None
        return int(row["version"]), int(row["audit"]), int(row["outbox"])


async def test_a_stale_optimistic_save_raises_and_writes_nothing(stack: Stack) -> None:
    created = await create(stack, upi_request(4_200))
    assert created.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        stale = await uow.payments.get(stack.merchant_id, created.id)
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        winner = await uow.payments.get(stack.merchant_id, created.id, for_update=True)
        winner.transition(PaymentStatus.SUCCEEDED, actor="test:winner")
        await uow.payments.save(winner)
        await uow.commit()
    before = await _counts(stack, created.id)

    held = stale.version
    stale.transition(PaymentStatus.FAILED, actor="test:loser")
    stale.current_attempt.error_code = "LOSER"  # type: ignore[union-attr]
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        await uow.payments.save_if_version(stale, held)
        with pytest.raises(ConcurrentUpdate, match=created.id):
            await uow.commit()

    assert await _counts(stack, created.id) == before  # no payment, audit or outbox write
    async with PostgresUnitOfWork(stack.app.pool) as uow:  # the pool's connection still works
        stored = await uow.payments.get(stack.merchant_id, created.id)
    assert stored.status == PaymentStatus.SUCCEEDED
    assert stored.attempts[0].error_code != "LOSER"


async def test_a_current_optimistic_save_commits_with_its_audit_and_event(stack: Stack) -> None:
    created = await create(stack, upi_request(4_300))
    version, audit, outbox = await _counts(stack, created.id)
    async with PostgresUnitOfWork(stack.app.pool) as uow:
        payment = await uow.payments.get(stack.merchant_id, created.id)
        payment.transition(PaymentStatus.SUCCEEDED, actor="test")
        await uow.payments.save_if_version(payment, version)
        await uow.commit()
    assert await _counts(stack, created.id) == (version + 1, audit + 1, outbox + 1)


async def test_changes_of_one_commit_are_written_in_order(stack: Stack) -> None:
    """A blocked payment is created and blocked in one transaction: its audit rows and events
    are written in that order (the relay publishes a payment's events in outbox id order)."""
    blocked = await create(stack, upi_request(1_50_000_00))
    assert blocked.status == pb.PAYMENT_STATUS_BLOCKED
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, before_status, after_status, details FROM audit_log"
            " WHERE payment_id = %s ORDER BY id", (blocked.id,))
        audit = await cur.fetchall()
        cur = await conn.execute(
            "SELECT event_type, topic FROM outbox WHERE key = %s ORDER BY id", (blocked.id,))
        events = await cur.fetchall()
    assert [(r["action"], r["before_status"], r["after_status"]) for r in audit] == [
        ("payment.created", None, "CREATED"), ("payment.blocked", "CREATED", "BLOCKED")]
    assert isinstance(audit[1]["details"], dict)  # stored as jsonb, not a string
    assert [r["event_type"] for r in events] == ["payment.created", "payment.blocked"]
