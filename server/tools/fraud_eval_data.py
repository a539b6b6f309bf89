"""A seeded synthetic payment stream for fraud-eval: legitimate traffic and fraud patterns.

Everything is drawn from one `random.Random(seed)`, so a seed always yields the same events.
IP countries are part of the data (no geo database is consulted).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from server.domain.fraud import BlocklistKind, FraudInput, instrument_of
from server.domain.money import Money

__all__ = ["FRAUD_PATTERNS", "LEGIT_PATTERNS", "Event", "Scenario", "generate"]

DAY = 86_400.0
DAYS = 3
MERCHANT = "mer_eval"
LEGIT_PATTERNS = ("legit_regular", "legit_big_purchase", "legit_traveller",
                  "legit_new_customer", "legit_office_nat")
FRAUD_PATTERNS = ("card_testing", "account_takeover", "geo_mismatch",
                  "high_value_first_purchase", "blocklisted_instrument")
_FOREIGN = {"US": "23", "GB": "81", "RU": "5", "NG": "41", "SG": "8", "AE": "94", "BR": "177"}


@dataclass(frozen=True, slots=True)
class Event:
    """One payment attempt, with the truth about it."""

    at: float  # seconds from the start of the simulation
    inp: FraudInput
    ip_country: str | None
    pattern: str
    fraud: bool
    succeeds: bool  # what the PSP would answer if the payment were sent


@dataclass(frozen=True, slots=True)
class Scenario:
    events: tuple[Event, ...]  # in time order
    # (amount, instrument) of the successful payments each customer made before the start.
    history: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    # What the merchant had already blocklisted (from earlier chargebacks).
    blocklist: frozenset[tuple[BlocklistKind, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class _Customer:
    id: str
    email: str
    phone: str
    vpa: str
    card_token: str  # "" for UPI users
    home_ip: str
    median_minor: int

    @property
    def instrument(self) -> str:
        return instrument_of(FraudInput(Money(1), vpa=self.vpa, card_token=self.card_token))


class _World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.serial = 0
        self.events: list[Event] = []

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:06d}"

    def indian_ip(self) -> str:
        r = self.rng
        return f"49.{36 + r.randrange(8)}.{r.randrange(256)}.{1 + r.randrange(254)}"

    def foreign_ip(self) -> tuple[str, str]:
        country = self.rng.choice(sorted(_FOREIGN))
        r = self.rng
        ip = f"{_FOREIGN[country]}.{r.randrange(256)}.{r.randrange(256)}.{1 + r.randrange(254)}"
        return ip, country

    def amount(self, median_minor: int, sigma: float = 0.6) -> int:
        return max(100, int(median_minor * math.exp(self.rng.gauss(0.0, sigma))))

    def customer(self) -> _Customer:
        cid = self.next_id("cust_")
        uses_card = self.rng.random() < 0.3
        return _Customer(
            id=cid, email=f"{cid}@example.in", phone=f"9{self.rng.randrange(10**9):09d}",
            vpa="" if uses_card else f"{cid}@okaxis",
            card_token=self.next_id("tok_card_") if uses_card else "",
            home_ip=self.indian_ip(),
            median_minor=int(20_000 * math.exp(self.rng.gauss(0.0, 0.8))),  # around ₹200
        )

    def add(self, at: float, pattern: str, fraud: bool, succeeds: bool, ip: str,
            ip_country: str | None, amount_minor: int, *, customer_id: str = "",
            email: str = "", phone: str = "", vpa: str = "", card_token: str = "") -> None:
        inp = FraudInput(
            amount=Money(amount_minor), method_type="card" if card_token else "upi", vpa=vpa,
            email=email, phone=phone, customer_id=customer_id, card_token=card_token, ip=ip,
            country="IN", merchant_id=MERCHANT)
        self.events.append(Event(at, inp, ip_country, pattern, fraud, succeeds))

    def pay(self, at: float, pattern: str, fraud: bool, succeeds: bool, who: _Customer,
            amount_minor: int, *, ip: str | None = None, ip_country: str | None = "IN",
            vpa: str | None = None, card_token: str | None = None,
            email: str | None = None) -> None:
        """A payment by `who`, with their own identifiers unless overridden."""
        self.add(at, pattern, fraud, succeeds, who.home_ip if ip is None else ip, ip_country,
                 amount_minor, customer_id=who.id, email=who.email if email is None else email,
                 phone=who.phone,
                 vpa=who.vpa if vpa is None else vpa,
                 card_token=who.card_token if card_token is None else card_token)


def generate(seed: int, scale: float = 1.0) -> Scenario:
    """The synthetic stream for `seed`; `scale` multiplies the number of actors."""
    world = _World(random.Random(seed))
    rng = world.rng
    span = DAYS * DAY

    def n(base: int) -> int:
        return max(1, round(base * scale))

    customers = [world.customer() for _ in range(n(400))]
    history = {c.id: tuple((world.amount(c.median_minor), c.instrument)
                           for _ in range(rng.randint(3, 20)))
               for c in customers}

    for c in customers:
        for _ in range(rng.randint(2, 8)):
            world.pay(rng.uniform(0, span), "legit_regular", False, rng.random() > 0.03, c,
                      world.amount(c.median_minor))
    for c in rng.sample(customers, n(40)):
        world.pay(rng.uniform(0, span), "legit_big_purchase", False, True, c,
                  int(c.median_minor * rng.uniform(6, 15)))
    for c in rng.sample(customers, n(40)):
        ip, country = world.foreign_ip()
        start = rng.uniform(0, span)
        for k in range(rng.randint(1, 2)):
            world.pay(start + k * rng.uniform(600, 7200), "legit_traveller", False, True, c,
                      world.amount(c.median_minor), ip=ip, ip_country=country)
    for _ in range(n(300)):
        c = world.customer()
        first = (rng.randint(2_500_000, 8_000_000) if rng.random() < 0.08
                 else world.amount(80_000))
        start = rng.uniform(0, span)
        world.pay(start, "legit_new_customer", False, rng.random() > 0.05, c, first)
        for k in range(rng.randint(0, 2)):
            world.pay(start + (k + 1) * rng.uniform(3600, DAY), "legit_new_customer", False,
                      True, c, world.amount(80_000))
    for day in range(DAYS):  # lunch at an office behind one NAT address
        office_ip, lunch = world.indian_ip(), day * DAY + 12.5 * 3600
        for c in rng.sample(customers, rng.randint(n(12), n(30))):
            world.pay(lunch + rng.uniform(0, 900), "legit_office_nat", False, True, c,
                      world.amount(15_000, 0.4), ip=office_ip)

    blocklist = _fraud(world, customers, span, n)
    events = sorted(world.events, key=lambda e: e.at)
    return Scenario(tuple(events), history, frozenset(blocklist))


def _fraud(world: _World, customers: list[_Customer], span: float,
           n: Callable[[int], int]) -> set[tuple[BlocklistKind, str]]:
    """Adds the fraud patterns; returns the blocklist the merchant already had."""
    rng = world.rng
    for _ in range(n(8)):  # card testing: many cards, tiny amounts, one source, mostly declined
        ip, country = world.foreign_ip() if rng.random() < 0.6 else (world.indian_ip(), "IN")
        start, minutes = rng.uniform(0, span), rng.uniform(5, 15)
        for _ in range(rng.randint(15, 50)):
            world.add(start + rng.uniform(0, minutes * 60), "card_testing", True,
                      rng.random() < 0.15, ip, country, rng.randint(100, 1_000),
                      customer_id=world.next_id("cust_ct_") if rng.random() < 0.5 else "",
                      card_token=world.next_id("tok_stolen_"))
    for victim in rng.sample(customers, n(25)):  # account takeover: new device, new instrument
        ip, country = world.foreign_ip() if rng.random() < 0.5 else (world.indian_ip(), "IN")
        card = world.next_id("tok_ato_") if rng.random() < 0.5 else ""
        vpa = "" if card else world.next_id("mule") + "@ybl"
        start = rng.uniform(0, span)
        for _ in range(rng.randint(2, 5)):
            amount = min(9_500_000, int(victim.median_minor * rng.uniform(3, 20)) + 200_000)
            world.pay(start + rng.uniform(0, 900), "account_takeover", True, True, victim,
                      amount, ip=ip, ip_country=country, vpa=vpa, card_token=card)
    for _ in range(n(40)):  # an Indian card used from abroad by a first-time "customer"
        ip, country = world.foreign_ip()
        c = world.customer()
        world.pay(rng.uniform(0, span), "geo_mismatch", True, rng.random() < 0.7, c,
                  world.amount(800_000, 0.5), ip=ip, ip_country=country, vpa="",
                  card_token=world.next_id("tok_stolen_"))
    for _ in range(n(40)):  # a new account's first purchase is a big-ticket item
        c = world.customer()
        world.pay(rng.uniform(0, span), "high_value_first_purchase", True, rng.random() < 0.8,
                  c, rng.randint(3_000_000, 15_000_000))
    known_bad = [(BlocklistKind.VPA, world.next_id("fraud") + "@ybl") for _ in range(n(15))]
    known_bad += [(BlocklistKind.EMAIL, world.next_id("fraud") + "@mail.example")
                  for _ in range(n(15))]
    known_bad += [(BlocklistKind.CARD_TOKEN, world.next_id("tok_cb_")) for _ in range(n(10))]
    for _ in range(n(30)):  # fraudsters come back with instruments charged back before
        kind, value = rng.choice(known_bad)
        c = world.customer()
        world.pay(rng.uniform(0, span), "blocklisted_instrument", True, True, c,
                  world.amount(150_000),
                  vpa=value if kind is BlocklistKind.VPA else None,
                  card_token=value if kind is BlocklistKind.CARD_TOKEN else None,
                  email=value if kind is BlocklistKind.EMAIL else None)
    return set(known_bad)
