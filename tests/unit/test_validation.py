"""Input rules: Luhn, card-number detection, VPA, email, phone, IP, country, URL, metadata, keys."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.validation import (
    ISO_COUNTRIES,
    contains_card_number,
    luhn_valid,
    normalize_phone,
    refuse_card_numbers,
    validate_country,
    validate_email,
    validate_idempotency_key,
    validate_ip,
    validate_metadata,
    validate_phone,
    validate_url,
    validate_vpa,
)
from server.errors import ValidationError


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload + digit` Luhn-valid (an independent reference)."""
    total = 0
    # The check digit will sit at index 0 from the right, so the payload's last digit is doubled.
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:
            digit = sum(divmod(digit * 2, 10))
        total += digit
    return str((10 - total % 10) % 10)


def with_check_digit(payload: str) -> str:
    return payload + luhn_check_digit(payload)


# ---- luhn_valid -------------------------------------------------------------------------------

# 79927398713, from the right: plain 3,7,9,7,9,7 = 42; doubled 1→2, 8→16→7, 3→6, 2→4, 9→18→9
# = 28; 42 + 28 = 70, a multiple of 10.
# 4111111111111111: plain eight 1s = 8; doubled seven 1→2 = 14 and 4→8; 8 + 14 + 8 = 30.
@pytest.mark.parametrize("number", [
    "79927398713",
    "4111111111111111",
    "0",
    "18",  # 8 + (1*2) = 10
    "59",  # 9 + (5*2 = 10 → 1) = 10
    "0000000000000",
    "4222222222222",
])
def test_luhn_accepts_numbers_whose_weighted_sum_is_a_multiple_of_ten(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", [
    "79927398710",  # sum 67
    "79927398714",  # sum 71
    "4111111111111112",  # sum 31
    "1",
    "19",  # 9 + 2 = 11
    "1234567812345678",
])
def test_luhn_refuses_numbers_whose_weighted_sum_is_not_a_multiple_of_ten(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize("wrong", "0123456789")
def test_exactly_one_check_digit_makes_a_number_luhn_valid(wrong: str) -> None:
    payload = "411111111111111"
    assert luhn_valid(payload + wrong) == (wrong == "1")


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_luhn_agrees_with_the_reference_check_digit(payload: str) -> None:
    assert luhn_valid(with_check_digit(payload))


# ---- contains_card_number ---------------------------------------------------------------------

TEST_CARDS = {
    "visa": "4111111111111111",
    "visa_4242": "4242424242424242",
    "visa_13_digits": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard_2_series": "2223003122003222",
    "rupay": "6073849700004947",
    "amex": "378282246310005",
    "amex_2": "371449635398431",
    "diners_14_digits": "30569309025904",
    "discover": "6011111111111117",
    "nineteen_digits": with_check_digit("601100000000000000"),
}


@pytest.mark.parametrize("number", TEST_CARDS.values(), ids=TEST_CARDS.keys())
def test_network_test_card_numbers_are_detected(number: str) -> None:
    assert luhn_valid(number)
    assert contains_card_number(number)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111 1111-1111 1111",
    "3782 822463 10005",
    "5555-5555-5555-4444",
])
def test_card_numbers_typed_with_spaces_or_dashes_are_detected(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize("text", [
    "order 4111111111111111 thanks",
    "card:4111111111111111;",
    "ref4111111111111111x",
    "pay 4111 1111 1111 1111 by friday",
    "multi\nline 5555555555554444\ntext",
])
def test_card_numbers_inside_longer_text_are_detected(text: str) -> None:
    assert contains_card_number(text)


def test_digits_glued_onto_a_card_number_make_a_different_run_judged_as_a_whole() -> None:
    # The whole 13-19 digit run must pass Luhn (sub-windows would refuse most numeric ids).
    glued = "12" + "4111111111111111"
    assert contains_card_number(glued) == luhn_valid(glued)
    assert contains_card_number("12, " + "4111111111111111")


def test_thirteen_digit_luhn_valid_run_is_a_card_number() -> None:
    assert contains_card_number(with_check_digit("123456789012"))


def test_nineteen_digit_luhn_valid_run_is_a_card_number() -> None:
    assert contains_card_number(with_check_digit("123456789012345678"))


def test_twelve_digit_luhn_valid_run_is_not_a_card_number() -> None:
    number = with_check_digit("12345678901")
    assert luhn_valid(number) and len(number) == 12
    assert not contains_card_number(number)


def test_twenty_digit_luhn_valid_run_is_not_a_card_number() -> None:
    number = with_check_digit("1234567890123456789")
    assert luhn_valid(number) and len(number) == 20
    assert not contains_card_number(number)


@pytest.mark.parametrize("aadhaar", [
    with_check_digit("23456789012"),
    "2345 6789 0124",
    "9999 8888 7777",
])
def test_aadhaar_like_twelve_digit_numbers_are_not_card_numbers(aadhaar: str) -> None:
    assert not contains_card_number(aadhaar)


@pytest.mark.parametrize("phone", [
    "9876543210",
    "09876543210",
    "+919876543210",
    "+91 98765 43210",
    "+91-98765-43210",
    "0091 98765 43210",
    "+1 415 555 2671",
    "+44 20 7946 0958",
    "+86 138 0013 8000",
])
def test_phone_numbers_are_not_card_numbers(phone: str) -> None:
    assert not contains_card_number(phone)


@pytest.mark.parametrize("text", [
    "",
    "no digits here",
    "4111 1111 1111",  # 12 digits
    "1234567812345678",  # 16 digits, neither it nor any 13-15 digit window passes Luhn
    "2026-02-28 10:30:00",
    "amount 150000.00 INR",
])
def test_text_without_a_luhn_valid_13_to_19_digit_run_is_clean(text: str) -> None:
    assert not contains_card_number(text)


@given(
    payload=st.text(alphabet="0123456789", min_size=15, max_size=15),
    before=st.text(max_size=40).filter(lambda s: not re.search(r"\d\Z", s)),
    after=st.text(max_size=40).filter(lambda s: not re.match(r"\d", s)),
)
def test_any_luhn_valid_16_digit_number_embedded_in_text_is_detected(
        payload: str, before: str, after: str) -> None:
    card = with_check_digit(payload)
    assert contains_card_number(before + card + after)


@given(
    payload=st.text(alphabet="0123456789", min_size=15, max_size=15),
    separator=st.sampled_from([" ", "-"]),
)
def test_any_luhn_valid_16_digit_number_in_groups_of_four_is_detected(
        payload: str, separator: str) -> None:
    card = with_check_digit(payload)
    grouped = separator.join(card[i:i + 4] for i in range(0, 16, 4))
    assert contains_card_number(f"card {grouped} please")


# ---- refuse_card_numbers ----------------------------------------------------------------------

def test_refuse_card_numbers_names_the_field_that_carries_the_card() -> None:
    with pytest.raises(ValidationError) as caught:
        refuse_card_numbers([("description", "t-shirt"), ("metadata[note]", "4111111111111111"),
                             ("customer.name", "Ravi")])
    assert caught.value.field == "metadata[note]"


def test_refuse_card_numbers_names_the_first_offending_field() -> None:
    with pytest.raises(ValidationError) as caught:
        refuse_card_numbers([("a", "5555555555554444"), ("b", "4111111111111111")])
    assert caught.value.field == "a"


def test_refusal_message_does_not_repeat_the_card_number() -> None:
    with pytest.raises(ValidationError) as caught:
        refuse_card_numbers([("description", "4111111111111111")])
    assert "4111" not in str(caught.value)
    assert "card number" in caught.value.message


def test_refuse_card_numbers_accepts_clean_and_empty_fields() -> None:
    refuse_card_numbers([("description", "t-shirt"), ("customer.name", ""),
                         ("customer.phone", "+919876543210")])


# ---- VPA --------------------------------------------------------------------------------------

@pytest.mark.parametrize("vpa", [
    "ravi@okaxis", "ravi.kumar-1_x@oksbi", "9876543210@ybl", "RAVI@OKHDFCBANK", "ab@paytm",
])
def test_valid_vpas_are_accepted(vpa: str) -> None:
    validate_vpa(vpa, "method.upi.vpa")


@pytest.mark.parametrize("vpa", [
    "", "ravi", "@okaxis", "ravi@", "r@okaxis", ".ravi@okaxis", "ravi@1bank", "ravi@ok.axis",
    "ravi@ok axis", "ravi kumar@okaxis", "ravi@@okaxis", "ravi@okaxis@ybl",
])
def test_invalid_vpas_are_refused_naming_the_field(vpa: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_vpa(vpa, "method.upi.vpa")
    assert caught.value.field == "method.upi.vpa"


def test_vpa_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        validate_vpa("ravi@okaxis\n", "method.upi.vpa")


# ---- email ------------------------------------------------------------------------------------

@pytest.mark.parametrize("email", [
    "ravi@example.com", "ravi.k+tag@mail.example.co.in", "R_A%V-I@EXAMPLE.IN",
])
def test_valid_emails_are_accepted(email: str) -> None:
    validate_email(email, "customer.email")


@pytest.mark.parametrize("email", [
    "", "ravi", "ravi@", "@example.com", "ravi@example", "ravi@@example.com",
    "ravi @example.com", "ravi@example.c", "ravi@exa mple.com",
    "a" * 65 + "@example.com",
    "ravi@" + "a" * 250 + ".com",
])
def test_invalid_emails_are_refused_naming_the_field(email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_email(email, "customer.email")
    assert caught.value.field == "customer.email"


def test_email_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        validate_email("ravi@example.com\n", "customer.email")


# ---- phone ------------------------------------------------------------------------------------

@pytest.mark.parametrize("phone", [
    "9876543210", "6000000000", "+919876543210", "919876543210", "09876543210",
    "+91 98765 43210", "+91-98765-43210", "(+91) 98765-43210",
])
def test_indian_mobiles_normalise_to_plus_91_and_ten_digits(phone: str) -> None:
    assert normalize_phone(phone) == ("+916000000000" if phone == "6000000000"
                                      else "+919876543210")


@pytest.mark.parametrize(("phone", "normalised"), [
    ("+14155552671", "+14155552671"),
    ("+1 (415) 555-2671", "+14155552671"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_e164_numbers_are_kept_without_separators(phone: str, normalised: str) -> None:
    assert normalize_phone(phone) == normalised


def test_unrecognised_phone_is_returned_with_only_separators_removed() -> None:
    assert normalize_phone("12-34 (5)") == "12345"
    assert normalize_phone("call") == "call"


@pytest.mark.parametrize("phone", [
    "9876543210", "+919876543210", "09876543210", "+91 98765 43210", "+14155552671",
    "+442079460958",
])
def test_indian_mobiles_and_e164_numbers_are_valid(phone: str) -> None:
    validate_phone(phone, "customer.phone")


@pytest.mark.parametrize("phone", [
    "", "12345", "5876543210",  # Indian mobiles start with 6-9
    "98765432", "abc", "+0123456789", "+1234567", "+1234567890123456", "phone: 9876543210",
])
def test_invalid_phones_are_refused_naming_the_field(phone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_phone(phone, "customer.phone")
    assert caught.value.field == "customer.phone"


# ---- IP ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ip", ["192.168.1.1", "10.0.0.1", "0.0.0.0", "2001:db8::1", "::1",
                                "::ffff:192.168.1.1"])
def test_ipv4_and_ipv6_addresses_are_valid(ip: str) -> None:
    validate_ip(ip)


@pytest.mark.parametrize("ip", ["", "256.1.1.1", "192.168.1", "192.168.01.1", "abc",
                                "2001:db8::g", "192.168.1.1/24", " 192.168.1.1"])
def test_invalid_ip_addresses_are_refused_as_ip_address(ip: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_ip(ip)
    assert caught.value.field == "ip_address"


def test_ip_error_uses_the_given_field_name() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_ip("nope", "ipAddress")
    assert caught.value.field == "ipAddress"


# ---- country ----------------------------------------------------------------------------------

def test_iso_country_list_contains_india_and_the_united_states() -> None:
    assert {"IN", "US", "GB", "SG", "AE"} <= ISO_COUNTRIES


def test_iso_country_list_holds_only_two_upper_case_letters() -> None:
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in ISO_COUNTRIES)


@pytest.mark.parametrize("country", ["IN", "US"])
def test_iso_country_codes_are_valid(country: str) -> None:
    validate_country(country)


@pytest.mark.parametrize("country", ["in", "XX", "IND", "UK", "", "I N"])
def test_unknown_or_lower_case_country_codes_are_refused(country: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_country(country)
    assert caught.value.field == "country"


# ---- URL --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://merchant.example/return", "http://localhost:8080/cb?order=1#top",
    "https://shop.example.in/orders/42/done",
])
def test_absolute_http_urls_are_valid(url: str) -> None:
    validate_url(url, "return_url")


@pytest.mark.parametrize("url", [
    "", "merchant.example/return", "ftp://merchant.example", "https://", "https:// x",
    "javascript:alert(1)", "/relative/path", "https://merchant.example/a b",
])
def test_non_absolute_or_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_url(url, "return_url")
    assert caught.value.field == "return_url"


def test_url_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="at most 2048"):
        validate_url("https://merchant.example/" + "a" * 2048, "return_url")


def test_url_limit_is_configurable() -> None:
    with pytest.raises(ValidationError, match="at most 30"):
        validate_url("https://merchant.example/abcdefgh", "return_url", max_length=30)


def test_url_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        validate_url("https://merchant.example/\n", "return_url")


# ---- metadata ---------------------------------------------------------------------------------

def test_twenty_metadata_keys_are_allowed() -> None:
    validate_metadata({f"k{i}": "v" for i in range(20)})


def test_twenty_one_metadata_keys_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_metadata({f"k{i}": "v" for i in range(21)})
    assert caught.value.field == "metadata"


def test_empty_metadata_key_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_metadata({"": "v"})
    assert caught.value.field == "metadata[]"


def test_metadata_key_of_forty_characters_is_allowed() -> None:
    validate_metadata({"k" * 40: "v"})


def test_metadata_key_over_forty_characters_is_refused_naming_the_key() -> None:
    key = "k" * 41
    with pytest.raises(ValidationError) as caught:
        validate_metadata({key: "v"})
    assert caught.value.field == f"metadata[{key}]"


def test_metadata_value_of_500_characters_is_allowed() -> None:
    validate_metadata({"note": "v" * 500})


def test_metadata_value_over_500_characters_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_metadata({"note": "v" * 501})
    assert caught.value.field == "metadata[note]"


# ---- idempotency key --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["a", "order-42", "7f9c2a1e-3b4d-4c5e-8f6a-0b1c2d3e4f5a",
                                 "!~" * 10, "k" * 255])
def test_printable_ascii_keys_up_to_255_characters_are_valid(key: str) -> None:
    validate_idempotency_key(key)


def test_missing_idempotency_key_is_required() -> None:
    with pytest.raises(ValidationError, match="is required") as caught:
        validate_idempotency_key("")
    assert caught.value.field == "idempotency_key"


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\there", "ключ", "order\x7f"])
def test_long_spaced_or_non_ascii_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_idempotency_key(key)
    assert caught.value.field == "idempotency_key"


def test_idempotency_key_error_uses_the_given_field_name() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_idempotency_key("", "Idempotency-Key")
    assert caught.value.field == "Idempotency-Key"


def test_idempotency_key_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        validate_idempotency_key("order-42\n")
