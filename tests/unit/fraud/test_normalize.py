from __future__ import annotations

import pytest

from server.domain.fraud import BlocklistKind, instrument_of, mask_token, normalize_blocklist_value
from server.errors import ValidationError
from tests.unit.fraud.helpers import payment


@pytest.mark.parametrize(("kind", "raw", "stored"), [
    (BlocklistKind.VPA, " Fraud@YBL ", "fraud@ybl"),
    (BlocklistKind.EMAIL, "Bad.Actor@Example.COM", "bad.actor@example.com"),
    (BlocklistKind.PHONE, "98765 43210", "+919876543210"),
    (BlocklistKind.PHONE, "+91-98765-43210", "+919876543210"),
    (BlocklistKind.PHONE, "09876543210", "+919876543210"),
    (BlocklistKind.PHONE, "+14155550123", "+14155550123"),
    (BlocklistKind.IP, "203.0.113.7", "203.0.113.7"),
    (BlocklistKind.IP, "203.0.113.7/24", "203.0.113.0/24"),
    (BlocklistKind.IP, "2409:4040:0000::1", "2409:4040::1"),
    (BlocklistKind.IP, "2409:4040::/32", "2409:4040::/32"),
    (BlocklistKind.CARD_BIN, "411111", "411111"),
    (BlocklistKind.CARD_BIN, "41111111", "41111111"),
    (BlocklistKind.CARD_TOKEN, " tok_ABC ", "tok_ABC"),
    (BlocklistKind.CUSTOMER_ID, "Cust_9", "Cust_9"),
])
def test_blocklist_values_are_stored_normalised(kind: BlocklistKind, raw: str,
                                                stored: str) -> None:
    assert normalize_blocklist_value(kind, raw) == stored


@pytest.mark.parametrize(("kind", "raw"), [
    (BlocklistKind.IP, "not-an-ip"),
    (BlocklistKind.IP, "10.0.0.0/33"),
    (BlocklistKind.VPA, "no-handle"),
    (BlocklistKind.EMAIL, "a@@b"),
    (BlocklistKind.PHONE, "12345"),
    (BlocklistKind.CARD_BIN, "4111111111111111"),  # a full card number is never accepted
    (BlocklistKind.CARD_BIN, "4111"),
    (BlocklistKind.VPA, "   "),
])
def test_invalid_blocklist_values_are_refused_naming_the_field(kind: BlocklistKind,
                                                               raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_blocklist_value(kind, raw)
    assert caught.value.field == "value"


def test_card_tokens_are_masked_to_their_ends() -> None:
    assert mask_token("tok_1234567890") == "tok_…7890"
    assert mask_token("short") == "****"


def test_the_instrument_is_the_vpa_else_the_card_token() -> None:
    assert instrument_of(payment(vpa="Ravi@OKAXIS")) == "vpa:ravi@okaxis"
    assert instrument_of(payment(vpa="", card_token="tok_1")) == "card:tok_1"
    assert instrument_of(payment(vpa="", card_token="")) == ""
