"""FraudService over real gRPC: CheckTransaction, blocklists, settings, reviews."""

from __future__ import annotations

import secrets

import grpc
import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fs

from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, key, upi_request

pytestmark = pytest.mark.integration


async def new_merchant(stack: Stack) -> str:
    _, api_key = await stack.app.merchants.create_merchant(f"fraud-{secrets.token_hex(3)}")
    return api_key


async def test_check_transaction_explains_a_high_amount_block(stack: Stack) -> None:
    async with stack.channel() as channel:
        assessment = await stack.fraud(channel).CheckTransaction(fs.CheckTransactionRequest(
            amount=pb.Money(amount_minor=15_000_000, currency="INR"),
            method=pb.PaymentMethod(upi=pb.UpiMethod()), ip_address="203.0.113.9",
            country="IN"), metadata=stack.metadata())
    assert assessment.decision == pb.FRAUD_DECISION_BLOCK
    assert assessment.reasons[0].message == "Fraud detected: High amount"
    assert assessment.reasons[0].hard_block


async def test_check_transaction_refuses_bad_input_naming_the_field(stack: Stack) -> None:
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.fraud(channel).CheckTransaction(fs.CheckTransactionRequest(
                amount=pb.Money(amount_minor=100, currency="INR"),
                method=pb.PaymentMethod(upi=pb.UpiMethod()), ip_address="nope"),
                metadata=stack.metadata())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("ip_address:")


async def test_a_blocklisted_vpa_blocks_the_next_payment_naming_it(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    vpa = f"fraudster{secrets.token_hex(3)}@ybl"
    async with stack.channel() as channel:
        entry = await stack.fraud(channel).AddBlocklistEntry(fs.AddBlocklistEntryRequest(
            kind=fs.BLOCKLIST_KIND_VPA, value=vpa, reason="chargebacks"),
            metadata=stack.metadata(api_key))
        assert entry.id
        listed = await stack.fraud(channel).ListBlocklistEntries(
            fs.ListBlocklistEntriesRequest(kind=fs.BLOCKLIST_KIND_VPA),
            metadata=stack.metadata(api_key))
        assert [e.value for e in listed.entries] == [vpa]
    request = upi_request(10_000)
    request.method.upi.vpa = vpa
    payment = await create(stack, request, api_key=api_key)
    assert payment.status == pb.PAYMENT_STATUS_BLOCKED
    assert vpa in payment.failure.message
    # Another merchant's blocklist does not apply.
    other = await create(stack, upi_request(10_000, method=request.method))
    assert other.status == pb.PAYMENT_STATUS_REQUIRES_ACTION


async def test_a_blocklisted_cidr_blocks_an_ip_inside_it(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    async with stack.channel() as channel:
        await stack.fraud(channel).AddBlocklistEntry(fs.AddBlocklistEntryRequest(
            kind=fs.BLOCKLIST_KIND_IP, value="198.51.100.0/24", reason="botnet"),
            metadata=stack.metadata(api_key))
    payment = await create(stack, upi_request(10_000, ip_address="198.51.100.77"),
                           api_key=api_key)
    assert payment.status == pb.PAYMENT_STATUS_BLOCKED
    assert "198.51.100.0/24" in payment.failure.message


async def test_removed_blocklist_entry_no_longer_blocks(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    async with stack.channel() as channel:
        entry = await stack.fraud(channel).AddBlocklistEntry(fs.AddBlocklistEntryRequest(
            kind=fs.BLOCKLIST_KIND_EMAIL, value="Bad@Example.com"),
            metadata=stack.metadata(api_key))
        await stack.fraud(channel).RemoveBlocklistEntry(
            fs.RemoveBlocklistEntryRequest(id=entry.id), metadata=stack.metadata(api_key))
    request = upi_request(10_000)
    request.customer.email = "bad@example.com"
    payment = await create(stack, request, api_key=api_key)
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION


async def test_review_hold_then_approve_sends_the_payment_to_a_psp(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    async with stack.channel() as channel:
        fraud = stack.fraud(channel)
        current = await fraud.GetFraudSettings(fs.GetFraudSettingsRequest(),
                                               metadata=stack.metadata(api_key))
        updated = await fraud.UpdateFraudSettings(fs.UpdateFraudSettingsRequest(
            settings=fs.FraudSettings(review_action=fs.REVIEW_ACTION_HOLD),
            expected_version=current.version), metadata=stack.metadata(api_key))
        assert updated.version == current.version + 1
        assert updated.review_action == fs.REVIEW_ACTION_HOLD
        held = await create(stack, upi_request(10_000, country="US"), api_key=api_key)
        assert held.status == pb.PAYMENT_STATUS_IN_REVIEW
        assert held.fraud.decision == pb.FRAUD_DECISION_REVIEW
        assert any("unusual location" in r.message.lower() for r in held.fraud.reasons)
        assert not held.attempts
        approved = await fraud.ApproveReview(fs.ReviewDecisionRequest(
            payment_id=held.id, idempotency_key=key()), metadata=stack.metadata(api_key))
        assert approved.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
        assert approved.attempts[0].connector_payment_id
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await fraud.ApproveReview(fs.ReviewDecisionRequest(
                payment_id=held.id, idempotency_key=key()), metadata=stack.metadata(api_key))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        rejected_one = await create(stack, upi_request(10_000, country="US"), api_key=api_key)
        rejected = await fraud.RejectReview(fs.ReviewDecisionRequest(
            payment_id=rejected_one.id, idempotency_key=key()), metadata=stack.metadata(api_key))
        assert rejected.status == pb.PAYMENT_STATUS_BLOCKED


async def test_settings_update_with_a_stale_version_is_refused(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.fraud(channel).UpdateFraudSettings(fs.UpdateFraudSettingsRequest(
                settings=fs.FraudSettings(review_score=40), expected_version=7),
                metadata=stack.metadata(api_key))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stack.fraud(channel).UpdateFraudSettings(fs.UpdateFraudSettingsRequest(
                settings=fs.FraudSettings(review_score=90, block_score=80), expected_version=0),
                metadata=stack.metadata(api_key))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_report_fraud_blocklists_the_payments_instruments(stack: Stack) -> None:
    api_key = await new_merchant(stack)
    request = upi_request(10_000)
    request.method.upi.vpa = f"victim{secrets.token_hex(3)}@okaxis"
    payment = await create(stack, request, api_key=api_key)
    async with stack.channel() as channel:
        report = await stack.fraud(channel).ReportFraud(fs.ReportFraudRequest(
            payment_id=payment.id, kind=fs.FRAUD_KIND_STOLEN_INSTRUMENT),
            metadata=stack.metadata(api_key))
    kinds = {e.kind for e in report.added}
    assert {fs.BLOCKLIST_KIND_VPA, fs.BLOCKLIST_KIND_IP, fs.BLOCKLIST_KIND_EMAIL} <= kinds
    again = await create(stack, upi_request(10_000, method=request.method), api_key=api_key)
    assert again.status == pb.PAYMENT_STATUS_BLOCKED
