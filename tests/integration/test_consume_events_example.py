"""clients/examples/consume_events.py against the session's broker: each event applied once."""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2

from tests.fixtures.stack import Stack
from tests.integration.merchant_webhook_support import eventually_async, new_merchant

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "examples" / "consume_events.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consume_events", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_prints_each_state_change_of_the_merchant_once(
        stack: Stack, tmp_path: Path) -> None:
    merchant = await new_merchant(stack)
    payment = await merchant.payment()
    await merchant.pay(payment)
    await eventually_async(lambda: merchant.has_status(payment.id, pb.PAYMENT_STATUS_SUCCEEDED),
                           message="the payment to succeed")
    result = await asyncio.to_thread(subprocess.run, [
        sys.executable, str(EXAMPLE), "--bootstrap", stack.settings.kafka_bootstrap,
        "--group", f"example-{secrets.token_hex(4)}", "--db", str(tmp_path / "seen.sqlite3"),
        "--merchant", merchant.merchant_id, "--max-events", "3", "--timeout", "40",
        "--session-timeout-ms", "6000"], capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["#1", "payment.created"], ["#2", "payment.requires_action"],
        ["#3", "payment.succeeded"]]
    assert all(line.startswith(payment.id) for line in lines)


def test_a_repeated_or_older_event_is_not_applied_again(tmp_path: Path) -> None:
    module = example()
    db = sqlite3.connect(tmp_path / "seen.sqlite3")
    db.executescript(module.SCHEMA)
    newer = events_pb2.PaymentEvent(event_id="evt_2", sequence=2, payment=pb.Payment(id="pay_1"))
    older = events_pb2.PaymentEvent(event_id="evt_1", sequence=1, payment=pb.Payment(id="pay_1"))
    assert module.apply_once(db, newer) is True
    assert module.apply_once(db, newer) is False  # the same event again
    assert module.apply_once(db, older) is False  # arrived late: recorded, not applied
    assert module.apply_once(db, older) is False
