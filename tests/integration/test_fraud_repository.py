"""Fraud repository against real PostgreSQL: blocklist, settings versions, history facts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from server.adapters.postgres import fraud_repository as repo
from server.domain.fraud import (
    BlocklistKind,
    FraudInput,
    FraudSettings,
    ReviewAction,
    instrument_of,
    normalize_input,
)
from server.domain.money import Money
from server.errors import IllegalTransition, NotFound, ValidationError
from tests.integration.fraud_support import (
    add_payment,
    connect,
    new_merchant,
    private_schema,
    servers,
)

pytestmark = pytest.mark.integration
Conn = psycopg.AsyncConnection[Any]
HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
async def database(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    url = servers(request).postgres_url
    async with private_schema(url) as schema:
        yield url, schema


@pytest.fixture
async def conn(database: tuple[str, str]) -> AsyncIterator[Conn]:
    connection = await connect(*database)
    yield connection
    await connection.close()


@pytest.fixture
async def merchant(conn: Conn) -> str:
    return await new_merchant(conn)


def _inp(**fields: Any) -> FraudInput:
    return FraudInput(Money(10_000), **fields)


# --- blocklist ------------------------------------------------------------------------------


async def test_vpa_entry_is_stored_normalised_and_matches_any_case(conn: Conn,
                                                                   merchant: str) -> None:
    entry = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, " Fraud@YBL ",
                                           reason="chargeback", source="api:key_1")
    assert (entry.value, entry.reason, entry.source) == ("fraud@ybl", "chargeback", "api:key_1")
    assert entry.id.startswith("fbl_") and entry.expires_at is None
    [hit] = await repo.find_blocklist_hits(conn, merchant, _inp(vpa="FRAUD@ybl"))
    assert (hit.kind, hit.value, hit.entry_id) == (BlocklistKind.VPA, "fraud@ybl", entry.id)


async def test_every_identifier_kind_matches(conn: Conn, merchant: str) -> None:
    for kind, value in ((BlocklistKind.EMAIL, "Bad@Example.com"),
                        (BlocklistKind.PHONE, "98765 43210"),
                        (BlocklistKind.CARD_TOKEN, "tok_stolen_123456"),
                        (BlocklistKind.CARD_BIN, "411111"),
                        (BlocklistKind.CUSTOMER_ID, "cust_bad")):
        await repo.add_blocklist_entry(conn, merchant, kind, value)
    hits = await repo.find_blocklist_hits(conn, merchant, _inp(
        email="bad@example.com", phone="+919876543210", card_token="tok_stolen_123456",
        card_bin="41111122", customer_id="cust_bad"))
    assert sorted(h.kind for h in hits) == sorted([
        BlocklistKind.EMAIL, BlocklistKind.PHONE, BlocklistKind.CARD_TOKEN,
        BlocklistKind.CARD_BIN, BlocklistKind.CUSTOMER_ID])


async def test_ip_ranges_match_by_containment(conn: Conn, merchant: str) -> None:
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "203.0.113.9/24")
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "2409:4040::/32")
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "198.51.100.7")
    assert [h.value for h in await repo.find_blocklist_hits(
        conn, merchant, _inp(ip="203.0.113.250"))] == ["203.0.113.0/24"]
    assert [h.value for h in await repo.find_blocklist_hits(
        conn, merchant, _inp(ip="2409:4040:abcd::1"))] == ["2409:4040::/32"]
    assert [h.value for h in await repo.find_blocklist_hits(
        conn, merchant, _inp(ip="198.51.100.7"))] == ["198.51.100.7"]
    for outside in ("203.0.114.1", "198.51.100.8", "2409:4041::1", "10.0.0.1"):
        assert await repo.find_blocklist_hits(conn, merchant, _inp(ip=outside)) == []


async def test_a_payment_with_no_identifiers_has_no_hits(conn: Conn, merchant: str) -> None:
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "0.0.0.0/0")
    assert await repo.find_blocklist_hits(conn, merchant, _inp()) == []
    assert await repo.find_blocklist_hits(conn, merchant, _inp(ip="not-an-ip")) == []


async def test_entries_are_per_merchant(conn: Conn, merchant: str) -> None:
    other = await new_merchant(conn)
    entry = await repo.add_blocklist_entry(conn, other, BlocklistKind.VPA, "x@ybl")
    assert await repo.find_blocklist_hits(conn, merchant, _inp(vpa="x@ybl")) == []
    assert (await repo.list_blocklist_entries(conn, merchant)).entries == ()
    with pytest.raises(NotFound):
        await repo.remove_blocklist_entry(conn, merchant, entry.id)


async def test_an_entry_stops_matching_when_it_expires(conn: Conn, merchant: str) -> None:
    entry = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.EMAIL, "t@example.com",
                                           ttl=timedelta(milliseconds=300))
    assert entry.expires_at is not None
    assert await repo.find_blocklist_hits(conn, merchant, _inp(email="t@example.com"))
    await asyncio.sleep(0.4)
    assert await repo.find_blocklist_hits(conn, merchant, _inp(email="t@example.com")) == []
    assert (await repo.list_blocklist_entries(conn, merchant)).entries == ()


async def test_re_adding_an_expired_value_creates_a_new_entry(conn: Conn, merchant: str) -> None:
    old = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "again@ybl",
                                         ttl=timedelta(milliseconds=200))
    await asyncio.sleep(0.3)
    new = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "again@ybl")
    assert new.id != old.id
    everything = await repo.list_blocklist_entries(conn, merchant, include_inactive=True)
    retired = {e.id: e for e in everything.entries}[old.id]
    assert retired.removed_at is not None


async def test_re_adding_a_live_value_refreshes_it(conn: Conn, merchant: str) -> None:
    first = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "same@ybl",
                                           reason="first", ttl=HOUR)
    second = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "SAME@ybl",
                                            reason="second")
    assert second.id == first.id
    assert (second.reason, second.expires_at) == ("second", None)


async def test_a_removed_entry_stops_matching_and_removal_is_idempotent(conn: Conn,
                                                                        merchant: str) -> None:
    entry = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.PHONE, "9876543210")
    removed = await repo.remove_blocklist_entry(conn, merchant, entry.id)
    assert removed.removed_at is not None
    assert await repo.find_blocklist_hits(conn, merchant, _inp(phone="9876543210")) == []
    again = await repo.remove_blocklist_entry(conn, merchant, entry.id)
    assert again.removed_at == removed.removed_at
    with pytest.raises(NotFound):
        await repo.remove_blocklist_entry(conn, merchant, "fbl_missing")


async def test_the_value_can_be_blocklisted_again_after_removal(conn: Conn,
                                                                merchant: str) -> None:
    entry = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "back@ybl")
    await repo.remove_blocklist_entry(conn, merchant, entry.id)
    again = await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "back@ybl")
    assert again.id != entry.id
    assert await repo.find_blocklist_hits(conn, merchant, _inp(vpa="back@ybl"))


@pytest.mark.parametrize(("kind", "value", "field"), [
    (BlocklistKind.IP, "999.1.1.1", "value"),
    (BlocklistKind.CARD_BIN, "4111111111111111", "value"),
])
async def test_invalid_values_are_refused_before_storage(conn: Conn, merchant: str,
                                                         kind: BlocklistKind, value: str,
                                                         field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await repo.add_blocklist_entry(conn, merchant, kind, value)
    assert caught.value.field == field


async def test_a_non_positive_ttl_is_refused(conn: Conn, merchant: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "a@ybl",
                                       ttl=timedelta(0))
    assert caught.value.field == "ttl_seconds"


async def test_listing_pages_newest_first_and_filters_by_kind(conn: Conn,
                                                              merchant: str) -> None:
    added = [await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, f"p{i}@ybl")
             for i in range(5)]
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.EMAIL, "e@example.com")
    seen: list[str] = []
    token = ""
    while True:
        page = await repo.list_blocklist_entries(conn, merchant, kind=BlocklistKind.VPA,
                                                 page_size=2, page_token=token)
        seen += [e.id for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == [e.id for e in reversed(added)]
    everything = await repo.list_blocklist_entries(conn, merchant)
    assert len(everything.entries) == 6


async def test_a_forged_page_token_is_refused(conn: Conn, merchant: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await repo.list_blocklist_entries(conn, merchant, page_token="not-a-token")
    assert caught.value.field == "page_token"


# --- settings -------------------------------------------------------------------------------


async def test_settings_default_to_version_zero(conn: Conn, merchant: str) -> None:
    stored = await repo.get_settings(conn, merchant)
    assert (stored.version, stored.settings) == (0, FraudSettings())


async def test_each_save_is_a_new_version_and_history_is_kept(conn: Conn,
                                                              merchant: str) -> None:
    v1 = await repo.save_settings(conn, merchant, FraudSettings(review_score=40),
                                  expected_version=0, updated_by="api:key_1")
    v2 = await repo.save_settings(conn, merchant,
                                  FraudSettings(review_action=ReviewAction.HOLD),
                                  expected_version=1, updated_by="api:key_2")
    assert (v1.version, v2.version) == (1, 2)
    current = await repo.get_settings(conn, merchant)
    assert current.version == 2
    assert current.settings.review_action is ReviewAction.HOLD
    history = await repo.settings_history(conn, merchant)
    assert [(h.version, h.updated_by) for h in history] == [(2, "api:key_2"), (1, "api:key_1")]
    assert history[1].settings.review_score == 40


async def test_a_stale_expected_version_is_refused(conn: Conn, merchant: str) -> None:
    await repo.save_settings(conn, merchant, FraudSettings(), expected_version=0)
    with pytest.raises(IllegalTransition, match="version 1"):
        await repo.save_settings(conn, merchant, FraudSettings(block_score=90),
                                 expected_version=0)
    assert (await repo.get_settings(conn, merchant)).settings.block_score == 80


async def test_concurrent_saves_at_the_same_version_let_exactly_one_win(
        database: tuple[str, str], conn: Conn, merchant: str) -> None:
    writers = [await connect(*database) for _ in range(5)]
    try:
        outcomes = await asyncio.gather(*(
            repo.save_settings(w, merchant, FraudSettings(review_score=10 + i),
                               expected_version=0)
            for i, w in enumerate(writers)), return_exceptions=True)
    finally:
        for w in writers:
            await w.close()
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) == 1
    assert all(isinstance(o, IllegalTransition) for o in outcomes if isinstance(o, BaseException))
    assert (await repo.get_settings(conn, merchant)).version == 1


async def test_a_version_mismatch_leaves_the_callers_transaction_usable(
        database: tuple[str, str], merchant: str) -> None:
    caller = await connect(*database, autocommit=False)
    try:
        async with caller.transaction():
            await repo.save_settings(caller, merchant, FraudSettings(), expected_version=0)
            with pytest.raises(IllegalTransition):
                await repo.save_settings(caller, merchant, FraudSettings(), expected_version=5)
            assert (await repo.get_settings(caller, merchant)).version == 1
    finally:
        await caller.close()


async def test_invalid_settings_are_refused_naming_the_field(conn: Conn, merchant: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await repo.save_settings(conn, merchant, FraudSettings(review_score=90),
                                 expected_version=0)
    assert caught.value.field == "settings.review_score"


# --- payment history ------------------------------------------------------------------------


async def test_customer_history_counts_successful_payments_and_their_median(
        conn: Conn, merchant: str) -> None:
    for amount in (10_000, 20_000, 30_000, 1_000_000):
        await add_payment(conn, merchant, customer_id="cust_h", amount_minor=amount)
    await add_payment(conn, merchant, customer_id="cust_h", amount_minor=9_000_000,
                      status="FAILED")
    await add_payment(conn, merchant, customer_id="cust_other", amount_minor=5)
    history = await repo.customer_history(conn, merchant, "cust_h")
    assert (history.successful_payments, history.median_amount_minor) == (4, 20_000)


async def test_customer_history_says_whether_the_instrument_was_used_successfully(
        conn: Conn, merchant: str) -> None:
    await add_payment(conn, merchant, customer_id="cust_k", vpa="Known@YBL")
    await add_payment(conn, merchant, customer_id="cust_k", card_token="tok_failed",
                      status="FAILED")
    history = repo.customer_history
    assert (await history(conn, merchant, "cust_k", instrument="vpa:known@ybl")
            ).knows_instrument is True
    assert (await history(conn, merchant, "cust_k", instrument="card:tok_failed")
            ).knows_instrument is False
    assert (await history(conn, merchant, "cust_k")).knows_instrument is None


async def test_a_new_customer_has_no_history(conn: Conn, merchant: str) -> None:
    history = await repo.customer_history(conn, merchant, "cust_new")
    assert (history.successful_payments, history.median_amount_minor) == (0, None)


async def test_distinct_instruments_exclude_the_current_one_and_old_payments(
        conn: Conn, merchant: str) -> None:
    for vpa in ("a@ybl", "A@YBL", "b@ybl"):
        await add_payment(conn, merchant, customer_id="cust_i", ip="49.36.1.1", vpa=vpa)
    await add_payment(conn, merchant, customer_id="cust_i", ip="49.36.1.1", card_token="tok_1",
                      status="FAILED")
    await add_payment(conn, merchant, customer_id="cust_i", vpa="old@ybl", age=DAY * 2)
    await add_payment(conn, merchant, customer_id="cust_i")  # intent flow: no instrument
    assert await repo.distinct_instruments(conn, merchant, since=DAY, customer_id="cust_i",
                                           exclude="vpa:a@ybl") == 2
    assert await repo.distinct_instruments(conn, merchant, since=DAY, customer_id="cust_i") == 3
    assert await repo.distinct_instruments(conn, merchant, since=DAY, ip="49.36.1.1",
                                           exclude="card:tok_1") == 2


async def test_recent_failures_share_customer_ip_or_instrument(conn: Conn,
                                                               merchant: str) -> None:
    await add_payment(conn, merchant, status="FAILED", customer_id="cust_f")
    await add_payment(conn, merchant, status="FAILED", ip="203.0.113.5")
    await add_payment(conn, merchant, status="FAILED", card_token="tok_f")
    await add_payment(conn, merchant, status="FAILED", customer_id="cust_f", age=HOUR * 2)
    await add_payment(conn, merchant, status="SUCCEEDED", customer_id="cust_f")
    await add_payment(conn, merchant, status="FAILED", customer_id="someone_else")
    inp = _inp(customer_id="cust_f", ip="203.0.113.5", card_token="tok_f")
    assert await repo.recent_failures(conn, merchant, inp, since=HOUR) == 3
    assert await repo.recent_failures(conn, merchant, _inp(), since=HOUR) == 0


@pytest.mark.parametrize("identifiers", [
    {"customer_id": "cust_all", "ip": "49.36.9.9", "vpa": "a@ybl"},
    {"customer_id": "cust_all", "ip": "49.36.9.9", "card_token": "tok_9"},
    {"ip": "49.36.9.9"},
    {"customer_id": "cust_all"},
    {},
])
async def test_all_facts_in_one_statement_agree_with_the_separate_lookups(
        conn: Conn, merchant: str, identifiers: dict[str, str]) -> None:
    for vpa, status in (("a@ybl", "SUCCEEDED"), ("b@ybl", "SUCCEEDED"), ("c@ybl", "FAILED")):
        await add_payment(conn, merchant, customer_id="cust_all", ip="49.36.9.9", vpa=vpa,
                          status=status, amount_minor=12_345)
    await add_payment(conn, merchant, customer_id="cust_all", card_token="tok_9",
                      amount_minor=99_000)
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.IP, "49.36.0.0/16")
    await repo.add_blocklist_entry(conn, merchant, BlocklistKind.VPA, "a@ybl")
    await repo.save_settings(conn, merchant, FraudSettings(review_score=40),
                             expected_version=0)
    inp = _inp(**identifiers)
    settings, facts = await repo.all_facts(conn, merchant, inp, instrument_since=DAY,
                                           failure_since=HOUR)
    instrument = instrument_of(normalize_input(inp))
    assert settings == await repo.get_settings(conn, merchant)
    assert list(facts.blocklist_hits) == await repo.find_blocklist_hits(conn, merchant, inp)
    customer = identifiers.get("customer_id", "")
    ip = identifiers.get("ip", "")
    assert facts.customer_history == (await repo.customer_history(
        conn, merchant, customer, instrument=instrument) if customer else None)
    assert facts.other_instruments_for_customer == (await repo.distinct_instruments(
        conn, merchant, since=DAY, customer_id=customer, exclude=instrument) if customer else 0)
    assert facts.other_instruments_for_ip == (await repo.distinct_instruments(
        conn, merchant, since=DAY, ip=ip, exclude=instrument) if ip else 0)
    assert facts.recent_failures == await repo.recent_failures(conn, merchant, inp, since=HOUR)
