"""Money and payment-method helpers."""

from __future__ import annotations

from decimal import Decimal

import pytest
import triveni
from triveni.v1 import common_pb2 as pb


@pytest.mark.parametrize(
    ("rupees", "paise"),
    [(15_000, 1_500_000), ("499.50", 49_950), (Decimal("0.01"), 1), (0.1, 10), (19.99, 1999)],
)
def test_inr_converts_rupees_to_paise(rupees: int | str | Decimal | float, paise: int) -> None:
    assert triveni.inr(rupees) == pb.Money(amount_minor=paise, currency="INR")


@pytest.mark.parametrize("rupees", ["0.001", 1.005, -1, "abc", float("nan"), "Infinity"])
def test_inr_refuses_what_is_not_a_whole_number_of_paise(rupees: str | float) -> None:
    with pytest.raises(ValueError):
        triveni.inr(rupees)


def test_inr_refuses_bool() -> None:
    with pytest.raises(TypeError):
        triveni.inr(True)


def test_paise_builds_inr_money() -> None:
    assert triveni.paise(1999) == pb.Money(amount_minor=1999, currency="INR")


def test_method_helpers_build_each_kind() -> None:
    assert triveni.upi().upi.flow == pb.UPI_FLOW_INTENT
    assert triveni.upi("ravi@okaxis", pb.UPI_FLOW_COLLECT).upi.vpa == "ravi@okaxis"
    assert triveni.card(token="tok_1", network="RUPAY").card.network == "RUPAY"
    assert triveni.netbanking("HDFC").netbanking.bank_code == "HDFC"
    assert triveni.wallet("paytm").wallet.wallet == "paytm"


def test_public_names_are_exported() -> None:
    assert "Client" in triveni.__all__
    assert "AsyncClient" in triveni.__all__
    for name in triveni.__all__:
        assert hasattr(triveni, name), name
