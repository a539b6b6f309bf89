"""Running the service: gRPC + HTTP shim (+ in-process workers) in one event loop, N processes
sharing the ports via SO_REUSEPORT, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from server.adapters.metrics import mark_process_dead, reset_multiprocess_dir
from server.bootstrap import App, build_app
from server.config import Settings
from server.entrypoints.grpc.fraud_servicer import FraudServicer
from server.entrypoints.grpc.interceptor import TriveniInterceptor
from server.entrypoints.grpc.payment_servicer import PaymentServicer
from server.entrypoints.grpc.routing_servicer import RoutingServicer
from server.entrypoints.grpc.server import (
    FRAUD_SERVICE,
    PAYMENT_SERVICE,
    ROUTING_SERVICE,
    WEBHOOK_SERVICE,
    build_grpc_server,
    set_serving,
)
from server.entrypoints.grpc.webhook_servicer import WebhookServicer
from server.entrypoints.http.app import HttpDeps, build_http_app
from server.entrypoints.http.dashboard import dashboard_routes
from server.entrypoints.workers.supervisor import run_workers

__all__ = ["bind_http_socket", "serve", "serve_processes"]

log = logging.getLogger("triveni")
SHUTDOWN_GRACE_SECONDS = 10.0


def bind_http_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def grpc_servicers(app: App) -> dict[str, Any]:
    """Every gRPC service this process serves, by full service name."""
    return {
        PAYMENT_SERVICE: PaymentServicer(app.payments, app.refunds, app.feed,
                                         events=app.payment_events),
        WEBHOOK_SERVICE: WebhookServicer(app.merchant_webhooks),
        FRAUD_SERVICE: FraudServicer(app),
        ROUTING_SERVICE: RoutingServicer(app.routing_admin),
    }


async def serve(settings: Settings, *, reuse_port: bool = False, run_workers_here: bool = True,
                stop: asyncio.Event | None = None,
                on_ready: Callable[[App, int, int], Awaitable[None]] | None = None) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    settings.check_http()
    app = await build_app(settings)
    tls = None
    if settings.tls_cert_file and settings.tls_key_file:
        tls = await asyncio.to_thread(_read_tls, settings.tls_key_file, settings.tls_cert_file)
    servicers = grpc_servicers(app)
    grpc_server, grpc_port, health = build_grpc_server(
        servicers=servicers,
        interceptors=[TriveniInterceptor(app.merchants, app.rate_limiter)],
        address=f"{settings.grpc_host}:{settings.grpc_port}", reuse_port=reuse_port, tls=tls)
    http_app = build_http_app(HttpDeps(
        payments=app.payments, webhooks=app.webhooks, merchants=app.merchants,
        readiness=app.readiness, production=settings.production,
        dev_merchant_id=settings.dev_merchant_id,
        allow_unsigned_webhooks=settings.allow_unsigned_webhooks and not settings.production,
        extra_routes=dashboard_routes(app),
    ))
    http_socket = bind_http_socket(settings.http_host, settings.http_port, reuse_port=reuse_port)
    http_port = int(http_socket.getsockname()[1])
    http_server = uvicorn.Server(uvicorn.Config(
        http_app, log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS)))
    workers_stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await grpc_server.start()
        tasks.append(asyncio.create_task(http_server.serve(sockets=[http_socket])))
        if run_workers_here and settings.run_workers:
            tasks.append(asyncio.create_task(run_workers(app, workers_stop)))
        await set_serving(health, True, tuple(servicers))
        tasks.append(asyncio.create_task(
            _watch_dependencies(app, health, tuple(servicers), workers_stop)))
        log.info("serving", extra={"grpc_port": grpc_port, "http_port": http_port,
                                   "pid": os.getpid()})
        if on_ready is not None:
            await on_ready(app, grpc_port, http_port)
        await stop.wait()
    finally:
        # Tell load balancers first, then drain in-flight RPCs, then stop the rest.
        await set_serving(health, False, tuple(servicers))
        if app.payment_events is not None:
            app.payment_events.shutdown()  # WatchPayments clients resume elsewhere by cursor
        http_server.should_exit = True
        await grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
        workers_stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_SECONDS)
        http_socket.close()
        await app.close()
        log.info("stopped")


async def _watch_dependencies(app: App, health: Any, services: tuple[str, ...],
                              stop: asyncio.Event, interval: float = 1.0) -> None:
    """NOT_SERVING while PostgreSQL is unreachable (nothing can be stored); Redis loss only
    degrades routing and velocity checks, so it does not take the server out of rotation."""
    serving = True
    while not stop.is_set():
        checks = await app.readiness()
        if checks["postgres"] != serving:
            serving = checks["postgres"]
            await set_serving(health, serving, services)
            log.warning("health changed", extra={"serving": serving, "checks": checks})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def _read_tls(key_file: Path, cert_file: Path) -> tuple[bytes, bytes]:
    return key_file.read_bytes(), cert_file.read_bytes()


def _child_main(settings: Settings, index: int) -> None:
    from server.logging_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    _install_uvloop()
    asyncio.run(serve(settings, reuse_port=True, run_workers_here=index == 0))


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_processes(settings: Settings) -> None:
    """settings.processes server processes on the same ports; workers run in the first one."""
    _install_uvloop()
    if settings.processes == 1:
        asyncio.run(serve(settings))
        return
    # Every process writes its samples to one directory; /metrics in any process merges them.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                          str(Path(settings.data_dir).resolve() / "prometheus"))
    reset_multiprocess_dir()
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child_main, args=(settings, i), name=f"triveni-{i}")
                for i in range(settings.processes)]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
        if child.pid is not None:
            mark_process_dead(child.pid)
