"""Background workers: the outbox relay (PostgreSQL → Kafka) and the status-sync worker.
They run inside the server process (embedded default) or alone (`python -m server worker`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from server.adapters.kafka.factory import settings_from_env
from server.entrypoints.workers.relay import relay_options_from_env, run_relay
from server.entrypoints.workers.status_sync import StatusSyncWorker

if TYPE_CHECKING:
    from server.bootstrap import App
    from server.config import Settings

__all__ = ["run_workers", "run_workers_standalone"]

log = logging.getLogger(__name__)


async def run_workers(app: App, stop: asyncio.Event) -> None:
    """Run every worker until `stop` is set."""
    settings = app.settings
    tasks = [asyncio.create_task(StatusSyncWorker(app.pool, app.payments).run_forever(stop),
                                 name="status-sync")]
    relay_pool: AsyncConnectionPool[Any] | None = None
    if settings.kafka_bootstrap:
        relay_pool = AsyncConnectionPool(
            settings.postgres_url.get_secret_value(), min_size=1, max_size=2, open=False,
            kwargs={"connect_timeout": 5}, name="triveni-relay")
        await relay_pool.open(wait=False)
        kafka = settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap)
        tasks.append(asyncio.create_task(
            run_relay(relay_pool, kafka, stop, relay_options_from_env(os.environ)),
            name="outbox-relay"))
    else:
        log.warning("KAFKA_BOOTSTRAP is not set: events stay in the outbox until a relay runs")
    try:
        await stop.wait()
    finally:
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        if relay_pool is not None:
            await relay_pool.close()


async def run_workers_standalone(settings: Settings) -> None:
    from server.bootstrap import build_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    app = await build_app(settings)
    try:
        await run_workers(app, stop)
    finally:
        await app.close()
