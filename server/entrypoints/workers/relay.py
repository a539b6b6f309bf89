"""The outbox relay worker: PostgreSQL outbox → Kafka.

In-process (the embedded default) the worker supervisor calls `run_relay` with the server's
pool; standalone (production, any number of replicas):

    python -m server.entrypoints.workers.relay

Environment: POSTGRES_URL, KAFKA_BOOTSTRAP and the other KAFKA_* variables
(`server.adapters.kafka.factory`), plus
    TRIVENI_RELAY_BATCH_SIZE          500
    TRIVENI_RELAY_POLL_INTERVAL_MS    200   (fallback; NOTIFY outbox wakes it at once)
    TRIVENI_OUTBOX_RETENTION_HOURS    24    (published rows older than this are deleted)
    TRIVENI_RELAY_ENSURE_TOPICS       true  (create missing topics at start-up)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from server.adapters.kafka.factory import build_producer, settings_from_env
from server.adapters.kafka.ports import KafkaSettings
from server.adapters.kafka.topics import DEFAULT_TOPICS, TopicSpec, ensure_topics
from server.adapters.postgres.outbox_relay import OutboxRelay
from server.errors import ConfigurationError, DependencyUnavailable

__all__ = ["RelayOptions", "main", "relay_options_from_env", "run_relay", "run_standalone"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """Tunables of one relay (all have production defaults)."""

    batch_size: int = 500
    poll_interval: float = 0.2
    retention: timedelta = timedelta(hours=24)
    ensure_topics: bool = True
    topics: tuple[TopicSpec, ...] = DEFAULT_TOPICS


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: expected a number") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r}: must be positive")
    return value


def relay_options_from_env(environ: Mapping[str, str]) -> RelayOptions:
    """`RelayOptions` from the TRIVENI_RELAY_* / TRIVENI_OUTBOX_* variables."""
    ensure = environ.get("TRIVENI_RELAY_ENSURE_TOPICS", "true").strip().lower()
    return RelayOptions(
        batch_size=int(_number(environ, "TRIVENI_RELAY_BATCH_SIZE", 500)),
        poll_interval=_number(environ, "TRIVENI_RELAY_POLL_INTERVAL_MS", 200) / 1000,
        retention=timedelta(hours=_number(environ, "TRIVENI_OUTBOX_RETENTION_HOURS", 24)),
        ensure_topics=ensure not in {"0", "false", "no", "off"},
    )


async def run_relay(pool: AsyncConnectionPool[Any], kafka: KafkaSettings, stop: asyncio.Event,
                    options: RelayOptions | None = None) -> None:
    """Relay outbox rows from `pool` to Kafka until `stop` is set (survives outages)."""
    options = options or RelayOptions()
    if options.ensure_topics:
        try:
            report = await asyncio.to_thread(ensure_topics, kafka, options.topics)
            if report.created:
                log.info("created Kafka topics: %s", ", ".join(report.created))
        except DependencyUnavailable as exc:
            # Not fatal: the relay retries publishing; an operator or the next start creates them.
            log.warning("could not ensure Kafka topics: %s", exc)
    producer = build_producer(kafka)
    relay = OutboxRelay(pool, producer, batch_size=options.batch_size,
                        poll_interval=options.poll_interval, retention=options.retention)
    log.info("outbox relay started (client=%s, batch=%d)", kafka.client, options.batch_size)
    try:
        await relay.run_forever(stop)
    finally:
        await producer.close()
        log.info("outbox relay stopped")


async def run_standalone(environ: Mapping[str, str]) -> None:
    """The relay as its own process: own pool, stops on SIGTERM / SIGINT."""
    postgres_url = environ.get("POSTGRES_URL", "").strip()
    if not postgres_url:
        raise ConfigurationError("POSTGRES_URL is not set")
    kafka = settings_from_env(environ)
    options = relay_options_from_env(environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        postgres_url, min_size=1, max_size=2, open=False, kwargs={"connect_timeout": 5},
        name="triveni-relay",
    )
    await pool.open(wait=False)  # PostgreSQL may still be starting; the relay retries
    try:
        await run_relay(pool, kafka, stop, options)
    finally:
        await pool.close()


def main() -> None:
    """`python -m server.entrypoints.workers.relay`."""
    from server.logging_setup import configure_logging

    configure_logging(os.environ.get("TRIVENI_LOG_LEVEL", "INFO").upper(),
                      os.environ.get("TRIVENI_LOG_FORMAT", "json"))
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_standalone(os.environ))
    else:
        uvloop.run(run_standalone(os.environ))


if __name__ == "__main__":
    main()
