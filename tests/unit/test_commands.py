"""CreatePayment.validated(): every field checked and named, normalised, card numbers refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.domain.money import Money
from server.domain.payment import CustomerInfo, MethodSummary
from server.domain.validation import MAX_AMOUNT_MINOR
from server.errors import ValidationError
from server.service_layer.commands import CreatePayment, request_hash

CARD = "4111111111111111"
UPI_INTENT = MethodSummary(type="upi")


def command(**changes: object) -> CreatePayment:
    """A fully valid request; tests change one thing at a time."""
    base = CreatePayment(
        merchant_id="mer_test",
        idempotency_key="order-42",
        amount=Money(150_000, "INR"),
        method=MethodSummary(type="upi", upi_vpa="ravi@okaxis", upi_flow="collect"),
        customer=CustomerInfo(id="cust_1", name="Ravi Kumar", email="ravi@example.com",
                              phone="9876543210"),
        ip_address="192.168.1.1",
        country="IN",
        description="Order #42",
        return_url="https://merchant.example/return",
        metadata={"order_id": "42"},
        preferred_connector="simulator_premium",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def customer(**changes: str) -> CustomerInfo:
    return replace(command().customer, **changes)


def refused_field(cmd: CreatePayment) -> str:
    with pytest.raises(ValidationError) as caught:
        cmd.validated()
    return caught.value.field


def test_a_complete_valid_request_is_accepted() -> None:
    assert command().validated().amount == Money(150_000)


def test_a_minimal_request_is_accepted() -> None:
    minimal = CreatePayment(merchant_id="mer_test", idempotency_key="k", amount=Money(100),
                            method=UPI_INTENT)
    assert minimal.validated().method.upi_flow == "intent"


# ---- each field, named ------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "has space", "k" * 256])
def test_bad_idempotency_key_is_refused(key: str) -> None:
    assert refused_field(command(idempotency_key=key)) == "idempotency_key"


@pytest.mark.parametrize("amount_minor", [0, -1, -150_000, MAX_AMOUNT_MINOR + 1])
def test_amount_out_of_range_is_refused(amount_minor: int) -> None:
    assert refused_field(command(amount=Money(amount_minor))) == "amount.amount_minor"


def test_largest_allowed_amount_is_accepted() -> None:
    command(amount=Money(MAX_AMOUNT_MINOR)).validated()


@pytest.mark.parametrize("currency", ["", "inr", "USD", "RUPEES", "IN"])
def test_missing_malformed_or_unsupported_currency_is_refused(currency: str) -> None:
    assert refused_field(command(amount=Money(100, currency))) == "amount.currency"


@pytest.mark.parametrize("kind", ["", "crypto", "UPI", "emi"])
def test_unknown_method_is_refused(kind: str) -> None:
    assert refused_field(command(method=MethodSummary(type=kind))) == "method"


def test_upi_collect_without_a_vpa_is_refused() -> None:
    method = MethodSummary(type="upi", upi_flow="collect")
    assert refused_field(command(method=method)) == "method.upi.vpa"


@pytest.mark.parametrize("flow", ["intent", "qr"])
def test_upi_intent_and_qr_need_no_vpa(flow: str) -> None:
    command(method=MethodSummary(type="upi", upi_flow=flow)).validated()


@pytest.mark.parametrize("vpa", ["ravi", "ravi@", "@okaxis", "ravi@ok axis"])
def test_malformed_vpa_is_refused(vpa: str) -> None:
    method = MethodSummary(type="upi", upi_vpa=vpa, upi_flow="intent")
    assert refused_field(command(method=method)) == "method.upi.vpa"


@pytest.mark.parametrize("flow", ["push", "?", "mandate"])
def test_unknown_upi_flow_is_refused(flow: str) -> None:
    method = MethodSummary(type="upi", upi_vpa="ravi@okaxis", upi_flow=flow)
    assert refused_field(command(method=method)) == "method.upi.flow"


def test_unknown_card_network_is_refused() -> None:
    method = MethodSummary(type="card", card_network="VISAX")
    assert refused_field(command(method=method)) == "method.card.network"


@pytest.mark.parametrize("last4", ["123", "12345", "abcd", "12 4"])
def test_card_last4_that_is_not_four_digits_is_refused(last4: str) -> None:
    method = MethodSummary(type="card", card_last4=last4)
    assert refused_field(command(method=method)) == "method.card.last4"


def test_card_token_over_128_characters_is_refused() -> None:
    method = MethodSummary(type="card", card_token="tok_" + "a" * 125)
    assert refused_field(command(method=method)) == "method.card.token"


def test_card_for_hosted_checkout_needs_nothing() -> None:
    validated = command(method=MethodSummary(type="card")).validated()
    assert validated.method == MethodSummary(type="card")


@pytest.mark.parametrize("bank_code", ["", "HDF", "HDFC1", "12AB", "HD C"])
def test_missing_or_malformed_bank_code_is_refused(bank_code: str) -> None:
    method = MethodSummary(type="netbanking", bank_code=bank_code)
    assert refused_field(command(method=method)) == "method.netbanking.bank_code"


@pytest.mark.parametrize("wallet", ["", "p", "w" * 31, "pay tm", "pay-tm"])
def test_missing_or_malformed_wallet_is_refused(wallet: str) -> None:
    method = MethodSummary(type="wallet", wallet=wallet)
    assert refused_field(command(method=method)) == "method.wallet.wallet"


def test_malformed_customer_email_is_refused() -> None:
    assert refused_field(command(customer=customer(email="ravi@"))) == "customer.email"


def test_malformed_customer_phone_is_refused() -> None:
    assert refused_field(command(customer=customer(phone="12345"))) == "customer.phone"


def test_customer_id_over_64_characters_is_refused() -> None:
    assert refused_field(command(customer=customer(id="c" * 65))) == "customer.id"


def test_customer_id_of_64_characters_is_accepted() -> None:
    command(customer=customer(id="c" * 64)).validated()


def test_customer_name_over_100_characters_is_refused() -> None:
    assert refused_field(command(customer=customer(name="n" * 101))) == "customer.name"


@pytest.mark.parametrize("ip", ["300.1.1.1", "localhost", "192.168.1"])
def test_malformed_ip_address_is_refused(ip: str) -> None:
    assert refused_field(command(ip_address=ip)) == "ip_address"


@pytest.mark.parametrize("country", ["in", "XX", "IND"])
def test_unknown_country_is_refused(country: str) -> None:
    assert refused_field(command(country=country)) == "country"


def test_description_over_255_characters_is_refused() -> None:
    assert refused_field(command(description="d" * 256)) == "description"


def test_description_of_255_characters_is_accepted() -> None:
    command(description="d" * 255).validated()


@pytest.mark.parametrize("url", ["merchant.example/return", "ftp://merchant.example", "https://"])
def test_malformed_return_url_is_refused(url: str) -> None:
    assert refused_field(command(return_url=url)) == "return_url"


def test_more_than_20_metadata_keys_are_refused() -> None:
    metadata = {f"k{i}": "v" for i in range(21)}
    assert refused_field(command(metadata=metadata)) == "metadata"


def test_metadata_key_over_40_characters_is_refused_naming_the_key() -> None:
    key = "k" * 41
    assert refused_field(command(metadata={key: "v"})) == f"metadata[{key}]"


def test_metadata_value_over_500_characters_is_refused_naming_the_key() -> None:
    assert refused_field(command(metadata={"note": "v" * 501})) == "metadata[note]"


@pytest.mark.parametrize("changes", [
    {"ip_address": "", "country": "", "description": "", "return_url": ""},
    {"customer": CustomerInfo()},
    {"metadata": {}},
    {"preferred_connector": ""},
])
def test_optional_fields_may_be_empty(changes: dict[str, object]) -> None:
    command(**changes).validated()


# ---- normalisation ----------------------------------------------------------------------------

def test_vpa_is_lower_cased() -> None:
    method = MethodSummary(type="upi", upi_vpa="Ravi.Kumar@OKAXIS", upi_flow="collect")
    assert command(method=method).validated().method.upi_vpa == "ravi.kumar@okaxis"


def test_upi_flow_defaults_to_intent() -> None:
    assert command(method=UPI_INTENT).validated().method.upi_flow == "intent"


def test_upi_method_keeps_only_upi_fields() -> None:
    method = MethodSummary(type="upi", upi_vpa="ravi@okaxis", upi_flow="qr", bank_code="HDFC",
                           card_token="tok_1")
    assert command(method=method).validated().method == MethodSummary(
        type="upi", upi_vpa="ravi@okaxis", upi_flow="qr")


def test_email_is_lower_cased() -> None:
    validated = command(customer=customer(email="Ravi.Kumar@Example.COM")).validated()
    assert validated.customer.email == "ravi.kumar@example.com"


@pytest.mark.parametrize("phone", ["9876543210", "09876543210", "+91 98765 43210",
                                   "919876543210", "+91-98765-43210"])
def test_indian_mobile_is_normalised_to_plus_91(phone: str) -> None:
    validated = command(customer=customer(phone=phone)).validated()
    assert validated.customer.phone == "+919876543210"


def test_e164_phone_is_kept() -> None:
    validated = command(customer=customer(phone="+1 415 555 2671")).validated()
    assert validated.customer.phone == "+14155552671"


def test_bank_code_is_upper_cased() -> None:
    method = MethodSummary(type="netbanking", bank_code="hdfc")
    assert command(method=method).validated().method == MethodSummary(type="netbanking",
                                                                      bank_code="HDFC")


def test_card_network_is_upper_cased() -> None:
    method = MethodSummary(type="card", card_network="rupay", card_last4="4242",
                           card_token="tok_abc")
    assert command(method=method).validated().method == MethodSummary(
        type="card", card_network="RUPAY", card_last4="4242", card_token="tok_abc")


def test_wallet_is_lower_cased() -> None:
    method = MethodSummary(type="wallet", wallet="PayTM")
    assert command(method=method).validated().method.wallet == "paytm"


def test_validation_returns_a_new_command_and_leaves_the_original_alone() -> None:
    original = command(customer=customer(email="RAVI@EXAMPLE.COM"))
    original.validated()
    assert original.customer.email == "RAVI@EXAMPLE.COM"


def test_validating_twice_gives_the_same_command() -> None:
    once = command().validated()
    assert once.validated() == once


def test_other_fields_are_carried_over_unchanged() -> None:
    original = command()
    validated = original.validated()
    for name in ("merchant_id", "idempotency_key", "amount", "ip_address", "country",
                 "description", "return_url", "metadata", "preferred_connector"):
        assert getattr(validated, name) == getattr(original, name), name


# ---- card numbers are refused everywhere ------------------------------------------------------

CARD_IN_FIELD = [
    ("idempotency_key", {"idempotency_key": f"order-{CARD}"}),
    ("description", {"description": f"pay with {CARD}"}),
    ("description", {"description": "card 4111 1111 1111 1111"}),
    ("return_url", {"return_url": f"https://merchant.example/return?card={CARD}"}),
    ("customer.id", {"customer": CustomerInfo(id=CARD)}),
    ("customer.name", {"customer": CustomerInfo(name=f"Ravi {CARD}")}),
    ("customer.email", {"customer": CustomerInfo(email=f"{CARD}@example.com")}),
    ("method.upi.vpa", {"method": MethodSummary(type="upi", upi_vpa=f"{CARD}@ybl")}),
    ("method.card.token", {"method": MethodSummary(type="card", card_token=CARD)}),
    ("method.card.last4", {"method": MethodSummary(type="card", card_last4=CARD)}),
    ("method.wallet.wallet", {"method": MethodSummary(type="wallet", wallet=CARD)}),
    ("preferred_connector", {"preferred_connector": CARD}),
    ("metadata[note]", {"metadata": {"note": f"card {CARD}"}}),
]


@pytest.mark.parametrize(("field", "changes"), CARD_IN_FIELD,
                         ids=[f"{field}-{i}" for i, (field, _) in enumerate(CARD_IN_FIELD)])
def test_card_number_in_a_free_text_field_is_refused_naming_it(
        field: str, changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="card number") as caught:
        command(**changes).validated()
    assert caught.value.field == field


@pytest.mark.parametrize("card", ["378282246310005", "5555-5555-5555-4444", "6073849700004947"])
def test_any_network_card_number_in_metadata_is_refused(card: str) -> None:
    assert refused_field(command(metadata={"note": card})) == "metadata[note]"


def test_card_number_is_refused_before_any_other_check() -> None:
    too_long_with_card = f"{CARD} " + "d" * 300
    with pytest.raises(ValidationError, match="card number"):
        command(description=too_long_with_card, amount=Money(0)).validated()


def test_card_number_as_a_metadata_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="card number") as caught:
        command(metadata={CARD: "x"}).validated()
    assert caught.value.field.startswith("metadata")


def test_refusal_of_a_card_number_metadata_key_does_not_echo_the_number() -> None:
    with pytest.raises(ValidationError) as caught:
        command(metadata={CARD: "x"}).validated()
    assert CARD not in caught.value.field
    assert CARD not in str(caught.value)


def test_card_number_in_customer_phone_is_refused() -> None:
    cmd = command(customer=customer(phone="+378282246310005"))
    assert refused_field(cmd) == "customer.phone"


# ---- request_hash -----------------------------------------------------------------------------

def test_request_hash_is_a_sha256_hex_digest() -> None:
    digest = request_hash(command())
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_equal_commands_hash_equal() -> None:
    assert request_hash(command()) == request_hash(command())


def test_metadata_order_does_not_change_the_hash() -> None:
    assert (request_hash(command(metadata={"a": "1", "b": "2"}))
            == request_hash(command(metadata={"b": "2", "a": "1"})))


DIFFERENT = {
    "merchant_id": {"merchant_id": "mer_other"},
    "idempotency_key": {"idempotency_key": "order-43"},
    "amount": {"amount": Money(150_001)},
    "currency": {"amount": Money(150_000, "USD")},
    "method_type": {"method": MethodSummary(type="card")},
    "vpa": {"method": MethodSummary(type="upi", upi_vpa="ravi@ybl", upi_flow="collect")},
    "flow": {"method": MethodSummary(type="upi", upi_vpa="ravi@okaxis", upi_flow="qr")},
    "customer_id": {"customer": customer(id="cust_2")},
    "customer_name": {"customer": customer(name="Ravi K")},
    "customer_email": {"customer": customer(email="ravi@example.in")},
    "customer_phone": {"customer": customer(phone="9876543211")},
    "ip_address": {"ip_address": "192.168.1.2"},
    "country": {"country": "US"},
    "description": {"description": "Order #43"},
    "return_url": {"return_url": "https://merchant.example/other"},
    "metadata_value": {"metadata": {"order_id": "43"}},
    "metadata_key": {"metadata": {"order": "42"}},
    "metadata_extra": {"metadata": {"order_id": "42", "x": ""}},
    "preferred_connector": {"preferred_connector": "simulator_standard"},
}


@pytest.mark.parametrize("changes", DIFFERENT.values(), ids=DIFFERENT.keys())
def test_request_hash_differs_when_any_field_differs(changes: dict[str, object]) -> None:
    assert request_hash(command(**changes)) != request_hash(command())
