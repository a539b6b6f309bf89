"""The merchant dashboard on the HTTP shim: HTML pages, their JSON endpoints, static files.

    GET  /dashboard                      overview: volume, success rate, latency, fraud, payments
    GET  /dashboard/payments/{id}        one payment: attempts, routing, fraud, audit, webhooks
    GET  /dashboard/login                the login form (the merchant's API key)
    POST /dashboard/login                → signed session cookie, 303 to /dashboard
    POST /dashboard/logout               → cookie cleared, 303 to the login page
    GET  /dashboard/api/summary          ?window=1h|24h|7d|30d
    GET  /dashboard/api/payments         ?q=<id prefix, PSP reference or idempotency key>
                                          &status=<PaymentStatus>&limit=1..200
    GET  /dashboard/api/payments/{id}
    GET  /dashboard/static/…             CSS and JS (no CDN: the pages load nothing else)

Every page and endpoint takes `Authorization: Bearer <api key>` or the session cookie, and shows
only that merchant's data. State changes are POSTs that must come from our own origin; pages
and JSON are GETs. Pages are Jinja2 templates with autoescaping; the JS renders data with
textContent only, under a Content-Security-Policy that allows no inline script.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.adapters.postgres.dashboard_queries import DashboardQueries
from server.adapters.postgres.merchants import MerchantStore, Principal
from server.domain.status import PaymentStatus
from server.entrypoints.http.bodies import read_body_limited
from server.entrypoints.http.dashboard_auth import COOKIE_NAME, SessionSigner
from server.entrypoints.http.dashboard_view import (
    payment_detail_json,
    payment_list_json,
    summary_json,
)
from server.errors import DependencyUnavailable, Unauthenticated

if TYPE_CHECKING:
    from server.bootstrap import App

__all__ = ["WINDOWS", "DashboardConfig", "build_dashboard_routes", "dashboard_routes"]

log = logging.getLogger("triveni.dashboard")

_ASSETS = Path(__file__).with_name("dashboard")
# window → (length, bucket): about 30 buckets each.
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=2)),
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
    "30d": (timedelta(days=30), timedelta(days=1)),
}
DEFAULT_WINDOW = "24h"
REFRESH_SECONDS = 5
_MAX_LOGIN_BYTES = 4096
_MAX_SEARCH_CHARS = 100
_STATUSES = frozenset(status.value for status in PaymentStatus)
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class DashboardConfig:
    queries: DashboardQueries
    merchants: MerchantStore
    signer: SessionSigner
    secure_cookies: bool


@dataclass(frozen=True, slots=True)
class _Viewer:
    principal: Principal
    merchant_name: str


def dashboard_routes(app: App) -> list[BaseRoute]:
    """The dashboard's routes over the running app's pool and merchant store."""
    settings = app.settings
    signer = SessionSigner(settings.dashboard_secret.get_secret_value().encode(),
                           ttl_seconds=int(settings.dashboard_session_hours * 3600))
    return build_dashboard_routes(DashboardConfig(
        queries=DashboardQueries(app.pool), merchants=app.merchants, signer=signer,
        secure_cookies=settings.production))


def _templates() -> Environment:
    return Environment(loader=FileSystemLoader(_ASSETS / "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       auto_reload=False)


def _secured(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return _secured(JSONResponse(body, status_code=status))


def _same_origin(request: Request) -> bool:
    """A browser's cross-site POST is refused (login CSRF); clients without these headers
    (curl, scripts) carry no ambient cookie to abuse and may post."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def build_dashboard_routes(config: DashboardConfig) -> list[BaseRoute]:
    templates = _templates()
    queries = config.queries

    def page(name: str, status: int = 200, **context: object) -> Response:
        html = templates.get_template(name).render(refresh_seconds=REFRESH_SECONDS, **context)
        return _secured(HTMLResponse(html, status_code=status))

    async def viewer_for(request: Request) -> _Viewer | None:
        """Who is asking: a Bearer API key, else the session cookie; None if neither holds."""
        auth = request.headers.get("authorization", "")
        if auth:
            scheme, _, key = auth.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                return None
            principal = await config.merchants.authenticate(key.strip())
        else:
            session = config.signer.verify(request.cookies.get(COOKIE_NAME, ""))
            if session is None:
                return None
            principal = Principal(session.merchant_id, session.key_id)
        # Per request: a revoked key (or a session of one) stops working at once.
        name = await queries.session_merchant_name(principal.merchant_id, principal.key_id)
        return None if name is None else _Viewer(principal, name)

    async def authenticated(request: Request) -> _Viewer | Response:
        """The viewer, or the response to send instead (401 JSON for the API, else a login
        redirect; 503 while PostgreSQL is down)."""
        api = request.url.path.startswith("/dashboard/api/")
        try:
            viewer = await viewer_for(request)
        except Unauthenticated:
            viewer = None
        except DependencyUnavailable:
            return _json({"error": "database unavailable"}, 503) if api else page(
                "error.html", 503, message="The database is unavailable; retrying shortly.")
        if viewer is not None:
            return viewer
        if api:
            return _json({"error": "authentication required: log in or send "
                                   "'Authorization: Bearer <api key>'"}, 401)
        return _secured(RedirectResponse("/dashboard/login", status_code=303))

    async def overview(request: Request) -> Response:
        viewer = await authenticated(request)
        if isinstance(viewer, Response):
            return viewer
        return page("overview.html", merchant_name=viewer.merchant_name,
                    merchant_id=viewer.principal.merchant_id, windows=list(WINDOWS),
                    default_window=DEFAULT_WINDOW, statuses=sorted(_STATUSES))

    async def payment_page(request: Request) -> Response:
        viewer = await authenticated(request)
        if isinstance(viewer, Response):
            return viewer
        payment_id = request.path_params["payment_id"]
        try:
            detail = await queries.payment_detail(viewer.principal.merchant_id, payment_id)
        except DependencyUnavailable:
            return page("error.html", 503, message="The database is unavailable.")
        if detail is None:  # another merchant's payment looks exactly like a missing one
            return page("error.html", 404, message=f"No payment {payment_id}.")
        return page("payment.html", merchant_name=viewer.merchant_name,
                    merchant_id=viewer.principal.merchant_id, payment_id=payment_id)

    async def login_form(request: Request) -> Response:
        return page("login.html")

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return page("login.html", 403, error="Cross-site login refused.")
        body = await read_body_limited(request, _MAX_LOGIN_BYTES)
        if body is None:
            return page("login.html", 413, error="Request too large.")
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        except ValueError:  # more fields than a login form has
            return page("login.html", 400, error="Unexpected form fields.")
        api_key = (fields.get("api_key") or [""])[0].strip()
        try:
            principal = await config.merchants.authenticate(api_key)
        except Unauthenticated:
            log.info("dashboard login refused")
            return page("login.html", 401, error="That API key is not valid.")
        except DependencyUnavailable:
            return page("login.html", 503, error="The database is unavailable; try again.")
        log.info("dashboard login", extra={"merchant_id": principal.merchant_id,
                                           "key_id": principal.key_id})
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(
            COOKIE_NAME, config.signer.issue(principal.merchant_id, principal.key_id),
            max_age=config.signer.ttl_seconds, path="/dashboard", httponly=True,
            samesite="strict", secure=config.secure_cookies)
        return _secured(response)

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return _json({"error": "cross-site request refused"}, 403)
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/dashboard", httponly=True, samesite="strict",
                               secure=config.secure_cookies)
        return _secured(response)

    async def api_summary(request: Request) -> Response:
        viewer = await authenticated(request)
        if isinstance(viewer, Response):
            return viewer
        window = request.query_params.get("window", DEFAULT_WINDOW)
        if window not in WINDOWS:
            return _json({"error": f"window must be one of {', '.join(WINDOWS)}",
                          "field": "window"}, 400)
        length, bucket = WINDOWS[window]
        until = datetime.now(UTC)
        try:
            rows = await queries.summary(viewer.principal.merchant_id, since=until - length,
                                         until=until, bucket=bucket)
        except DependencyUnavailable:
            return _json({"error": "database unavailable"}, 503)
        return _json(summary_json(rows, window, viewer.merchant_name))

    async def api_payments(request: Request) -> Response:
        viewer = await authenticated(request)
        if isinstance(viewer, Response):
            return viewer
        params = request.query_params
        search = params.get("q", "").strip()
        status = params.get("status", "").strip().upper()
        limit_text = params.get("limit", "50")
        if len(search) > _MAX_SEARCH_CHARS:
            return _json({"error": f"q is longer than {_MAX_SEARCH_CHARS} characters",
                          "field": "q"}, 400)
        if status and status not in _STATUSES:
            return _json({"error": "unknown status", "field": "status"}, 400)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 200:
            return _json({"error": "limit must be 1..200", "field": "limit"}, 400)
        try:
            rows = await queries.recent_payments(viewer.principal.merchant_id, search=search,
                                                 status=status, limit=int(limit_text))
        except DependencyUnavailable:
            return _json({"error": "database unavailable"}, 503)
        return _json(payment_list_json(rows))

    async def api_payment(request: Request) -> Response:
        viewer = await authenticated(request)
        if isinstance(viewer, Response):
            return viewer
        payment_id = request.path_params["payment_id"]
        try:
            detail = await queries.payment_detail(viewer.principal.merchant_id, payment_id)
        except DependencyUnavailable:
            return _json({"error": "database unavailable"}, 503)
        if detail is None:
            return _json({"error": f"no payment {payment_id}"}, 404)
        return _json(payment_detail_json(detail))

    return [
        Route("/dashboard", overview, methods=["GET"]),
        Route("/dashboard/", overview, methods=["GET"]),
        Route("/dashboard/payments/{payment_id}", payment_page, methods=["GET"]),
        Route("/dashboard/login", login_form, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/api/summary", api_summary, methods=["GET"]),
        Route("/dashboard/api/payments", api_payments, methods=["GET"]),
        Route("/dashboard/api/payments/{payment_id}", api_payment, methods=["GET"]),
        Mount("/dashboard/static", app=StaticFiles(directory=_ASSETS / "static"),
              name="dashboard-static"),
    ]


