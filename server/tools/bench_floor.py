"""The stack's floor: a CreatePayment server with Triveni's libraries and I/O, and no logic.

`scripts/bench` runs it after Triveni, on the same machine, database, simulator PSP and load
generator, to show what any server built on grpcio + psycopg + httpx spends per payment here.
Per CreatePayment it does exactly the I/O a payment needs and nothing else:

1. the baseline's first transaction (idempotency record, payment, attempt, audit, outbox),
   pipelined with its COMMIT (one round trip, as Triveni's unit of work does);
2. the simulator connector's create call through `HttpExecutor` (the same PSP client code);
3. the baseline's second transaction (payment update, attempt, audit, outbox), one round trip;

and replies with the Payment. No authentication, validation, fraud screening, routing, Redis,
audit/event building, Kafka, metrics or logs. Whatever Triveni spends above this is its own.

    python -m server.tools.bench_floor --port 50061 --processes 2 --postgres-url URL \\
        --psp-url http://127.0.0.1:9001 --template FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool
from triveni.v1 import common_pb2, payment_service_pb2

from server.connectors.base import ConnectorAccount, CreatePaymentInput
from server.connectors.http import HttpExecutor
from server.connectors.simulator.connector import SimulatorConnector
from server.domain.money import Money
from server.tools.bench import BASELINE_TX1, BASELINE_TX2, baseline_params, die_with_parent

__all__ = ["main"]


class _FloorServicer:
    """CreatePayment only (registered alone; every other method answers UNIMPLEMENTED)."""

    def __init__(self, pool: AsyncConnectionPool[Any], executor: HttpExecutor,
                 account: ConnectorAccount, template: Mapping[str, Any]) -> None:
        self._pool = pool
        self._executor = executor
        self._account = account
        self._connector = SimulatorConnector()
        self._template = template
        self._rng = random.Random(os.getpid())
        self._prefix = f"floor{os.getpid()}_"
        self._sequence = iter(range(1 << 62))

    async def _transaction(self, statements: Sequence[str], params: Mapping[str, Any]) -> None:
        async with self._pool.connection() as conn, conn.pipeline():
            for statement in statements:
                await conn.execute(statement, params)
            await conn.commit()

    async def CreatePayment(self, request: payment_service_pb2.CreatePaymentRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> common_pb2.Payment:
        params = baseline_params(self._template, self._prefix, next(self._sequence), self._rng)
        await self._transaction(BASELINE_TX1, params)
        result = await self._connector.create_payment(self._executor, self._account,
                                                      CreatePaymentInput(
            payment_id=params["pay_id"], attempt_id=params["att_id"],
            amount=Money(params["amount"], "INR"), method="upi",
            method_details={"upi_flow": "intent"}, customer_id=request.customer.id,
            customer_name="", customer_email="", customer_phone="", description="bench",
            return_url="", webhook_url="http://127.0.0.1:1/webhooks/simulator_standard"))
        params.update(psp_id=result.connector_payment_id, redirect=result.redirect_url)
        await self._transaction(BASELINE_TX2, params)
        return common_pb2.Payment(id=params["pay_id"],
                                  status=common_pb2.PAYMENT_STATUS_REQUIRES_ACTION,
                                  redirect_url=result.redirect_url)


async def _serve(args: argparse.Namespace, template: dict[str, Any]) -> None:
    template["payload"] = bytes.fromhex(template["payload_hex"])
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        args.postgres_url, min_size=args.pg_pool_max, max_size=args.pg_pool_max, open=False)
    await pool.open(wait=True, timeout=30)
    executor = HttpExecutor()
    account = ConnectorAccount(name="simulator_standard", psp="simulator",
                               base_url=args.psp_url)
    servicer = _FloorServicer(pool, executor, account, template)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "triveni.v1.PaymentService", {"CreatePayment": grpc.unary_unary_rpc_method_handler(
            servicer.CreatePayment,
            request_deserializer=payment_service_pb2.CreatePaymentRequest.FromString,
            response_serializer=common_pb2.Payment.SerializeToString)}),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await executor.aclose()
    await pool.close()


def _child(args: argparse.Namespace) -> None:
    die_with_parent()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args, json.loads(Path(args.template).read_text())))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.tools.bench_floor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--psp-url", required=True)
    parser.add_argument("--template", required=True,
                        help="JSON file: the template row of scripts/bench's baselines")
    parser.add_argument("--pg-pool-max", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(args,), name=f"floor-{i}")
                for i in range(args.processes)]
    for child in children:
        child.start()
    # Blocked only now: the children must not inherit a mask that hides SIGTERM from them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for child in children:
        if child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(5)
        if child.is_alive():
            child.kill()


if __name__ == "__main__":
    main()
