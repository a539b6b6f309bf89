"""One routing decision: which connector account takes this payment, and the failover order.

Pipeline, each step explaining every exclusion in the candidate's note:
  1. eligibility   capabilities (method, currency, amount limits); accounts already tried
  2. rule          the policy's first matching rule, the premium rule, or the default
  3. health        open circuits / forced-down accounts are excluded -- unless every account is,
                   then the least-bad one (circuit open longest) is used and the reason says so
  4. capacity      accounts at their in-flight or per-second cap are skipped
  5. ordering      success-rate scores within each rule group (static priority when the stats
                   are unavailable: `degraded`), half-open probes first within their group
  6. override      the request's preferred_connector goes first when eligible and healthy

`stats`, `health` or `capacity` = None means the store could not be read (Redis down): routing
carries on with static priority / everything assumed healthy / no caps, and says `degraded`.
Half-open accounts are marked in `probes`; the caller must claim the probe slot (the store's
atomic admit) before dispatching to one, and move on to the next fallback if it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.domain.routing.capacity import CapacityState
from server.domain.routing.context import RoutableAccount, RoutingContext
from server.domain.routing.health import Availability, HealthState, Override, availability
from server.domain.routing.policy import Order, RoutingPolicy
from server.domain.routing.success_rate import RandomSource, WindowStats, score_accounts

__all__ = ["Candidate", "RoutingDecision", "decide"]


@dataclass(frozen=True, slots=True)
class Candidate:
    connector: str
    score: float  # higher is better; 0 for excluded or statically ordered accounts
    note: str
    usable: bool  # True when it is the chosen account or one of the fallbacks


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Mirrors triveni.v1.RoutingDecision, plus the failover order and probe marks."""

    algorithm: str
    candidates: tuple[Candidate, ...]
    chosen: str  # "" when no account can take the payment (see reason)
    fallbacks: tuple[str, ...]
    reason: str
    degraded: bool
    probes: frozenset[str] = frozenset()
    explored: bool = False

    @property
    def attempt_order(self) -> tuple[str, ...]:
        return (self.chosen, *self.fallbacks) if self.chosen else ()


def decide(
    ctx: RoutingContext,
    accounts: Sequence[RoutableAccount],
    policy: RoutingPolicy,
    stats: Mapping[str, WindowStats] | None,
    health: Mapping[str, HealthState] | None,
    capacity: Mapping[str, CapacityState] | None,
    *,
    rng: RandomSource,
    now: float,
) -> RoutingDecision:
    """Choose the connector account for `ctx` and order the fallbacks."""
    notes: dict[str, str] = {}
    by_name: dict[str, RoutableAccount] = {}
    for account in accounts:
        by_name.setdefault(account.name, account)
    degraded_parts = [
        part for part, value in (("stats", stats), ("health", health), ("capacity", capacity))
        if value is None
    ]

    # 1. eligibility
    eligible: list[RoutableAccount] = []
    for account in by_name.values():
        if account.name in ctx.already_tried:
            notes[account.name] = "already tried for this payment"
            continue
        reason = account.capabilities.supports(ctx.method, ctx.amount)
        if reason is not None:
            notes[account.name] = reason
            continue
        eligible.append(account)

    # 2. rule
    selection = policy.select(ctx, eligible)
    groups = [list(group) for group in selection.groups]
    in_rule = {name for group in groups for name in group}
    outside = [a.name for a in sorted(eligible, key=lambda a: (a.priority, a.name))
               if a.name not in in_rule]
    for name in outside:
        if selection.exclusive:
            notes[name] = f"not in {selection.algorithm} (exclusive)"
    if outside and not selection.exclusive:
        groups.append(outside)
        for name in outside:
            notes[name] = f"fallback: outside {selection.algorithm}"

    # 3. health
    states = health or {}
    probes: set[str] = set()
    unhealthy: list[str] = []
    healthy_groups: list[list[str]] = []
    for group in groups:
        kept: list[str] = []
        for name in group:
            verdict, note = (
                availability(states.get(name, HealthState()), now, policy.health)
                if health is not None else (Availability.AVAILABLE, "health unknown")
            )
            if verdict is Availability.UNAVAILABLE:
                notes[name] = note
                unhealthy.append(name)
                continue
            if verdict is Availability.PROBE:
                probes.add(name)
                notes[name] = note
            kept.append(name)
        if kept:
            healthy_groups.append(kept)
    least_bad = ""
    if not healthy_groups and unhealthy:
        # Everything is eliminated: a payment sent somewhere beats a certain failure, but an
        # operator's forced-down switch is never overridden.
        last_resort = [
            n for n in unhealthy
            if states.get(n, HealthState()).override is not Override.FORCED_DOWN
        ]
        last_resort.sort(key=lambda n: states.get(n, HealthState()).opened_at)
        if last_resort:
            least_bad = last_resort[0]
            healthy_groups = [last_resort]
            for name in last_resort:
                notes[name] = f"{notes[name]} (used: every account unhealthy)"

    # 4. capacity
    caps = capacity or {}
    ordered_groups: list[list[str]] = []
    at_capacity = 0
    for group in healthy_groups:
        kept = []
        for name in group:
            full = caps[name].exhausted() if name in caps else None
            if full is not None:
                notes[name] = full
                at_capacity += 1
                continue
            kept.append(name)
        if kept:
            ordered_groups.append(kept)

    # 5. ordering
    scores: dict[str, float] = {}
    explored = False
    static = stats is None or selection.order is Order.STATIC or bool(least_bad)
    if not static and stats is not None:
        names = [n for g in ordered_groups for n in g]
        scored, explored = score_accounts(names, stats, policy.scoring, rng)
        for name, entry in scored.items():
            scores[name] = entry.score
            notes[name] = _join(notes.get(name, ""), entry.note)
        for group in ordered_groups:
            rank = {n: i for i, n in enumerate(group)}
            group.sort(key=lambda n: (n not in probes, -scores[n], rank[n]))
    else:
        for group in ordered_groups:
            rank = {n: i for i, n in enumerate(group)}
            group.sort(key=lambda n: (n not in probes, rank[n]))
            for name in group:
                static_note = f"static priority {by_name[name].priority}"
                notes[name] = _join(notes.get(name, ""), static_note)
    order = [n for g in ordered_groups for n in g]

    # 6. preferred connector
    algorithm = selection.algorithm
    detail = selection.note
    preferred = ctx.preferred_connector
    if preferred:
        if preferred in order and preferred not in probes:
            order.remove(preferred)
            order.insert(0, preferred)
            detail = _join(f"preferred connector honoured (policy: {algorithm})", detail)
            algorithm = "preferred_connector"
        else:
            why = notes.get(preferred, "unknown connector account" if preferred not in by_name
                            else "not usable")
            detail = _join(detail, f"preferred connector {preferred} not used: {why}")

    if stats is None and selection.order is not Order.STATIC and not least_bad:
        algorithm = f"{algorithm}+static_priority"

    candidates = _candidates(order, by_name, notes, scores)
    degraded = bool(degraded_parts)
    if not order:
        if at_capacity:
            reason = "every eligible account is at capacity"
        elif unhealthy:
            reason = "every eligible account is forced down"
        elif eligible:
            reason = f"no eligible account in {selection.algorithm}"
        else:
            reason = "no connector account can take this payment"
        return RoutingDecision(algorithm, candidates, "", (), _join(reason, detail), degraded,
                               frozenset(), explored)

    chosen = order[0]
    if least_bad:
        why = f"every account unhealthy: using least-bad {chosen} (circuit open longest)"
    elif algorithm == "preferred_connector":
        why = f"chose {chosen} as requested"
    elif explored:
        why = f"chose {chosen} by exploration"
    elif static:
        why = f"chose {chosen} by static priority"
    else:
        why = f"chose {chosen} by success rate ({scores[chosen]:.3f})"
    if chosen in probes:
        why += " as a half-open probe"
    if degraded:
        why += f"; degraded: {', '.join(degraded_parts)} unavailable"
    return RoutingDecision(
        algorithm=algorithm,
        candidates=candidates,
        chosen=chosen,
        fallbacks=tuple(order[1:]),
        reason=_join(why, detail),
        degraded=degraded,
        probes=frozenset(probes & set(order)),
        explored=explored,
    )


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first and second else first or second


def _candidates(
    order: list[str], by_name: Mapping[str, RoutableAccount], notes: Mapping[str, str],
    scores: Mapping[str, float],
) -> tuple[Candidate, ...]:
    usable = [
        Candidate(name, round(scores.get(name, 0.0), 6),
                  _join("chosen" if index == 0 else f"fallback {index}", notes.get(name, "")),
                  True)
        for index, name in enumerate(order)
    ]
    excluded = [
        Candidate(name, 0.0, notes.get(name, "not selected"), False)
        for name in by_name
        if name not in order
    ]
    return (*usable, *excluded)
