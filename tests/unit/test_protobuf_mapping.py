"""server.adapters.protobuf: the domain Payment and its events as protobuf messages, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2

from server.adapters.protobuf import (
    create_command_from_proto,
    event_to_proto,
    from_timestamp,
    money_from_proto,
    payment_status_from_proto,
    payment_status_to_proto,
    payment_to_proto,
    timestamp,
)
from server.domain.money import Money
from server.domain.payment import (
    Attempt,
    CustomerInfo,
    Failure,
    FraudReasonInfo,
    FraudSummary,
    MethodSummary,
    Payment,
    Refund,
    RoutingCandidateInfo,
    RoutingSummary,
    apply_psp_status,
)
from server.domain.status import AttemptStatus, PaymentStatus, RefundStatus
from server.errors import ValidationError

IST = timezone(timedelta(hours=5, minutes=30))
CREATED_AT = datetime(2026, 3, 1, 10, 30, 0, 123456, tzinfo=IST)
UPDATED_AT = datetime(2026, 3, 1, 10, 35, 5, tzinfo=IST)


def rich_payment() -> Payment:
    """A payment with every part filled in, as it might look after a failover and a refund."""
    payment_id = "pay_0000000000000000000000ab"
    return Payment(
        id=payment_id, merchant_id="mer_1", idempotency_key="order-42",
        amount=Money(150_000), status=PaymentStatus.PARTIALLY_REFUNDED,
        method=MethodSummary(type="card", card_network="VISA", card_last4="1111",
                             card_token="tok_abc"),
        customer=CustomerInfo(id="cust_1", name="Ravi", email="ravi@example.com",
                              phone="+919876543210"),
        ip_address="192.168.1.1", country="IN", description="Order #42",
        return_url="https://merchant.example/return", metadata={"order_id": "42"},
        connector="simulator_standard", connector_payment_id="sim_pay_2",
        redirect_url="https://sim.example/checkout/2",
        fraud=FraudSummary(
            decision="REVIEW", score=55,
            reasons=(FraudReasonInfo("HIGH_AMOUNT", "Fraud detected: High amount", 40),
                     FraudReasonInfo("BLOCKLISTED_IP", "IP is blocklisted", 15, True)),
            unavailable_signals=("ip_velocity",)),
        routing=RoutingSummary(
            algorithm="success_rate", chosen="simulator_premium", reason="highest success rate",
            degraded=True,
            candidates=(RoutingCandidateInfo("simulator_premium", 0.93, "eligible"),
                        RoutingCandidateInfo("simulator_standard", 0.5, "eligible")),
            fallbacks=("simulator_standard",)),
        amount_refunded=Money(50_000),
        failure=Failure("PSP_DECLINED", "first attempt declined"),
        version=6, created_at=CREATED_AT, updated_at=UPDATED_AT,
        attempts=[
            Attempt(id="att_1", payment_id=payment_id, number=1, connector="simulator_premium",
                    status=AttemptStatus.FAILED, connector_payment_id="sim_pay_1",
                    error_code="PSP_DECLINED", error_message="do not honour", latency_ms=812,
                    created_at=CREATED_AT),
            Attempt(id="att_2", payment_id=payment_id, number=2, connector="simulator_standard",
                    status=AttemptStatus.SUCCEEDED, connector_payment_id="sim_pay_2",
                    latency_ms=240, created_at=UPDATED_AT),
        ],
        refunds=[
            Refund(id="rfnd_1", payment_id=payment_id, merchant_id="mer_1",
                   amount=Money(50_000), status=RefundStatus.SUCCEEDED,
                   connector="simulator_standard", reason="damaged",
                   connector_refund_id="sim_rfnd_1", created_at=UPDATED_AT,
                   updated_at=UPDATED_AT),
            Refund(id="rfnd_2", payment_id=payment_id, merchant_id="mer_1",
                   amount=Money(10_000), status=RefundStatus.FAILED,
                   connector="simulator_standard",
                   failure=Failure("REFUND_FAILED", "the PSP refused the refund"),
                   created_at=UPDATED_AT, updated_at=UPDATED_AT),
        ],
    )


# ---- statuses ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status", list(PaymentStatus))
def test_every_status_maps_to_the_proto_enum_of_the_same_name(status: PaymentStatus) -> None:
    assert pb.PaymentStatus.Name(payment_status_to_proto(status)) == (
        f"PAYMENT_STATUS_{status.value}")


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_every_status_round_trips_through_proto(status: PaymentStatus) -> None:
    assert payment_status_from_proto(payment_status_to_proto(status)) == status


def test_unspecified_status_means_no_filter() -> None:
    assert payment_status_from_proto(0) is None


@pytest.mark.parametrize("value", [99, 12, -1])
def test_unknown_status_number_is_refused_naming_the_field(value: int) -> None:
    with pytest.raises(ValidationError, match=f"unknown status {value}") as caught:
        payment_status_from_proto(value)
    assert caught.value.field == "status"


def test_unknown_status_error_uses_the_given_field_name() -> None:
    with pytest.raises(ValidationError) as caught:
        payment_status_from_proto(99, "filter.status")
    assert caught.value.field == "filter.status"


# ---- payment_to_proto -------------------------------------------------------------------------

def test_payment_identity_fields_are_copied() -> None:
    message = payment_to_proto(rich_payment())
    assert (message.id, message.merchant_id, message.idempotency_key, message.version) == (
        "pay_0000000000000000000000ab", "mer_1", "order-42", 6)
    assert (message.connector, message.connector_payment_id, message.redirect_url) == (
        "simulator_standard", "sim_pay_2", "https://sim.example/checkout/2")


def test_payment_status_is_the_proto_enum() -> None:
    message = payment_to_proto(rich_payment())
    assert message.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED


def test_amounts_are_paise_with_currency() -> None:
    message = payment_to_proto(rich_payment())
    assert (message.amount.amount_minor, message.amount.currency) == (150_000, "INR")
    assert (message.amount_refunded.amount_minor, message.amount_refunded.currency) == (
        50_000, "INR")


def test_amount_refunded_is_zero_when_never_set() -> None:
    payment = rich_payment()
    payment.amount_refunded = None
    refunded = payment_to_proto(payment).amount_refunded
    assert (refunded.amount_minor, refunded.currency) == (0, "INR")


def test_method_summary_is_copied_without_a_card_number() -> None:
    method = payment_to_proto(rich_payment()).method
    assert (method.type, method.card_network, method.card_last4, method.card_token) == (
        "card", "VISA", "1111", "tok_abc")
    assert (method.upi_vpa, method.upi_flow, method.bank_code, method.wallet) == ("", "", "", "")


def test_upi_method_summary_is_copied() -> None:
    payment = rich_payment()
    payment.method = MethodSummary(type="upi", upi_vpa="ravi@okaxis", upi_flow="intent")
    method = payment_to_proto(payment).method
    assert (method.type, method.upi_vpa, method.upi_flow) == ("upi", "ravi@okaxis", "intent")


def test_customer_and_request_fields_are_copied() -> None:
    message = payment_to_proto(rich_payment())
    assert (message.customer.id, message.customer.name, message.customer.email,
            message.customer.phone) == ("cust_1", "Ravi", "ravi@example.com", "+919876543210")
    assert (message.ip_address, message.country, message.description, message.return_url) == (
        "192.168.1.1", "IN", "Order #42", "https://merchant.example/return")
    assert dict(message.metadata) == {"order_id": "42"}


def test_fraud_assessment_keeps_decision_score_and_every_reason() -> None:
    fraud = payment_to_proto(rich_payment()).fraud
    assert (fraud.decision, fraud.score) == (pb.FRAUD_DECISION_REVIEW, 55)
    assert [(r.code, r.message, r.score, r.hard_block) for r in fraud.reasons] == [
        ("HIGH_AMOUNT", "Fraud detected: High amount", 40, False),
        ("BLOCKLISTED_IP", "IP is blocklisted", 15, True)]
    assert list(fraud.unavailable_signals) == ["ip_velocity"]


@pytest.mark.parametrize(("decision", "expected"), [
    ("ALLOW", pb.FRAUD_DECISION_ALLOW), ("REVIEW", pb.FRAUD_DECISION_REVIEW),
    ("BLOCK", pb.FRAUD_DECISION_BLOCK), ("", pb.FRAUD_DECISION_UNSPECIFIED),
])
def test_fraud_decisions_map_to_the_proto_enum(decision: str, expected: int) -> None:
    payment = rich_payment()
    payment.fraud = FraudSummary(decision=decision)
    assert payment_to_proto(payment).fraud.decision == expected


def test_routing_decision_keeps_every_candidate() -> None:
    routing = payment_to_proto(rich_payment()).routing
    assert (routing.algorithm, routing.chosen, routing.reason, routing.degraded) == (
        "success_rate", "simulator_premium", "highest success rate", True)
    assert [(c.connector, c.score, c.note) for c in routing.candidates] == [
        ("simulator_premium", 0.93, "eligible"), ("simulator_standard", 0.5, "eligible")]


def test_failure_is_copied() -> None:
    message = payment_to_proto(rich_payment())
    assert (message.failure.code, message.failure.message) == ("PSP_DECLINED",
                                                               "first attempt declined")


def test_payment_without_a_failure_has_no_failure_field() -> None:
    payment = rich_payment()
    payment.failure = None
    assert not payment_to_proto(payment).HasField("failure")


def test_attempts_keep_order_connector_status_and_latency() -> None:
    attempts = payment_to_proto(rich_payment()).attempts
    assert [(a.number, a.connector, a.connector_payment_id, a.status, a.latency_ms)
            for a in attempts] == [
        (1, "simulator_premium", "sim_pay_1", "FAILED", 812),
        (2, "simulator_standard", "sim_pay_2", "SUCCEEDED", 240)]


def test_failed_attempt_carries_its_error_and_a_clean_one_has_none() -> None:
    failed, succeeded = payment_to_proto(rich_payment()).attempts
    assert (failed.error.code, failed.error.message) == ("PSP_DECLINED", "do not honour")
    assert not succeeded.HasField("error")


def test_refunds_keep_amount_status_and_failure() -> None:
    done, refused = payment_to_proto(rich_payment()).refunds
    assert (done.id, done.payment_id, done.amount.amount_minor, done.status, done.reason,
            done.connector_refund_id) == ("rfnd_1", "pay_0000000000000000000000ab", 50_000,
                                          pb.REFUND_STATUS_SUCCEEDED, "damaged", "sim_rfnd_1")
    assert not done.HasField("failure")
    assert refused.status == pb.REFUND_STATUS_FAILED
    assert (refused.failure.code, refused.failure.message) == (
        "REFUND_FAILED", "the PSP refused the refund")


def test_timestamps_are_the_same_instants_in_utc() -> None:
    message = payment_to_proto(rich_payment())
    created = from_timestamp(message.created_at)
    assert created == CREATED_AT
    assert created.tzinfo == UTC
    assert created.hour == 5  # 10:30 IST is 05:00 UTC
    assert from_timestamp(message.updated_at) == UPDATED_AT
    assert from_timestamp(message.attempts[0].created_at) == CREATED_AT
    assert from_timestamp(message.refunds[0].updated_at) == UPDATED_AT


def test_timestamps_keep_microseconds() -> None:
    assert payment_to_proto(rich_payment()).created_at.nanos == 123_456_000


def test_missing_timestamp_maps_to_none() -> None:
    assert timestamp(None) is None


# ---- event_to_proto ---------------------------------------------------------------------------

def failed_payment() -> Payment:
    payment = Payment.create(merchant_id="mer_1", idempotency_key="order-42",
                             amount=Money(150_000), method=MethodSummary(type="upi"),
                             actor="api")
    payment.transition(PaymentStatus.PROCESSING, actor="worker")
    payment.transition(PaymentStatus.FAILED, actor="worker",
                       failure=Failure("PSP_DECLINED", "declined"))
    return payment


def test_event_sequence_is_the_version_of_its_change() -> None:
    payment = failed_payment()
    assert [event_to_proto(c, payment).sequence for c in payment.changes] == [1, 2, 3]


def test_event_payment_shows_the_status_and_version_of_its_change() -> None:
    payment = failed_payment()
    event = event_to_proto(payment.changes[1], payment)
    assert event.payment.status == pb.PAYMENT_STATUS_PROCESSING
    assert event.payment.version == 2


def test_event_previous_status_is_the_status_before_the_change() -> None:
    payment = failed_payment()
    event = event_to_proto(payment.changes[2], payment)
    assert event.previous_status == pb.PAYMENT_STATUS_PROCESSING
    assert event.payment.status == pb.PAYMENT_STATUS_FAILED


def test_creation_event_has_no_previous_status() -> None:
    payment = failed_payment()
    assert event_to_proto(payment.changes[0], payment).previous_status == (
        pb.PAYMENT_STATUS_UNSPECIFIED)


def test_creation_event_clears_a_later_failure() -> None:
    payment = failed_payment()
    event = event_to_proto(payment.changes[0], payment)
    assert event.payment.status == pb.PAYMENT_STATUS_CREATED
    assert not event.payment.HasField("failure")


def test_failure_event_keeps_the_failure() -> None:
    payment = failed_payment()
    event = event_to_proto(payment.changes[2], payment)
    assert (event.payment.failure.code, event.payment.failure.message) == ("PSP_DECLINED",
                                                                           "declined")


def test_event_carries_id_type_merchant_and_time_of_the_change() -> None:
    payment = failed_payment()
    change = payment.changes[2]
    event = event_to_proto(change, payment)
    assert (event.event_id, event.type, event.merchant_id) == (change.event_id,
                                                               "payment.failed", "mer_1")
    assert from_timestamp(event.occurred_at) == change.occurred_at


def test_event_for_an_ignored_report_keeps_status_and_version() -> None:
    payment = failed_payment()
    payment.transition(PaymentStatus.SUCCEEDED, actor="webhook")
    apply_psp_status(payment, "FAILED", actor="webhook")
    note = payment.changes[-1]
    event = event_to_proto(note, payment)
    assert event.type == "psp_status.ignored"
    assert (event.sequence, event.payment.version) == (4, 4)
    assert event.previous_status == event.payment.status == pb.PAYMENT_STATUS_SUCCEEDED


def test_event_does_not_change_the_payment_it_describes() -> None:
    payment = failed_payment()
    event_to_proto(payment.changes[0], payment)
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure == Failure("PSP_DECLINED", "declined")


# ---- proto → command --------------------------------------------------------------------------

def test_money_from_proto_keeps_paise_and_currency() -> None:
    assert money_from_proto(pb.Money(amount_minor=150_000, currency="INR"), "amount") == (
        Money(150_000, "INR"))


def test_create_request_without_an_amount_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        create_command_from_proto(payment_service_pb2.CreatePaymentRequest(), "mer_1")
    assert caught.value.field == "amount"


@pytest.mark.parametrize(("flow", "name"), [
    (pb.UPI_FLOW_UNSPECIFIED, ""), (pb.UPI_FLOW_INTENT, "intent"),
    (pb.UPI_FLOW_COLLECT, "collect"), (pb.UPI_FLOW_QR, "qr"),
])
def test_upi_flow_enum_maps_to_the_command_flow(flow: pb.UpiFlow.ValueType, name: str) -> None:
    request = payment_service_pb2.CreatePaymentRequest(
        idempotency_key="k", amount=pb.Money(amount_minor=100, currency="INR"),
        method=pb.PaymentMethod(upi=pb.UpiMethod(vpa="ravi@okaxis", flow=flow)))
    method = create_command_from_proto(request, "mer_1").method
    assert (method.type, method.upi_vpa, method.upi_flow) == ("upi", "ravi@okaxis", name)


def test_create_request_fields_reach_the_command() -> None:
    request = payment_service_pb2.CreatePaymentRequest(
        idempotency_key="order-42", amount=pb.Money(amount_minor=150_000, currency="INR"),
        method=pb.PaymentMethod(netbanking=pb.NetbankingMethod(bank_code="HDFC")),
        customer=pb.Customer(id="cust_1", name="Ravi", email="ravi@example.com",
                             phone="9876543210"),
        ip_address="192.168.1.1", country="IN", description="Order #42",
        return_url="https://merchant.example/return", metadata={"order_id": "42"},
        preferred_connector="simulator_premium")
    cmd = create_command_from_proto(request, "mer_1")
    assert (cmd.merchant_id, cmd.idempotency_key, cmd.amount) == ("mer_1", "order-42",
                                                                   Money(150_000))
    assert cmd.method == MethodSummary(type="netbanking", bank_code="HDFC")
    assert cmd.customer == CustomerInfo(id="cust_1", name="Ravi", email="ravi@example.com",
                                        phone="9876543210")
    assert (cmd.ip_address, cmd.country, cmd.description, cmd.return_url, cmd.metadata,
            cmd.preferred_connector) == ("192.168.1.1", "IN", "Order #42",
                                         "https://merchant.example/return", {"order_id": "42"},
                                         "simulator_premium")


def test_request_without_a_method_becomes_an_empty_method_that_validation_refuses() -> None:
    request = payment_service_pb2.CreatePaymentRequest(
        idempotency_key="k", amount=pb.Money(amount_minor=100, currency="INR"))
    cmd = create_command_from_proto(request, "mer_1")
    with pytest.raises(ValidationError) as caught:
        cmd.validated()
    assert caught.value.field == "method"
