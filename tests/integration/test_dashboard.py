"""The merchant dashboard over the running server: auth, tenant isolation, aggregates, detail."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from psycopg import sql
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from server.adapters.postgres.dashboard_queries import DashboardQueries, _webhook_deliveries
from server.adapters.postgres.pool import create_pool
from tests.fixtures.stack import Stack
from tests.integration.test_payment_lifecycle import complete_checkout
from tests.integration.test_payments_grpc import create, upi_request

pytestmark = pytest.mark.integration

LUHN_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


@dataclass
class Merchant:
    merchant_id: str
    api_key: str
    name: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


def fresh(amount_minor: int, **overrides: object) -> ps.CreatePaymentRequest:
    """A payment request from a customer of its own (fraud velocity counts per email)."""
    request = upi_request(amount_minor, **overrides)
    request.customer.email = f"asha.{secrets.token_hex(4)}@example.com"
    return request


@pytest_asyncio.fixture(scope="module")
async def merchant(stack: Stack) -> Merchant:
    """A merchant of this module's own, so its aggregates count only the payments made here."""
    name = f"dash-{secrets.token_hex(3)}"
    merchant_id, api_key = await stack.app.merchants.create_merchant(name)
    return Merchant(merchant_id, api_key, name)


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.http_url, follow_redirects=False,
                                 timeout=10) as http:
        yield http


async def _json(client: httpx.AsyncClient, path: str, merchant: Merchant,
                **params: str) -> Any:
    response = await client.get(path, params=params, headers=merchant.bearer)
    assert response.status_code == 200, response.text
    return response.json()


async def test_pages_redirect_to_login_and_api_answers_401_without_credentials(
        client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    api = await client.get("/dashboard/api/summary")
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    assert api.status_code == 401
    login = await client.get("/dashboard/login")
    assert login.status_code == 200 and 'name="api_key"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]


async def test_a_wrong_bearer_key_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard/api/payments",
                                headers={"authorization": "Bearer trv_test_nope"})
    assert response.status_code == 401


async def test_login_sets_a_signed_httponly_samesite_strict_cookie_that_works(
        client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.post("/dashboard/login", data={"api_key": merchant.api_key})
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert merchant.api_key not in cookie
    page = await client.get("/dashboard")  # the client keeps the cookie
    assert page.status_code == 200 and merchant.name in page.text
    assert (await client.get("/dashboard/api/summary")).status_code == 200


async def test_login_with_a_wrong_key_shows_the_form_again(client: httpx.AsyncClient) -> None:
    response = await client.post("/dashboard/login", data={"api_key": "trv_test_wrong"})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "set-cookie" not in response.headers


async def test_a_cross_site_login_post_is_refused(client: httpx.AsyncClient,
                                                  merchant: Merchant) -> None:
    response = await client.post("/dashboard/login", data={"api_key": merchant.api_key},
                                 headers={"sec-fetch-site": "cross-site"})
    other_origin = await client.post("/dashboard/login", data={"api_key": merchant.api_key},
                                     headers={"origin": "https://evil.example"})
    assert response.status_code == 403 and other_origin.status_code == 403
    assert "set-cookie" not in response.headers


async def test_a_tampered_session_cookie_is_refused(client: httpx.AsyncClient,
                                                    merchant: Merchant) -> None:
    login = await client.post("/dashboard/login", data={"api_key": merchant.api_key})
    value = login.cookies["triveni_dashboard"]
    payload, mac = value.split(".")
    forged = f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}"
    client.cookies.clear()
    response = await client.get("/dashboard/api/summary",
                                headers={"cookie": f"triveni_dashboard={forged}"})
    assert response.status_code == 401


async def test_logout_clears_the_cookie(client: httpx.AsyncClient, merchant: Merchant) -> None:
    await client.post("/dashboard/login", data={"api_key": merchant.api_key})
    response = await client.post("/dashboard/logout")
    assert response.status_code == 303
    assert 'triveni_dashboard=""' in response.headers["set-cookie"]
    assert (await client.get("/dashboard/api/summary")).status_code == 401


async def test_revoking_the_key_ends_its_dashboard_session(stack: Stack,
                                                           client: httpx.AsyncClient) -> None:
    merchant_id, api_key = await stack.app.merchants.create_merchant("revoked")
    await client.post("/dashboard/login", data={"api_key": api_key})
    assert (await client.get("/dashboard/api/summary")).status_code == 200
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM api_keys WHERE merchant_id = %s", (merchant_id,))
        row = await cur.fetchone()
    assert row is not None
    await stack.app.merchants.revoke(str(row["id"]))
    assert (await client.get("/dashboard/api/summary")).status_code == 401


async def test_summary_aggregates_volume_success_latency_and_fraud(
        stack: Stack, client: httpx.AsyncClient, merchant: Merchant) -> None:
    ok = await create(stack, fresh(120_000), api_key=merchant.api_key)
    await complete_checkout(stack, ok)
    await create(stack, fresh(15_000_000), api_key=merchant.api_key)  # blocked
    await create(stack, fresh(60_000, country="US"), api_key=merchant.api_key)  # review
    summary = await _wait_for(client, merchant, lambda s: s["totals"]["succeeded"] >= 1)

    totals = summary["totals"]
    assert totals["payments"] >= 3 and totals["blocked"] >= 1
    assert totals["volume_minor"] >= 120_000 and totals["volume"].startswith("₹")
    assert sum(point["payments"] for point in summary["series"]) == totals["payments"]
    assert len(summary["series"]) in (30, 31)  # 1 h in 2-minute buckets
    connectors = {row["connector"] for row in summary["by_connector"]}
    assert ok.connector in connectors and "(not routed)" in connectors
    assert {row["method"] for row in summary["by_method"]} == {"upi"}
    assert summary["latency"][0]["connector"] == "all connectors"
    assert summary["latency"][0]["p50_ms"] > 0
    decisions = summary["fraud"]["decisions"]
    assert decisions["BLOCK"] >= 1 and decisions["REVIEW"] >= 1 and decisions["ALLOW"] >= 1
    codes = {reason["code"] for reason in summary["fraud"]["reasons"]}
    assert {"HIGH_AMOUNT", "UNUSUAL_LOCATION"} <= codes


async def _wait_for(client: httpx.AsyncClient, merchant: Merchant, ready: Any,
                    window: str = "1h") -> Any:
    for _ in range(100):
        summary = await _json(client, "/dashboard/api/summary", merchant, window=window)
        if ready(summary):
            return summary
        await asyncio.sleep(0.1)
    raise AssertionError(f"summary never became ready: {summary}")


async def test_every_window_is_accepted_and_an_unknown_one_is_a_400(
        client: httpx.AsyncClient, merchant: Merchant) -> None:
    for window, buckets in (("1h", 30), ("24h", 24), ("7d", 28), ("30d", 30)):
        summary = await _json(client, "/dashboard/api/summary", merchant, window=window)
        assert len(summary["series"]) in (buckets, buckets + 1), window
    bad = await client.get("/dashboard/api/summary", params={"window": "1y"},
                           headers=merchant.bearer)
    assert bad.status_code == 400 and bad.json()["field"] == "window"


async def test_recent_payments_search_by_id_prefix_and_filter_by_status(
        stack: Stack, client: httpx.AsyncClient, merchant: Merchant) -> None:
    payment = await create(stack, fresh(70_000), api_key=merchant.api_key)
    blocked = await create(stack, fresh(15_000_000), api_key=merchant.api_key)

    by_id = await _json(client, "/dashboard/api/payments", merchant, q=payment.id[:-3])
    by_ref = await _json(client, "/dashboard/api/payments", merchant,
                         q=payment.connector_payment_id)
    by_status = await _json(client, "/dashboard/api/payments", merchant, status="blocked")
    wildcard = await _json(client, "/dashboard/api/payments", merchant, q="%")

    assert [p["id"] for p in by_id["payments"]] == [payment.id]
    assert [p["id"] for p in by_ref["payments"]] == [payment.id]
    assert blocked.id in {p["id"] for p in by_status["payments"]}
    assert {p["status"] for p in by_status["payments"]} == {"BLOCKED"}
    assert wildcard["payments"] == []  # LIKE wildcards are escaped
    row = by_id["payments"][0]
    assert row["amount"] == "₹700.00" and row["customer"]["email"] == "a***@example.com"


async def test_bad_list_parameters_are_400s(client: httpx.AsyncClient,
                                            merchant: Merchant) -> None:
    for params in ({"status": "NOPE"}, {"limit": "0"}, {"limit": "x"}, {"q": "p" * 101}):
        response = await client.get("/dashboard/api/payments", params=params,
                                    headers=merchant.bearer)
        assert response.status_code == 400, params


async def test_another_merchants_payment_is_invisible(stack: Stack, client: httpx.AsyncClient,
                                                      merchant: Merchant) -> None:
    theirs = await create(stack, fresh(80_000))  # the stack's own merchant
    api = await client.get(f"/dashboard/api/payments/{theirs.id}", headers=merchant.bearer)
    page = await client.get(f"/dashboard/payments/{theirs.id}", headers=merchant.bearer)
    listed = await _json(client, "/dashboard/api/payments", merchant, q=theirs.id)
    assert api.status_code == 404 and page.status_code == 404
    assert listed["payments"] == []


async def test_payment_detail_shows_attempts_routing_fraud_and_audit(
        stack: Stack, client: httpx.AsyncClient, merchant: Merchant) -> None:
    flagged = await create(stack, fresh(90_000, country="US"), api_key=merchant.api_key)
    await complete_checkout(stack, flagged)

    detail = await _json(client, f"/dashboard/api/payments/{flagged.id}", merchant)

    assert detail["id"] == flagged.id and detail["fraud"]["decision"] == "REVIEW"
    assert "UNUSUAL_LOCATION" in {r["code"] for r in detail["fraud"]["reasons"]}
    attempt = detail["attempts"][0]
    assert attempt["connector"] == flagged.connector and attempt["latency_ms"] > 0
    assert attempt["connector_payment_id"] == flagged.connector_payment_id
    assert detail["routing"]["chosen"] == flagged.connector and detail["routing"]["candidates"]
    assert detail["audit"][0]["action"] == "payment.created"
    assert detail["customer"]["email"] == "a***@example.com"
    assert detail["webhook_deliveries"] is None or isinstance(detail["webhook_deliveries"], list)
    page = await client.get(f"/dashboard/payments/{flagged.id}", headers=merchant.bearer)
    assert page.status_code == 200 and flagged.id in page.text


async def test_a_card_payment_shows_network_and_last4_only(
        stack: Stack, client: httpx.AsyncClient, merchant: Merchant) -> None:
    request = fresh(50_000)
    request.method.CopyFrom(pb.PaymentMethod(card=pb.CardMethod(
        token="tok_visa_5f2c9a8e7d6b", network="VISA", last4="4242")))
    card = await create(stack, request, api_key=merchant.api_key)

    response = await client.get(f"/dashboard/api/payments/{card.id}", headers=merchant.bearer)

    assert response.json()["method"] == {"type": "card", "label": "VISA •••• 4242"}
    assert "tok_visa_5f2c9a8e7d6b" not in response.text
    assert not LUHN_RUN.search(response.text)


async def test_script_in_payment_data_is_escaped_in_pages(
        stack: Stack, client: httpx.AsyncClient, merchant: Merchant) -> None:
    hostile = f"<img src=x onerror=alert({secrets.randbelow(99)})>"
    page = await client.get(f"/dashboard/payments/{hostile}", headers=merchant.bearer)
    assert page.status_code == 404
    assert "<img" not in page.text and "&lt;img src=x onerror=alert(" in page.text


async def test_webhook_deliveries_are_shown_when_the_table_exists(
        stack: Stack, merchant: Merchant) -> None:
    """In a schema of its own (search_path), so the real table's migration is not disturbed."""
    payment = await create(stack, fresh(30_000), api_key=merchant.api_key)
    schema = f"dash_{secrets.token_hex(4)}"
    url = stack.settings.postgres_url.get_secret_value()
    async with stack.app.pool.connection() as conn:
        await conn.execute(sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.webhook_deliveries (id TEXT, merchant_id TEXT,"
            " payment_id TEXT, event_type TEXT, status TEXT, payload TEXT, secret TEXT,"
            " created_at TIMESTAMPTZ DEFAULT now())").format(s=sql.Identifier(schema)))
        await conn.execute(sql.SQL(
            "INSERT INTO {s}.webhook_deliveries (id, merchant_id, payment_id, event_type, status,"
            " payload, secret) VALUES ('whd_1', %s, %s, 'payment.created', 'DELIVERED',"
            " 'card 4111111111111111', 'whsec_x'), ('whd_2', 'mer_other', %s,"
            " 'payment.created', 'DELIVERED', '', '')").format(s=sql.Identifier(schema)),
            (merchant.merchant_id, payment.id, payment.id))
    pool = await create_pool(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
                             ",public", min_size=1, max_size=1)
    try:
        detail = await DashboardQueries(pool).payment_detail(merchant.merchant_id, payment.id)
        other = await DashboardQueries(pool).payment_detail("mer_other", payment.id)
    finally:
        await pool.close()
        async with stack.app.pool.connection() as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    assert detail is not None and detail.webhook_deliveries is not None
    assert [row["id"] for row in detail.webhook_deliveries] == ["whd_1"]
    assert set(detail.webhook_deliveries[0]) == {"id", "event_type", "status", "created_at"}
    assert other is None


async def test_webhook_deliveries_degrade_to_none_without_the_table(
        stack: Stack, merchant: Merchant) -> None:
    """A server whose database predates merchant webhooks: no table, no section, no error."""
    params = {"merchant_id": merchant.merchant_id, "payment_id": "pay_x"}
    async with stack.app.pool.connection() as conn:
        await conn.execute("SET LOCAL search_path = pg_catalog")  # no webhook_deliveries here
        try:
            assert await _webhook_deliveries(conn, params) is None
        finally:
            await conn.rollback()


async def test_a_login_form_with_unexpected_fields_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/dashboard/login",
                                 content=b"a=1&b=2&c=3&d=4&e=5&api_key=x",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and "set-cookie" not in response.headers
