"""Money: integer paise, same-currency arithmetic, rupee strings formatted and parsed exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.money import SUPPORTED_CURRENCIES, Money, parse_rupees

# parse_rupees takes at most 12 whole-rupee digits (₹999,999,999,999.99).
LARGEST_PARSEABLE_MINOR = 10**14 - 1


# ---- construction -----------------------------------------------------------------------------

def test_currency_defaults_to_inr() -> None:
    assert Money(100).currency == "INR"


def test_inr_is_the_supported_currency() -> None:
    assert "INR" in SUPPORTED_CURRENCIES


def test_float_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        Money(1.5)  # type: ignore[arg-type]


def test_bool_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        Money(True)


def test_string_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        Money("100")  # type: ignore[arg-type]


def test_money_is_immutable() -> None:
    money = Money(100)
    with pytest.raises(AttributeError):
        money.amount_minor = 200  # type: ignore[misc]


def test_equal_amounts_in_the_same_currency_are_equal_and_hash_alike() -> None:
    assert Money(150) == Money(150, "INR")
    assert hash(Money(150)) == hash(Money(150, "INR"))


def test_same_amount_in_different_currencies_is_not_equal() -> None:
    assert Money(150, "INR") != Money(150, "USD")


# ---- arithmetic -------------------------------------------------------------------------------

def test_adding_same_currency_adds_minor_units() -> None:
    assert Money(150) + Money(250) == Money(400)


def test_subtracting_same_currency_subtracts_minor_units() -> None:
    assert Money(400) - Money(150) == Money(250)


def test_subtraction_can_go_negative() -> None:
    assert Money(100) - Money(250) == Money(-150)


def test_addition_keeps_the_currency() -> None:
    assert (Money(1, "USD") + Money(2, "USD")).currency == "USD"


def test_adding_different_currencies_is_refused() -> None:
    with pytest.raises(ValueError, match="currency mismatch: INR vs USD"):
        Money(100, "INR") + Money(100, "USD")


def test_subtracting_different_currencies_is_refused() -> None:
    with pytest.raises(ValueError, match="currency mismatch: USD vs INR"):
        Money(100, "USD") - Money(100, "INR")


def test_amounts_in_one_currency_order_by_amount() -> None:
    assert Money(100) < Money(101)
    assert max(Money(5), Money(500), Money(50)) == Money(500)


# ---- to_major_string --------------------------------------------------------------------------

@pytest.mark.parametrize(("minor", "expected"), [
    (1_500_000, "15000.00"),
    (150_000, "1500.00"),
    (5, "0.05"),
    (50, "0.50"),
    (99, "0.99"),
    (100, "1.00"),
    (0, "0.00"),
    (123_456_789, "1234567.89"),
])
def test_major_string_has_exactly_two_decimals(minor: int, expected: str) -> None:
    assert Money(minor).to_major_string() == expected


@pytest.mark.parametrize(("minor", "expected"), [
    (-5, "-0.05"),
    (-150, "-1.50"),
    (-1_500_000, "-15000.00"),
])
def test_negative_major_string_puts_the_sign_before_the_whole_part(minor: int,
                                                                  expected: str) -> None:
    assert Money(minor).to_major_string() == expected


def test_str_shows_currency_and_major_amount() -> None:
    assert str(Money(1_500_000)) == "INR 15000.00"


# ---- parse_rupees -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "paise"), [
    ("150000", 15_000_000),
    ("15000", 1_500_000),
    ("1.5", 150),
    ("1.25", 125),
    ("0.05", 5),
    ("0", 0),
    ("0.00", 0),
    ("007", 700),
    ("999999999999.99", LARGEST_PARSEABLE_MINOR),
])
def test_parse_rupees_converts_to_paise_exactly(text: str, paise: int) -> None:
    assert parse_rupees(text) == paise


def test_parse_rupees_ignores_surrounding_whitespace() -> None:
    assert parse_rupees("  1.25\n") == 125


@pytest.mark.parametrize("text", [
    "1.255",  # a fraction of a paisa
    "-1",
    "abc",
    "1e3",
    "",
    " ",
    "1.",
    ".5",
    "1,000",
    "₹100",
    "+1",
    "1 000",
    "NaN",
    "Infinity",
    "0x10",
    "1_000",
    "1000000000000",  # 13 whole-rupee digits
])
def test_parse_rupees_refuses_anything_but_a_plain_rupee_amount(text: str) -> None:
    with pytest.raises(ValueError, match="not a rupee amount"):
        parse_rupees(text)


@pytest.mark.parametrize("text", [
    "\u0661\u0662\u0663",  # Arabic-Indic 123
    "\uff11\uff10\uff10",  # full-width 100
    "\u0967.\u0968\u096b",  # Devanagari 1.25
])
def test_parse_rupees_refuses_non_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rupees(text)


# ---- Money.inr --------------------------------------------------------------------------------

def test_inr_from_int_rupees() -> None:
    assert Money.inr(15000) == Money(1_500_000, "INR")


def test_inr_from_string_rupees() -> None:
    assert Money.inr("1.25") == Money(125, "INR")


def test_inr_from_decimal_rupees() -> None:
    assert Money.inr(Decimal("1.50")) == Money(150, "INR")


def test_inr_refuses_a_fraction_of_a_paisa() -> None:
    with pytest.raises(ValueError):
        Money.inr(Decimal("1.255"))


def test_inr_refuses_negative_rupees() -> None:
    with pytest.raises(ValueError):
        Money.inr(-1)


# ---- properties -------------------------------------------------------------------------------

@given(st.integers(min_value=0, max_value=LARGEST_PARSEABLE_MINOR))
def test_parsing_the_major_string_gives_back_the_minor_amount(minor: int) -> None:
    assert parse_rupees(Money(minor).to_major_string()) == minor


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_major_string_is_the_exact_decimal_value(minor: int) -> None:
    assert Decimal(Money(minor).to_major_string()) * 100 == minor


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_subtraction_undoes_addition(a: int, b: int) -> None:
    assert Money(a) + Money(b) - Money(b) == Money(a)
