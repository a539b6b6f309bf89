"""Reading request bodies with a size limit (webhooks, the seed REST endpoints, dashboard login)."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["read_body_limited"]


async def read_body_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or declares itself) larger than `limit` bytes; stops
    reading as soon as the limit is passed, so an oversized body costs no more than that."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body
