"""Smoke test of scripts/bench: a tiny end-to-end run (its own embedded PostgreSQL, Redis and
Kafka, the simulator PSP, one server process, one load process, then the floor server) that
must produce positive rates, no errors, and leave no process behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _processes_inside(directory: Path) -> list[str]:
    """Processes whose working directory is in `directory` (what the benchmark started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(directory) or cwd.startswith(f"{directory}/"):
            found.append(f"{entry.name} {cwd}")
    return found


@pytest.mark.timeout(150)
def test_bench_smoke_run_produces_a_rate_without_errors() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "server.tools.bench", "--duration", "3", "--warmup", "1",
         "--processes", "1", "--load-processes", "1", "--concurrency", "8", "--skip-baseline",
         "--json", "--keep-data"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout)
    data_dir = Path(summary["data_dir"])
    try:
        triveni = summary["triveni"]
        assert triveni["per_second"] > 0
        assert triveni["ok"] > 0
        assert triveni["errors_total"] == 0, triveni["error_samples"]
        assert triveni["errors"] == {}
        # Every payment the load generator saw is in PostgreSQL, waiting for the customer.
        assert triveni["final_states"].get("REQUIRES_ACTION", 0) >= triveni["ok"]
        assert triveni["outbox"]["drained"], triveni["outbox"]
        assert triveni["latency_ms"]["p50"] > 0
        conditions = summary["conditions"]
        assert conditions["postgres"]["fsync"] == "on"
        assert conditions["postgres"]["synchronous_commit"] == "on"
        assert conditions["server_processes"] == 1
        assert summary["baseline"] == {}
        # The floor (same libraries and I/O, no logic) ran against the same load, error-free.
        floor = summary["floor"]
        assert floor["per_second"] > 0 and floor["errors"] == {}, floor
        assert floor["cpu_cores"]["floor server"] > 0
        assert "payments/s" in summary["verdict"]
        # Everything the benchmark started is gone.
        assert _processes_inside(data_dir) == []
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
