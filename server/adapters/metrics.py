"""Every Prometheus metric of the service, declared once, plus the `/metrics` renderer.

Import the metric objects from here; never declare a metric elsewhere. Two exceptions with their
own modules: PSP-call metrics (`server.connectors.metrics`: `triveni_psp_requests_total`,
`triveni_psp_request_duration_seconds`) and fraud metrics (`server.service_layer.fraud_metrics`:
`triveni_fraud_decisions_total`, `triveni_fraud_reasons_total`,
`triveni_fraud_signal_unavailable_total`, `triveni_fraud_screen_duration_seconds`).

Label values are a closed vocabulary (constants below): an unbounded label (a raw URL path, an
account name taken from the request, a payment id) would grow the time-series count without
limit, so such values are folded to "unknown" / a route template before they reach a label.

Multi-process mode: when several server processes share the ports (TRIVENI_PROCESSES > 1, or the
relay and workers run as separate processes on one host), set PROMETHEUS_MULTIPROC_DIR to an
empty directory *before* Python starts (prometheus_client chooses its storage at import time);
each process then writes its samples to memory-mapped files there and `metrics_response()` merges
them. Call `reset_multiprocess_dir()` once in the parent before starting the processes and
`mark_process_dead(pid)` when one exits, so that "live" gauges forget it.

Success rates, defined once (w = a window such as 1h; the dashboard and alerts use these):

- first-attempt success rate per connector: the share of payments that succeed on their first PSP
  attempt, with no retry, failover or status-sync rescue:
      sum by (connector) (rate(triveni_payment_first_attempt_success_total[w]))
    / sum by (connector) (rate(triveni_payments_created_total{connector!="none"}[w]))
- final success rate: the share of payments that eventually reach SUCCEEDED, whatever it took:
      sum(rate(triveni_payment_final_success_total[w]))
    / sum(rate(triveni_payments_created_total{connector!="none"}[w]))
  The gap between the two is what retries and failover buy. Payments that never reach a PSP
  (blocked or held by fraud screening: connector="none") are in neither denominator.
"""

from __future__ import annotations

import glob
import os
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

__all__ = [
    "ATTEMPT_OUTCOMES",
    "CIRCUIT_CLOSED",
    "CIRCUIT_HALF_OPEN",
    "CIRCUIT_OPEN",
    "CONNECTOR_HEALTH",
    "CONSUMER_LAG",
    "CONTENT_TYPE",
    "DEPENDENCIES",
    "DEPENDENCY_UP",
    "FAILOVERS",
    "GRPC_REQUESTS",
    "GRPC_REQUEST_DURATION",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "KAFKA_PUBLISH_ERRORS",
    "LATENCY_BUCKETS",
    "MERCHANT_WEBHOOK_DELIVERIES",
    "MERCHANT_WEBHOOK_RESULTS",
    "NO_CONNECTOR",
    "OUTBOX_OLDEST_UNPUBLISHED_AGE",
    "OUTBOX_PUBLISHED",
    "OUTBOX_UNPUBLISHED_ROWS",
    "PAYMENTS_CREATED",
    "PAYMENT_ATTEMPTS",
    "PAYMENT_FINAL_SUCCESS",
    "PAYMENT_FIRST_ATTEMPT_SUCCESS",
    "PAYMENT_TRANSITIONS",
    "RATE_LIMITED",
    "RETRIES",
    "ROUTING_DEGRADED",
    "SYNC_RETRY_MESSAGES",
    "UNKNOWN",
    "WEBHOOKS_RECEIVED",
    "WEBHOOK_RESULTS",
    "mark_process_dead",
    "metrics_response",
    "multiprocess_dir",
    "reset_multiprocess_dir",
]

# In multi-process mode prometheus_client writes a file per process as soon as a metric without
# labels is declared (below), so the directory has to exist before then.
if _multiproc_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiproc_dir, exist_ok=True)

# `_created` series double the series count and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The classic text format: every Prometheus (2.x and 3.x) parses it, and our names need none of
# the UTF-8 escaping that version 1.0.0 (prometheus_client's CONTENT_TYPE) exists for.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# 1 ms … 10 s: a cached read sits in the first buckets, a PSP call in the middle, a timeout at 10.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

# --- label vocabularies --------------------------------------------------------------------------
UNKNOWN: Final = "unknown"
NO_CONNECTOR: Final = "none"  # payments_created_total{connector} when no PSP was chosen
WEBHOOK_RESULTS: Final = (
    "ok", "bad_signature", "stale", "replay", "duplicate", "malformed", "unknown_account",
    "unknown_payment",
)
ATTEMPT_OUTCOMES: Final = ("succeeded", "pending", "declined", "failed", "timeout", "error")
DEPENDENCIES: Final = ("postgres", "redis", "kafka")
MERCHANT_WEBHOOK_RESULTS: Final = ("delivered", "failed", "retried", "dead_lettered")
CIRCUIT_CLOSED: Final = 1.0
CIRCUIT_HALF_OPEN: Final = 0.5
CIRCUIT_OPEN: Final = 0.0

# --- gRPC and HTTP edges -------------------------------------------------------------------------
GRPC_REQUESTS: Final = Counter(
    "triveni_grpc_requests_total",
    "gRPC requests handled, by full method name (/triveni.v1.PaymentService/CreatePayment) and "
    "status code name (OK, INVALID_ARGUMENT, ...).",
    ["method", "code"],
)
GRPC_REQUEST_DURATION: Final = Histogram(
    "triveni_grpc_request_duration_seconds",
    "Time from receiving a unary gRPC request to sending its response, by full method name.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS: Final = Counter(
    "triveni_http_requests_total",
    "HTTP shim requests, by route template (/webhooks/{account}, never the raw path) and status "
    "code.",
    ["route", "status"],
)
HTTP_REQUEST_DURATION: Final = Histogram(
    "triveni_http_request_duration_seconds",
    "Time to answer an HTTP shim request, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)

# --- payments ------------------------------------------------------------------------------------
PAYMENTS_CREATED: Final = Counter(
    "triveni_payments_created_total",
    "Payments created, by method (upi, card, netbanking, wallet) and the connector routing chose "
    "for the first attempt ('none' when the payment never reaches a PSP: blocked or in review).",
    ["method", "connector"],
)
PAYMENT_TRANSITIONS: Final = Counter(
    "triveni_payment_transitions_total",
    "Payment state changes applied, by from/to status (PaymentStatus values, e.g. PROCESSING -> "
    "SUCCEEDED) and the payment's current connector ('none' before routing).",
    ["from_status", "to_status", "connector"],
)
PAYMENT_ATTEMPTS: Final = Counter(
    "triveni_payment_attempts_total",
    "PSP attempts finished, by connector and outcome: succeeded, pending (accepted, customer "
    "action or async result awaited), declined, failed, timeout (outcome unknown, resolved by "
    "status sync), error (transport or PSP error).",
    ["connector", "outcome"],
)
PAYMENT_FIRST_ATTEMPT_SUCCESS: Final = Counter(
    "triveni_payment_first_attempt_success_total",
    "Payments that reached SUCCEEDED on their first PSP attempt (no retry, failover or rescue), by "
    "that attempt's connector. First-attempt success rate = this / "
    "triveni_payments_created_total{connector!='none'}.",
    ["connector"],
)
PAYMENT_FINAL_SUCCESS: Final = Counter(
    "triveni_payment_final_success_total",
    "Payments that reached SUCCEEDED at all (after any retries, failovers, webhooks or status "
    "syncs); counted once per payment. Final success rate = this / "
    "triveni_payments_created_total{connector!='none'}.",
)
RETRIES: Final = Counter(
    "triveni_retries_total",
    "Retries scheduled for a payment operation, by reason (timeout, transient_error, "
    "unknown_outcome, status_sync, ...).",
    ["reason"],
)
FAILOVERS: Final = Counter(
    "triveni_failovers_total",
    "Payments moved from one connector to another after a safe-to-repeat failure.",
    ["from_connector", "to_connector"],
)
ROUTING_DEGRADED: Final = Counter(
    "triveni_routing_degraded_total",
    "Routing decisions made without Redis health data (static priority fallback).",
)
CONNECTOR_HEALTH: Final = Gauge(
    "triveni_connector_health",
    "Circuit breaker state per connector as last read from Redis: 1 closed, 0.5 half-open, "
    "0 open. Across processes: the lowest value any live process reports.",
    ["connector"],
    multiprocess_mode="livemin",
)
RATE_LIMITED: Final = Counter(
    "triveni_rate_limited_total",
    "Requests refused by the per-merchant rate limit (RESOURCE_EXHAUSTED / 429).",
)

# --- webhooks ------------------------------------------------------------------------------------
WEBHOOKS_RECEIVED: Final = Counter(
    "triveni_webhooks_received_total",
    "PSP webhook deliveries, by connector account ('unknown' for an unconfigured account) and "
    "result: ok, bad_signature, stale, replay, duplicate, malformed, unknown_account, "
    "unknown_payment.",
    ["account", "result"],
)
MERCHANT_WEBHOOK_DELIVERIES: Final = Counter(
    "triveni_merchant_webhook_deliveries_total",
    "Merchant webhook attempts by result: delivered (2xx), failed (any other outcome), retried "
    "(another attempt scheduled), dead_lettered (schedule exhausted; merchant.webhooks.dlq).",
    ["result"],
)

# --- outbox, Kafka and dependencies --------------------------------------------------------------
OUTBOX_UNPUBLISHED_ROWS: Final = Gauge(
    "triveni_outbox_unpublished_rows",
    "Outbox rows not yet published to Kafka, as last counted by the relay. Across processes: the "
    "highest value any live process reports.",
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST_UNPUBLISHED_AGE: Final = Gauge(
    "triveni_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is drained): how far Kafka "
    "consumers lag behind PostgreSQL.",
    multiprocess_mode="livemax",
)
OUTBOX_PUBLISHED: Final = Counter(
    "triveni_outbox_published_total",
    "Outbox rows published to Kafka and marked published.",
)
KAFKA_PUBLISH_ERRORS: Final = Counter(
    "triveni_kafka_publish_errors_total",
    "Kafka produce calls that failed (the row stays in the outbox and is retried).",
)
SYNC_RETRY_MESSAGES: Final = Counter(
    "triveni_sync_retry_messages_total",
    "Kafka status-sync retry messages handled, by topic and outcome (synced, dropped_final, "
    "dropped_stale, dead_lettered, failed: retried later).",
    ["topic", "outcome"],
)
CONSUMER_LAG: Final = Gauge(
    "triveni_consumer_lag",
    "Messages behind the log end, by topic and consumer group; each process reports its "
    "assigned partitions and the values are summed across live processes.",
    ["topic", "group"],
    multiprocess_mode="livesum",
)
DEPENDENCY_UP: Final = Gauge(
    "triveni_dependency_up",
    "1 when the last probe of the dependency (postgres, redis, kafka) succeeded, else 0. Across "
    "processes: the lowest value any live process reports.",
    ["dependency"],
    multiprocess_mode="livemin",
)


# --- rendering -----------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    """The prometheus_client multi-process directory from the environment, or None."""
    # prometheus_client still honours the deprecated lower-case name, so we do too.
    legacy_name = "prometheus_multiproc_dir"
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(legacy_name)


def metrics_response() -> tuple[bytes, str]:
    """Render all metrics in the Prometheus text format: (body, content type).

    In multi-process mode the samples of every process are merged from the shared directory
    (a fresh registry per call, as prometheus_client requires); otherwise the default registry,
    which also carries the process and platform collectors, is rendered.
    """
    if multiprocess_dir():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE


def reset_multiprocess_dir() -> None:
    """Delete the previous run's sample files; call once before starting the processes."""
    path = multiprocess_dir()
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    for leftover in glob.glob(os.path.join(path, "*.db")):
        os.remove(leftover)


def mark_process_dead(pid: int) -> None:
    """Drop an exited process's live-gauge samples (no-op outside multi-process mode)."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
