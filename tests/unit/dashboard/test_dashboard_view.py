"""What the dashboard shows: rupees the Indian way, masked personal data, no card numbers."""

from __future__ import annotations

import pytest

from server.entrypoints.http.dashboard_view import (
    format_inr,
    mask_email,
    mask_phone,
    mask_vpa,
    method_label,
)


@pytest.mark.parametrize(("paise", "shown"), [
    (0, "₹0.00"), (99, "₹0.99"), (100_000, "₹1,000.00"), (1_500_000, "₹15,000.00"),
    (15_000_000, "₹1,50,000.00"), (1_234_567_890, "₹1,23,45,678.90"), (-50, "-₹0.50"),
])
def test_amounts_use_indian_digit_grouping(paise: int, shown: str) -> None:
    assert format_inr(paise) == shown


def test_emails_keep_the_first_letter_and_the_domain() -> None:
    assert mask_email("asha.verma@example.com") == "a***@example.com"
    assert mask_email("") == "" and mask_email("not-an-email") == "***"


def test_phones_keep_the_country_code_and_last_four_digits() -> None:
    assert mask_phone("+919876543210") == "+91 ******3210"
    assert mask_phone("9876543210") == "******3210"
    assert mask_phone("12345") == "***" and mask_phone("") == ""


def test_vpas_keep_two_characters_and_the_handle() -> None:
    assert mask_vpa("9876543210@okicici") == "98***@okicici"


def test_a_card_is_shown_as_network_and_last4_only() -> None:
    method = {"type": "card", "card_network": "visa", "card_last4": "4242",
              "card_token": "tok_4111111111111111"}
    assert method_label(method) == {"type": "card", "label": "VISA •••• 4242"}


def test_a_card_last4_field_holding_more_digits_still_shows_four() -> None:
    label = method_label({"type": "card", "card_network": "RUPAY",
                          "card_last4": "4111111111111111"})["label"]
    assert label == "RUPAY •••• 1111"


def test_other_methods_are_labelled_without_personal_data() -> None:
    assert method_label({"type": "upi", "upi_flow": "collect",
                         "upi_vpa": "asha@okhdfc"})["label"] == "UPI collect · as***@okhdfc"
    assert method_label({"type": "upi"})["label"] == "UPI intent"
    assert method_label({"type": "netbanking", "bank_code": "hdfc"})["label"] == \
        "Netbanking · HDFC"
    assert method_label({"type": "card"})["label"] == "CARD (hosted checkout)"
