"""WebhookService use cases: endpoints (create, list, delete, rotate), deliveries, redelivery."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from server.domain.ids import new_id
from server.domain.merchant_webhooks import (
    MAX_DESCRIPTION_LENGTH,
    WebhookDelivery,
    WebhookEndpoint,
    normalize_event_types,
)
from server.domain.payment import utcnow
from server.errors import ValidationError

__all__ = [
    "DEFAULT_PREVIOUS_SECRET_TTL",
    "MAX_PREVIOUS_SECRET_TTL",
    "EndpointWithSecret",
    "MerchantWebhookService",
    "WebhookStore",
    "new_webhook_secret",
]

DEFAULT_PREVIOUS_SECRET_TTL: Final = timedelta(hours=24)
MAX_PREVIOUS_SECRET_TTL: Final = timedelta(days=7)
MAX_PAGE_SIZE: Final = 100

Clock = Callable[[], datetime]
UrlCheck = Callable[[str], Awaitable[None]]


def new_webhook_secret() -> str:
    """`whsec_` + 256 random bits, URL-safe."""
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookStore(Protocol):
    async def create_endpoint(self, endpoint: WebhookEndpoint, idempotency_key: str,
                              request_hash: str) -> WebhookEndpoint: ...

    async def list_endpoints(self, merchant_id: str) -> list[WebhookEndpoint]: ...

    async def delete_endpoint(self, merchant_id: str, endpoint_id: str,
                              now: datetime) -> WebhookEndpoint: ...

    async def rotate_secret(self, merchant_id: str, endpoint_id: str, new_secret: str,
                            previous_expires_at: datetime, now: datetime) -> WebhookEndpoint: ...

    async def list_deliveries(self, merchant_id: str, *, endpoint_id: str, payment_id: str,
                              page_size: int, page_token: str
                              ) -> tuple[list[WebhookDelivery], str]: ...

    async def redeliver(self, merchant_id: str, delivery_id: str, idempotency_key: str,
                        now: datetime) -> WebhookDelivery: ...


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    """What CreateWebhookEndpoint and RotateWebhookSecret return: the only time a secret shows."""

    endpoint: WebhookEndpoint
    secret: str


class MerchantWebhookService:
    """Endpoint management for the authenticated merchant; every call is tenant-scoped."""

    def __init__(self, store: WebhookStore, check_url: UrlCheck, *, clock: Clock = utcnow,
                 new_secret: Callable[[], str] = new_webhook_secret) -> None:
        self._store = store
        self._check_url = check_url
        self._clock = clock
        self._new_secret = new_secret

    async def create_endpoint(self, merchant_id: str, *, url: str, event_types: Sequence[str],
                              description: str, idempotency_key: str) -> EndpointWithSecret:
        """Validate (SSRF guard included) and store; a repeated key returns the same endpoint."""
        if not idempotency_key:
            raise ValidationError("idempotency_key", "is required")
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise ValidationError("description",
                                  f"must be at most {MAX_DESCRIPTION_LENGTH} characters")
        url = url.strip()
        types = normalize_event_types(list(event_types))
        request_hash = hashlib.sha256(json.dumps(
            {"url": url, "event_types": types, "description": description},
            sort_keys=True).encode()).hexdigest()
        await self._check_url(url)
        now = self._clock()
        candidate = WebhookEndpoint(
            id=new_id("we"), merchant_id=merchant_id, url=url, event_types=types,
            description=description, enabled=True, created_at=now, secret=self._new_secret())
        stored = await self._store.create_endpoint(candidate, idempotency_key, request_hash)
        # A retry of the same create gets the endpoint's current secret: the caller holds the
        # API key, which can rotate the secret anyway, so this reveals nothing new.
        return EndpointWithSecret(stored, stored.secret)

    async def list_endpoints(self, merchant_id: str) -> list[WebhookEndpoint]:
        return await self._store.list_endpoints(merchant_id)

    async def delete_endpoint(self, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
        if not endpoint_id:
            raise ValidationError("id", "is required")
        return await self._store.delete_endpoint(merchant_id, endpoint_id, self._clock())

    async def rotate_secret(self, merchant_id: str, endpoint_id: str,
                            previous_ttl_seconds: int) -> EndpointWithSecret:
        """A new secret; the current one keeps signing for `previous_ttl_seconds` (0 = 24 h)."""
        if not endpoint_id:
            raise ValidationError("id", "is required")
        if previous_ttl_seconds < 0:
            raise ValidationError("previous_secret_ttl_seconds", "must not be negative")
        ttl = (timedelta(seconds=previous_ttl_seconds) if previous_ttl_seconds
               else DEFAULT_PREVIOUS_SECRET_TTL)
        if ttl > MAX_PREVIOUS_SECRET_TTL:
            raise ValidationError("previous_secret_ttl_seconds",
                                  f"must be at most {int(MAX_PREVIOUS_SECRET_TTL.total_seconds())}")
        now = self._clock()
        secret = self._new_secret()
        endpoint = await self._store.rotate_secret(merchant_id, endpoint_id, secret, now + ttl,
                                                   now)
        return EndpointWithSecret(endpoint, secret)

    async def list_deliveries(self, merchant_id: str, *, endpoint_id: str, payment_id: str,
                              page_size: int, page_token: str
                              ) -> tuple[list[WebhookDelivery], str]:
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise ValidationError("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        return await self._store.list_deliveries(
            merchant_id, endpoint_id=endpoint_id, payment_id=payment_id,
            page_size=page_size or 20, page_token=page_token)

    async def redeliver(self, merchant_id: str, delivery_id: str,
                        idempotency_key: str) -> WebhookDelivery:
        """A new delivery of the same event (same body and event id), sent as soon as possible."""
        if not delivery_id:
            raise ValidationError("delivery_id", "is required")
        if not idempotency_key:
            raise ValidationError("idempotency_key", "is required")
        return await self._store.redeliver(merchant_id, delivery_id, idempotency_key,
                                           self._clock())
