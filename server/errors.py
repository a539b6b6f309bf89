"""The error tree, drawn once. Every layer raises these; entrypoints map them to gRPC / HTTP.

TriveniError                                   gRPC status / HTTP status
├── ValidationError       bad input; `field`   INVALID_ARGUMENT / 400
├── NotFound              no such resource     NOT_FOUND / 404
├── IdempotencyConflict   key reused, new body ALREADY_EXISTS / 409
├── Unauthenticated       missing/unknown key  UNAUTHENTICATED / 401
├── PermissionDenied      another merchant's   PERMISSION_DENIED / 403
├── RateLimited           per-merchant limit   RESOURCE_EXHAUSTED / 429
├── IllegalTransition     state machine says no FAILED_PRECONDITION / 409
├── ConcurrentUpdate      optimistic write lost ABORTED / 409 (use cases retry it under a lock)
├── DependencyUnavailable PG / Redis / Kafka   UNAVAILABLE / 503
└── ConfigurationError    bad settings at start-up (never mapped; the process exits)
Connector errors live in `server.connectors.base` and derive from TriveniError too.
"""

from __future__ import annotations

__all__ = [
    "ConcurrentUpdate",
    "ConfigurationError",
    "DependencyUnavailable",
    "IdempotencyConflict",
    "IllegalTransition",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "TriveniError",
    "Unauthenticated",
    "ValidationError",
]


class TriveniError(Exception):
    """Base of every error Triveni raises on purpose."""


class ValidationError(TriveniError):
    """Input refused; `field` is the request field path (e.g. "amount.amount_minor")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(TriveniError):
    pass


class IdempotencyConflict(TriveniError):
    pass


class Unauthenticated(TriveniError):
    pass


class PermissionDenied(TriveniError):
    pass


class RateLimited(TriveniError):
    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class IllegalTransition(TriveniError):
    pass


class ConcurrentUpdate(TriveniError):
    """A version-checked write found the row changed since it was read; nothing was written."""


class DependencyUnavailable(TriveniError):
    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(f"{dependency} unavailable: {message}")
        self.dependency = dependency


class ConfigurationError(TriveniError):
    pass
