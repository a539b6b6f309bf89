"""Routing: policy rules, success-rate scoring, circuit breakers, capacity, retries.

Pure and synchronous (standard library plus `server.domain.money` and the shared error tree);
the Redis adapter (`server.adapters.redis.routing_store`) and the in-memory store here keep the
state these functions read.
"""

from server.domain.routing.capacity import CapacityLimit, CapacityState
from server.domain.routing.context import RoutableAccount, RoutingContext
from server.domain.routing.decide import Candidate, RoutingDecision, decide
from server.domain.routing.health import (
    CircuitState,
    HealthConfig,
    HealthState,
    Outcome,
    Override,
)
from server.domain.routing.policy import RoutingPolicy, parse_policy
from server.domain.routing.retry import (
    ErrorCategory,
    RetryAction,
    RetryDecision,
    RetryPolicy,
    decide_retry,
)
from server.domain.routing.success_rate import ScoringConfig, WindowStats

__all__ = [
    "Candidate",
    "CapacityLimit",
    "CapacityState",
    "CircuitState",
    "ErrorCategory",
    "HealthConfig",
    "HealthState",
    "Outcome",
    "Override",
    "RetryAction",
    "RetryDecision",
    "RetryPolicy",
    "RoutableAccount",
    "RoutingContext",
    "RoutingDecision",
    "RoutingPolicy",
    "ScoringConfig",
    "WindowStats",
    "decide",
    "decide_retry",
    "parse_policy",
]
