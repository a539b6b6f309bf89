"""Builders shared by the routing unit tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping

from server.connectors.base import AccountCapabilities, ConnectorAccount
from server.domain.money import Money
from server.domain.routing.context import RoutingContext


def account(
    name: str, *, tier: str = "standard", priority: int = 100, psp: str = "simulator",
    methods: frozenset[str] = frozenset({"upi", "card", "netbanking", "wallet"}),
    max_amount_minor: int = 100_000_000,
) -> ConnectorAccount:
    return ConnectorAccount(
        name=name, psp=psp, base_url="http://127.0.0.1:1", tier=tier, priority=priority,
        capabilities=AccountCapabilities(methods=methods, max_amount_minor=max_amount_minor),
    )


def context(
    amount_minor: int = 50_000, *, method: str = "upi", payment_id: str | None = None,
    metadata: Mapping[str, str] | None = None, card_network: str = "", upi_flow: str = "",
    preferred: str = "", currency: str = "INR", already_tried: frozenset[str] = frozenset(),
) -> RoutingContext:
    return RoutingContext(
        payment_id=payment_id or f"pay_{uuid.uuid4().hex[:24]}",
        amount=Money(amount_minor, currency),
        method=method,
        card_network=card_network,
        upi_flow=upi_flow,
        metadata=dict(metadata or {}),
        preferred_connector=preferred,
        already_tried=already_tried,
    )


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


class NoExploreRandom(random.Random):
    """A Random whose first draw per decision never falls in the exploration share."""

    def random(self) -> float:
        return 0.999
