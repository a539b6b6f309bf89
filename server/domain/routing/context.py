"""What routing knows about a payment and about a connector account.

The domain never imports the connector package: `RoutableAccount` is the structural view of
`server.connectors.base.ConnectorAccount` that routing needs (name, tier, priority and the
capability check), so any object with those attributes routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from server.domain.money import Money

__all__ = ["AccountCapabilitiesView", "RoutableAccount", "RoutingContext"]


class AccountCapabilitiesView(Protocol):
    def supports(self, method: str, amount: Money) -> str | None:
        """None when eligible, else the reason the account cannot take the payment."""
        ...


class RoutableAccount(Protocol):
    """The part of a connector account that routing reads."""

    @property
    def name(self) -> str: ...

    @property
    def psp(self) -> str: ...

    @property
    def tier(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def capabilities(self) -> AccountCapabilitiesView: ...


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """The facts about one payment that rules and scoring may look at."""

    payment_id: str
    amount: Money
    method: str  # upi | card | netbanking | wallet
    merchant_id: str = ""
    card_network: str = ""  # e.g. "VISA", "RUPAY" (upper case)
    upi_flow: str = ""  # intent | collect | qr ("" = intent)
    bank_code: str = ""
    wallet: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    preferred_connector: str = ""
    # 1-based attempt number this decision is for; later attempts exclude tried accounts.
    attempt: int = 1
    already_tried: frozenset[str] = frozenset()
