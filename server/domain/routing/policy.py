"""A merchant's routing policy: ordered rules, the built-in premium rule, and a default.

Evaluation: the first user rule whose conditions all match wins; if none does, the built-in
seed rule applies ("amount strictly above ₹10,000 → prefer premium-tier accounts", threshold
configurable, `null` to switch it off); otherwise the default. A rule yields ordered groups of
account names: success-rate scoring reorders accounts *within* a group (unless the rule says
`"order": "static"`), never across groups. A non-exclusive rule's unlisted accounts stay on as
last-resort fallbacks.

The plain-dict format (loaded from JSON/TOML elsewhere):

    {
      "version": 1,
      "premium_threshold_minor": 1000000,
      "rules": [
        {"name": "rupay_to_payu",
         "when": {"method": "card", "card_network": ["RUPAY"]},
         "connectors": ["payu_main", "razorpay_main"], "order": "static"},
        {"name": "upi_split",
         "when": {"method": "upi", "amount": {"lte": 500000}, "metadata": {"segment": "retail"}},
         "split": [{"connector": "razorpay_main", "weight": 70},
                   {"connector": "cashfree_main", "weight": 30}]},
        {"name": "big_tickets", "when": {"amount": {"gt": 5000000}}, "prefer_tier": "premium",
         "exclusive": true}
      ],
      "default": {"order": "success_rate"},
      "capacity": {"razorpay_main": {"max_in_flight": 200, "max_tps": 100}},
      "scoring": {"algorithm": "mean", "exploration_share": 0.05, "min_samples": 20},
      "health": {"failure_threshold": 5, "cooldown_seconds": 30},
      "retry": {"max_attempts": 3}
    }

Condition keys: `amount` {gt, gte, lt, lte} in minor units; `method`, `currency`,
`card_network`, `upi_flow` (string or list); `metadata` {key: value} (all must match).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.domain.routing._fields import (
    as_mapping,
    check_keys,
    opt_bool,
    opt_int,
    opt_str,
    str_set,
)
from server.domain.routing.capacity import CapacityLimit, parse_capacity
from server.domain.routing.context import RoutableAccount, RoutingContext
from server.domain.routing.health import HealthConfig, parse_health
from server.domain.routing.retry import RetryPolicy, parse_retry
from server.domain.routing.success_rate import ScoringConfig, parse_scoring
from server.errors import ValidationError

__all__ = [
    "DEFAULT_PREMIUM_THRESHOLD_MINOR",
    "AmountRange",
    "Conditions",
    "Order",
    "RoutingPolicy",
    "Rule",
    "Selection",
    "SplitShare",
    "parse_policy",
    "split_bucket",
]

DEFAULT_PREMIUM_THRESHOLD_MINOR = 1_000_000  # ₹10,000 in paise (the seed's threshold)
POLICY_VERSION = 1


class Order(StrEnum):
    SUCCESS_RATE = "success_rate"
    STATIC = "static"


@dataclass(frozen=True, slots=True)
class AmountRange:
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    def contains(self, amount_minor: int) -> bool:
        return not (
            (self.gt is not None and not amount_minor > self.gt)
            or (self.gte is not None and not amount_minor >= self.gte)
            or (self.lt is not None and not amount_minor < self.lt)
            or (self.lte is not None and not amount_minor <= self.lte)
        )


@dataclass(frozen=True, slots=True)
class Conditions:
    amount: AmountRange | None = None
    methods: frozenset[str] = frozenset()
    currencies: frozenset[str] = frozenset()
    card_networks: frozenset[str] = frozenset()
    upi_flows: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()

    def matches(self, ctx: RoutingContext) -> bool:
        if self.amount is not None and not self.amount.contains(ctx.amount.amount_minor):
            return False
        if self.methods and ctx.method.lower() not in self.methods:
            return False
        if self.currencies and ctx.amount.currency.upper() not in self.currencies:
            return False
        if self.card_networks and ctx.card_network.upper() not in self.card_networks:
            return False
        if self.upi_flows and (ctx.upi_flow or "intent").lower() not in self.upi_flows:
            return False
        return all(ctx.metadata.get(key) == value for key, value in self.metadata)


@dataclass(frozen=True, slots=True)
class SplitShare:
    connector: str
    weight: int


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: Conditions = Conditions()
    connectors: tuple[str, ...] = ()
    split: tuple[SplitShare, ...] = ()
    prefer_tier: str = ""
    order: Order = Order.SUCCESS_RATE
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Selection:
    """What the policy says for one payment, before health, capacity and scores."""

    algorithm: str  # "rule:<name>", "rule:premium_above_10000" or "default"
    groups: tuple[tuple[str, ...], ...]  # ordered groups of account names (static order inside)
    order: Order
    exclusive: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    rules: tuple[Rule, ...] = ()
    premium_threshold_minor: int | None = DEFAULT_PREMIUM_THRESHOLD_MINOR
    default_connectors: tuple[str, ...] = ()  # empty: every eligible account
    default_order: Order = Order.SUCCESS_RATE
    capacity: Mapping[str, CapacityLimit] = field(default_factory=dict)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def select(self, ctx: RoutingContext, accounts: Sequence[RoutableAccount]) -> Selection:
        """Apply the first matching rule (else premium rule, else default) to `accounts`."""
        by_static = sorted(accounts, key=lambda a: (a.priority, a.name))
        present = {a.name for a in accounts}
        for rule in self.rules:
            if rule.when.matches(ctx):
                return _apply_rule(rule, ctx, by_static, present)
        threshold = self.premium_threshold_minor
        if threshold is not None and ctx.amount.amount_minor > threshold:
            premium = tuple(a.name for a in by_static if a.tier == "premium")
            others = tuple(a.name for a in by_static if a.tier != "premium")
            return Selection(
                algorithm=f"rule:premium_above_{threshold // 100}",
                groups=tuple(g for g in (premium, others) if g),
                order=Order.SUCCESS_RATE,
                exclusive=False,
                note="premium accounts first" if premium else "no eligible premium account",
            )
        if self.default_connectors:
            listed = tuple(n for n in self.default_connectors if n in present)
            return Selection("default", (listed,) if listed else (), self.default_order, False)
        return Selection(
            "default", (tuple(a.name for a in by_static),) if by_static else (),
            self.default_order, False,
        )


def split_bucket(rule_name: str, payment_id: str, total_weight: int) -> int:
    """Deterministic bucket in [0, total_weight) from the payment id (stable across processes)."""
    digest = hashlib.sha256(f"{rule_name}\x00{payment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


def _apply_rule(
    rule: Rule, ctx: RoutingContext, by_static: list[RoutableAccount], present: set[str],
) -> Selection:
    label = f"rule:{rule.name}"
    if rule.split:
        total = sum(share.weight for share in rule.split)
        bucket = split_bucket(rule.name, ctx.payment_id, total)
        cumulative = 0
        chosen = rule.split[-1].connector
        for share in rule.split:
            cumulative += share.weight
            if bucket < cumulative:
                chosen = share.connector
                break
        rest = tuple(
            s.connector
            for s in sorted(rule.split, key=lambda s: -s.weight)
            if s.connector != chosen and s.connector in present
        )
        head = (chosen,) if chosen in present else ()
        return Selection(
            label, tuple(g for g in (head, rest) if g), rule.order, rule.exclusive,
            note=f"split bucket {bucket}/{total} -> {chosen}",
        )
    if rule.prefer_tier:
        preferred = tuple(a.name for a in by_static if a.tier == rule.prefer_tier)
        others = tuple(a.name for a in by_static if a.tier != rule.prefer_tier)
        return Selection(
            label, tuple(g for g in (preferred, others) if g), rule.order, rule.exclusive,
            note=f"{rule.prefer_tier} accounts first",
        )
    listed = tuple(n for n in rule.connectors if n in present)
    return Selection(label, (listed,) if listed else (), rule.order, rule.exclusive)


# ---- parsing ------------------------------------------------------------------------------

_POLICY_KEYS = {
    "version", "premium_threshold_minor", "rules", "default", "capacity", "scoring", "health",
    "retry",
}
_RULE_KEYS = {"name", "when", "connectors", "split", "prefer_tier", "order", "exclusive"}
_WHEN_KEYS = {"amount", "method", "currency", "card_network", "upi_flow", "metadata"}
_METHODS = {"upi", "card", "netbanking", "wallet"}
_UPI_FLOWS = {"intent", "collect", "qr"}


def parse_policy(data: Any, *, known_accounts: Collection[str] | None = None) -> RoutingPolicy:
    """Validate a plain dict into a RoutingPolicy; raises ValidationError naming the field.

    With `known_accounts`, every connector a rule names must be one of them.
    """
    if data is None:
        return RoutingPolicy()
    root = as_mapping(data, "policy")
    check_keys(root, _POLICY_KEYS, "")
    version = opt_int(root, "version", "", POLICY_VERSION)
    if version != POLICY_VERSION:
        raise ValidationError("version", f"unsupported policy version {version}")
    if "premium_threshold_minor" in root and root["premium_threshold_minor"] is None:
        threshold: int | None = None
    else:
        threshold = opt_int(root, "premium_threshold_minor", "", DEFAULT_PREMIUM_THRESHOLD_MINOR,
                            minimum=0)
    raw_rules = root.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ValidationError("rules", "must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, f"rules[{index}]", known_accounts)
        if rule.name in seen:
            raise ValidationError(f"rules[{index}].name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        rules.append(rule)
    default_connectors, default_order = _parse_default(root.get("default"), known_accounts)
    capacity = parse_capacity(root.get("capacity"))
    if known_accounts is not None:
        for name in capacity:
            _check_known(name, f"capacity.{name}", known_accounts)
    return RoutingPolicy(
        rules=tuple(rules),
        premium_threshold_minor=threshold,
        default_connectors=default_connectors,
        default_order=default_order,
        capacity=capacity,
        scoring=parse_scoring(root.get("scoring")),
        health=parse_health(root.get("health")),
        retry=parse_retry(root.get("retry")),
    )


def _check_known(name: str, path: str, known: Collection[str] | None) -> None:
    if known is not None and name not in known:
        raise ValidationError(path, f"unknown connector account {name!r}")


def _connector_list(value: Any, path: str, known: Collection[str] | None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValidationError(path, "must be a non-empty list of connector account names")
    names: list[str] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(where, "must be a connector account name")
        if item in names:
            raise ValidationError(where, f"{item!r} listed twice")
        _check_known(item, where, known)
        names.append(item)
    return tuple(names)


def _parse_rule(raw: Any, path: str, known: Collection[str] | None) -> Rule:
    data = as_mapping(raw, path)
    check_keys(data, _RULE_KEYS, path)
    if "name" not in data:
        raise ValidationError(f"{path}.name", "is required")
    name = opt_str(data, "name", path, "")
    actions = [key for key in ("connectors", "split", "prefer_tier") if key in data]
    if len(actions) != 1:
        raise ValidationError(path, "needs exactly one of: connectors, split, prefer_tier")
    order = Order(opt_str(data, "order", path, Order.SUCCESS_RATE.value,
                          choices=[o.value for o in Order]))
    exclusive = opt_bool(data, "exclusive", path, False)
    when = _parse_when(data.get("when"), f"{path}.when")
    if actions[0] == "connectors":
        connectors = _connector_list(data["connectors"], f"{path}.connectors", known)
        return Rule(name, when, connectors=connectors, order=order, exclusive=exclusive)
    if actions[0] == "prefer_tier":
        tier = opt_str(data, "prefer_tier", path, "", choices=["premium", "standard"])
        return Rule(name, when, prefer_tier=tier, order=order, exclusive=exclusive)
    return Rule(name, when, split=_parse_split(data["split"], f"{path}.split", known),
                order=order, exclusive=exclusive)


def _parse_split(value: Any, path: str, known: Collection[str] | None) -> tuple[SplitShare, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise ValidationError(path, "must list at least two {connector, weight} shares")
    shares: list[SplitShare] = []
    for index, raw in enumerate(value):
        where = f"{path}[{index}]"
        entry = as_mapping(raw, where)
        check_keys(entry, {"connector", "weight"}, where)
        connector = opt_str(entry, "connector", where, "")
        if not connector:
            raise ValidationError(f"{where}.connector", "is required")
        _check_known(connector, f"{where}.connector", known)
        if any(s.connector == connector for s in shares):
            raise ValidationError(f"{where}.connector", f"{connector!r} listed twice")
        if "weight" not in entry:
            raise ValidationError(f"{where}.weight", "is required")
        weight = opt_int(entry, "weight", where, None, minimum=1, maximum=1_000_000)
        assert weight is not None
        shares.append(SplitShare(connector, weight))
    return tuple(shares)


def _parse_when(raw: Any, path: str) -> Conditions:
    if raw is None:
        return Conditions()
    data = as_mapping(raw, path)
    check_keys(data, _WHEN_KEYS, path)
    amount = None
    if "amount" in data:
        where = f"{path}.amount"
        bounds = as_mapping(data["amount"], where)
        check_keys(bounds, {"gt", "gte", "lt", "lte"}, where)
        if not bounds:
            raise ValidationError(where, "needs at least one of gt, gte, lt, lte")
        amount = AmountRange(
            gt=opt_int(bounds, "gt", where, None, minimum=0),
            gte=opt_int(bounds, "gte", where, None, minimum=0),
            lt=opt_int(bounds, "lt", where, None, minimum=1),
            lte=opt_int(bounds, "lte", where, None, minimum=0),
        )
        lows = [v for v in (amount.gt, amount.gte) if v is not None]
        highs = [v for v in (amount.lt, amount.lte) if v is not None]
        if lows and highs and max(lows) > min(highs):
            raise ValidationError(where, "lower bound is above upper bound")
    methods = str_set(data["method"], f"{path}.method", lower=True) if "method" in data else (
        frozenset())
    for method in methods:
        if method not in _METHODS:
            raise ValidationError(f"{path}.method", f"unknown method {method!r}")
    flows = str_set(data["upi_flow"], f"{path}.upi_flow", lower=True) if "upi_flow" in data else (
        frozenset())
    for flow in flows:
        if flow not in _UPI_FLOWS:
            raise ValidationError(f"{path}.upi_flow", f"unknown UPI flow {flow!r}")
    metadata: tuple[tuple[str, str], ...] = ()
    if "metadata" in data:
        where = f"{path}.metadata"
        pairs = as_mapping(data["metadata"], where)
        if not pairs:
            raise ValidationError(where, "must not be empty")
        for key, value in pairs.items():
            if not isinstance(value, str):
                raise ValidationError(f"{where}.{key}", "must be a string")
        metadata = tuple(sorted((k, v) for k, v in pairs.items()))
    return Conditions(
        amount=amount,
        methods=methods,
        currencies=str_set(data["currency"], f"{path}.currency", upper=True)
        if "currency" in data else frozenset(),
        card_networks=str_set(data["card_network"], f"{path}.card_network", upper=True)
        if "card_network" in data else frozenset(),
        upi_flows=flows,
        metadata=metadata,
    )


def _parse_default(
    raw: Any, known: Collection[str] | None,
) -> tuple[tuple[str, ...], Order]:
    if raw is None:
        return (), Order.SUCCESS_RATE
    data = as_mapping(raw, "default")
    check_keys(data, {"connectors", "order"}, "default")
    connectors = (
        _connector_list(data["connectors"], "default.connectors", known)
        if "connectors" in data else ()
    )
    order = Order(opt_str(data, "order", "default", Order.SUCCESS_RATE.value,
                          choices=[o.value for o in Order]))
    return connectors, order
