"""`python -m server dev` (what scripts/run starts): the whole system on one machine.

Starts embedded PostgreSQL, Redis and a Kafka-protocol broker for whichever of POSTGRES_URL,
REDIS_URL and KAFKA_BOOTSTRAP is unset (data under .data/), applies migrations, starts the
simulator PSP, creates the dev merchant and its API key, prints working examples, and serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path

import uvicorn

from server.adapters.postgres.migrate import apply_migrations
from server.bootstrap import App
from server.config import Settings, load_settings
from server.connectors.simulator.app import SimulatorSettings, build_simulator_app
from server.entrypoints.runner import bind_http_socket, serve
from server.logging_setup import configure_logging

__all__ = ["dev_api_key", "run_dev"]


def dev_api_key(settings: Settings) -> str:
    """TRIVENI_DEV_API_KEY, else the key kept in .data/dev_api_key, else a new one saved there."""
    fixed = settings.dev_api_key.get_secret_value()
    if fixed:
        return fixed
    path = Path(settings.data_dir) / "dev_api_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = f"trv_test_{secrets.token_urlsafe(32)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key


def _examples(api_key: str, grpc_port: int, http_port: int) -> str:
    create = ('{"idempotency_key": "order-1001", "amount": {"amount_minor": 1500000, '
              '"currency": "INR"}, "method": {"upi": {"flow": "UPI_FLOW_INTENT"}}, '
              '"customer": {"email": "asha@example.com"}, "ip_address": "203.0.113.7", '
              '"country": "IN"}')
    seed = ('{"amount": 15000, "currency": "INR", "cardDetails": {}, '
            '"ipAddress": "192.168.1.1", "country": "IN"}')
    return f"""
Triveni is running (development).
  gRPC      localhost:{grpc_port}   (reflection on: grpcurl -plaintext localhost:{grpc_port} list)
  HTTP      http://localhost:{http_port}   (/healthz /readyz /metrics /create-payment)
  API key   {api_key}   (also in .data/dev_api_key)

Try:
  grpcurl -plaintext -H 'authorization: Bearer {api_key}' \\
    -d '{create}' localhost:{grpc_port} triveni.v1.PaymentService/CreatePayment

  curl -X POST http://localhost:{http_port}/create-payment -H "Content-Type: application/json" \\
    -d '{seed}'

Open the payment's redirect_url to complete it at the simulator PSP (it then sends a signed
webhook back). Ctrl-C stops everything.
"""


async def _run(settings: Settings) -> None:
    await apply_migrations(settings.postgres_url.get_secret_value())
    sim_settings = SimulatorSettings(latency_ms=settings.simulator_latency_ms,
                                     public_url=f"http://127.0.0.1:{settings.simulator_port}")
    simulator = uvicorn.Server(uvicorn.Config(build_simulator_app(sim_settings),
                                              log_config=None, access_log=False,
                                              lifespan="off"))
    sim_socket = bind_http_socket("127.0.0.1", settings.simulator_port, reuse_port=False)
    sim_task = asyncio.create_task(simulator.serve(sockets=[sim_socket]))
    api_key = dev_api_key(settings)

    async def ready(app: App, grpc_port: int, http_port: int) -> None:
        # The dev key is an admin key (RoutingService writes) outside production.
        await app.merchants.create_merchant("Dev merchant", merchant_id=settings.dev_merchant_id,
                                            api_key=api_key, admin=not settings.production)
        print(_examples(api_key, grpc_port, http_port), flush=True)

    try:
        await serve(settings, on_ready=ready)
    finally:
        simulator.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sim_task, timeout=5)
        sim_socket.close()


def run_dev() -> None:
    from server.devstack import FAST_CONSUMER_GROUP_SETTINGS, start_dev_services

    settings = load_settings()
    configure_logging(settings.log_level, "console" if os.environ.get(
        "TRIVENI_LOG_FORMAT") is None else settings.log_format)
    services = start_dev_services(
        Path(settings.data_dir),
        postgres=not settings.postgres_url.get_secret_value(),
        redis=not settings.redis_url.get_secret_value(),
        kafka=not settings.kafka_bootstrap,
    )
    try:
        for name, value in services.as_env().items():
            os.environ[name] = value
        os.environ.setdefault("TRIVENI_ALLOW_UNSIGNED_WEBHOOKS", "true")
        # Merchant webhook endpoints on this machine (http://127.0.0.1:…) for trying them out.
        os.environ.setdefault("TRIVENI_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
        if not settings.kafka_bootstrap:  # embedded Tansu: the notifier's group forms in ~3 s
            for option, millis in FAST_CONSUMER_GROUP_SETTINGS.items():
                os.environ.setdefault(f"KAFKA_{option.upper()}", str(millis))
        settings = load_settings()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(settings))
    finally:
        services.stop()
