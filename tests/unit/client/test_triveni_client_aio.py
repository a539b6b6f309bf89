"""triveni.AsyncClient against a real gRPC server running the fake Triveni."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
import triveni
from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fraud_pb
from triveni.v1 import payment_service_pb2 as pay_pb
from triveni_client_fake import API_KEY, FakeTriveni

_SLACK = 0.5  # gRPC sends the deadline as a rounded timeout


async def _create(client: triveni.AsyncClient, **kwargs: Any) -> pb.Payment:
    return await client.create_payment(amount=triveni.inr(15_000), method=triveni.upi(), **kwargs)


async def test_every_call_carries_the_api_key(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    payment = await _create(async_client)
    await async_client.get_payment(payment.id)

    assert [call.metadata["authorization"] for call in fake.calls] == [f"Bearer {API_KEY}"] * 2


async def test_wrong_api_key_raises_unauthenticated(target: str) -> None:
    async with triveni.AsyncClient(target, "sk_wrong") as client:
        with pytest.raises(triveni.Unauthenticated):
            await client.get_payment("pay_1")


async def test_unavailable_is_retried_with_the_same_generated_idempotency_key(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.fail("CreatePayment", grpc.StatusCode.UNAVAILABLE, "postgres down", times=2)

    payment = await _create(async_client)

    keys = [call.request.idempotency_key for call in fake.calls_to("CreatePayment")]  # type: ignore[attr-defined]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert uuid.UUID(keys[0]).version == 4
    assert payment.idempotency_key == keys[0]


async def test_unavailable_after_all_retries_raises_unavailable(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.fail("RefundPayment", grpc.StatusCode.UNAVAILABLE, times=4)

    with pytest.raises(triveni.Unavailable) as raised:
        await async_client.refund_payment("pay_1", idempotency_key="refund-1")

    assert len(fake.calls_to("RefundPayment")) == 4
    assert raised.value.idempotency_key == "refund-1"


async def test_default_deadline_is_applied(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    await _create(async_client)
    remaining = fake.calls_to("CreatePayment")[0].time_remaining
    assert remaining is not None
    assert 5 < remaining <= 10 + _SLACK


async def test_per_call_timeout_overrides_the_default(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    await async_client.get_fraud_settings(timeout=2)
    remaining = fake.calls_to("GetFraudSettings")[0].time_remaining
    assert remaining is not None
    assert 0 < remaining <= 2 + _SLACK


async def test_read_that_times_out_is_retried_and_write_is_not(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.stall_seconds["GetPayment"] = 0.3
    fake.stall_seconds["CancelPayment"] = 0.3

    with pytest.raises(triveni.TriveniError) as read_error:
        await async_client.get_payment("pay_1", timeout=0.05)
    with pytest.raises(triveni.TriveniError) as write_error:
        await async_client.cancel_payment("pay_1", timeout=0.05)

    assert read_error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert write_error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(fake.calls_to("GetPayment")) == 4
    assert len(fake.calls_to("CancelPayment")) == 1


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        (grpc.StatusCode.NOT_FOUND, triveni.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, triveni.AlreadyExists),
        (grpc.StatusCode.PERMISSION_DENIED, triveni.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, triveni.RateLimited),
        (grpc.StatusCode.FAILED_PRECONDITION, triveni.FailedPrecondition),
        (grpc.StatusCode.INTERNAL, triveni.TriveniError),
    ],
)
async def test_status_code_maps_to_its_exception(
    async_client: triveni.AsyncClient,
    fake: FakeTriveni,
    code: grpc.StatusCode,
    exception: type[triveni.TriveniError],
) -> None:
    fake.fail("CancelPayment", code, "nope")
    with pytest.raises(triveni.TriveniError) as raised:
        await async_client.cancel_payment("pay_1")
    assert type(raised.value) is exception
    assert raised.value.code == code
    assert raised.value.details == "nope"


async def test_invalid_argument_names_the_field(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.fail("CreatePayment", grpc.StatusCode.INVALID_ARGUMENT, "customer.phone: not a phone")
    with pytest.raises(triveni.InvalidArgument) as raised:
        await _create(async_client)
    assert raised.value.field == "customer.phone"


async def test_iter_payments_walks_every_page(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.listing = [pb.Payment(id=f"pay_{i:03d}") for i in range(45)]

    ids = [payment.id async for payment in async_client.iter_payments(page_size=20)]

    assert ids == [f"pay_{i:03d}" for i in range(45)]
    assert len(fake.calls_to("ListPayments")) == 3


async def test_iter_blocklist_entries_walks_every_page(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    ids = [entry.id async for entry in async_client.iter_blocklist_entries()]
    assert ids == ["bl_0", "bl_1", "bl_2"]


def _script() -> list[pb.Payment]:
    return [
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_REQUIRES_ACTION, version=1),
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_PROCESSING, version=2),
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_SUCCEEDED, version=3),
    ]


async def test_watch_payment_yields_every_state(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.watch_script = _script()

    statuses = [p.status async for p in async_client.watch_payment("pay_1")]

    assert statuses == [
        pb.PAYMENT_STATUS_REQUIRES_ACTION,
        pb.PAYMENT_STATUS_PROCESSING,
        pb.PAYMENT_STATUS_SUCCEEDED,
    ]
    assert fake.calls_to("WatchPayment")[0].metadata["authorization"] == f"Bearer {API_KEY}"


async def test_watch_reconnects_after_unavailable_without_repeating_states(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.watch_script = _script()
    fake.watch_break_after = 1

    versions = [p.version async for p in async_client.watch_payment("pay_1")]

    assert versions == [1, 2, 3]
    assert len(fake.calls_to("WatchPayment")) == 2


async def test_watch_error_maps_to_the_exception(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.fail("WatchPayment", grpc.StatusCode.NOT_FOUND, "no such payment")
    with pytest.raises(triveni.NotFound):
        async for _ in async_client.watch_payment("pay_missing"):
            pass


async def test_fraud_rpcs_send_their_requests(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    assessment = await async_client.check_transaction(amount=triveni.inr(5), upi_vpa="a@b")
    entry = await async_client.add_blocklist_entry(fraud_pb.BLOCKLIST_KIND_IP, "203.0.113.0/24")
    await async_client.remove_blocklist_entry(entry.id)
    settings = await async_client.get_fraud_settings()
    settings.review_score = 45
    updated = await async_client.update_fraud_settings(settings)
    report = await async_client.report_fraud("pay_1", kind=fraud_pb.FRAUD_KIND_CARD_TESTING)
    approved = await async_client.approve_review("pay_1")
    rejected = await async_client.reject_review("pay_2")
    synced = await async_client.sync_payment("pay_3")

    assert assessment.decision == pb.FRAUD_DECISION_ALLOW
    assert entry.value == "203.0.113.0/24"
    assert updated.review_score == 45
    assert updated.version == 4
    update = fake.calls_to("UpdateFraudSettings")[0].request
    assert isinstance(update, fraud_pb.UpdateFraudSettingsRequest)
    assert update.expected_version == 3
    assert [e.id for e in report.added] == ["bl_9"]
    assert approved.status == pb.PAYMENT_STATUS_PROCESSING
    assert rejected.status == pb.PAYMENT_STATUS_BLOCKED
    assert synced.status == pb.PAYMENT_STATUS_SUCCEEDED
    review_keys = [
        call.request.idempotency_key  # type: ignore[attr-defined]
        for call in fake.calls
        if call.method in ("ApproveReview", "RejectReview")
    ]
    assert all(uuid.UUID(key).version == 4 for key in review_keys)


async def test_list_payments_returns_one_page(
    async_client: triveni.AsyncClient, fake: FakeTriveni
) -> None:
    fake.listing = [pb.Payment(id=f"pay_{i}") for i in range(3)]
    page = await async_client.list_payments(page_size=2)
    assert isinstance(page, pay_pb.ListPaymentsResponse)
    assert [p.id for p in page.payments] == ["pay_0", "pay_1"]
    assert page.next_page_token == "2"


async def test_context_manager_closes_the_channel(target: str) -> None:
    async with triveni.AsyncClient(target, API_KEY, max_retries=0) as client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_payment("pay_1")
