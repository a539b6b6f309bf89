"""Composition root: the only place concrete adapters, connectors and services are built."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from server.adapters.geoip import IpCountryLookup
from server.adapters.kafka.factory import settings_from_env
from server.adapters.kafka.merchant_stream import KafkaEventTail, MerchantEventStream
from server.adapters.kafka.topics import PAYMENTS_EVENTS
from server.adapters.metrics import DEPENDENCY_UP, PAYMENT_ATTEMPTS
from server.adapters.postgres.fraud_repository import PostgresFraudRepository
from server.adapters.postgres.merchant_webhooks import PostgresMerchantWebhooks
from server.adapters.postgres.merchants import MerchantStore
from server.adapters.postgres.notifications import PaymentChangeFeed
from server.adapters.postgres.pool import Conn, create_pool
from server.adapters.postgres.routing_policies import (
    PolicyCache,
    PostgresAdminAudit,
    PostgresRoutingPolicies,
)
from server.adapters.postgres.uow import PostgresUnitOfWork
from server.adapters.redis.rate_limit import RedisRateLimiter
from server.adapters.redis.routing_store import RedisRoutingStore
from server.adapters.redis.velocity import RedisVelocityStore
from server.adapters.webhook_sender import check_webhook_url
from server.config import Settings
from server.connector_config import dev_simulator_accounts, load_accounts
from server.connectors.base import ConnectorAccount, Transport
from server.connectors.http import HttpExecutor
from server.connectors.registry import build_default_registry
from server.errors import ConfigurationError
from server.service_layer.fraud_bridge import EngineFraudScreener
from server.service_layer.fraud_metrics import FraudMetrics
from server.service_layer.fraud_screening import FraudScreening
from server.service_layer.merchant_webhooks import MerchantWebhookService
from server.service_layer.payments import PaymentDeps, PaymentService, SyncPolicy
from server.service_layer.ports import RoutableAccount
from server.service_layer.refunds import RefundService
from server.service_layer.routing import PolicyRouter, load_policy, load_policy_document
from server.service_layer.routing_admin import RoutingAdmin, merchant_policy
from server.service_layer.sync_schedule import RetryLadder, parse_ladder
from server.service_layer.webhooks import WebhookService

__all__ = ["AccountRegistry", "App", "build_app"]

log = logging.getLogger(__name__)


class AccountRegistry:
    """Connector accounts by name, each paired with its PSP's connector; one shared transport."""

    def __init__(self, accounts: list[ConnectorAccount], transport: Transport) -> None:
        registry = build_default_registry()
        self.transport = transport
        self._accounts: dict[str, RoutableAccount] = {}
        for account in accounts:
            if account.name in self._accounts:
                raise ConfigurationError(f"connector account {account.name} defined twice")
            self._accounts[account.name] = RoutableAccount(account, registry.get(account.psp))

    def get(self, name: str) -> RoutableAccount | None:
        return self._accounts.get(name)

    def all(self) -> Mapping[str, RoutableAccount]:
        return self._accounts


@dataclass
class App:
    settings: Settings
    pool: AsyncConnectionPool[Conn]
    redis: aioredis.Redis
    executor: HttpExecutor
    accounts: AccountRegistry
    merchants: MerchantStore
    payments: PaymentService
    refunds: RefundService
    webhooks: WebhookService
    fraud: FraudScreening[Conn]
    router: PolicyRouter
    feed: PaymentChangeFeed
    rate_limiter: RedisRateLimiter
    merchant_webhooks: MerchantWebhookService
    payment_events: MerchantEventStream | None  # WatchPayments; None without Kafka
    closers: list[object] = field(default_factory=list)
    routing_admin: RoutingAdmin | None = None  # RoutingService
    policy_cache: PolicyCache | None = None  # per-merchant routing policies (LISTEN)
    extra_pools: list[AsyncConnectionPool[Conn]] = field(default_factory=list)

    async def readiness(self) -> dict[str, bool]:
        checks = {"postgres": False, "redis": False}
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = True
        except Exception:
            pass
        with contextlib.suppress(Exception):
            checks["redis"] = bool(await self.redis.ping())  # type: ignore[misc]
        for name, ok in checks.items():
            DEPENDENCY_UP.labels(dependency=name).set(1 if ok else 0)
        return checks

    async def close(self) -> None:
        if self.policy_cache is not None:
            await self.policy_cache.stop()
        for extra in self.extra_pools:
            await extra.close()
        await self.feed.stop()
        await self.executor.aclose()
        await self.redis.aclose()
        await self.pool.close()


_ATTEMPT_OUTCOME = {"success": "pending", "declined": "declined", "failure": "error",
                    "timeout": "timeout"}


def _observe_attempt(connector: str, outcome: str) -> None:
    PAYMENT_ATTEMPTS.labels(connector=connector, outcome=_ATTEMPT_OUTCOME[outcome]).inc()


@functools.cache
def _fraud_metrics() -> FraudMetrics:
    """Declared once per process (the Prometheus registry refuses duplicates)."""
    return FraudMetrics()


def _merchant_webhooks(settings: Settings, pool: AsyncConnectionPool[Conn]
                       ) -> MerchantWebhookService:
    allow_private = settings.allow_private_webhook_urls and not settings.production
    return MerchantWebhookService(
        PostgresMerchantWebhooks(pool),
        functools.partial(check_webhook_url, allow_private=allow_private))


def _payment_events(settings: Settings) -> MerchantEventStream | None:
    if not settings.kafka_bootstrap:
        return None
    kafka = settings_from_env(os.environ, bootstrap=settings.kafka_bootstrap)
    return MerchantEventStream(lambda: KafkaEventTail(kafka, PAYMENTS_EVENTS))


def _retry_ladder(settings: Settings) -> RetryLadder | None:
    """The Kafka status-sync ladder, or None when Kafka (or the retry path) is off."""
    if not settings.kafka_bootstrap or not settings.kafka_retries:
        return None
    return parse_ladder(settings.sync_retry_delays, settings.sync_retry_tail_seconds)


def connector_accounts(settings: Settings) -> list[ConnectorAccount]:
    if settings.connectors_file is not None:
        return load_accounts(Path(settings.connectors_file), production=settings.production)
    if settings.production:
        raise ConfigurationError("TRIVENI_CONNECTORS_FILE is required when TRIVENI_ENV=production")
    return dev_simulator_accounts(f"http://127.0.0.1:{settings.simulator_port}")


async def build_app(settings: Settings) -> App:
    postgres_url = settings.postgres_url.get_secret_value()
    redis_url = settings.redis_url.get_secret_value()
    if not postgres_url or not redis_url:
        raise ConfigurationError("POSTGRES_URL and REDIS_URL must be set (scripts/run sets them "
                                 "for the embedded stack)")
    accounts = connector_accounts(settings)
    pool = await create_pool(postgres_url, min_size=settings.pg_pool_min,
                             max_size=settings.pg_pool_max)
    redis = aioredis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                              health_check_interval=10)
    executor = HttpExecutor()
    registry = AccountRegistry(accounts, executor)
    fraud = FraudScreening(RedisVelocityStore(redis), IpCountryLookup(), PostgresFraudRepository(),
                           metrics=_fraud_metrics())
    policy = load_policy(settings.routing_file, settings.premium_threshold_minor, accounts)
    stored_policies = PostgresRoutingPolicies(pool)
    # Policy lookups happen while a payment's transaction holds a connection of the main pool:
    # they get a pool of their own, or a full main pool would wait on itself (deadlock).
    policy_pool = await create_pool(postgres_url, min_size=1, max_size=2)
    policy_cache = PolicyCache(
        PostgresRoutingPolicies(policy_pool), postgres_url, policy,
        lambda document, known: merchant_policy(document, known, policy),
        [a.name for a in accounts], ttl_seconds=settings.routing_policy_ttl_seconds)
    policy_cache.start()
    router = PolicyRouter(accounts, policy, RedisRoutingStore.from_url(
        redis_url, scoring=policy.scoring, health=policy.health), policies=policy_cache)
    deps = PaymentDeps(
        uow_factory=lambda: PostgresUnitOfWork(pool),
        accounts=registry,
        fraud=EngineFraudScreener(fraud),
        router=router,
        public_base_url=settings.public_base_url.rstrip("/"),
        max_attempts=settings.max_attempts,
        observe_attempt=_observe_attempt,
        retry_ladder=_retry_ladder(settings),
        sync_policy=SyncPolicy(kafka_grace=timedelta(seconds=settings.sync_retry_grace_seconds)),
    )
    feed = PaymentChangeFeed(postgres_url)
    feed.start()
    return App(
        settings=settings, pool=pool, redis=redis, executor=executor, accounts=registry,
        merchants=MerchantStore(pool), payments=PaymentService(deps),
        refunds=RefundService(deps), webhooks=WebhookService(deps), fraud=fraud, router=router,
        feed=feed, rate_limiter=RedisRateLimiter(redis, per_second=settings.rate_limit_per_second),
        merchant_webhooks=_merchant_webhooks(settings, pool),
        payment_events=_payment_events(settings),
        routing_admin=RoutingAdmin(
            router, stored_policies, PostgresAdminAudit(pool),
            global_document=load_policy_document(settings.routing_file,
                                                 settings.premium_threshold_minor),
            on_policy_saved=policy_cache.invalidate),
        policy_cache=policy_cache, extra_pools=[policy_pool],
    )
