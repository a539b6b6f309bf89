"""Properties of the engine over arbitrary payments, facts and reasons (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.domain.fraud import (
    BlocklistHit,
    BlocklistKind,
    CustomerHistory,
    Decision,
    FraudContext,
    FraudInput,
    FraudSettings,
    Reason,
    VelocityKind,
    Window,
    WindowStats,
    assess,
    combine,
)
from server.domain.money import Money

scores = st.integers(min_value=-50, max_value=500)
reasons = st.builds(Reason, code=st.sampled_from(["A", "B", "C"]), message=st.text(max_size=5),
                    score=scores, hard_block=st.booleans())


@st.composite
def settings(draw: st.DrawFn) -> FraudSettings:
    review = draw(st.integers(0, 99))
    block = draw(st.integers(review + 1, 100))
    return FraudSettings(review_score=review, block_score=block,
                         block_amount_minor=draw(st.integers(1, 10**9)),
                         ip_velocity_per_minute=draw(st.integers(1, 50)),
                         ip_velocity_per_hour=draw(st.integers(50, 500)))


inputs = st.builds(
    FraudInput,
    amount=st.builds(Money, st.integers(1, 10**10)),
    vpa=st.sampled_from(["", "a@ybl", "B@OKAXIS"]),
    email=st.sampled_from(["", "x@example.com"]),
    phone=st.sampled_from(["", "9876543210", "junk"]),
    customer_id=st.sampled_from(["", "c1"]),
    card_token=st.sampled_from(["", "tok_abcdefghijk"]),
    ip=st.sampled_from(["", "49.36.1.1", "2409:4040::1", "bogus"]),
    country=st.sampled_from(["", "IN", "US", "in"]),
)


def _hit(kind: BlocklistKind) -> BlocklistHit:
    return BlocklistHit(kind, TOKEN if kind is BlocklistKind.CARD_TOKEN else "v")


TOKEN = "tok_1234567890"
window_stats = st.builds(WindowStats, st.integers(0, 1000), st.integers(0, 10**10))
contexts = st.builds(
    FraudContext,
    velocity=st.dictionaries(st.sampled_from(list(VelocityKind)),
                             st.dictionaries(st.sampled_from(list(Window)), window_stats)),
    velocity_includes_current=st.booleans(),
    blocklist_hits=st.lists(st.sampled_from(list(BlocklistKind)).map(_hit),
                            max_size=3).map(tuple),
    ip_country=st.sampled_from([None, "IN", "US"]),
    customer_history=st.one_of(st.none(), st.builds(
        CustomerHistory, st.integers(0, 200), st.one_of(st.none(), st.integers(1, 10**7)))),
    other_instruments_for_customer=st.integers(0, 20),
    other_instruments_for_ip=st.integers(0, 20),
    recent_failures=st.integers(0, 20),
    unavailable=st.frozensets(st.sampled_from(["velocity", "geoip"])),
)


@given(st.lists(reasons, max_size=8), settings())
def test_score_is_always_between_0_and_100(found: list[Reason], rules: FraudSettings) -> None:
    assert 0 <= combine(found, rules).score <= 100


@given(st.lists(reasons, max_size=8), settings(), scores)
def test_adding_a_hard_block_reason_always_blocks(found: list[Reason], rules: FraudSettings,
                                                  score: int) -> None:
    result = combine([*found, Reason("HARD", "hard", score, hard_block=True)], rules)
    assert result.decision is Decision.BLOCK


@given(st.lists(reasons, max_size=8), settings(), st.integers(0, 100))
def test_more_evidence_never_lowers_the_decision(found: list[Reason], rules: FraudSettings,
                                                 extra: int) -> None:
    positive = [r for r in found if r.score >= 0]
    before = combine(positive, rules).decision
    after = combine([*positive, Reason("MORE", "more", extra)], rules).decision
    assert after.severity >= before.severity


@given(inputs, contexts, settings())
def test_assessments_are_consistent_with_their_reasons(inp: FraudInput, ctx: FraudContext,
                                                       rules: FraudSettings) -> None:
    result = assess(inp, ctx, rules)
    assert 0 <= result.score <= 100
    assert result.score == max(0, min(100, sum(r.score for r in result.reasons)))
    if any(r.hard_block for r in result.reasons) or result.score >= rules.block_score:
        assert result.decision is Decision.BLOCK
    elif result.score < rules.review_score and "velocity" not in ctx.unavailable:
        assert result.decision is Decision.ALLOW
    assert all(TOKEN not in r.message for r in result.reasons)  # card tokens are masked


@given(settings())
def test_settings_survive_a_round_trip_through_json_form(rules: FraudSettings) -> None:
    assert FraudSettings.from_dict(rules.to_dict()) == rules
