"""The client package's example, run as a user would, against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import payment_service_pb2 as ps

from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "examples" / "create_payment.py"


async def test_create_payment_example_prints_a_payment_it_created_on_the_live_server(
        stack: Stack) -> None:
    # A merchant of its own: the example's fixed customer stays clear of other tests' velocity.
    merchant_id, api_key = await stack.app.merchants.create_merchant("example-run")
    env = {**os.environ, "TRIVENI_TARGET": stack.grpc_target, "TRIVENI_API_KEY": api_key}
    # A subprocess awaited without blocking: the server under test runs in this event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    printed = json.loads(stdout)
    assert printed["id"].startswith("pay_")
    assert printed["merchant_id"] == merchant_id
    assert printed["amount"] == {"amount_minor": "1500000", "currency": "INR"}  # ₹15,000
    assert printed["status"] == "PAYMENT_STATUS_REQUIRES_ACTION"
    assert printed["redirect_url"].startswith(stack.simulator_url)
    assert printed["connector"] == "simulator_premium"  # above ₹10,000: the premium account
    async with stack.channel() as channel:
        stored = await stack.payments(channel).GetPayment(
            ps.GetPaymentRequest(id=printed["id"]), metadata=stack.metadata(api_key))
    assert stored.status == pb.PAYMENT_STATUS_REQUIRES_ACTION
    assert stored.customer.phone == "+919876543210"


async def test_create_payment_example_without_an_api_key_explains_what_to_set(
        stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRIVENI_API_KEY"}
    env["TRIVENI_TARGET"] = stack.grpc_target
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "TRIVENI_API_KEY" in stderr.decode()
