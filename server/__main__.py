"""`python -m server serve|migrate|relay|worker|create-merchant|dev`."""

from __future__ import annotations

import asyncio

import typer

from server.config import load_settings
from server.logging_setup import configure_logging

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Triveni payment orchestration backend.")


def _setup() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)


@cli.command()
def serve() -> None:
    """Serve gRPC (:50051) and the HTTP shim (:8080), plus workers unless disabled."""
    from server.entrypoints.runner import serve_processes

    _setup()
    serve_processes(load_settings())


@cli.command()
def migrate() -> None:
    """Apply pending PostgreSQL migrations."""
    from server.adapters.postgres.migrate import apply_migrations

    _setup()
    settings = load_settings()
    applied = asyncio.run(apply_migrations(settings.postgres_url.get_secret_value()))
    typer.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@cli.command()
def worker() -> None:
    """Run the status-sync and merchant-notification workers (probes on TRIVENI_HTTP_PORT)."""
    from server.entrypoints.workers.supervisor import WorkerSet, run_workers_standalone

    _setup()
    asyncio.run(run_workers_standalone(load_settings(), WorkerSet(relay=False)))


@cli.command()
def relay() -> None:
    """Run the outbox relay (PostgreSQL → Kafka) alone (probes on TRIVENI_HTTP_PORT)."""
    from server.entrypoints.workers.supervisor import WorkerSet, run_workers_standalone

    _setup()
    asyncio.run(run_workers_standalone(
        load_settings(), WorkerSet(relay=True, status_sync=False, notifications=False,
                                   sync_retry=False)))


@cli.command("create-merchant")
def create_merchant(name: str, merchant_id: str = typer.Option("", help="id to use"),
                    admin: bool = typer.Option(False, "--admin",
                                               help="an admin key (RoutingService writes)"),
                    ) -> None:
    """Create a merchant and print its API key (shown once, stored only as a hash)."""
    from server.adapters.postgres.merchants import MerchantStore
    from server.adapters.postgres.pool import create_pool

    settings = load_settings()

    async def run() -> tuple[str, str]:
        pool = await create_pool(settings.postgres_url.get_secret_value(), min_size=1,
                                 max_size=2)
        try:
            env = "live" if settings.production else "test"
            return await MerchantStore(pool).create_merchant(
                name, merchant_id=merchant_id or None, env=env, admin=admin)
        finally:
            await pool.close()

    created_id, api_key = asyncio.run(run())
    typer.echo(f"merchant_id={created_id}\napi_key={api_key}")


@cli.command()
def dev() -> None:
    """Development: embedded PostgreSQL/Redis/Kafka for unset URLs, simulator PSP, dev merchant."""
    from server.entrypoints.dev import run_dev

    run_dev()


if __name__ == "__main__":
    cli()
