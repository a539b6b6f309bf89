"""Small abstract ports the use cases depend on. Concrete classes are built in bootstrap.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from server.connectors.base import Connector, ConnectorAccount, Transport
from server.domain.payment import FraudSummary, Payment, RoutingSummary
from server.domain.routing import RetryPolicy
from server.service_layer.commands import ListPayments
from server.service_layer.sync_schedule import SyncScheduleRepository

__all__ = [
    "AccountDirectory",
    "FraudScreener",
    "FraudVerdict",
    "PaymentRepository",
    "Router",
    "UnitOfWork",
]


class PaymentRepository(Protocol):
    async def add(self, payment: Payment) -> None: ...
    async def save(self, payment: Payment) -> None: ...
    async def save_if_version(self, payment: Payment, expected_version: int) -> None:
        """Like save, but the unit of work's commit raises ConcurrentUpdate, with nothing
        written, if the stored payment is no longer at `expected_version`."""
        ...

    async def get(self, merchant_id: str, payment_id: str, *, for_update: bool = False
                  ) -> Payment: ...
    async def get_any(self, payment_id: str, *, for_update: bool = False) -> Payment | None: ...
    async def find_by_connector_reference(self, connector: str, reference: str) -> str | None: ...
    async def find_by_refund_reference(self, connector: str, reference: str) -> str | None: ...
    async def claim_idempotency_key(self, merchant_id: str, operation: str, key: str,
                                    request_hash: str, resource_id: str
                                    ) -> tuple[str, str] | None: ...
    async def attempt_references(self, psp_reference: str) -> dict[str, str] | None: ...
    async def list_page(self, query: ListPayments) -> tuple[list[Payment], str]: ...
    async def find_account_for_reference(self, reference: str) -> tuple[str, str] | None: ...


class UnitOfWork(Protocol):
    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def conn(self) -> object: ...

    @property
    def sync_schedule(self) -> SyncScheduleRepository:
        """Kafka status-sync messages, written to the outbox at commit."""
        ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...
    async def commit(self) -> None: ...
    async def record_webhook_receipt(self, account: str, dedupe_id: str, payment_id: str
                                     ) -> bool: ...


@dataclass(frozen=True, slots=True)
class FraudVerdict:
    summary: FraudSummary
    hold: bool  # REVIEW and the merchant holds reviews for manual approval


class FraudScreener(Protocol):
    async def assess(self, conn: object, payment: Payment, *, record: bool) -> FraudVerdict: ...


class Router(Protocol):
    async def route(self, payment: Payment) -> RoutingSummary: ...
    async def claim(self, connector: str) -> Any:
        """A claim to call `connector` now (pass it to release), or None: do not call it now."""
        ...
    async def release(self, claim: Any) -> None: ...
    async def record_call(self, connector: str, outcome: str) -> None:
        """One PSP call's outcome: success | declined | failure | timeout (circuit breaker)."""
        ...
    async def record_result(self, connector: str, method: str, *, success: bool) -> None:
        """A payment's final outcome on `connector` (success-rate window)."""
        ...
    async def retry_policy(self, merchant_id: str) -> RetryPolicy:
        """The merchant's smart-retry settings (their routing policy's `retry` section)."""
        ...


@dataclass(frozen=True, slots=True)
class RoutableAccount:
    account: ConnectorAccount
    connector: Connector


class AccountDirectory(Protocol):
    transport: Transport

    def get(self, name: str) -> RoutableAccount | None: ...
    def all(self) -> Mapping[str, RoutableAccount]: ...

