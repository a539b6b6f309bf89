"""The client's exception tree, drawn once.

TriveniError                    any failed call; `code`, `details`, `idempotency_key`, `metadata`
├── InvalidArgument             INVALID_ARGUMENT; `field` names the offending request field
├── NotFound                    NOT_FOUND
├── AlreadyExists               ALREADY_EXISTS (idempotency key reused with a different request)
├── Unauthenticated             UNAUTHENTICATED (missing or unknown API key)
├── PermissionDenied            PERMISSION_DENIED (another merchant's resource)
├── RateLimited                 RESOURCE_EXHAUSTED; `retry_after` when the server sent one
├── Unavailable                 UNAVAILABLE, after the client's own retries ran out
├── FailedPrecondition          FAILED_PRECONDITION (illegal state transition)
└── SignatureVerificationError  a webhook delivery failed verification (`triveni.webhooks`)

Any other status code (DEADLINE_EXCEEDED, INTERNAL, ...) raises TriveniError itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import grpc

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "SignatureVerificationError",
    "TriveniError",
    "Unauthenticated",
    "Unavailable",
    "error_from_status",
]

# The server's validation errors read "<field path>: <message>", e.g.
# "amount.amount_minor: must be greater than 0" or "metadata[note]: looks like a card number".
_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*|\[[^\]]*\])*):\s")
# Optional trailing metadata a server may send instead of (or besides) the prefix.
FIELD_METADATA_KEY = "triveni-field"
RETRY_AFTER_METADATA_KEY = "retry-after"


class TriveniError(Exception):
    """Base of every error raised by the Triveni client."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: str = "",
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.idempotency_key = idempotency_key
        self.metadata: Mapping[str, str] = dict(metadata or {})


class InvalidArgument(TriveniError):
    """The request was refused; `field` is the request field path ("" if the server named none)."""

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT,
        details: str = "",
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            details=details,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
        self.field = field


class NotFound(TriveniError):
    """No such resource for this merchant."""


class AlreadyExists(TriveniError):
    """The idempotency key was already used with a different request."""


class Unauthenticated(TriveniError):
    """The API key is missing, malformed or unknown."""


class PermissionDenied(TriveniError):
    """The resource belongs to another merchant, or the key may not do this."""


class RateLimited(TriveniError):
    """The merchant's rate limit was hit; `retry_after` is in seconds when the server said."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: grpc.StatusCode | None = grpc.StatusCode.RESOURCE_EXHAUSTED,
        details: str = "",
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            details=details,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
        self.retry_after = retry_after


class Unavailable(TriveniError):
    """The service or one of its dependencies is down; retrying later with the same key is safe."""


class FailedPrecondition(TriveniError):
    """The payment's state does not allow this (e.g. refunding a payment that never succeeded)."""


class SignatureVerificationError(TriveniError):
    """A webhook delivery failed verification; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_BY_CODE: dict[grpc.StatusCode, type[TriveniError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


def error_from_status(
    code: grpc.StatusCode,
    details: str | None,
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None = None,
    *,
    idempotency_key: str | None = None,
) -> TriveniError:
    """Build the exception for a failed RPC from its status code, details and trailers."""
    details = details or ""
    metadata = {key: value for key, value in (trailing_metadata or ()) if isinstance(value, str)}
    message = f"{code.name}: {details}" if details else code.name
    cls = _BY_CODE.get(code, TriveniError)
    if cls is InvalidArgument:
        return InvalidArgument(
            message,
            field=_field_name(details, metadata),
            code=code,
            details=details,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
    if cls is RateLimited:
        return RateLimited(
            message,
            retry_after=_retry_after(metadata),
            code=code,
            details=details,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
    return cls(
        message, code=code, details=details, idempotency_key=idempotency_key, metadata=metadata
    )


def _field_name(details: str, metadata: Mapping[str, str]) -> str:
    if metadata.get(FIELD_METADATA_KEY):
        return metadata[FIELD_METADATA_KEY]
    match = _FIELD_PREFIX.match(details)
    return match.group("field") if match else ""


def _retry_after(metadata: Mapping[str, str]) -> float | None:
    try:
        return float(metadata[RETRY_AFTER_METADATA_KEY])
    except (KeyError, ValueError):
        return None
