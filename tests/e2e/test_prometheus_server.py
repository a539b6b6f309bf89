"""A real Prometheus (Debian's, from scripts/ci-deps) scrapes the RUNNING Triveni server and
answers a PromQL query about a payment this test created."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import create, upi_request
from tests.integration.test_prometheus_scrape import (
    _get_json,
    _query,
    _wait_until,
    prometheus_scraping,
)

pytestmark = pytest.mark.e2e


def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed (run scripts/ci-deps as root: Debian's prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _created_total(exposition: str, method: str, connector: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if (sample.name == "triveni_payments_created_total"
                    and sample.labels == {"method": method, "connector": connector}):
                return float(sample.value)
    raise AssertionError(f"no triveni_payments_created_total{{{method}, {connector}}} sample")


def _scrape_and_query(binary: str, target: str, workdir: Path, promql: str
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Blocking (runs in a thread, so the server in the test's event loop can answer)."""
    with prometheus_scraping(binary, target, workdir) as base_url:
        result = _wait_until(lambda: _query(base_url, promql),
                             what=f"Prometheus to answer {promql}")
        targets = _get_json(f"{base_url}/api/v1/targets")["data"]["activeTargets"]
        return result, targets


async def test_prometheus_scrapes_the_running_server_and_counts_created_payments(
        stack: Stack, tmp_path: Path) -> None:
    binary = _prometheus()
    payment = await create(stack, upi_request(40_000))
    async with httpx.AsyncClient() as client:
        exposition = (await client.get(f"{stack.http_url}/metrics")).text
    expected = _created_total(exposition, "upi", payment.connector)
    assert expected >= 1
    target = stack.http_url.removeprefix("http://")
    promql = (f'triveni_payments_created_total{{job="triveni",method="upi",'
              f'connector="{payment.connector}"}} >= {expected:g}')

    result, targets = await asyncio.to_thread(_scrape_and_query, binary, target, tmp_path,
                                              promql)

    assert float(result[0]["value"][1]) >= expected
    assert result[0]["metric"]["instance"] == target
    # The whole exposition of the real server parsed: the target is up with no scrape error.
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
