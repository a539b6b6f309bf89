"""triveni.Client against a real gRPC server running the fake Triveni."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import triveni
from google.protobuf.message import Message
from triveni.v1 import common_pb2 as pb
from triveni.v1 import fraud_service_pb2 as fraud_pb
from triveni.v1 import payment_service_pb2 as pay_pb
from triveni_client_fake import API_KEY, FakeTriveni

# gRPC sends the deadline as a rounded timeout; what the server sees can exceed it slightly.
_SLACK = 0.5


def _create(client: triveni.Client, **kwargs: Any) -> pb.Payment:
    return client.create_payment(amount=triveni.inr(15_000), method=triveni.upi(), **kwargs)


def test_every_call_carries_the_api_key_as_a_bearer_token(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    payment = _create(client)
    client.get_payment(payment.id)

    assert [call.metadata["authorization"] for call in fake.calls] == [f"Bearer {API_KEY}"] * 2
    assert "triveni-python/" in fake.calls[0].metadata["user-agent"]


def test_wrong_api_key_raises_unauthenticated(target: str) -> None:
    with triveni.Client(target, "sk_wrong") as client, pytest.raises(triveni.Unauthenticated):
        client.get_payment("pay_1")


def test_create_payment_sends_amount_in_paise_and_upi_intent(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    payment = _create(client, description="Order #1001", metadata={"order": "1001"})

    request = fake.calls_to("CreatePayment")[0].request
    assert isinstance(request, pay_pb.CreatePaymentRequest)
    assert request.amount == pb.Money(amount_minor=1_500_000, currency="INR")
    assert request.method.upi.flow == pb.UPI_FLOW_INTENT
    assert request.description == "Order #1001"
    assert dict(request.metadata) == {"order": "1001"}
    assert payment.status == pb.PAYMENT_STATUS_REQUIRES_ACTION


def test_upi_vpa_keyword_builds_the_upi_method(client: triveni.Client, fake: FakeTriveni) -> None:
    client.create_payment(amount=triveni.inr(100), upi_vpa="ravi@okaxis")

    request = fake.calls_to("CreatePayment")[0].request
    assert isinstance(request, pay_pb.CreatePaymentRequest)
    assert request.method == pb.PaymentMethod(
        upi=pb.UpiMethod(vpa="ravi@okaxis", flow=pb.UPI_FLOW_INTENT)
    )


def test_generated_idempotency_key_is_a_uuid4(client: triveni.Client, fake: FakeTriveni) -> None:
    payment = _create(client)

    key = payment.idempotency_key
    assert uuid.UUID(key).version == 4
    assert fake.calls_to("CreatePayment")[0].request == pay_pb.CreatePaymentRequest(
        idempotency_key=key,
        amount=triveni.inr(15_000),
        method=triveni.upi(),
    )


def test_each_create_payment_gets_a_fresh_idempotency_key(client: triveni.Client) -> None:
    assert _create(client).idempotency_key != _create(client).idempotency_key


def test_caller_idempotency_key_is_sent_as_given(client: triveni.Client) -> None:
    assert _create(client, idempotency_key="order-1001").idempotency_key == "order-1001"


def test_unavailable_is_retried_with_the_same_idempotency_key(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.fail("CreatePayment", grpc.StatusCode.UNAVAILABLE, "postgres down", times=2)

    payment = _create(client)

    keys = [call.request.idempotency_key for call in fake.calls_to("CreatePayment")]  # type: ignore[attr-defined]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert payment.idempotency_key == keys[0]


def test_unavailable_after_all_retries_raises_with_the_key_to_retry_later(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.fail("CreatePayment", grpc.StatusCode.UNAVAILABLE, "postgres down", times=4)

    with pytest.raises(triveni.Unavailable) as raised:
        _create(client, idempotency_key="order-7")

    assert len(fake.calls_to("CreatePayment")) == 4  # first try + max_retries (3)
    assert raised.value.idempotency_key == "order-7"
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_max_retries_zero_sends_once(target: str, fake: FakeTriveni) -> None:
    fake.fail("GetPayment", grpc.StatusCode.UNAVAILABLE, times=1)
    with (
        triveni.Client(target, API_KEY, max_retries=0) as client,
        pytest.raises(triveni.Unavailable),
    ):
        client.get_payment("pay_1")
    assert len(fake.calls_to("GetPayment")) == 1


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN]
)
def test_other_failures_are_not_retried(
    client: triveni.Client, fake: FakeTriveni, code: grpc.StatusCode
) -> None:
    fake.fail("CreatePayment", code, "no")
    with pytest.raises(triveni.TriveniError):
        _create(client)
    assert len(fake.calls_to("CreatePayment")) == 1


def test_default_deadline_is_applied(client: triveni.Client, fake: FakeTriveni) -> None:
    _create(client)
    remaining = fake.calls_to("CreatePayment")[0].time_remaining
    assert remaining is not None
    assert 5 < remaining <= 10 + _SLACK


def test_client_timeout_sets_the_deadline(target: str, fake: FakeTriveni) -> None:
    with triveni.Client(target, API_KEY, timeout=3) as client:
        _create(client)
    remaining = fake.calls_to("CreatePayment")[0].time_remaining
    assert remaining is not None
    assert 1 < remaining <= 3 + _SLACK


def test_per_call_timeout_overrides_the_default(client: triveni.Client, fake: FakeTriveni) -> None:
    client.list_payments(timeout=1.5)
    remaining = fake.calls_to("ListPayments")[0].time_remaining
    assert remaining is not None
    assert 0 < remaining <= 1.5 + _SLACK


def test_read_that_times_out_is_retried(client: triveni.Client, fake: FakeTriveni) -> None:
    fake.stall_seconds["GetPayment"] = 0.3
    with pytest.raises(triveni.TriveniError) as raised:
        client.get_payment("pay_1", timeout=0.05)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert type(raised.value) is triveni.TriveniError
    assert len(fake.calls_to("GetPayment")) == 4


def test_write_that_times_out_is_not_retried(client: triveni.Client, fake: FakeTriveni) -> None:
    fake.stall_seconds["CreatePayment"] = 0.3
    with pytest.raises(triveni.TriveniError) as raised:
        _create(client, timeout=0.05)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(fake.calls_to("CreatePayment")) == 1


def test_get_payment_not_found_raises_not_found(client: triveni.Client) -> None:
    with pytest.raises(triveni.NotFound) as raised:
        client.get_payment("pay_missing")
    assert raised.value.details == "payment pay_missing not found"


def test_iter_payments_walks_every_page(client: triveni.Client, fake: FakeTriveni) -> None:
    fake.listing = [pb.Payment(id=f"pay_{i:03d}") for i in range(45)]

    ids = [payment.id for payment in client.iter_payments(page_size=20)]

    assert ids == [f"pay_{i:03d}" for i in range(45)]
    tokens = [call.request.page_token for call in fake.calls_to("ListPayments")]  # type: ignore[attr-defined]
    assert tokens == ["", "20", "40"]


def test_list_payments_sends_the_filters(client: triveni.Client, fake: FakeTriveni) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    page = client.list_payments(
        status=pb.PAYMENT_STATUS_SUCCEEDED, connector="razorpay", created_from=since, page_size=5
    )

    request = fake.calls_to("ListPayments")[0].request
    assert isinstance(request, pay_pb.ListPaymentsRequest)
    assert request.status == pb.PAYMENT_STATUS_SUCCEEDED
    assert request.connector == "razorpay"
    assert request.created_from.ToDatetime(tzinfo=UTC) == since
    assert not request.HasField("created_to")
    assert page.next_page_token == ""


def test_naive_datetime_filter_is_refused(client: triveni.Client) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_payments(created_from=datetime(2026, 1, 1))


def _script() -> list[pb.Payment]:
    return [
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_REQUIRES_ACTION, version=1),
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_PROCESSING, version=2),
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_SUCCEEDED, version=3),
    ]


def test_watch_payment_yields_every_state(client: triveni.Client, fake: FakeTriveni) -> None:
    fake.watch_script = _script()

    statuses = [payment.status for payment in client.watch_payment("pay_1")]

    assert statuses == [
        pb.PAYMENT_STATUS_REQUIRES_ACTION,
        pb.PAYMENT_STATUS_PROCESSING,
        pb.PAYMENT_STATUS_SUCCEEDED,
    ]
    call = fake.calls_to("WatchPayment")[0]
    assert call.metadata["authorization"] == f"Bearer {API_KEY}"
    assert call.time_remaining is not None
    assert call.time_remaining > 1e9  # a watch has no deadline unless asked (gRPC: "infinite")


def test_watch_reconnects_after_unavailable_without_repeating_states(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.watch_script = _script()
    fake.watch_break_after = 2

    versions = [payment.version for payment in client.watch_payment("pay_1")]

    assert versions == [1, 2, 3]
    assert len(fake.calls_to("WatchPayment")) == 2


def test_watch_timeout_becomes_the_stream_deadline(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.watch_script = _script()
    list(client.watch_payment("pay_1", timeout=4))
    remaining = fake.calls_to("WatchPayment")[0].time_remaining
    assert remaining is not None
    assert 2 < remaining <= 4 + _SLACK


def test_watch_error_maps_to_the_exception(client: triveni.Client, fake: FakeTriveni) -> None:
    fake.fail("WatchPayment", grpc.StatusCode.PERMISSION_DENIED, "another merchant's payment")
    with pytest.raises(triveni.PermissionDenied):
        list(client.watch_payment("pay_other"))


def test_closing_the_watch_early_stops_the_stream(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.watch_script = _script()
    watch = client.watch_payment("pay_1")
    assert next(watch).version == 1
    watch.close()  # type: ignore[attr-defined]


_FRAUD_CASES: list[tuple[str, Callable[[triveni.Client], object], str, Message]] = [
    (
        "cancel",
        lambda c: c.cancel_payment("pay_1", reason="customer asked", idempotency_key="k1"),
        "CancelPayment",
        pay_pb.CancelPaymentRequest(id="pay_1", reason="customer asked", idempotency_key="k1"),
    ),
    (
        "refund",
        lambda c: c.refund_payment("pay_1", amount=triveni.inr(500), idempotency_key="k2"),
        "RefundPayment",
        pay_pb.RefundPaymentRequest(
            payment_id="pay_1", amount=triveni.inr(500), idempotency_key="k2"
        ),
    ),
    (
        "sync",
        lambda c: c.sync_payment("pay_1"),
        "SyncPayment",
        pay_pb.SyncPaymentRequest(id="pay_1"),
    ),
    (
        "check",
        lambda c: c.check_transaction(amount=triveni.inr(200_000), upi_vpa="a@b", country="IN"),
        "CheckTransaction",
        fraud_pb.CheckTransactionRequest(
            amount=triveni.inr(200_000), method=triveni.upi("a@b"), country="IN"
        ),
    ),
    (
        "add blocklist",
        lambda c: c.add_blocklist_entry(
            fraud_pb.BLOCKLIST_KIND_VPA, "fraud@ybl", reason="chargebacks", ttl_seconds=3600
        ),
        "AddBlocklistEntry",
        fraud_pb.AddBlocklistEntryRequest(
            kind=fraud_pb.BLOCKLIST_KIND_VPA,
            value="fraud@ybl",
            reason="chargebacks",
            ttl_seconds=3600,
        ),
    ),
    (
        "remove blocklist",
        lambda c: c.remove_blocklist_entry("bl_1"),
        "RemoveBlocklistEntry",
        fraud_pb.RemoveBlocklistEntryRequest(id="bl_1"),
    ),
    (
        "get settings",
        lambda c: c.get_fraud_settings(),
        "GetFraudSettings",
        fraud_pb.GetFraudSettingsRequest(),
    ),
    (
        "update settings",
        lambda c: c.update_fraud_settings(fraud_pb.FraudSettings(review_score=40, version=3)),
        "UpdateFraudSettings",
        fraud_pb.UpdateFraudSettingsRequest(
            settings=fraud_pb.FraudSettings(review_score=40, version=3), expected_version=3
        ),
    ),
    (
        "report fraud",
        lambda c: c.report_fraud("pay_1", kind=fraud_pb.FRAUD_KIND_STOLEN_INSTRUMENT, note="cb"),
        "ReportFraud",
        fraud_pb.ReportFraudRequest(
            payment_id="pay_1", kind=fraud_pb.FRAUD_KIND_STOLEN_INSTRUMENT, note="cb"
        ),
    ),
    (
        "approve",
        lambda c: c.approve_review("pay_1", note="ok", idempotency_key="k3"),
        "ApproveReview",
        fraud_pb.ReviewDecisionRequest(payment_id="pay_1", note="ok", idempotency_key="k3"),
    ),
    (
        "reject",
        lambda c: c.reject_review("pay_1", idempotency_key="k4"),
        "RejectReview",
        fraud_pb.ReviewDecisionRequest(payment_id="pay_1", idempotency_key="k4"),
    ),
]


@pytest.mark.parametrize(
    ("invoke", "method", "expected"),
    [case[1:] for case in _FRAUD_CASES],
    ids=[case[0] for case in _FRAUD_CASES],
)
def test_each_rpc_sends_the_request_built_from_its_arguments(
    client: triveni.Client,
    fake: FakeTriveni,
    invoke: Callable[[triveni.Client], object],
    method: str,
    expected: Message,
) -> None:
    invoke(client)
    assert [call.request for call in fake.calls_to(method)] == [expected]


@pytest.mark.parametrize("method", ["cancel_payment", "refund_payment", "approve_review"])
def test_mutations_generate_an_idempotency_key(
    client: triveni.Client, fake: FakeTriveni, method: str
) -> None:
    getattr(client, method)("pay_1")
    request = fake.calls[0].request
    assert uuid.UUID(request.idempotency_key).version == 4  # type: ignore[attr-defined]


def test_iter_blocklist_entries_walks_every_page(client: triveni.Client, fake: FakeTriveni) -> None:
    entries = list(client.iter_blocklist_entries(kind=fraud_pb.BLOCKLIST_KIND_IP))
    assert [entry.id for entry in entries] == ["bl_0", "bl_1", "bl_2"]
    assert len(fake.calls_to("ListBlocklistEntries")) == 2


def test_check_transaction_that_records_is_not_retried_on_timeout(
    client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.stall_seconds["CheckTransaction"] = 0.3
    with pytest.raises(triveni.TriveniError):
        client.check_transaction(amount=triveni.inr(1), record=True, timeout=0.05)
    assert len(fake.calls_to("CheckTransaction")) == 1


def test_create_payment_needs_a_method(client: triveni.Client) -> None:
    with pytest.raises(ValueError, match="method"):
        client.create_payment(amount=triveni.inr(100))


def test_create_payment_refuses_method_and_upi_vpa_together(client: triveni.Client) -> None:
    with pytest.raises(ValueError, match="not both"):
        client.create_payment(amount=triveni.inr(1), method=triveni.upi(), upi_vpa="a@b")


def test_create_payment_refuses_a_bare_number_as_amount(client: triveni.Client) -> None:
    with pytest.raises(TypeError, match=r"triveni\.inr"):
        client.create_payment(amount=15000, method=triveni.upi())  # type: ignore[arg-type]


def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        triveni.Client("localhost:50051", "")


def test_context_manager_closes_the_channel(target: str) -> None:
    with triveni.Client(target, API_KEY) as client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        client.get_payment("pay_1")
