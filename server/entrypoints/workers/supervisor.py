"""Background workers: the outbox relay (PostgreSQL → Kafka) and the status-sync worker (and,
where configured, the merchant notifier). They run inside the server process (embedded default)
or alone (`python -m server relay` / `python -m server worker`), each alone process serving
/healthz, /readyz and /metrics on TRIVENI_HTTP_PORT for its orchestrator and Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from server.adapters.kafka.factory import settings_from_env
from server.entrypoints.http.probes import probe_routes
from server.entrypoints.workers.connector_health import run_connector_health_export
from server.entrypoints.workers.merchant_notifier import NotifierOptions, run_merchant_notifier
from server.entrypoints.workers.relay import relay_options_from_env, run_relay
from server.entrypoints.workers.status_sync import StatusSyncWorker
from server.entrypoints.workers.sync_retry import run_sync_retry_for

if TYPE_CHECKING:
    from server.bootstrap import App
    from server.config import Settings

__all__ = ["WorkerSet", "run_workers", "run_workers_standalone"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSet:
    relay: bool = True
    status_sync: bool = True
    notifications: bool = True
    sync_retry: bool = True  # Kafka status-sync retry consumers (payments.retry.*)


async def run_workers(app: App, stop: asyncio.Event, which: WorkerSet | None = None) -> None:
    """Run the selected workers until `stop` is set."""
    which = which or WorkerSet()
    settings = app.settings
    tasks: list[asyncio.Task[None]] = []
    if which.status_sync:
        tasks.append(asyncio.create_task(
            StatusSyncWorker(app.pool, app.payments).run_forever(stop), name="status-sync"))
        tasks.append(asyncio.create_task(
            run_connector_health_export(app.router, stop), name="connector-health"))
    if which.sync_retry and settings.kafka_bootstrap and app.payments.deps.retry_ladder:
        tasks.append(asyncio.create_task(
            run_sync_retry_for(settings, app.payments, stop), name="sync-retry"))
    relay_pool: AsyncConnectionPool[Any] | None = None
    if which.relay and settings.kafka_bootstrap:
        relay_pool = AsyncConnectionPool(
            settings.postgres_url.get_secret_value(), min_size=1, max_size=2, open=False,
            kwargs={"connect_timeout": 5}, name="triveni-relay")
        await relay_pool.open(wait=False)
        kafka = settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap)
        tasks.append(asyncio.create_task(
            run_relay(relay_pool, kafka, stop, relay_options_from_env(os.environ)),
            name="outbox-relay"))
    elif which.relay:
        log.warning("KAFKA_BOOTSTRAP is not set: events stay in the outbox until a relay runs")
    if which.notifications and settings.run_merchant_notifier and settings.kafka_bootstrap:
        kafka = settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap)
        tasks.append(asyncio.create_task(run_merchant_notifier(
            app.pool, kafka, stop, NotifierOptions.from_settings(settings)),
            name="merchant-notifier"))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        if relay_pool is not None:
            await relay_pool.close()


def _probe_app(app: App) -> Starlette:
    # Ready while PostgreSQL answers: the workers' queues live there; Redis only degrades them.
    return Starlette(routes=probe_routes(app.readiness, required=["postgres"]))


async def run_workers_standalone(settings: Settings, which: WorkerSet) -> None:
    from server.bootstrap import build_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    app = await build_app(settings)
    probes = uvicorn.Server(uvicorn.Config(_probe_app(app), host=settings.http_host,
                                           port=settings.http_port, log_config=None,
                                           access_log=False, lifespan="off"))
    probe_task = asyncio.create_task(probes.serve())
    try:
        await run_workers(app, stop, which)
    finally:
        probes.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(probe_task, timeout=5)
        await app.close()
