"""Failover decided by the error taxonomy: the simulator PSP's failure modes each meet the
retry action their category calls for, recorded on the attempt and in the audit log."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps
from triveni.v1 import routing_service_pb2 as rs
from triveni.v1 import routing_service_pb2_grpc

from server.domain.routing.taxonomy import parse_taxonomy
from tests.fixtures.stack import Stack
from tests.integration.test_failure_modes import attempt_ids, charges_for
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration

ONLY_STANDARD = {"name": "only_standard", "connectors": ["simulator_standard"],
                 "exclusive": True}


@pytest_asyncio.fixture
async def fresh_circuits(stack: Stack) -> AsyncIterator[None]:
    """Failures on purpose must not leave an open circuit behind for later tests."""
    yield
    for name in ("simulator_premium", "simulator_standard"):
        await stack.app.redis.delete(f"triveni:routing:health:{name}")


async def merchant_with_policy(stack: Stack, policy: dict[str, object]) -> str:
    """A new merchant (admin key) routing by `policy`; returns its API key."""
    _, key = await stack.app.merchants.create_merchant(f"tax-{secrets.token_hex(3)}",
                                                       admin=True)
    async with stack.channel() as channel:
        await routing_service_pb2_grpc.RoutingServiceStub(channel).SetRoutingPolicy(
            rs.SetRoutingPolicyRequest(policy_json=json.dumps(policy), expected_version=0),
            metadata=stack.metadata(key))
    return key


async def audit_actions(stack: Stack, payment_id: str) -> list[tuple[str, dict[str, object]]]:
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, details FROM audit_log WHERE payment_id = %s ORDER BY id",
            (payment_id,))
        return [(str(r["action"]), dict(r["details"])) for r in await cur.fetchall()]


async def get(stack: Stack, payment_id: str, key: str) -> pb.Payment:
    async with stack.channel() as channel:
        payment: pb.Payment = await stack.payments(channel).GetPayment(
            ps.GetPaymentRequest(id=payment_id), metadata=stack.metadata(key))
        return payment


async def test_throttling_is_retry_other_and_fails_over_with_the_category_recorded(
        stack: Stack, simulator: object, fresh_circuits: None) -> None:
    stack.simulator.configure({"failure_mode": "rate_limit", "failure_count": 3,
                               "retry_after_seconds": 0})
    payment = await create(stack, upi_request(1_500_000))
    assert [a.connector for a in payment.attempts] == ["simulator_premium",
                                                       "simulator_standard"]
    assert payment.attempts[0].error.code == "retry_other:RATE_LIMITED"
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    failover = [d for a, d in await audit_actions(stack, payment.id) if a == "payment.failover"]
    assert failover and failover[0]["category"] == "retry_other"
    assert failover[0]["action"] == "RETRY_OTHER_CONNECTOR"


@pytest.mark.parametrize(("mode", "code"), [("decline", "declined"),
                                           ("insufficient_funds", "insufficient_funds")])
async def test_customer_side_refusals_are_do_not_retry(stack: Stack, simulator: object,
                                                      mode: str, code: str) -> None:
    stack.simulator.configure({"failure_mode": mode, "failure_count": 1})
    payment = await create(stack, upi_request(1_500_000))
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert len(payment.attempts) == 1
    assert payment.attempts[0].error.code == f"do_not_retry:{code}"
    assert payment.failure.code == "PSP_DECLINED"
    failed = [d for a, d in await audit_actions(stack, payment.id) if a == "payment.failed"]
    assert failed[0]["category"] == "do_not_retry"


async def test_a_timeout_is_sync_first_never_a_failover(stack: Stack, simulator: object,
                                                        fresh_circuits: None) -> None:
    # Every try of the (safe to repeat) create is recorded and then hangs past our timeout.
    stack.simulator.configure({"failure_mode": "timeout", "failure_count": 0,
                               "hang_seconds": 1.5})
    payment = await create(stack, upi_request(30_000))
    assert payment.status == pb.PAYMENT_STATUS_PROCESSING
    assert [(a.status, a.error.code) for a in payment.attempts] == [
        ("UNKNOWN", "unknown_outcome:PSP_OUTCOME_UNKNOWN")]


async def test_throttled_with_no_other_account_is_retried_on_the_same_one_later(
        stack: Stack, simulator: object, fresh_circuits: None) -> None:
    key = await merchant_with_policy(stack, {
        "version": 1, "rules": [ONLY_STANDARD],
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.2, "max_delay_seconds": 1.0}})
    stack.simulator.configure({"failure_mode": "rate_limit", "failure_count": 3,
                               "retry_after_seconds": 0})
    payment = await create(stack, upi_request(40_000), key)
    assert payment.status == pb.PAYMENT_STATUS_CREATED  # waiting for its retry
    assert [(a.connector, a.status) for a in payment.attempts] == [
        ("simulator_standard", "FAILED")]
    # No SyncPayment: the durable schedule brings the retry (the sweeper here; Kafka where on).
    deadline = time.monotonic() + 10
    while payment.status == pb.PAYMENT_STATUS_CREATED and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        payment = await get(stack, payment.id, key)
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert [(a.connector, a.status) for a in payment.attempts] == [
        ("simulator_standard", "FAILED"), ("simulator_standard", "PENDING")]
    actions = [a for a, _ in await audit_actions(stack, payment.id)]
    assert "payment.retry_scheduled" in actions and "payment.retry_started" in actions
    assert charges_for(stack, await attempt_ids(stack, payment.id)) == 1


async def test_the_attempt_budget_ends_same_account_retries_with_a_failure(
        stack: Stack, simulator: object, fresh_circuits: None) -> None:
    key = await merchant_with_policy(stack, {
        "version": 1, "rules": [ONLY_STANDARD],
        "retry": {"max_attempts": 2, "base_delay_seconds": 0.1, "max_delay_seconds": 0.5}})
    stack.simulator.configure({"failure_mode": "rate_limit", "failure_count": 0,
                               "retry_after_seconds": 0})
    payment = await create(stack, upi_request(41_000), key)
    deadline = time.monotonic() + 10
    while payment.status == pb.PAYMENT_STATUS_CREATED and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        payment = await get(stack, payment.id, key)
    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure.code == "PSP_UNAVAILABLE"
    assert [a.status for a in payment.attempts] == ["FAILED", "FAILED"]
    failed = [d for a, d in await audit_actions(stack, payment.id) if a == "payment.failed"]
    assert "budget exhausted" in str(failed[0]["why"])


@pytest.fixture
def declines_fail_over(stack: Stack) -> Iterator[None]:
    """This process's taxonomy, with the simulator's decline filed as retry_other."""
    deps = stack.app.payments.deps
    original = deps.taxonomy
    rows = "\n".join(
        f"{e.psp},{e.code},{e.category.value},{json.dumps(e.description)},"
        for e in original.entries if (e.psp, e.code) != ("simulator", "declined"))
    deps.taxonomy = parse_taxonomy(
        "# version: 99\npsp,code,category,description,note\n" + rows
        + '\nsimulator,declined,retry_other,"test: another acquirer may approve",\n')
    yield
    deps.taxonomy = original


async def test_the_taxonomy_file_not_the_error_class_decides(
        stack: Stack, simulator: object, declines_fail_over: None) -> None:
    stack.simulator.configure({"failure_mode": "decline", "failure_count": 1})
    payment = await create(stack, upi_request(1_500_000))
    assert [a.connector for a in payment.attempts] == ["simulator_premium",
                                                       "simulator_standard"]
    assert payment.attempts[0].error.code == "retry_other:declined"
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
