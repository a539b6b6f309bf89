"""Smart-retry decisions after a failed attempt.

The one rule that overrides everything: an attempt whose outcome is unknown (the request may
have reached the PSP) is never followed by another charge attempt until a status sync has
resolved it -- SYNC_FIRST. Only when the sync says "failed, no money moved" does the caller ask
again with the resolved category. Everything else is bounded by `max_attempts` per payment
(a per-merchant setting, default 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.domain.routing._fields import as_mapping, check_keys, opt_float, opt_int
from server.errors import ValidationError

__all__ = [
    "ErrorCategory",
    "RetryAction",
    "RetryDecision",
    "RetryPolicy",
    "decide_retry",
    "parse_retry",
]


class ErrorCategory(StrEnum):
    RETRY_OTHER = "retry_other"  # the connector/acquirer failed; another may succeed
    RETRY_SAME_LATER = "retry_same_later"  # throttled or briefly unavailable; same one, later
    DO_NOT_RETRY = "do_not_retry"  # the customer/instrument/request is the problem
    UNKNOWN_OUTCOME = "unknown_outcome"  # money may have moved: resolve by status sync first


class RetryAction(StrEnum):
    RETRY_OTHER_CONNECTOR = "RETRY_OTHER_CONNECTOR"
    RETRY_SAME_LATER = "RETRY_SAME_LATER"
    DO_NOT_RETRY = "DO_NOT_RETRY"
    SYNC_FIRST = "SYNC_FIRST"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3  # attempts per payment, the first included
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class RetryDecision:
    action: RetryAction
    reason: str
    delay_seconds: float = 0.0


def decide_retry(
    category: ErrorCategory,
    attempts_made: int,
    *,
    policy: RetryPolicy = RetryPolicy(),
    other_connectors_available: bool = True,
    retry_after_seconds: float | None = None,
) -> RetryDecision:
    """What to do after attempt number `attempts_made` failed with `category`."""
    if category is ErrorCategory.UNKNOWN_OUTCOME:
        return RetryDecision(
            RetryAction.SYNC_FIRST,
            "outcome unknown: resolve by status sync before any new attempt (no second charge)",
        )
    if category is ErrorCategory.DO_NOT_RETRY:
        return RetryDecision(RetryAction.DO_NOT_RETRY, "not retryable")
    if attempts_made >= policy.max_attempts:
        return RetryDecision(
            RetryAction.DO_NOT_RETRY,
            f"attempt budget exhausted ({attempts_made}/{policy.max_attempts})",
        )
    if category is ErrorCategory.RETRY_OTHER and other_connectors_available:
        return RetryDecision(RetryAction.RETRY_OTHER_CONNECTOR, "connector-side failure")
    delay = _backoff(attempts_made, policy)
    if retry_after_seconds is not None:
        delay = min(max(delay, retry_after_seconds), policy.max_delay_seconds)
    why = (
        "throttled or briefly unavailable"
        if category is ErrorCategory.RETRY_SAME_LATER
        else "connector-side failure, no other connector left"
    )
    return RetryDecision(RetryAction.RETRY_SAME_LATER, why, delay)


def _backoff(attempts_made: int, policy: RetryPolicy) -> float:
    exponent = max(attempts_made - 1, 0)
    return float(min(policy.base_delay_seconds * (2**exponent), policy.max_delay_seconds))


def parse_retry(data: Any, path: str = "retry") -> RetryPolicy:
    if data is None:
        return RetryPolicy()
    section = as_mapping(data, path)
    check_keys(section, set(RetryPolicy.__dataclass_fields__), path)
    base = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=opt_int(section, "max_attempts", path, base.max_attempts,
                             minimum=1, maximum=10) or base.max_attempts,
        base_delay_seconds=opt_float(section, "base_delay_seconds", path,
                                     base.base_delay_seconds, minimum=0.0),
        max_delay_seconds=opt_float(section, "max_delay_seconds", path,
                                    base.max_delay_seconds, minimum=0.0),
    )
    if policy.max_delay_seconds < policy.base_delay_seconds:
        raise ValidationError(f"{path}.max_delay_seconds", "must be >= base_delay_seconds")
    return policy
