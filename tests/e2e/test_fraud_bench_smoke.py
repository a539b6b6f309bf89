"""Smoke test of `scripts/bench --fraud` (server.tools.fraud_bench): a tiny run (its own embedded
PostgreSQL, Redis and Kafka, one server process, one load process) must give a positive rate
and no errors for both CheckTransaction modes and every baseline, and leave no process behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_bench_smoke import _processes_inside

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("check", "check_record", "redis_ping", "redis_velocity_read",
          "redis_velocity_record", "postgres_facts")


@pytest.mark.timeout(90)
def test_fraud_bench_smoke_run_produces_rates_without_errors() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "server.tools.fraud_bench", "--duration", "1", "--warmup", "0.5",
         "--processes", "1", "--load-processes", "1", "--concurrency", "4", "--channels", "1",
         "--customers", "200", "--history-payments", "500", "--blocklist", "20", "--seed", "3",
         "--json", "--keep-data"],
        cwd=ROOT, capture_output=True, text=True, timeout=80, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout)
    data_dir = Path(summary["data_dir"])
    try:
        phases = summary["phases"]
        assert set(phases) == set(PHASES)
        for name in PHASES:
            result = phases[name]
            assert result["per_second"] > 0, name
            assert result["ok"] > 0, name
            assert result["errors_total"] == 0, (name, result["error_samples"])
            assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"], name
        for name in ("check", "check_record"):
            # Every reply in the window carried a decision; Redis answered every check.
            assert sum(phases[name]["decisions"].values()) == phases[name]["ok"]
            assert phases[name]["unavailable_signals"].get("velocity", 0) == 0
        assert set(summary["ratios"]) >= {"check/redis_velocity_read",
                                          "check_record/redis_velocity_record",
                                          "check/redis_ping", "check/postgres_facts"}
        conditions = summary["conditions"]
        assert conditions["postgres"]["fsync"] == "on"
        assert conditions["server_processes"] == 1
        assert conditions["seeded"]["payments"] == 500
        assert conditions["velocity_keys"]["window_hashes_per_check"] > 0
        assert summary["server_log_problem_lines"] == 0
        # Everything the benchmark started is gone.
        assert _processes_inside(data_dir) == []
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
