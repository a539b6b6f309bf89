"""The examples in clients/examples run against a real gRPC server (the fake Triveni)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as pay_pb
from triveni.webhooks import EVENT_ID_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER, sign
from triveni_client_fake import API_KEY, FakeTriveni

EXAMPLES = Path(__file__).resolve().parents[3] / "clients" / "examples"
SECRET = "whsec_example_1"


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_payment_example_prints_the_payment_as_json(target: str, fake: FakeTriveni) -> None:
    result = _run("create_payment.py", env={"TRIVENI_TARGET": target, "TRIVENI_API_KEY": API_KEY})

    assert result.returncode == 0, result.stderr
    payment = json.loads(result.stdout)
    assert payment["amount"] == {"amount_minor": "1500000", "currency": "INR"}
    assert payment["status"] == "PAYMENT_STATUS_REQUIRES_ACTION"
    request = fake.calls_to("CreatePayment")[0].request
    assert isinstance(request, pay_pb.CreatePaymentRequest)
    assert request.method.upi.flow == pb.UPI_FLOW_INTENT


def test_create_payment_example_without_api_key_says_what_is_missing() -> None:
    env = {"TRIVENI_API_KEY": ""}
    result = _run("create_payment.py", env=env)
    assert result.returncode == 2
    assert "TRIVENI_API_KEY" in result.stderr


def test_watch_payment_example_prints_until_a_final_state(target: str, fake: FakeTriveni) -> None:
    fake.watch_script = [
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_REQUIRES_ACTION, version=1),
        pb.Payment(id="pay_1", status=pb.PAYMENT_STATUS_SUCCEEDED, version=2),
    ]

    result = _run(
        "watch_payment.py", "pay_1", env={"TRIVENI_TARGET": target, "TRIVENI_API_KEY": API_KEY}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "v1 PAYMENT_STATUS_REQUIRES_ACTION",
        "v2 PAYMENT_STATUS_SUCCEEDED",
    ]


@pytest.fixture
def receiver() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "verify_webhook.py"), "--port", "0"],
        env={**os.environ, "TRIVENI_WEBHOOK_SECRETS": f"whsec_new,{SECRET}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("listening on "), first_line
        yield first_line.removeprefix("listening on ").strip(), process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_verify_webhook_example_accepts_signed_and_rejects_tampered_deliveries(
    receiver: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = receiver
    body = b'{"event_id":"evt_42","type":"payment.succeeded"}'
    headers = {
        SIGNATURE_HEADER: sign(body, SECRET),
        EVENT_ID_HEADER: "evt_42",
        SEQUENCE_HEADER: "3",
        "Content-Type": "application/json",
    }

    assert _post(url, body, headers) == 200
    assert _post(url, body, headers) == 200  # a duplicate delivery is acknowledged
    assert _post(url, body.replace(b"succeeded", b"failed"), headers) == 400
    assert _post(url, body, {**headers, SIGNATURE_HEADER: sign(body, "whsec_wrong")}) == 400

    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert output.splitlines() == ["event evt_42 #3: payment.succeeded"]
