"""fraud-eval: replay a seeded synthetic payment stream through the pure risk engine.

    .venv/bin/python scripts/fraud-eval [--seed 7] [--scale 1.0] [--json]

The facts the service layer would look up (velocity windows, blocklist, customer history,
distinct instruments, recent failures) are rebuilt in memory in time order: exact sliding
windows, a blocked payment is never sent (so it neither succeeds nor fails), an allowed or
flagged one ends as the data says. Each rule set replays the stream from scratch and is
scored per event: precision, recall and false-positive rate, overall and per pattern.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.domain.fraud import (
    ALL_SIGNALS,
    FAILURE_LOOKBACK,
    HISTORY_LIMIT,
    INSTRUMENT_LOOKBACK,
    SEED_SIGNALS,
    BlocklistHit,
    BlocklistKind,
    CustomerHistory,
    Decision,
    FraudContext,
    FraudInput,
    FraudSettings,
    Signal,
    VelocityKind,
    Window,
    WindowStats,
    assess,
    instrument_of,
    normalize_input,
    velocity_keys,
)
from server.tools.fraud_eval_data import FRAUD_PATTERNS, LEGIT_PATTERNS, Event, Scenario, generate

__all__ = ["RULE_SETS", "evaluate", "main", "render"]

RULE_SETS: dict[str, Sequence[Signal]] = {"seed rules": SEED_SIGNALS, "full engine": ALL_SIGNALS}
_DAY = 86_400.0
_INSTRUMENT_SECONDS = INSTRUMENT_LOOKBACK.total_seconds()
_FAILURE_SECONDS = FAILURE_LOOKBACK.total_seconds()


@dataclass
class _Replay:
    """In-memory stand-in for Redis and PostgreSQL while replaying one rule set."""

    scenario: Scenario
    velocity: dict[tuple[VelocityKind, str], deque[tuple[float, int]]] = field(
        default_factory=lambda: defaultdict(deque))
    history: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    instruments: dict[str, deque[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(deque))
    failures: deque[tuple[float, str, str, str]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.history = {cid: list(amounts) for cid, amounts in self.scenario.history.items()}

    def context(self, event: Event) -> FraudContext:
        """The facts for `event`, counting it in the velocity windows (record_and_read)."""
        inp, now = normalize_input(event.inp), event.at
        counters: dict[VelocityKind, dict[Window, WindowStats]] = {}
        for key in velocity_keys(inp):
            seen = self.velocity[(key.kind, key.value)]
            seen.append((now, inp.amount.amount_minor))
            while seen and seen[0][0] <= now - _DAY:
                seen.popleft()
            counters[key.kind] = {
                w: WindowStats(sum(1 for t, _ in seen if t > now - w.seconds),
                               sum(a for t, a in seen if t > now - w.seconds))
                for w in key.windows}
        instrument = instrument_of(inp)
        history = None
        if inp.customer_id:
            recent = self.history.get(inp.customer_id, [])[-HISTORY_LIMIT:]
            amounts = [amount for amount, _ in recent]
            history = CustomerHistory(
                len(amounts), statistics.median_low(amounts) if amounts else None,
                any(used == instrument for _, used in recent) if instrument else None)
        return FraudContext(
            velocity=counters, velocity_includes_current=True,
            blocklist_hits=self._hits(inp), ip_country=event.ip_country,
            customer_history=history,
            other_instruments_for_customer=self._others(f"c:{inp.customer_id}", instrument, now)
            if inp.customer_id else 0,
            other_instruments_for_ip=self._others(f"i:{inp.ip}", instrument, now)
            if inp.ip else 0,
            recent_failures=self._failures(inp, instrument, now),
        )

    def settle(self, event: Event, decision: Decision) -> None:
        """Store the payment (instruments) and, unless blocked, its outcome."""
        inp, now = normalize_input(event.inp), event.at
        instrument = instrument_of(inp)
        if instrument:
            for owner in (f"c:{inp.customer_id}" if inp.customer_id else "",
                          f"i:{inp.ip}" if inp.ip else ""):
                if owner:
                    self.instruments[owner].append((now, instrument))
        if decision is Decision.BLOCK:
            return
        if event.succeeds and inp.customer_id:
            self.history.setdefault(inp.customer_id, []).append(
                (inp.amount.amount_minor, instrument))
        elif not event.succeeds:
            self.failures.append((now, inp.customer_id, inp.ip, instrument))

    def _hits(self, inp: FraudInput) -> tuple[BlocklistHit, ...]:
        given = ((BlocklistKind.VPA, inp.vpa), (BlocklistKind.EMAIL, inp.email),
                 (BlocklistKind.PHONE, inp.phone), (BlocklistKind.CARD_TOKEN, inp.card_token),
                 (BlocklistKind.CUSTOMER_ID, inp.customer_id))
        return tuple(BlocklistHit(kind, value) for kind, value in given
                     if value and (kind, value) in self.scenario.blocklist)

    def _others(self, owner: str, instrument: str, now: float) -> int:
        used = self.instruments[owner]
        while used and used[0][0] <= now - _INSTRUMENT_SECONDS:
            used.popleft()
        return len({i for _, i in used if i != instrument})

    def _failures(self, inp: FraudInput, instrument: str, now: float) -> int:
        while self.failures and self.failures[0][0] <= now - _FAILURE_SECONDS:
            self.failures.popleft()
        return sum(1 for _, customer, ip, used in self.failures
                   if (inp.customer_id and customer == inp.customer_id)
                   or (inp.ip and ip == inp.ip) or (instrument and used == instrument))


def _rates(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    return {"precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0}


def _score(events: Sequence[Event], decisions: Sequence[Decision]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, positive in (("flagged", {Decision.REVIEW, Decision.BLOCK}),
                           ("blocked", {Decision.BLOCK})):
        tp = fp = fn = tn = 0
        for event, decision in zip(events, decisions, strict=True):
            hit = decision in positive
            tp += event.fraud and hit
            fp += (not event.fraud) and hit
            fn += event.fraud and not hit
            tn += (not event.fraud) and not hit
        result[name] = _rates(tp, fp, fn, tn) | {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    patterns: dict[str, dict[str, float]] = {}
    for pattern in (*LEGIT_PATTERNS, *FRAUD_PATTERNS):
        mine = [d for e, d in zip(events, decisions, strict=True) if e.pattern == pattern]
        if mine:
            patterns[pattern] = {
                "events": len(mine),
                "flagged": sum(d is not Decision.ALLOW for d in mine) / len(mine),
                "blocked": sum(d is Decision.BLOCK for d in mine) / len(mine)}
    result["patterns"] = patterns
    return result


def evaluate(seed: int, scale: float = 1.0,
             settings: FraudSettings | None = None) -> dict[str, Any]:
    """Figures per rule set for the stream of `seed` (deterministic)."""
    settings = settings or FraudSettings()
    scenario = generate(seed, scale)
    report: dict[str, Any] = {
        "seed": seed, "scale": scale, "events": len(scenario.events),
        "fraud_events": sum(e.fraud for e in scenario.events), "rule_sets": {}}
    for name, signals in RULE_SETS.items():
        replay = _Replay(scenario)
        decisions: list[Decision] = []
        for event in scenario.events:
            decision = assess(event.inp, replay.context(event), settings,
                              signals=signals).decision
            replay.settle(event, decision)
            decisions.append(decision)
        report["rule_sets"][name] = _score(scenario.events, decisions)
    return report


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def render(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    sets = report["rule_sets"]
    lines = [
        f"fraud-eval  seed={report['seed']}  scale={report['scale']}  "
        f"events={report['events']} (fraud {report['fraud_events']}, "
        f"legitimate {report['events'] - report['fraud_events']})",
        "",
        f"{'':14}{'flagged (REVIEW or BLOCK)':^30}{'blocked (BLOCK)':^30}",
        f"{'rule set':14}" + f"{'precision':>10}{'recall':>10}{'FPR':>10}" * 2,
    ]
    for name, figures in sets.items():
        cells = "".join(_pct(figures[k][m]).rjust(10) for k in ("flagged", "blocked")
                        for m in ("precision", "recall", "false_positive_rate"))
        lines.append(f"{name:14}{cells}")
    lines += ["", "per pattern: share flagged / blocked"
              + ("  (legitimate patterns: lower is better)"),
              f"{'pattern':28}{'events':>7}" + "".join(f"{name:>22}" for name in sets)]
    first = next(iter(sets.values()))["patterns"]
    for pattern, info in first.items():
        cells = "".join(
            f"{_pct(f['patterns'][pattern]['flagged'])} / {_pct(f['patterns'][pattern]['blocked'])}"
            .rjust(22) for f in sets.values())
        lines.append(f"{pattern:28}{info['events']:>7}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraud-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="data set seed (default 7)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the number of customers and attacks (default 1.0)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    report = evaluate(args.seed, args.scale)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
