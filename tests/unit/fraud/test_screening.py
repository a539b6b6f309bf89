"""FraudScreening with in-memory fakes: fact gathering, degradation, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from server.domain.fraud import (
    BlocklistHit,
    BlocklistKind,
    CustomerHistory,
    Decision,
    FraudInput,
    FraudSettings,
    ReviewAction,
    StoredFraudSettings,
    VelocityFailMode,
    VelocityKey,
    VelocityReadings,
    WindowStats,
)
from server.errors import DependencyUnavailable
from server.service_layer.fraud_metrics import FraudMetrics
from server.service_layer.fraud_screening import FraudScreening
from tests.unit.fraud.helpers import codes, payment


class FakeVelocity:
    """Counts in memory; `down` makes every call fail like a dead Redis."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.counts: dict[str, int] = {}
        self.recorded: list[str] = []

    async def read(self, keys: Sequence[VelocityKey]) -> VelocityReadings:
        if self.down:
            raise DependencyUnavailable("redis", "connection refused")
        return {k: {w: WindowStats(self.counts.get(k.digest, 0), 0) for w in k.windows}
                for k in keys}

    async def record_and_read(self, keys: Sequence[VelocityKey], amount_minor: int,
                              event_id: str) -> VelocityReadings:
        if self.down:
            raise DependencyUnavailable("redis", "connection refused")
        self.recorded.append(event_id)
        for key in keys:
            self.counts[key.digest] = self.counts.get(key.digest, 0) + 1
        return await self.read(keys)


class FakeGeo:
    def __init__(self, country: str | None = "IN", *, broken: bool = False) -> None:
        self.country, self.broken = country, broken

    def country_of(self, ip: str) -> str | None:
        if self.broken:
            raise RuntimeError("geo database corrupt")
        return self.country


@dataclass
class FakeFacts:
    settings: FraudSettings = field(default_factory=FraudSettings)
    hits: list[BlocklistHit] = field(default_factory=list)
    history: CustomerHistory = field(default_factory=lambda: CustomerHistory(5, 50_000))
    failures: int = 0
    calls: list[str] = field(default_factory=list)

    async def get_settings(self, conn: str, merchant_id: str) -> StoredFraudSettings:
        self.calls.append(f"settings:{conn}:{merchant_id}")
        return StoredFraudSettings(merchant_id, 1, self.settings)

    async def find_blocklist_hits(self, conn: str, merchant_id: str, inp: FraudInput
                                  ) -> list[BlocklistHit]:
        self.calls.append(f"blocklist:{inp.vpa}")
        return self.hits

    async def customer_history(self, conn: str, merchant_id: str, customer_id: str, *,
                               instrument: str = "") -> CustomerHistory:
        self.calls.append(f"history:{customer_id}")
        return self.history

    async def distinct_instruments(self, conn: str, merchant_id: str, *, since: timedelta,
                                   customer_id: str = "", ip: str = "", exclude: str = ""
                                   ) -> int:
        self.calls.append(f"instruments:{customer_id or ip}:{exclude}")
        return 0

    async def recent_failures(self, conn: str, merchant_id: str, inp: FraudInput, *,
                              since: timedelta) -> int:
        return self.failures


def _screening(velocity: FakeVelocity | None = None, geo: FakeGeo | None = None,
               facts: FakeFacts | None = None, metrics: FraudMetrics | None = None
               ) -> tuple[FraudScreening[str], FakeFacts]:
    facts = facts or FakeFacts()
    return FraudScreening(velocity or FakeVelocity(), geo or FakeGeo(), facts,
                          metrics=metrics), facts


async def test_a_quiet_payment_is_allowed_after_gathering_every_fact() -> None:
    screening, facts = _screening()
    result = await screening.screen("conn", "mer_1", payment(vpa="Ravi@OKAXIS"), record=False)
    assert result.decision is Decision.ALLOW
    assert facts.calls == ["settings:conn:mer_1", "blocklist:ravi@okaxis", "history:cust_1",
                           "instruments:cust_1:vpa:ravi@okaxis",
                           "instruments:49.36.10.20:vpa:ravi@okaxis"]


async def test_the_merchant_id_argument_wins_over_the_inputs() -> None:
    velocity = FakeVelocity()
    screening, _ = _screening(velocity)
    await screening.screen("conn", "mer_real", payment(merchant_id="mer_spoofed"), record=True,
                           event_id="pay_1")
    assert velocity.recorded == ["pay_1"]


async def test_recording_counts_the_payment_in_the_velocity_windows() -> None:
    screening, _ = _screening(facts=FakeFacts(history=CustomerHistory(0)))
    decisions = [(await screening.screen("c", "mer_1", payment(100), record=True)).decision
                 for _ in range(7)]
    assert decisions[:5] == [Decision.ALLOW] * 5
    assert decisions[5] is not Decision.ALLOW  # sixth within a minute: identifier velocity


async def test_a_dry_run_does_not_count() -> None:
    velocity = FakeVelocity()
    screening, _ = _screening(velocity)
    for _ in range(3):
        await screening.screen("c", "mer_1", payment(), record=False)
    assert velocity.counts == {}


async def test_blocklist_hit_blocks() -> None:
    facts = FakeFacts(hits=[BlocklistHit(BlocklistKind.VPA, "ravi@okaxis")])
    screening, _ = _screening(facts=facts)
    result = await screening.screen("c", "mer_1", payment(), record=False)
    assert result.decision is Decision.BLOCK
    assert result.reasons[0].message == "Blocklisted VPA: ravi@okaxis"


async def test_redis_down_fail_open_allows_and_lists_velocity_unavailable() -> None:
    screening, _ = _screening(FakeVelocity(down=True))
    result = await screening.screen("c", "mer_1", payment(), record=True)
    assert result.decision is Decision.ALLOW
    assert result.unavailable_signals == ("velocity: skipped (fail-open)",)


async def test_redis_down_fail_closed_reviews() -> None:
    closed = FakeFacts(settings=FraudSettings(velocity_fail_mode=VelocityFailMode.CLOSED))
    screening, _ = _screening(FakeVelocity(down=True), facts=closed)
    result = await screening.screen("c", "mer_1", payment(), record=True)
    assert result.decision is Decision.REVIEW
    assert codes(result.reasons) == ["VELOCITY_UNAVAILABLE"]


async def test_a_broken_geo_lookup_skips_location_signals() -> None:
    screening, _ = _screening(geo=FakeGeo(broken=True))
    result = await screening.screen("c", "mer_1", payment(), record=False)
    assert result.decision is Decision.ALLOW
    assert result.unavailable_signals == ("geoip: skipped",)


async def test_foreign_ip_is_flagged_through_the_geo_lookup() -> None:
    screening, _ = _screening(geo=FakeGeo("US"))
    result = await screening.screen("c", "mer_1", payment(country="IN"), record=False)
    assert codes(result.reasons) == ["UNUSUAL_LOCATION", "GEO_MISMATCH"]
    assert result.decision is Decision.REVIEW


async def test_given_settings_are_used_without_reading_the_merchants() -> None:
    screening, facts = _screening()
    result = await screening.screen("c", "mer_1", payment(10_000), record=False,
                                    settings=FraudSettings(block_amount_minor=5_000))
    assert result.decision is Decision.BLOCK
    assert not any(call.startswith("settings") for call in facts.calls)


async def test_a_postgres_failure_propagates_instead_of_screening_without_the_blocklist() -> None:
    class DownFacts(FakeFacts):
        async def find_blocklist_hits(self, conn: str, merchant_id: str, inp: FraudInput
                                      ) -> list[BlocklistHit]:
            raise DependencyUnavailable("postgres", "gone")

    screening, _ = _screening(facts=DownFacts())
    with pytest.raises(DependencyUnavailable):
        await screening.screen("c", "mer_1", payment(), record=True)


async def test_hold_applies_only_to_review_with_the_hold_action() -> None:
    hold = FakeFacts(settings=FraudSettings(review_action=ReviewAction.HOLD))
    screening, _ = _screening(geo=FakeGeo("US"), facts=hold)
    detailed = await screening.screen_detailed("c", "mer_1", payment(), record=False)
    assert detailed.assessment.decision is Decision.REVIEW
    assert detailed.hold
    flag, _ = _screening(geo=FakeGeo("US"))
    assert not (await flag.screen_detailed("c", "mer_1", payment(), record=False)).hold


async def test_metrics_count_decisions_reasons_unavailable_signals_and_time() -> None:
    registry = CollectorRegistry()
    screening, _ = _screening(FakeVelocity(down=True), FakeGeo("US"),
                              metrics=FraudMetrics(registry))
    await screening.screen("c", "mer_1", payment(), record=False)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("triveni_fraud_decisions_total", decision="REVIEW") == 1
    assert value("triveni_fraud_reasons_total", code="UNUSUAL_LOCATION") == 1
    assert value("triveni_fraud_signal_unavailable_total", signal="velocity") == 1
    assert value("triveni_fraud_screen_duration_seconds_count") == 1
