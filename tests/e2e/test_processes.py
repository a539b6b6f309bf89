"""Production-shaped processes: `serve` with two processes sharing the ports, and the relay and
worker running alone with their probes — all over the session's real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from triveni.v1 import payment_service_pb2_grpc

from tests.fakes.server import free_port
from tests.fixtures.stack import Stack
from tests.integration.test_payments_grpc import upi_request

pytestmark = pytest.mark.e2e


def _env(stack: Stack, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(POSTGRES_URL=stack.settings.postgres_url.get_secret_value(),
               REDIS_URL=stack.settings.redis_url.get_secret_value(),
               KAFKA_BOOTSTRAP=stack.settings.kafka_bootstrap, TRIVENI_ENV="development",
               TRIVENI_LOG_LEVEL="WARNING",
               TRIVENI_SIMULATOR_PORT=stack.simulator_url.rsplit(":", 1)[1], **extra)
    return env


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture
def two_process_server(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, str]]:
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = _env(stack, TRIVENI_PROCESSES="2", TRIVENI_GRPC_PORT=str(grpc_port),
               TRIVENI_HTTP_PORT=str(http_port), TRIVENI_RUN_WORKERS="false",
               TRIVENI_DATA_DIR=str(tmp_path), TRIVENI_PUBLIC_URL=f"http://127.0.0.1:{http_port}")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{http_port}/readyz", proc, log)
        yield f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]


async def test_one_idempotency_key_across_two_server_processes_makes_one_payment(
        stack: Stack, two_process_server: tuple[str, str]) -> None:
    target, http_url = two_process_server
    request = upi_request(40_000)

    async def create_on_new_connection() -> str:
        # A channel per call so SO_REUSEPORT spreads the calls over both processes.
        async with grpc.aio.insecure_channel(target, options=[("grpc.so_reuseport", 1)]) as ch:
            stub = payment_service_pb2_grpc.PaymentServiceStub(ch)
            payment = await stub.CreatePayment(request, metadata=stack.metadata())
            return str(payment.id)

    ids = await asyncio.gather(*(create_on_new_connection() for _ in range(50)))
    assert len(set(ids)) == 1
    async with stack.app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM payment_attempts WHERE payment_id = %s", (ids[0],))
        row = await cur.fetchone()
    assert row is not None and row["n"] == 1
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{http_url}/metrics", timeout=5)).text
    assert "triveni_grpc_requests_total" in metrics


@pytest.mark.parametrize("command", ["relay", "worker"])
def test_standalone_worker_processes_serve_probes_and_stop_cleanly(
        stack: Stack, tmp_path: Path, command: str) -> None:
    port = free_port()
    log = tmp_path / f"{command}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", command],
                                env=_env(stack, TRIVENI_HTTP_PORT=str(port),
                                         TRIVENI_HTTP_HOST="127.0.0.1"),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert "triveni_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
