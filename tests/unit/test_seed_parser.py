"""The seed's `POST /create-payment` JSON (rupees) becomes a CreatePayment command in paise."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from server.domain.money import Money
from server.domain.payment import CustomerInfo, MethodSummary
from server.entrypoints.http.seed import parse_seed_create
from server.errors import ValidationError
from server.service_layer.commands import CreatePayment

CARD = "4111111111111111"
SEED_BODY = {"amount": 15000, "currency": "INR", "cardDetails": {},
             "ipAddress": "192.168.1.1", "country": "IN"}


def parse(body: dict[str, Any] | bytes, idempotency_key: str = "key-1") -> CreatePayment:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_seed_create(raw, "mer_seed", idempotency_key).command


def refused_field(body: dict[str, Any] | bytes) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    return caught.value.field


def seed(**changes: Any) -> dict[str, Any]:
    return {**SEED_BODY, **changes}


# ---- the seed's own bodies --------------------------------------------------------------------

def test_seed_body_becomes_a_command_in_paise() -> None:
    cmd = parse(SEED_BODY)
    assert cmd.amount == Money(1_500_000, "INR")
    assert (cmd.ip_address, cmd.country) == ("192.168.1.1", "IN")
    assert cmd.merchant_id == "mer_seed"


def test_seed_body_with_amount_150000_becomes_15_million_paise() -> None:
    assert parse(seed(amount=150000)).amount == Money(15_000_000, "INR")


def test_seed_body_with_empty_card_details_is_a_hosted_card_payment() -> None:
    assert parse(SEED_BODY).method == MethodSummary(type="card")


def test_seed_body_passes_command_validation() -> None:
    validated = parse(SEED_BODY).validated()
    assert validated.amount == Money(1_500_000)


def test_seed_body_bytes_exactly_as_the_seed_sends_them() -> None:
    body = (b'{"amount": 15000, "currency": "INR", "cardDetails": {}, '
            b'"ipAddress": "192.168.1.1", "country": "IN"}')
    assert parse(body).amount == Money(1_500_000)


def test_missing_currency_defaults_to_inr() -> None:
    body = dict(SEED_BODY)
    del body["currency"]
    assert parse(body).amount.currency == "INR"


def test_other_currency_is_passed_on_for_validation_to_refuse() -> None:
    assert parse(seed(currency="USD")).amount == Money(1_500_000, "USD")


# ---- amounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "paise"), [
    (1.5, 150),
    (150.5, 15050),
    (0.1, 10),
    (1.25, 125),
    ("1.25", 125),
    ("15000", 1_500_000),
    (0, 0),
])
def test_fractional_and_string_rupees_become_exact_paise(amount: Any, paise: int) -> None:
    assert parse(seed(amount=amount)).amount.amount_minor == paise


@pytest.mark.parametrize("amount", [True, False, None, [], {}, "abc", ""])
def test_amount_that_is_not_a_number_of_rupees_is_refused(amount: Any) -> None:
    assert refused_field(seed(amount=amount)) == "amount"


@pytest.mark.parametrize("amount", [1.255, "1.255", 0.001])
def test_amount_with_more_than_two_decimals_is_refused(amount: Any) -> None:
    with pytest.raises(ValidationError, match="at most 2 decimal places") as caught:
        parse(seed(amount=amount))
    assert caught.value.field == "amount"


def test_missing_amount_is_refused() -> None:
    body = dict(SEED_BODY)
    del body["amount"]
    assert refused_field(body) == "amount"


def test_negative_amount_is_left_for_command_validation_to_refuse() -> None:
    cmd = parse(seed(amount=-1))
    with pytest.raises(ValidationError) as caught:
        cmd.validated()
    assert caught.value.field == "amount.amount_minor"


@pytest.mark.parametrize("amount", [b'"Infinity"', b'"inf"', b"1e400", b'"sNaN"'])
def test_infinite_or_nan_amount_is_refused_as_a_validation_error(amount: bytes) -> None:
    body = b'{"amount": ' + amount + b', "currency": "INR"}'
    assert refused_field(body) == "amount"


def test_nan_amount_is_refused() -> None:
    assert refused_field(b'{"amount": "NaN"}') == "amount"


# ---- body shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"[1, 2]", b'"text"', b"null"])
def test_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    assert refused_field(body) == "body"


@pytest.mark.parametrize(("key", "field"), [
    ("ipAddress", "ipAddress"), ("country", "country"), ("description", "description"),
    ("returnUrl", "returnUrl"), ("preferredConnector", "preferredConnector"),
    ("currency", "currency"),
])
def test_non_string_text_field_is_refused_naming_it(key: str, field: str) -> None:
    assert refused_field(seed(**{key: 123})) == field


def test_customer_that_is_not_an_object_is_refused() -> None:
    assert refused_field(seed(customer="Ravi")) == "customer"


def test_non_string_customer_field_is_refused_naming_it() -> None:
    assert refused_field(seed(customer={"email": 7})) == "customer.email"


@pytest.mark.parametrize("metadata", [["a"], {"n": 1}, {"n": None}, "x"])
def test_metadata_that_is_not_an_object_of_strings_is_refused(metadata: Any) -> None:
    assert refused_field(seed(metadata=metadata)) == "metadata"


def test_null_optional_fields_read_as_empty() -> None:
    cmd = parse(seed(description=None, customer=None, metadata=None))
    assert (cmd.description, cmd.customer, cmd.metadata) == ("", CustomerInfo(), {})


def test_optional_fields_are_mapped_to_the_command() -> None:
    cmd = parse(seed(
        customer={"id": "cust_1", "name": "Ravi", "email": "ravi@example.com",
                  "phone": "9876543210"},
        description="Order #42", returnUrl="https://merchant.example/return",
        metadata={"order_id": "42"}, preferredConnector="simulator_premium"))
    assert cmd.customer == CustomerInfo(id="cust_1", name="Ravi", email="ravi@example.com",
                                        phone="9876543210")
    assert (cmd.description, cmd.return_url, cmd.metadata, cmd.preferred_connector) == (
        "Order #42", "https://merchant.example/return", {"order_id": "42"}, "simulator_premium")


# ---- card details -----------------------------------------------------------------------------

@pytest.mark.parametrize(("card_details", "field"), [
    ({"number": ""}, "cardDetails.number"),
    ({"number": "xxxx"}, "cardDetails.number"),
    ({"cvv": "123"}, "cardDetails.cvv"),
    ({"expiry": "12/30"}, "cardDetails.expiry"),
    ({"expiryMonth": "12", "expiryYear": "2030"}, "cardDetails.expiryMonth"),
    ({"token": "tok_1", "cvv": "123"}, "cardDetails.cvv"),
    ({"number": CARD, "cvv": "123", "expiry": "12/30"}, "cardDetails.number"),
])
def test_card_number_cvv_or_expiry_in_card_details_is_refused_naming_it(
        card_details: dict[str, str], field: str) -> None:
    assert refused_field(seed(cardDetails=card_details)) == field


def test_card_details_that_are_not_an_object_are_refused() -> None:
    assert refused_field(seed(cardDetails="visa")) == "cardDetails"


def test_card_details_may_carry_a_token_network_and_last4() -> None:
    cmd = parse(seed(cardDetails={"token": "tok_abc", "network": "VISA", "last4": "1111"}))
    assert cmd.method == MethodSummary(type="card", card_token="tok_abc", card_network="VISA",
                                       card_last4="1111")


def test_missing_card_details_and_no_other_method_is_a_hosted_card_payment() -> None:
    assert parse({"amount": 100}).method == MethodSummary(type="card")


# ---- a card number anywhere -------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    (seed(description=f"pay {CARD}"), "description"),
    (seed(customer={"name": f"Ravi {CARD}"}), "customer.name"),
    (seed(customer={"phone": "+378282246310005"}), "customer.phone"),
    (seed(metadata={"note": "4111 1111 1111 1111"}), "metadata.note"),
    (seed(extra={"deep": [1, {"x": CARD}]}), "extra.deep[1].x"),
    (seed(reference=4111111111111111), "reference"),
    (seed(upi={"vpa": f"{CARD}@ybl"}), "upi.vpa"),
    (seed(cardDetails={"token": CARD}), "cardDetails.token"),
])
def test_card_number_anywhere_in_the_body_is_refused_naming_its_path(
        body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match="card number") as caught:
        parse(body)
    assert caught.value.field == field


def test_card_number_is_refused_before_a_bad_amount_is_reported() -> None:
    assert refused_field({"amount": "abc", "note": CARD}) == "note"


@pytest.mark.parametrize("body", [
    {"amount": 100, "extra": {CARD: "x"}},
    {"amount": 100, "cardDetails": {CARD: "x"}},
])
def test_card_number_used_as_a_json_key_is_refused_without_echoing_it(
        body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="card number") as caught:
        parse(body)
    assert CARD not in str(caught.value)


# ---- other methods ----------------------------------------------------------------------------

def test_upi_with_a_vpa_is_a_upi_payment() -> None:
    cmd = parse({"amount": 100, "upi": {"vpa": "ravi@okaxis"}})
    assert cmd.method == MethodSummary(type="upi", upi_vpa="ravi@okaxis")
    assert cmd.validated().method.upi_flow == "intent"


def test_upi_flow_is_lower_cased() -> None:
    cmd = parse({"amount": 100, "upi": {"vpa": "ravi@okaxis", "flow": "COLLECT"}})
    assert cmd.method.upi_flow == "collect"


def test_upi_takes_precedence_over_empty_card_details() -> None:
    assert parse(seed(upi={})).method.type == "upi"


def test_netbanking_with_a_bank_code_is_a_netbanking_payment() -> None:
    cmd = parse({"amount": 100, "netbanking": {"bankCode": "HDFC"}})
    assert cmd.method == MethodSummary(type="netbanking", bank_code="HDFC")


def test_non_string_bank_code_is_refused_naming_it() -> None:
    assert refused_field({"amount": 100, "netbanking": {"bankCode": 1}}) == "netbanking.bankCode"


def test_wallet_name_is_a_wallet_payment() -> None:
    assert parse({"amount": 100, "wallet": "paytm"}).method == MethodSummary(type="wallet",
                                                                            wallet="paytm")


def test_non_string_wallet_is_refused_naming_it() -> None:
    assert refused_field({"amount": 100, "wallet": {"name": "paytm"}}) == "wallet"


# ---- idempotency key --------------------------------------------------------------------------

def test_idempotency_key_header_is_used_when_given() -> None:
    assert parse(SEED_BODY, idempotency_key="order-42").idempotency_key == "order-42"


def test_idempotency_key_is_generated_when_the_header_is_missing() -> None:
    key = parse(SEED_BODY, idempotency_key="").idempotency_key
    assert re.fullmatch(r"seed-[0-9a-f]{32}", key)


def test_each_call_without_the_header_is_a_new_payment() -> None:
    assert (parse(SEED_BODY, idempotency_key="").idempotency_key
            != parse(SEED_BODY, idempotency_key="").idempotency_key)
