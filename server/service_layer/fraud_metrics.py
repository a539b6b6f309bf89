"""Prometheus metrics of fraud screening, declared once per registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from server.domain.fraud import Assessment

__all__ = ["FraudMetrics"]

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class FraudMetrics:
    """Decisions, reasons, unavailable signals and screening time. Build once (bootstrap)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else REGISTRY
        self.decisions = Counter(
            "triveni_fraud_decisions", "Fraud screening decisions.", ["decision"],
            registry=registry)
        self.reasons = Counter(
            "triveni_fraud_reasons", "Reasons that fired, by code.", ["code"],
            registry=registry)
        self.signal_unavailable = Counter(
            "triveni_fraud_signal_unavailable",
            "Screenings where a signal's source was down (e.g. velocity with Redis down).",
            ["signal"], registry=registry)
        self.screen_duration = Histogram(
            "triveni_fraud_screen_duration_seconds",
            "Time to gather facts and assess one payment.", buckets=_DURATION_BUCKETS,
            registry=registry)

    def observe(self, assessment: Assessment, unavailable: Iterable[str], seconds: float
                ) -> None:
        self.decisions.labels(decision=str(assessment.decision)).inc()
        for reason in assessment.reasons:
            self.reasons.labels(code=reason.code).inc()
        for signal in unavailable:
            self.signal_unavailable.labels(signal=signal).inc()
        self.screen_duration.observe(seconds)
