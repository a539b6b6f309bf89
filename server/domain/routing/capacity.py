"""Per-account capacity: concurrent in-flight calls and calls per second (PSP TPS commitments).

The snapshot here is advisory (routing skips accounts that look full); the binding check is the
store's atomic acquire at dispatch time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.domain.routing._fields import as_mapping, check_keys, opt_int
from server.errors import ValidationError

__all__ = ["CapacityLimit", "CapacityState", "parse_capacity"]


@dataclass(frozen=True, slots=True)
class CapacityLimit:
    max_in_flight: int | None = None
    max_tps: int | None = None


@dataclass(frozen=True, slots=True)
class CapacityState:
    in_flight: int = 0
    this_second: int = 0
    limit: CapacityLimit = CapacityLimit()

    def exhausted(self) -> str | None:
        """None when there is room, else the note for the routing decision."""
        if self.limit.max_in_flight is not None and self.in_flight >= self.limit.max_in_flight:
            return f"at capacity ({self.in_flight}/{self.limit.max_in_flight} in flight)"
        if self.limit.max_tps is not None and self.this_second >= self.limit.max_tps:
            return f"at capacity ({self.this_second}/{self.limit.max_tps} per second)"
        return None


def parse_capacity(data: Any, path: str = "capacity") -> Mapping[str, CapacityLimit]:
    """{"account": {"max_in_flight": 50, "max_tps": 100}} → limits by account name."""
    if data is None:
        return {}
    section = as_mapping(data, path)
    limits: dict[str, CapacityLimit] = {}
    for name, raw in section.items():
        where = f"{path}.{name}"
        entry = as_mapping(raw, where)
        check_keys(entry, {"max_in_flight", "max_tps"}, where)
        limit = CapacityLimit(
            max_in_flight=opt_int(entry, "max_in_flight", where, None, minimum=1),
            max_tps=opt_int(entry, "max_tps", where, None, minimum=1),
        )
        if limit.max_in_flight is None and limit.max_tps is None:
            raise ValidationError(where, "set max_in_flight, max_tps or both")
        limits[name] = limit
    return limits

