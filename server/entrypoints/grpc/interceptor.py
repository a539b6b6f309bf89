"""One interceptor: request id, API-key authentication, logging, metrics, error → status."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from server.adapters.metrics import GRPC_REQUEST_DURATION, GRPC_REQUESTS
from server.adapters.postgres.merchants import MerchantStore, Principal
from server.errors import (
    ConcurrentUpdate,
    DependencyUnavailable,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    RateLimited,
    TriveniError,
    Unauthenticated,
    ValidationError,
)

__all__ = ["TriveniInterceptor", "current_principal", "status_for"]

log = logging.getLogger("triveni.grpc")
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

_STATUS: list[tuple[type[TriveniError], grpc.StatusCode]] = [
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (IdempotencyConflict, grpc.StatusCode.ALREADY_EXISTS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (IllegalTransition, grpc.StatusCode.FAILED_PRECONDITION),
    (ConcurrentUpdate, grpc.StatusCode.ABORTED),
    (DependencyUnavailable, grpc.StatusCode.UNAVAILABLE),
]
_PUBLIC_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def current_principal() -> Principal:
    """The authenticated merchant of the RPC being served."""
    return _principal.get()


def status_for(error: TriveniError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


RateLimiter = Callable[[str], Awaitable[None]]


class TriveniInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, merchants: MerchantStore, rate_limit: RateLimiter | None = None) -> None:
        self._merchants = merchants
        self._rate_limit = rate_limit

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())  # type: ignore[attr-defined]
        short = method  # full name, e.g. /triveni.v1.PaymentService/CreatePayment
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    await self._enter(short, metadata, context)
                    return await inner(request, context)
                except TriveniError as exc:
                    code = status_for(exc)
                    await self._abort(context, short, code, exc)
                except Exception:
                    code = grpc.StatusCode.INTERNAL
                    if context.code() is not None:  # already aborted by the servicer
                        code = context.code()
                        raise
                    log.exception("unhandled error", extra={"rpc": short})
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                finally:
                    _observe(short, code, started)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            stream_inner = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]
                             ) -> AsyncIterator[Any]:
                started = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    await self._enter(short, metadata, context)
                    async for item in stream_inner(request, context):
                        yield item
                except TriveniError as exc:
                    code = status_for(exc)
                    await self._abort(context, short, code, exc)
                finally:
                    _observe(short, code, started)

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler

    async def _enter(self, rpc: str, metadata: dict[str, Any],
                     context: grpc.aio.ServicerContext[Any, Any]) -> None:
        request_id = str(metadata.get("x-request-id") or uuid.uuid4().hex)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=rpc)
        # Sent with the status (trailers): a separate header write costs a syscall per RPC.
        context.set_trailing_metadata((("x-request-id", request_id),))
        auth = str(metadata.get("authorization", ""))
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
        principal = await self._merchants.authenticate(key.strip())
        _principal.set(principal)
        structlog.contextvars.bind_contextvars(merchant_id=principal.merchant_id)
        if self._rate_limit is not None:
            await self._rate_limit(principal.merchant_id)

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], rpc: str,
                     code: grpc.StatusCode, exc: TriveniError) -> None:
        level = logging.WARNING if code in (grpc.StatusCode.UNAVAILABLE,) else logging.INFO
        log.log(level, "rpc failed", extra={"rpc": rpc, "code": code.name, "error": str(exc)})
        trailing: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, ValidationError):
            trailing = (("triveni-field", exc.field),)
        if isinstance(exc, RateLimited):
            trailing = (("retry-after", f"{exc.retry_after_seconds:.0f}"),)
        request_id = structlog.contextvars.get_contextvars().get("request_id", "")
        context.set_trailing_metadata((*trailing, ("x-request-id", str(request_id))))
        await context.abort(code, str(exc))


def _observe(rpc: str, code: grpc.StatusCode, started: float) -> None:
    GRPC_REQUESTS.labels(method=rpc, code=code.name).inc()
    GRPC_REQUEST_DURATION.labels(method=rpc).observe(time.perf_counter() - started)
