"""Smart-retry decisions: unknown outcomes sync first, budgets, backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.routing.retry import (
    ErrorCategory,
    RetryAction,
    RetryPolicy,
    decide_retry,
    parse_retry,
)
from server.errors import ValidationError


@pytest.mark.parametrize("attempts", [1, 2, 3, 10])
def test_unknown_outcome_always_syncs_first_never_a_second_charge(attempts: int) -> None:
    decision = decide_retry(ErrorCategory.UNKNOWN_OUTCOME, attempts)
    assert decision.action is RetryAction.SYNC_FIRST
    assert "no second charge" in decision.reason


def test_customer_side_failures_are_not_retried() -> None:
    assert decide_retry(ErrorCategory.DO_NOT_RETRY, 1).action is RetryAction.DO_NOT_RETRY


def test_connector_failure_moves_to_another_connector() -> None:
    decision = decide_retry(ErrorCategory.RETRY_OTHER, 1)
    assert decision.action is RetryAction.RETRY_OTHER_CONNECTOR
    assert decision.delay_seconds == 0


def test_connector_failure_with_no_other_connector_retries_the_same_later() -> None:
    decision = decide_retry(ErrorCategory.RETRY_OTHER, 1, other_connectors_available=False)
    assert decision.action is RetryAction.RETRY_SAME_LATER
    assert decision.delay_seconds == 2.0


def test_retry_same_later_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_seconds=1.0, max_delay_seconds=5.0)
    delays = [
        decide_retry(ErrorCategory.RETRY_SAME_LATER, n, policy=policy).delay_seconds
        for n in range(1, 6)
    ]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_from_the_psp_is_respected_within_the_cap() -> None:
    decision = decide_retry(ErrorCategory.RETRY_SAME_LATER, 1, retry_after_seconds=7.0)
    assert decision.delay_seconds == 7.0
    capped = decide_retry(ErrorCategory.RETRY_SAME_LATER, 1, retry_after_seconds=600.0)
    assert capped.delay_seconds == 60.0


def test_attempt_budget_is_per_merchant_and_defaults_to_three() -> None:
    assert decide_retry(ErrorCategory.RETRY_OTHER, 2).action is RetryAction.RETRY_OTHER_CONNECTOR
    exhausted = decide_retry(ErrorCategory.RETRY_OTHER, 3)
    assert exhausted.action is RetryAction.DO_NOT_RETRY
    assert exhausted.reason == "attempt budget exhausted (3/3)"
    generous = RetryPolicy(max_attempts=5)
    assert decide_retry(ErrorCategory.RETRY_OTHER, 3, policy=generous).action is (
        RetryAction.RETRY_OTHER_CONNECTOR
    )


def test_retry_policy_parsing_names_the_field() -> None:
    assert parse_retry({"max_attempts": 5}).max_attempts == 5
    with pytest.raises(ValidationError) as excinfo:
        parse_retry({"base_delay_seconds": 10, "max_delay_seconds": 1})
    assert excinfo.value.field == "retry.max_delay_seconds"


@given(
    st.sampled_from(list(ErrorCategory)),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=10),
    st.booleans(),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1_000)),
)
def test_retry_decision_properties(
    category: ErrorCategory, attempts: int, budget: int, others: bool,
    retry_after: float | None,
) -> None:
    policy = RetryPolicy(max_attempts=budget)
    decision = decide_retry(category, attempts, policy=policy,
                            other_connectors_available=others,
                            retry_after_seconds=retry_after)
    if category is ErrorCategory.UNKNOWN_OUTCOME:
        assert decision.action is RetryAction.SYNC_FIRST
    elif attempts >= budget or category is ErrorCategory.DO_NOT_RETRY:
        assert decision.action is RetryAction.DO_NOT_RETRY
    if decision.action is RetryAction.RETRY_OTHER_CONNECTOR:
        assert others
    assert 0 <= decision.delay_seconds <= policy.max_delay_seconds
