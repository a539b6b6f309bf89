"""/healthz, /readyz and /metrics: served by the HTTP shim and by the relay and worker processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.adapters.metrics import metrics_response

__all__ = ["ReadinessCheck", "probe_routes"]

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def probe_routes(readiness: ReadinessCheck, *, required: Iterable[str] | None = None
                 ) -> list[Route]:
    """The three probe routes; ready when every check in `required` (default: all) passed."""
    needed = None if required is None else tuple(required)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values()) if needed is None else all(checks[n] for n in needed)
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"])]
