"""The risk engine's values: what it is asked about, what it knows, and what it answers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from server.domain.fraud.settings import FraudSettings
from server.domain.money import Money

__all__ = [
    "HARD_BLOCK_SCORE",
    "SIGNAL_GEOIP",
    "SIGNAL_VELOCITY",
    "Assessment",
    "BlocklistEntry",
    "BlocklistHit",
    "BlocklistKind",
    "BlocklistPage",
    "CustomerHistory",
    "Decision",
    "FraudContext",
    "FraudInput",
    "Reason",
    "StoredFacts",
    "StoredFraudSettings",
    "VelocityKey",
    "VelocityKind",
    "VelocityReadings",
    "Window",
    "WindowStats",
]

HARD_BLOCK_SCORE = 100

# Names of the looked-up facts that can be missing (their source is down or not configured).
SIGNAL_VELOCITY = "velocity"
SIGNAL_GEOIP = "geoip"


class Decision(StrEnum):
    ALLOW = "ALLOW"
    REVIEW = "REVIEW"
    BLOCK = "BLOCK"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Decision.ALLOW: 0, Decision.REVIEW: 1, Decision.BLOCK: 2}


@dataclass(frozen=True, slots=True)
class Reason:
    """One signal that fired: `score` points towards the total; `hard_block` forces BLOCK."""

    code: str
    message: str
    score: int
    hard_block: bool = False


@dataclass(frozen=True, slots=True)
class Assessment:
    """The engine's answer: decision, 0-100 score, reasons (largest contribution first)."""

    decision: Decision
    score: int
    reasons: tuple[Reason, ...] = ()
    # Signals that could not be evaluated and how they were treated, e.g.
    # "velocity: skipped (fail-open)".
    unavailable_signals: tuple[str, ...] = ()

    @property
    def primary_reason(self) -> Reason | None:
        """The reason to show as the payment's failure (a hard block if there is one)."""
        return self.reasons[0] if self.reasons else None


class BlocklistKind(StrEnum):
    IP = "IP"  # an address or a CIDR range
    VPA = "VPA"
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CARD_TOKEN = "CARD_TOKEN"
    CARD_BIN = "CARD_BIN"  # first 6 or 8 digits; never a full number
    CUSTOMER_ID = "CUSTOMER_ID"


@dataclass(frozen=True, slots=True)
class BlocklistHit:
    """A live blocklist entry that matches the payment. `value` is the entry's (e.g. a CIDR)."""

    kind: BlocklistKind
    value: str
    reason: str = ""
    entry_id: str = ""


@dataclass(frozen=True, slots=True)
class BlocklistEntry:
    id: str
    merchant_id: str
    kind: BlocklistKind
    value: str
    reason: str
    created_at: datetime
    expires_at: datetime | None = None
    removed_at: datetime | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class BlocklistPage:
    entries: tuple[BlocklistEntry, ...]
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class StoredFraudSettings:
    """A merchant's settings as stored; version 0 means the defaults (never saved)."""

    merchant_id: str
    version: int
    settings: FraudSettings
    updated_at: datetime | None = None
    updated_by: str = ""


class Window(StrEnum):
    """Sliding windows the velocity counters keep."""

    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def seconds(self) -> int:
        return _WINDOW_SECONDS[self]

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def label(self) -> str:
        return _WINDOW_LABELS[self]


_WINDOW_SECONDS = {Window.MINUTE: 60, Window.HOUR: 3600, Window.DAY: 86_400}
_WINDOW_LABELS = {Window.MINUTE: "minute", Window.HOUR: "hour", Window.DAY: "day"}


class VelocityKind(StrEnum):
    """What a velocity counter is keyed on. IPv6 addresses count per /64."""

    IP = "ip"
    VPA = "vpa"
    EMAIL = "email"
    PHONE = "phone"
    CUSTOMER = "customer"
    CARD_TOKEN = "card_token"


@dataclass(frozen=True, slots=True)
class VelocityKey:
    """One counter family: a merchant's payments sharing one identifier, over some windows."""

    merchant_id: str
    kind: VelocityKind
    value: str  # normalised identifier; stored only as `digest`, so no PII lands in Redis
    windows: tuple[Window, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Payments (and their total amount) seen in one window."""

    count: int = 0
    amount_minor: int = 0


VelocityReadings = Mapping[VelocityKey, Mapping[Window, WindowStats]]


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    """The customer's earlier successful payments with this merchant."""

    successful_payments: int
    median_amount_minor: int | None = None
    # Whether this payment's instrument appears among those payments (None: not asked, or
    # the payment has no identifiable instrument).
    knows_instrument: bool | None = None


@dataclass(frozen=True, slots=True)
class FraudInput:
    """The payment being screened, as the engine sees it. Empty string = not given."""

    amount: Money
    method_type: str = ""  # upi | card | netbanking | wallet
    vpa: str = ""
    email: str = ""
    phone: str = ""
    customer_id: str = ""
    card_token: str = ""
    card_bin: str = ""
    ip: str = ""
    country: str = ""  # declared by the merchant / customer (ISO 3166-1 alpha-2)
    merchant_id: str = ""


@dataclass(frozen=True, slots=True)
class FraudContext:
    """Facts looked up for one payment (Redis, PostgreSQL, geo database)."""

    # Counters per identifier kind; a kind missing here was not looked up (or not given).
    velocity: Mapping[VelocityKind, Mapping[Window, WindowStats]] = field(default_factory=dict)
    # True when the counters already include this payment (record_and_read); False for a
    # dry run (read), in which case the engine adds the payment itself.
    velocity_includes_current: bool = False
    blocklist_hits: tuple[BlocklistHit, ...] = ()
    ip_country: str | None = None
    customer_history: CustomerHistory | None = None  # None: no customer id given
    # Distinct instruments (VPAs, card tokens) in the last 24 hours *other than this payment's*.
    other_instruments_for_customer: int = 0
    other_instruments_for_ip: int = 0
    # Failed payments in the last hour from the same customer, IP or instrument.
    recent_failures: int = 0
    unavailable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What PostgreSQL knows about a payment's identifiers, looked up in one go."""

    blocklist_hits: tuple[BlocklistHit, ...]
    customer_history: CustomerHistory | None  # None: no customer id given
    other_instruments_for_customer: int
    other_instruments_for_ip: int
    recent_failures: int
