"""A real Prometheus (Debian's binary, from scripts/ci-deps) scrapes and stores our metrics.

`prometheus_scraping(target)` is reusable: the end-to-end suite points it at the real server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.adapters import metrics
from tests.fakes.server import free_port, serve_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed (run scripts/ci-deps as root: Debian's prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        loaded: dict[str, Any] = json.load(response)
        return loaded


@contextmanager
def prometheus_scraping(binary: str, target: str, workdir: Path) -> Iterator[str]:
    """Run Prometheus scraping http://<target>/metrics every second; yields its base URL."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: triveni\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _ready(base_url), what="Prometheus to become ready", process=process,
                    log=workdir / "prometheus.log")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_until(
    check: Any, *, what: str, timeout: float = 30, process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            details = log.read_text() if log else ""
            pytest.fail(f"Prometheus exited ({process.returncode}) waiting for {what}:\n{details}")
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _query(base_url: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = _get_json(url)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _metrics_endpoint(_request: Request) -> Response:
    body, content_type = metrics.metrics_response()
    return Response(body, headers={"Content-Type": content_type})


@pytest.fixture(scope="module")
def metrics_target() -> Iterator[str]:
    app = Starlette(routes=[Route("/metrics", _metrics_endpoint)])
    with serve_app(app) as base_url:
        yield base_url.removeprefix("http://")


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, metrics_target: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    with prometheus_scraping(prometheus_binary, metrics_target, workdir) as base_url:
        yield base_url


def test_prometheus_scrapes_and_stores_dependency_up(prometheus: str) -> None:
    metrics.DEPENDENCY_UP.labels("postgres").set(1)

    result = _wait_until(
        lambda: _query(prometheus, 'triveni_dependency_up{dependency="postgres"} == 1'),
        what="triveni_dependency_up to be scraped",
    )

    assert result[0]["value"][1] == "1"
    assert result[0]["metric"]["job"] == "triveni"


def test_prometheus_parses_the_whole_exposition_without_errors(prometheus: str) -> None:
    metrics.OUTBOX_PUBLISHED.inc(3)

    _wait_until(
        lambda: _query(prometheus, "triveni_outbox_published_total >= 3"),
        what="triveni_outbox_published_total to be scraped",
    )
    targets = _get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]

    assert [(target["health"], target["lastError"]) for target in targets] == [("up", "")]
