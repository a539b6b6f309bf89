"""The merchant dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A merchant of its own logs in with its API key, finds a payment this test created (one that the
fraud engine flagged and that then went to the PSP), and opens its detail page: the attempts and
the fraud reasons must be on screen. Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import pytest_asyncio
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from server.domain.validation import contains_card_number
from tests.fixtures.stack import Stack
from tests.integration.test_payment_lifecycle import complete_checkout
from tests.integration.test_payments_grpc import create, upi_request

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; in CI (CI=true) a missing browser is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (scripts/ci-deps installs Debian's chromium)")
    pytest.skip(reason)


def chromium_path() -> str:
    found = os.environ.get("TRIVENI_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not found:
        _unavailable("chromium is not installed (apt-get install chromium, or scripts/ci-deps)")
    return str(found)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        # Debian's browser, not a downloaded one: `playwright install` cannot run here.
        launched = await playwright.chromium.launch(executable_path=executable,
                                                    args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


def _request(amount_minor: int, **overrides: Any) -> ps.CreatePaymentRequest:
    request = upi_request(amount_minor, **overrides)
    request.customer.email = f"asha.{secrets.token_hex(4)}@example.com"
    # Fresh contact details per payment: fraud velocity counts per email and per phone.
    request.customer.phone = f"+9198{secrets.randbelow(10**8):08d}"
    request.customer.name = "Asha Verma"
    return request


async def _settled(stack: Stack, payment_id: str, api_key: str) -> pb.Payment:
    async with stack.channel() as channel:
        stub = stack.payments(channel)
        for _ in range(200):
            payment: pb.Payment = await stub.GetPayment(ps.GetPaymentRequest(id=payment_id),
                                                        metadata=stack.metadata(api_key))
            if payment.status in (pb.PAYMENT_STATUS_SUCCEEDED, pb.PAYMENT_STATUS_FAILED):
                return payment
            await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} never settled")


async def _seed_payments(stack: Stack, api_key: str) -> pb.Payment:
    """A small day of traffic; returns the flagged payment the browser has to find."""
    for amount in (45_000, 120_000, 260_000):
        paid = await create(stack, _request(amount), api_key=api_key)
        await complete_checkout(stack, paid)
    card = _request(310_000)
    card.method.CopyFrom(pb.PaymentMethod(card=pb.CardMethod(
        token="tok_5f2c9a8e7d6b4411", network="VISA", last4="4242")))
    await create(stack, card, api_key=api_key)
    await create(stack, _request(15_000_000), api_key=api_key)  # blocked: high amount
    stack.simulator.configure({"success_rate": 0.0})
    try:
        declined = await create(stack, _request(80_000), api_key=api_key)
        await complete_checkout(stack, declined)
        await _settled(stack, declined.id, api_key)
    finally:
        stack.simulator.configure({"success_rate": 1.0})
    # Declared outside India: REVIEW (proceed and flag), so it has fraud reasons AND attempts.
    flagged = await create(stack, _request(99_900, country="US"), api_key=api_key)
    assert flagged.fraud.decision == pb.FRAUD_DECISION_REVIEW, flagged.fraud
    assert flagged.attempts, "a flagged payment still goes to the PSP"
    await complete_checkout(stack, flagged)
    await _settled(stack, flagged.id, api_key)
    return flagged


async def _no_card_numbers(page: Page) -> None:
    text = await page.inner_text("body")
    # The system's own rule (13-19 digits passing Luhn): ids such as PSP event ids may carry
    # long digit runs that are not card numbers.
    assert not contains_card_number(text), "a card-number-like digit run is on the page"
    assert "tok_5f2c9a8e7d6b4411" not in await page.content()


async def test_dashboard_finds_a_created_payment_and_shows_its_attempts_and_fraud_reasons(
        stack: Stack, browser: Browser, simulator: object) -> None:
    name = f"Kirana Mart {secrets.token_hex(2)}"
    _, api_key = await stack.app.merchants.create_merchant(name)
    flagged = await _seed_payments(stack, api_key)
    ARTIFACTS.mkdir(exist_ok=True)
    context = await browser.new_context(viewport={"width": 1360, "height": 1500},
                                        locale="en-IN", timezone_id="Asia/Kolkata")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        # Unauthenticated → the login form; log in with the API key.
        await page.goto(f"{stack.http_url}/dashboard")
        assert page.url.endswith("/dashboard/login")
        await page.fill("#api_key", api_key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{stack.http_url}/dashboard")
        cookies = await context.cookies()
        session = next(c for c in cookies if c["name"] == "triveni_dashboard")
        assert session["httpOnly"] and session["sameSite"] == "Strict"

        # The overview: figures, charts, and the payment in the recent list.
        await page.click("button[data-window='1h']")
        row = page.locator("#payments tbody tr", has_text=flagged.id)
        await row.wait_for(timeout=15_000)
        await page.wait_for_function(
            "() => document.querySelectorAll('#chart-series rect.bar').length > 0")
        assert await page.inner_text(".merchant") == name
        assert await page.inner_text("#kpi-payments") == "7"
        assert await page.inner_text("#kpi-blocked") == "1"
        assert "VISA •••• 4242" in await page.inner_text("#payments")
        assert "a***@example.com" in await page.inner_text("#payments")
        await _no_card_numbers(page)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # Search by id, then open the detail page from the result.
        await page.fill("#search-q", flagged.id)
        await page.click("#search button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelectorAll('#payments tbody tr').length === 1")
        await page.click(f"#payments a:has-text('{flagged.id}')")
        await page.wait_for_url(f"**/dashboard/payments/{flagged.id}")
        attempts = page.locator("#attempts tbody tr")
        await attempts.first.wait_for(timeout=15_000)

        attempts_text = await page.inner_text("#attempts")
        assert flagged.connector in attempts_text
        assert flagged.connector_payment_id in attempts_text
        assert "SUCCEEDED" in attempts_text
        reasons_text = await page.inner_text("#fraud-reasons")
        assert "UNUSUAL_LOCATION" in reasons_text
        assert "unusual location" in reasons_text.lower()
        assert "REVIEW" in await page.inner_text("#fraud-head")
        assert flagged.connector in await page.inner_text("#routing")
        audit_text = await page.inner_text("#audit")
        assert "payment.created" in audit_text and "payment.succeeded" in audit_text
        summary_text = await page.inner_text("#summary")
        phone = flagged.customer.phone
        assert f"+91 ******{phone[-4:]}" in summary_text and phone[3:] not in summary_text
        deliveries = await page.inner_text("#deliveries-note") \
            if await page.is_visible("#deliveries-note") else await page.inner_text("#deliveries")
        assert deliveries.strip()
        await _no_card_numbers(page)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-payment.png"), full_page=True)

        # Auto-refresh keeps fetching: the "updated" stamp changes within two periods.
        first = await page.inner_text("#updated")
        await page.wait_for_function(
            f"() => document.getElementById('updated').textContent !== {json.dumps(first)}",
            timeout=15_000)
    finally:
        await context.close()
    assert not errors, errors
