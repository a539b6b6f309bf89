"""gRPC status codes surface as the client's exception tree, keeping code and details."""

from __future__ import annotations

import grpc
import pytest
import triveni
from triveni._common import RetryPolicy
from triveni.errors import error_from_status
from triveni_client_fake import API_KEY, FakeTriveni


@pytest.fixture
def no_retry_client(target: str) -> triveni.Client:
    return triveni.Client(target, API_KEY, max_retries=0)


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, triveni.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, triveni.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, triveni.AlreadyExists),
        (grpc.StatusCode.UNAUTHENTICATED, triveni.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, triveni.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, triveni.RateLimited),
        (grpc.StatusCode.UNAVAILABLE, triveni.Unavailable),
        (grpc.StatusCode.FAILED_PRECONDITION, triveni.FailedPrecondition),
        (grpc.StatusCode.INTERNAL, triveni.TriveniError),
        (grpc.StatusCode.UNIMPLEMENTED, triveni.TriveniError),
    ],
)
def test_status_code_maps_to_its_exception(
    no_retry_client: triveni.Client,
    fake: FakeTriveni,
    code: grpc.StatusCode,
    exception: type[triveni.TriveniError],
) -> None:
    fake.fail("GetPayment", code, "what went wrong")

    with pytest.raises(triveni.TriveniError) as raised:
        no_retry_client.get_payment("pay_1")

    assert type(raised.value) is exception
    assert raised.value.code == code
    assert raised.value.details == "what went wrong"
    assert str(raised.value) == f"{code.name}: what went wrong"
    assert isinstance(raised.value.__cause__, grpc.RpcError)


def test_invalid_argument_names_the_field_from_the_message(
    no_retry_client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.fail("CreatePayment", grpc.StatusCode.INVALID_ARGUMENT, "amount.amount_minor: must be > 0")

    with pytest.raises(triveni.InvalidArgument) as raised:
        no_retry_client.create_payment(amount=triveni.inr(0), method=triveni.upi())

    assert raised.value.field == "amount.amount_minor"
    assert raised.value.details == "amount.amount_minor: must be > 0"
    assert raised.value.idempotency_key  # the generated key, to inspect or reuse


def test_invalid_argument_field_from_trailing_metadata_wins(
    no_retry_client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.fail(
        "CreatePayment",
        grpc.StatusCode.INVALID_ARGUMENT,
        "looks like a card number",
        trailing_metadata=(("triveni-field", "metadata[note]"),),
    )

    with pytest.raises(triveni.InvalidArgument) as raised:
        no_retry_client.create_payment(amount=triveni.inr(1), method=triveni.upi())

    assert raised.value.field == "metadata[note]"
    assert raised.value.metadata["triveni-field"] == "metadata[note]"


def test_rate_limited_carries_retry_after(
    no_retry_client: triveni.Client, fake: FakeTriveni
) -> None:
    fake.fail(
        "GetPayment",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "rate limit",
        trailing_metadata=(("retry-after", "2"),),
    )

    with pytest.raises(triveni.RateLimited) as raised:
        no_retry_client.get_payment("pay_1")

    assert raised.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("details", "field"),
    [
        ("customer.email: not an email address", "customer.email"),
        ("metadata[card]: looks like a card number", "metadata[card]"),
        ("idempotency_key: required", "idempotency_key"),
        ("amount must be positive", ""),
        ("", ""),
    ],
)
def test_field_is_parsed_from_the_field_prefix_only(details: str, field: str) -> None:
    error = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, details)
    assert isinstance(error, triveni.InvalidArgument)
    assert error.field == field


def test_every_error_is_a_triveni_error() -> None:
    for name in triveni.__all__:
        value = getattr(triveni, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, triveni.TriveniError), name


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff=0.1, max_backoff=1.0)
    assert [policy.backoff(n, rand=lambda: 1.0) for n in range(5)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0]
    )
    assert [policy.backoff(n, rand=lambda: 0.0) for n in range(5)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.5]
    )


@pytest.mark.parametrize(
    ("code", "read", "retried"),
    [
        (grpc.StatusCode.UNAVAILABLE, True, True),
        (grpc.StatusCode.UNAVAILABLE, False, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, False, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True, False),
        (grpc.StatusCode.INTERNAL, True, False),
    ],
)
def test_retry_policy_retries_only_safe_failures(
    code: grpc.StatusCode, read: bool, retried: bool
) -> None:
    assert RetryPolicy().should_retry(code, read=read, retries_done=0) is retried


def test_retry_policy_stops_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert policy.should_retry(unavailable, read=True, retries_done=1)
    assert not policy.should_retry(unavailable, read=True, retries_done=2)
