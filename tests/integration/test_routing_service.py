"""RoutingService over real gRPC: per-merchant policies (validated, versioned, picked up by
other server processes within a second), connector overrides, admin-only writes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from triveni.v1 import common_pb2 as pb
from triveni.v1 import routing_service_pb2 as rs
from triveni.v1 import routing_service_pb2_grpc

from tests.fakes.server import free_port
from tests.fixtures.stack import Stack, running_server
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration

TO_STANDARD = {"version": 1, "rules": [
    {"name": "all_to_standard", "connectors": ["simulator_standard"], "order": "static",
     "exclusive": True}]}


@dataclass(frozen=True)
class Admin:
    merchant_id: str
    api_key: str


@pytest_asyncio.fixture
async def admin(stack: Stack) -> Admin:
    """A fresh merchant whose key is an admin key (each test starts at policy version 0)."""
    merchant_id, api_key = await stack.app.merchants.create_merchant(
        f"admin-{secrets.token_hex(3)}", admin=True)
    return Admin(merchant_id, api_key)


@pytest_asyncio.fixture
async def clean_overrides(stack: Stack) -> AsyncIterator[None]:
    yield
    for name in ("simulator_premium", "simulator_standard"):
        await stack.app.redis.delete(f"processor:{name}:health")


def routing(channel: grpc.aio.Channel) -> routing_service_pb2_grpc.RoutingServiceStub:
    return routing_service_pb2_grpc.RoutingServiceStub(channel)


async def set_policy(stack: Stack, key: str, document: object, expected: int,
                     target: str | None = None) -> rs.RoutingPolicy:
    text = document if isinstance(document, str) else json.dumps(document)
    async with stack.channel(target) as channel:
        result: rs.RoutingPolicy = await routing(channel).SetRoutingPolicy(
            rs.SetRoutingPolicyRequest(policy_json=text, expected_version=expected),
            metadata=stack.metadata(key))
        return result


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_without_a_policy_of_its_own_a_merchant_routes_by_the_global_policy(
        stack: Stack, admin: Admin) -> None:
    async with stack.channel() as channel:
        policy = await routing(channel).GetRoutingPolicy(rs.GetRoutingPolicyRequest(),
                                                         metadata=stack.metadata(admin.api_key))
    assert policy.version == 0
    assert json.loads(policy.policy_json)["premium_threshold_minor"] == 1_000_000
    payment = await create(stack, upi_request(1_500_000), admin.api_key)
    assert payment.routing.algorithm.startswith("rule:premium_above_10000")


async def test_a_policy_set_over_grpc_routes_the_merchants_next_payment_in_another_server(
        stack: Stack, admin: Admin) -> None:
    # A second server with a one-minute cache TTL: only the NOTIFY can make it see the change.
    settings = stack.settings_with(run_workers=False, routing_policy_ttl_seconds=60.0)
    async with running_server(settings) as other:
        warm = await create_on(stack, other.grpc_target, admin.api_key, 1_500_000)
        assert warm.routing.algorithm.startswith("rule:premium_above")  # global, now cached
        stored = await set_policy(stack, admin.api_key, TO_STANDARD, expected=0)
        assert stored.version == 1
        saved_at = time.monotonic()
        while True:
            payment = await create_on(stack, other.grpc_target, admin.api_key, 1_500_000)
            elapsed = time.monotonic() - saved_at
            if payment.routing.algorithm == "rule:all_to_standard" or elapsed > 5:
                break
        assert payment.routing.algorithm == "rule:all_to_standard"
        assert payment.connector == "simulator_standard"
        assert elapsed < 1.0, f"picked up after {elapsed:.3f}s"
        # Nobody else's routing changed.
        others = await create_on(stack, other.grpc_target, stack.api_key, 1_500_000)
        assert others.routing.algorithm.startswith("rule:premium_above")


async def create_on(stack: Stack, target: str, key: str, amount: int) -> pb.Payment:
    async with stack.channel(target) as channel:
        payment: pb.Payment = await stack.payments(channel).CreatePayment(
            upi_request(amount), metadata=stack.metadata(key))
        return payment


async def test_versions_are_optimistic_a_stale_expected_version_fails_the_precondition(
        stack: Stack, admin: Admin) -> None:
    assert (await set_policy(stack, admin.api_key, TO_STANDARD, expected=0)).version == 1
    error = await rpc_error(set_policy(stack, admin.api_key, {"version": 1}, expected=0))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "current version 1" in (error.details() or "")
    second = await set_policy(stack, admin.api_key, {"version": 1}, expected=1)
    assert second.version == 2
    async with stack.channel() as channel:
        current = await routing(channel).GetRoutingPolicy(
            rs.GetRoutingPolicyRequest(), metadata=stack.metadata(admin.api_key))
    assert current.version == 2 and json.loads(current.policy_json) == {"version": 1}
    assert current.updated_at.seconds > 0


@pytest.mark.parametrize(("document", "field"), [
    ({"version": 1, "rules": [{"name": "x", "connectors": ["no_such_account"]}]},
     "policy_json.rules[0].connectors[0]"),
    ({"version": 1, "rules": [{"name": "x", "when": {"method": "cash"},
                               "connectors": ["simulator_standard"]}]},
     "policy_json.rules[0].when.method"),
    ({"version": 1, "health": {"failure_threshold": 1}}, "policy_json.health"),
    ({"version": 2}, "policy_json.version"),
    ("{not json", "policy_json"),
    ("[1, 2]", "policy_json"),
    ("", "policy_json"),
])
async def test_invalid_policies_are_refused_naming_the_field(
        stack: Stack, admin: Admin, document: object, field: str) -> None:
    error = await rpc_error(set_policy(stack, admin.api_key, document, expected=0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}:")
    assert dict(error.trailing_metadata() or ())["triveni-field"] == field


async def test_keys_not_flagged_admin_may_read_but_not_write(stack: Stack) -> None:
    key = stack.metadata(stack.api_key)
    async with stack.channel() as channel:
        stub = routing(channel)
        listed = await stub.ListConnectorAccounts(rs.ListConnectorAccountsRequest(), metadata=key)
        assert {a.name for a in listed.accounts} == {"simulator_premium", "simulator_standard"}
        await stub.GetRoutingPolicy(rs.GetRoutingPolicyRequest(), metadata=key)
        for call in (
            stub.SetRoutingPolicy(rs.SetRoutingPolicyRequest(
                policy_json=json.dumps(TO_STANDARD)), metadata=key),
            stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
                name="simulator_premium", override=rs.CONNECTOR_OVERRIDE_FORCE_DOWN),
                metadata=key),
        ):
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "admin" in (error.details() or "")
    assert await stack.app.redis.get("processor:simulator_premium:health") is None


async def test_force_down_is_listed_honoured_by_routing_audited_and_undone_by_auto(
        stack: Stack, admin: Admin, clean_overrides: None) -> None:
    key = stack.metadata(admin.api_key)
    async with stack.channel() as channel:
        stub = routing(channel)
        status = await stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
            name="simulator_premium", override=rs.CONNECTOR_OVERRIDE_FORCE_DOWN,
            reason="PSP incident 4711"), metadata=key)
        assert status.override == rs.CONNECTOR_OVERRIDE_FORCE_DOWN and status.eliminated
        listed = await stub.ListConnectorAccounts(rs.ListConnectorAccountsRequest(), metadata=key)
        by_name = {a.name: a for a in listed.accounts}
        premium = by_name["simulator_premium"]
        assert (premium.override, premium.eliminated, premium.degraded) == (
            rs.CONNECTOR_OVERRIDE_FORCE_DOWN, True, False)
        assert premium.psp == "simulator" and premium.tier == "premium"
        assert {w.method for w in premium.windows} == {"upi", "card", "netbanking", "wallet"}
        assert all(0 < w.estimated_success_rate <= 1 for w in premium.windows)
        assert by_name["simulator_standard"].override == rs.CONNECTOR_OVERRIDE_AUTO

        payment = await create(stack, upi_request(1_500_000))
        assert payment.connector == "simulator_standard"
        notes = {c.connector: c.note for c in payment.routing.candidates}
        assert "forced down" in notes["simulator_premium"]

        restored = await stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
            name="simulator_premium", override=rs.CONNECTOR_OVERRIDE_AUTO), metadata=key)
        assert restored.override == rs.CONNECTOR_OVERRIDE_AUTO
    assert await stack.app.redis.get("processor:simulator_premium:health") is None
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, details FROM admin_audit WHERE merchant_id = %s ORDER BY id",
            (admin.merchant_id,))
        rows = await cur.fetchall()
    assert [(r["action"], r["details"]["override"]) for r in rows] == [
        ("connector.override", "down"), ("connector.override", "auto")]
    assert rows[0]["details"]["reason"] == "PSP incident 4711"


async def test_override_requests_name_their_bad_fields(stack: Stack, admin: Admin) -> None:
    key = stack.metadata(admin.api_key)
    async with stack.channel() as channel:
        stub = routing(channel)
        missing = await rpc_error(stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
            name="no_such_account", override=rs.CONNECTOR_OVERRIDE_FORCE_UP), metadata=key))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        unset = await rpc_error(stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
            name="simulator_premium"), metadata=key))
        assert unset.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (unset.details() or "").startswith("override:")


async def test_with_redis_down_accounts_are_listed_as_degraded(stack: Stack,
                                                               admin: Admin) -> None:
    settings = stack.settings_with(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   run_workers=False)
    async with running_server(settings) as server, stack.channel(server.grpc_target) as channel:
        stub = routing(channel)
        listed = await stub.ListConnectorAccounts(rs.ListConnectorAccountsRequest(),
                                                  metadata=stack.metadata(admin.api_key))
        assert listed.accounts and all(a.degraded for a in listed.accounts)
        assert all(a.circuit == rs.CIRCUIT_STATE_UNSPECIFIED for a in listed.accounts)
        error = await rpc_error(stub.SetConnectorOverride(rs.SetConnectorOverrideRequest(
            name="simulator_premium", override=rs.CONNECTOR_OVERRIDE_FORCE_DOWN),
            metadata=stack.metadata(admin.api_key)))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
