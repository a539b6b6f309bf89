"""FraudScreening wired to real PostgreSQL, Redis and the offline geo database."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from server.adapters.geoip import IpCountryLookup
from server.adapters.postgres import fraud_repository as repo
from server.adapters.postgres.fraud_repository import PostgresFraudRepository
from server.adapters.redis.velocity import RedisVelocityStore
from server.domain.fraud import (
    BlocklistKind,
    Decision,
    FraudInput,
    FraudSettings,
    VelocityFailMode,
)
from server.domain.money import Money
from server.service_layer.fraud_metrics import FraudMetrics
from server.service_layer.fraud_screening import FraudScreening
from tests.integration.fraud_support import (
    FraudServers,
    add_payment,
    connect,
    new_merchant,
    private_schema,
    servers,
)

pytestmark = pytest.mark.integration
Conn = psycopg.AsyncConnection[Any]
Screening = FraudScreening[Conn]


@pytest.fixture(scope="module")
def urls(request: pytest.FixtureRequest) -> FraudServers:
    return servers(request)


@pytest.fixture(scope="module")
async def database(urls: FraudServers) -> AsyncIterator[tuple[str, str]]:
    async with private_schema(urls.postgres_url) as schema:
        yield urls.postgres_url, schema


@pytest.fixture
async def conn(database: tuple[str, str]) -> AsyncIterator[Conn]:
    connection = await connect(*database)
    yield connection
    await connection.close()


@pytest.fixture
async def velocity(urls: FraudServers) -> AsyncIterator[RedisVelocityStore]:
    store = RedisVelocityStore.from_url(urls.redis_url,
                                        key_prefix=f"test:{secrets.token_hex(6)}:")
    yield store
    await store.aclose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> FraudMetrics:
    return FraudMetrics(registry)


@pytest.fixture
def screening(velocity: RedisVelocityStore, metrics: FraudMetrics) -> Screening:
    return FraudScreening(velocity, IpCountryLookup(), PostgresFraudRepository(),
                          metrics=metrics)


def _payment(amount_minor: int = 150_000, **fields: str) -> FraudInput:
    base = {"method_type": "upi", "vpa": f"u{secrets.token_hex(4)}@okaxis",
            "customer_id": f"cust_{secrets.token_hex(4)}", "ip": "49.36.10.20",
            "country": "IN"}
    return FraudInput(Money(amount_minor), **(base | fields))


async def test_an_ordinary_indian_payment_is_allowed(screening: Screening, conn: Conn) -> None:
    merchant = await new_merchant(conn)
    result = await screening.screen(conn, merchant, _payment(), record=True)
    assert (result.decision, result.reasons) == (Decision.ALLOW, ())


async def test_the_seed_high_amount_rule_blocks_with_its_message(screening: Screening,
                                                                 conn: Conn) -> None:
    merchant = await new_merchant(conn)
    result = await screening.screen(conn, merchant, _payment(10_000_001), record=True)
    assert result.decision is Decision.BLOCK
    assert result.primary_reason is not None
    assert result.primary_reason.message == "Fraud detected: High amount"


async def test_a_foreign_ip_is_an_unusual_location(screening: Screening, conn: Conn) -> None:
    merchant = await new_merchant(conn)
    result = await screening.screen(conn, merchant, _payment(ip="8.8.8.8"), record=False)
    assert [r.code for r in result.reasons] == ["UNUSUAL_LOCATION", "GEO_MISMATCH"]
    assert "unusual location" in result.reasons[0].message
    assert result.decision is Decision.REVIEW


async def test_the_eleventh_payment_from_one_ip_in_a_minute_trips_ip_velocity(
        screening: Screening, conn: Conn) -> None:
    merchant = await new_merchant(conn)
    ip = f"49.36.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    decisions = []
    for i in range(11):
        result = await screening.screen(conn, merchant, _payment(ip=ip), record=True,
                                        event_id=f"pay_{i}")
        decisions.append([r.code for r in result.reasons])
    assert decisions[:10] == [[]] * 10
    assert decisions[10] == ["IP_VELOCITY"]


async def test_a_blocklisted_range_blocks(screening: Screening, conn: Conn) -> None:
    merchant = await new_merchant(conn)
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "49.36.0.0/16")
    result = await screening.screen(conn, merchant, _payment(), record=False)
    assert result.decision is Decision.BLOCK
    assert result.reasons[0].message == "Blocklisted IP: 49.36.10.20 (in 49.36.0.0/16)"


async def test_the_merchants_saved_settings_are_applied(screening: Screening,
                                                        conn: Conn) -> None:
    merchant = await new_merchant(conn)
    await repo.save_settings(conn, merchant, FraudSettings(allowed_countries=("IN", "US")),
                             expected_version=0)
    result = await screening.screen(conn, merchant, _payment(ip="8.8.8.8", country="US"),
                                    record=False)
    assert result.decision is Decision.ALLOW


async def test_card_testing_history_blocks(screening: Screening, conn: Conn) -> None:
    merchant = await new_merchant(conn)
    ip = "49.37.1.1"
    for i in range(6):
        await add_payment(conn, merchant, ip=ip, card_token=f"tok_test_{i}", status="FAILED",
                          amount_minor=100)
    result = await screening.screen(conn, merchant, _payment(100, ip=ip, vpa="",
                                                             card_token="tok_test_new"),
                                    record=False)
    assert {"MANY_INSTRUMENTS_IP", "FAILED_ATTEMPTS"} <= {r.code for r in result.reasons}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_degrades_per_the_merchants_fail_mode(
        conn: Conn, metrics: FraudMetrics, registry: CollectorRegistry) -> None:
    dead = RedisVelocityStore.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    screening = FraudScreening(dead, IpCountryLookup(), PostgresFraudRepository(),
                               metrics=metrics)
    try:
        open_merchant = await new_merchant(conn)
        opened = await screening.screen(conn, open_merchant, _payment(), record=True)
        assert opened.decision is Decision.ALLOW
        assert opened.unavailable_signals == ("velocity: skipped (fail-open)",)

        closed_merchant = await new_merchant(conn)
        await repo.save_settings(
            conn, closed_merchant,
            FraudSettings(velocity_fail_mode=VelocityFailMode.CLOSED), expected_version=0)
        closed = await screening.screen(conn, closed_merchant, _payment(), record=True)
        assert closed.decision is Decision.REVIEW
        assert [r.code for r in closed.reasons] == ["VELOCITY_UNAVAILABLE"]
    finally:
        await dead.aclose()
    assert registry.get_sample_value("triveni_fraud_signal_unavailable_total",
                                     {"signal": "velocity"}) == 2
