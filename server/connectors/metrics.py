"""Prometheus metrics for calls to PSPs, declared once. Recorded by `server.connectors.http`.

One sample per HTTP exchange (each retry is its own sample), labelled with the outcome of that
exchange, so dashboards show both PSP latency and how often retries happen.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Histogram

__all__ = ["PSP_REQUESTS_TOTAL", "PSP_REQUEST_DURATION_SECONDS", "Outcome"]


class Outcome(StrEnum):
    """The `outcome` label: what one HTTP exchange with a PSP amounted to."""

    OK = "ok"  # 2xx
    DECLINED = "declined"  # other 4xx, handed to the connector to parse (declines, validation)
    TRANSIENT = "transient"  # nothing reached the PSP, or a read that can simply be repeated
    RATE_LIMITED = "rate_limited"  # 429
    UNKNOWN = "unknown"  # a money-moving request may have been processed (timeout, 5xx)
    MISCONFIGURED = "misconfigured"  # 401/403, redirects, bad URL


_LABELS = ("connector_account", "psp", "operation", "outcome")

PSP_REQUEST_DURATION_SECONDS = Histogram(
    "triveni_psp_request_duration_seconds",
    "Duration of one HTTP exchange with a PSP, by outcome.",
    _LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

PSP_REQUESTS_TOTAL = Counter(
    "triveni_psp_requests_total",
    "HTTP exchanges with PSPs, by outcome.",
    _LABELS,
)
