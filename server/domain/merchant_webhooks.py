"""Merchant webhooks, pure: endpoints, deliveries, the retry schedule, URL and address rules.

The SSRF rules live here because they are policy, not I/O: `check_url` decides whether a URL
may be registered at all, `address_refusal` whether one resolved address may be connected to.
The adapter that resolves names applies `address_refusal` to every address it gets back, at
registration and again right before each send (DNS can change in between).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from server.domain.payment import event_type_for
from server.domain.status import PaymentStatus
from server.errors import ValidationError

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "EVENT_TYPES",
    "MAX_ENDPOINTS_PER_MERCHANT",
    "DeliveryAttempt",
    "DeliveryStatus",
    "IpAddress",
    "RetrySchedule",
    "SendOutcome",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookTarget",
    "address_refusal",
    "check_url",
    "normalize_event_types",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Every type a payment state change publishes (`payment.created`, then one per status).
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"payment.created", *(event_type_for(status) for status in PaymentStatus)})
MAX_ENDPOINTS_PER_MERCHANT: Final = 16
MAX_URL_LENGTH: Final = 2048
MAX_DESCRIPTION_LENGTH: Final = 500

# 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h, 24 h, 24 h: ten attempts over ~3 days 20 hours.
DEFAULT_RETRY_DELAYS: Final[tuple[float, ...]] = (
    60, 300, 1800, 7200, 21600, 43200, 86400, 86400, 86400)


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # not tried yet (or a redelivery waiting for its first try)
    RETRYING = "RETRYING"  # failed so far; next_attempt_at says when it is tried again
    DELIVERED = "DELIVERED"  # the endpoint answered 2xx
    DEAD_LETTERED = "DEAD_LETTERED"  # the schedule ran out; published to merchant.webhooks.dlq


UNFINISHED: Final = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Delays between attempts: attempt n+1 waits `delays[n-1]` after attempt n failed."""

    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS

    def __post_init__(self) -> None:
        if not self.delays or any(delay <= 0 for delay in self.delays):
            raise ValueError("a retry schedule needs at least one positive delay")

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        """From "60,300,1800" (seconds; decimals allowed)."""
        try:
            delays = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"retry schedule {text!r}: expected comma-separated seconds") from None
        return cls(delays)

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    @property
    def total(self) -> timedelta:
        """From the first attempt to the last one."""
        return timedelta(seconds=sum(self.delays))

    def delay_after(self, attempts_made: int) -> float | None:
        """Seconds until the next attempt after `attempts_made` failed ones; None = give up."""
        if attempts_made < 1:
            return 0.0
        if attempts_made > len(self.delays):
            return None
        return self.delays[attempts_made - 1]


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    merchant_id: str
    url: str
    event_types: tuple[str, ...]
    description: str
    enabled: bool
    created_at: datetime
    secret: str = field(repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    previous_secret_expires_at: datetime | None = None
    deleted_at: datetime | None = None

    def wants(self, event_type: str, occurred_at: datetime) -> bool:
        """Whether an event belongs on this endpoint: subscribed type, and not older than it."""
        if not self.enabled or self.deleted_at is not None or occurred_at < self.created_at:
            return False
        return not self.event_types or event_type in self.event_types

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, then the previous one while it has not expired."""
        keys = [self.secret]
        if (self.previous_secret and self.previous_secret_expires_at is not None
                and self.previous_secret_expires_at > now):
            keys.append(self.previous_secret)
        return keys

    def previous_expiry(self, now: datetime) -> datetime | None:
        """When the previous secret stops signing, if it still signs at `now`."""
        if self.previous_secret_expires_at is not None and self.previous_secret_expires_at > now:
            return self.previous_secret_expires_at
        return None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    number: int
    at: datetime
    http_status: int  # 0 when there was no HTTP response
    error: str
    latency_ms: int


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: str
    endpoint_id: str
    merchant_id: str
    event_id: str
    event_type: str
    payment_id: str
    sequence: int
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    redelivery_of: str | None = None
    last_error: str = ""
    attempts: tuple[DeliveryAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one POST to an endpoint gave: `delivered` only for a 2xx answer."""

    delivered: bool
    http_status: int = 0
    error: str = ""
    latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A URL that passed `check_url`: where to connect, before resolving the host."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def literal_address(self) -> IpAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def check_url(url: str, *, allow_private: bool) -> WebhookTarget:
    """The target of `url`, or ValidationError("url", …): https (http only with the dev flag),
    a host, no credentials, no fragment; an IP literal must pass `address_refusal`."""
    url = url.strip()
    if not url:
        raise ValidationError("url", "is required")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError("url", f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError("url", f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed:
        raise ValidationError("url", "must use https" if scheme == "http" else
                              "must be an https URL")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValidationError("url", "has no host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url", "must not contain credentials (user:password@)")
    if parts.fragment:
        raise ValidationError("url", "must not contain a #fragment")
    if any(ch.isspace() for ch in url):
        raise ValidationError("url", "must not contain whitespace")
    target = WebhookTarget(url=url, scheme=scheme, host=host,
                           port=port or (443 if scheme == "https" else 80))
    address = target.literal_address
    if address is not None and not allow_private:
        reason = address_refusal(address)
        if reason:
            raise ValidationError("url", f"points to a {reason} address")
    return target


_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
# Cloud metadata services not already covered by link-local / private ranges.
_METADATA: Final[frozenset[IpAddress]] = frozenset({
    ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
})


def address_refusal(address: IpAddress) -> str | None:
    """Why Triveni must not connect to `address` (None when it is a public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return address_refusal(embedded)
    checks: tuple[tuple[bool, str], ...] = (
        (address in _METADATA, "cloud metadata"),
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    return None


def normalize_event_types(event_types: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Sorted, deduplicated, each one a known type (ValidationError names the bad entry)."""
    seen: set[str] = set()
    for index, raw in enumerate(event_types):
        name = raw.strip().lower()
        if name not in EVENT_TYPES:
            raise ValidationError(
                f"event_types[{index}]",
                f"unknown event type {raw!r}; known: {', '.join(sorted(EVENT_TYPES))}")
        seen.add(name)
    return tuple(sorted(seen))
