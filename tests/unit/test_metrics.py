"""The metric catalogue renders completely, and multi-process mode merges every process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.adapters import metrics

REPO_ROOT = Path(__file__).resolve().parents[2]

EXPECTED_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "triveni_grpc_requests_total": ("counter", frozenset({"method", "code"})),
    "triveni_grpc_request_duration_seconds": ("histogram", frozenset({"method"})),
    "triveni_http_requests_total": ("counter", frozenset({"route", "status"})),
    "triveni_http_request_duration_seconds": ("histogram", frozenset({"route"})),
    "triveni_payments_created_total": ("counter", frozenset({"method", "connector"})),
    "triveni_payment_transitions_total": (
        "counter",
        frozenset({"from_status", "to_status", "connector"}),
    ),
    "triveni_payment_attempts_total": ("counter", frozenset({"connector", "outcome"})),
    "triveni_payment_first_attempt_success_total": ("counter", frozenset({"connector"})),
    "triveni_payment_final_success_total": ("counter", frozenset()),
    "triveni_retries_total": ("counter", frozenset({"reason"})),
    "triveni_failovers_total": ("counter", frozenset({"from_connector", "to_connector"})),
    "triveni_webhooks_received_total": ("counter", frozenset({"account", "result"})),
    "triveni_outbox_unpublished_rows": ("gauge", frozenset()),
    "triveni_outbox_oldest_unpublished_age_seconds": ("gauge", frozenset()),
    "triveni_outbox_published_total": ("counter", frozenset()),
    "triveni_kafka_publish_errors_total": ("counter", frozenset()),
    "triveni_consumer_lag": ("gauge", frozenset({"topic", "group"})),
    "triveni_sync_retry_messages_total": ("counter", frozenset({"topic", "outcome"})),
    "triveni_dependency_up": ("gauge", frozenset({"dependency"})),
    "triveni_routing_degraded_total": ("counter", frozenset()),
    "triveni_connector_health": ("gauge", frozenset({"connector"})),
    "triveni_merchant_webhook_deliveries_total": ("counter", frozenset({"result"})),
    "triveni_rate_limited_total": ("counter", frozenset()),
}


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def _rendered_text() -> str:
    body, _ = metrics.metrics_response()
    return body.decode()


def test_every_metric_is_rendered_with_a_help_text(single_process: None) -> None:
    text = _rendered_text()
    for name in EXPECTED_METRICS:
        help_lines = [line for line in text.splitlines() if line.startswith(f"# HELP {name} ")]
        assert help_lines, f"{name} has no HELP line"
        assert len(help_lines[0]) > len(f"# HELP {name} ") + 10, f"{name} has an empty HELP"


def test_every_metric_has_its_declared_type_and_labels(single_process: None) -> None:
    # Give every labelled metric one child so its samples (and thus labels) are rendered.
    probed = []
    for collector in vars(metrics).values():
        labelnames = getattr(collector, "_labelnames", None)
        if labelnames:
            probe = ["probe"] * len(labelnames)
            collector.labels(*probe)
            probed.append((collector, probe))
    try:
        text = _rendered_text()
    finally:
        for collector, probe in probed:
            collector.remove(*probe)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, (kind, labels) in EXPECTED_METRICS.items():
        family_name = name.removesuffix("_total") if kind == "counter" else name
        family = families[family_name]
        assert family.type == kind, name
        sample_labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        assert sample_labels == labels, name


def test_response_uses_the_classic_text_content_type(single_process: None) -> None:
    body, content_type = metrics.metrics_response()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert isinstance(body, bytes)


def test_latency_buckets_span_one_millisecond_to_ten_seconds() -> None:
    assert metrics.LATENCY_BUCKETS[0] == 0.001
    assert metrics.LATENCY_BUCKETS[-1] == 10.0
    assert list(metrics.LATENCY_BUCKETS) == sorted(metrics.LATENCY_BUCKETS)


def test_counter_increments_show_up_in_the_rendering(single_process: None) -> None:
    before = _sample_value("triveni_rate_limited_total", {})
    metrics.RATE_LIMITED.inc()
    assert _sample_value("triveni_rate_limited_total", {}) == before + 1


def test_no_created_series_are_exported(single_process: None) -> None:
    assert "triveni_grpc_requests_created" not in _rendered_text()


def _sample_value(name: str, labels: dict[str, str], text: str | None = None) -> float:
    for family in text_string_to_metric_families(text or _rendered_text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


# --- multi-process mode ------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from server.adapters import metrics
    metrics.OUTBOX_PUBLISHED.inc(int(sys.argv[1]))
    metrics.DEPENDENCY_UP.labels("kafka").set(float(sys.argv[2]))
    metrics.CONSUMER_LAG.labels("payments.events", "triveni-worker").set(int(sys.argv[1]))
    """
)


def _run_child(multiproc_dir: Path, increment: int, kafka_up: float) -> int:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "PYTHONPATH": str(REPO_ROOT),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(increment), str(kafka_up)], env=env, cwd=REPO_ROOT
    )
    assert child.wait(timeout=60) == 0
    return child.pid


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


def test_multiprocess_rendering_sums_counters_of_all_processes(multiproc_dir: Path) -> None:
    _run_child(multiproc_dir, increment=3, kafka_up=1)
    _run_child(multiproc_dir, increment=4, kafka_up=1)

    text = _rendered_text()

    assert "# HELP triveni_outbox_published_total" in text
    assert _sample_value("triveni_outbox_published_total", {}, text) == 7
    lag_labels = {"topic": "payments.events", "group": "triveni-worker"}
    assert _sample_value("triveni_consumer_lag", lag_labels, text) == 7


def test_multiprocess_dependency_up_is_the_lowest_live_value(multiproc_dir: Path) -> None:
    _run_child(multiproc_dir, increment=1, kafka_up=1)
    pessimist = _run_child(multiproc_dir, increment=1, kafka_up=0)

    assert _sample_value("triveni_dependency_up", {"dependency": "kafka"}) == 0

    metrics.mark_process_dead(pessimist)

    assert _sample_value("triveni_dependency_up", {"dependency": "kafka"}) == 1


def test_a_missing_multiprocess_dir_is_created_on_import(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"

    _run_child(missing, increment=1, kafka_up=1)

    assert list(missing.glob("counter_*.db"))


def test_reset_multiprocess_dir_removes_a_previous_runs_samples(multiproc_dir: Path) -> None:
    _run_child(multiproc_dir, increment=5, kafka_up=1)
    assert list(multiproc_dir.glob("*.db"))

    metrics.reset_multiprocess_dir()

    assert not list(multiproc_dir.glob("*.db"))
    assert _sample_value("triveni_outbox_published_total", {}) == 0
