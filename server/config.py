"""Typed settings from the environment (and a .env file). Secrets are wrapped so they never print.

Every variable is listed, with its default, in the README's configuration table.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from server.domain.merchant_webhooks import RetrySchedule

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Literal["development", "production", "test"] = Field(
        "development", validation_alias="TRIVENI_ENV")
    # Unset → scripts/run and the tests start embedded servers (development only).
    postgres_url: SecretStr = Field(SecretStr(""), validation_alias="POSTGRES_URL")
    redis_url: SecretStr = Field(SecretStr(""), validation_alias="REDIS_URL")
    kafka_bootstrap: str = Field("", validation_alias="KAFKA_BOOTSTRAP")
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python", validation_alias="TRIVENI_KAFKA_CLIENT")

    grpc_host: str = Field("0.0.0.0", validation_alias="TRIVENI_GRPC_HOST")
    grpc_port: int = Field(50051, validation_alias="TRIVENI_GRPC_PORT")
    http_host: str = Field("0.0.0.0", validation_alias="TRIVENI_HTTP_HOST")
    http_port: int = Field(8080, validation_alias="TRIVENI_HTTP_PORT")
    processes: int = Field(1, ge=1, le=64, validation_alias="TRIVENI_PROCESSES")
    run_workers: bool = Field(True, validation_alias="TRIVENI_RUN_WORKERS")
    tls_cert_file: Path | None = Field(None, validation_alias="TRIVENI_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(None, validation_alias="TRIVENI_TLS_KEY_FILE")
    # Base URL PSPs use to reach our webhook shim (/webhooks/{account}).
    public_base_url: str = Field("http://127.0.0.1:8080", validation_alias="TRIVENI_PUBLIC_URL")

    data_dir: Path = Field(Path(".data"), validation_alias="TRIVENI_DATA_DIR")
    log_level: str = Field("INFO", validation_alias="TRIVENI_LOG_LEVEL")
    log_format: Literal["json", "console"] = Field("json", validation_alias="TRIVENI_LOG_FORMAT")

    connectors_file: Path | None = Field(None, validation_alias="TRIVENI_CONNECTORS_FILE")
    routing_file: Path | None = Field(None, validation_alias="TRIVENI_ROUTING_FILE")
    # Seed rule: above this many paise, premium accounts are preferred (₹10,000).
    premium_threshold_minor: int = Field(1_000_000, validation_alias="TRIVENI_PREMIUM_THRESHOLD")
    max_attempts: int = Field(3, ge=1, le=10, validation_alias="TRIVENI_MAX_ATTEMPTS")
    # Per-merchant routing policies are cached this long per process (NOTIFY drops them sooner).
    routing_policy_ttl_seconds: float = Field(
        1.0, gt=0, validation_alias="TRIVENI_ROUTING_POLICY_TTL_SECONDS")
    # Kafka status-sync retries (docs/routing.md): on when KAFKA_BOOTSTRAP is set; delays of
    # the payments.retry.5s/30s/5m/1h rungs in seconds, the tail after creation, the consumer
    # groups' prefix, handler failures before payments.dlq, and how long after a message was
    # due the PostgreSQL sweeper steps in.
    kafka_retries: bool = Field(True, validation_alias="TRIVENI_KAFKA_RETRIES")
    sync_retry_delays: str = Field("5,30,300,3600", validation_alias="TRIVENI_SYNC_RETRY_DELAYS")
    sync_retry_tail_seconds: float = Field(
        3 * 86_400.0, gt=0, validation_alias="TRIVENI_SYNC_RETRY_TAIL_SECONDS")
    sync_retry_group: str = Field("triveni-payments-retry",
                                  validation_alias="TRIVENI_SYNC_RETRY_GROUP")
    sync_retry_max_failures: int = Field(
        5, ge=1, validation_alias="TRIVENI_SYNC_RETRY_MAX_FAILURES")
    sync_retry_grace_seconds: float = Field(
        60.0, ge=0, validation_alias="TRIVENI_SYNC_RETRY_GRACE_SECONDS")
    # Consumer-group timings over the KAFKA_* defaults (Tansu joins in ~3 s with 6000/1000/5000).
    kafka_session_timeout_ms: int | None = Field(None, validation_alias="KAFKA_SESSION_TIMEOUT_MS")
    kafka_heartbeat_interval_ms: int | None = Field(
        None, validation_alias="KAFKA_HEARTBEAT_INTERVAL_MS")
    kafka_max_poll_interval_ms: int | None = Field(
        None, validation_alias="KAFKA_MAX_POLL_INTERVAL_MS")

    pg_pool_min: int = Field(2, validation_alias="TRIVENI_PG_POOL_MIN")
    pg_pool_max: int = Field(16, validation_alias="TRIVENI_PG_POOL_MAX")
    rate_limit_per_second: int = Field(1000, validation_alias="TRIVENI_RATE_LIMIT_PER_SECOND")

    # Merchant webhooks (docs/merchant-webhooks.md): seconds to wait after each failed attempt
    # (1m,5m,30m,2h,6h,12h,24h,24h,24h: ten attempts over ~3.9 days), per-attempt timeout, and
    # whether this process runs the notifier (fan-out consumer + delivery loop) with its workers.
    webhook_retry_schedule: str = Field("60,300,1800,7200,21600,43200,86400,86400,86400",
                                        validation_alias="TRIVENI_WEBHOOK_RETRY_SCHEDULE")
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, validation_alias="TRIVENI_WEBHOOK_TIMEOUT_SECONDS")
    run_merchant_notifier: bool = Field(True, validation_alias="TRIVENI_RUN_MERCHANT_NOTIFIER")
    merchant_notifier_group: str = Field("triveni-merchant-notifier",
                                         validation_alias="TRIVENI_MERCHANT_NOTIFIER_GROUP")

    # Development conveniences, refused in production.
    dev_api_key: SecretStr = Field(SecretStr(""), validation_alias="TRIVENI_DEV_API_KEY")
    dev_merchant_id: str = Field("mer_dev", validation_alias="TRIVENI_DEV_MERCHANT_ID")
    allow_unsigned_webhooks: bool = Field(False, validation_alias="TRIVENI_ALLOW_UNSIGNED_WEBHOOKS")
    # Lets merchant webhook endpoints use http and private/loopback addresses (local receivers).
    allow_private_webhook_urls: bool = Field(
        False, validation_alias="TRIVENI_ALLOW_PRIVATE_WEBHOOK_URLS")
    # The embedded simulator PSP (scripts/run starts it; benchmarks tune it).
    simulator_port: int = Field(9010, validation_alias="TRIVENI_SIMULATOR_PORT")
    simulator_latency_ms: int = Field(20, validation_alias="TRIVENI_SIMULATOR_LATENCY_MS")
    # Signs dashboard session cookies (HMAC-SHA256). Required in production; in development an
    # unset secret is replaced by a random one per Settings object (sessions end on restart).
    dashboard_secret: SecretStr = Field(SecretStr(""), validation_alias="TRIVENI_DASHBOARD_SECRET")
    dashboard_session_hours: float = Field(
        8.0, gt=0, le=24 * 7, validation_alias="TRIVENI_DASHBOARD_SESSION_HOURS")

    @field_validator("sync_retry_delays")
    @classmethod
    def _ladder(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("expected comma-separated seconds, e.g. 5,30,300,3600") from None
        if not delays or any(d <= 0 for d in delays):
            raise ValueError("expected at least one positive delay")
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _dashboard_secret_for_development(self) -> Settings:
        if not self.dashboard_secret.get_secret_value() and self.env != "production":
            # Generated once here, so the N server processes (spawned with these settings)
            # accept each other's session cookies.
            self.dashboard_secret = SecretStr(secrets.token_urlsafe(32))
        return self

    @property
    def production(self) -> bool:
        return self.env == "production"

    def check(self) -> None:
        """Refuse unsafe combinations at start-up."""
        from server.errors import ConfigurationError

        if self.production:
            if self.allow_unsigned_webhooks:
                raise ConfigurationError(
                    "TRIVENI_ALLOW_UNSIGNED_WEBHOOKS cannot be set when TRIVENI_ENV=production")
            for name, value in (("POSTGRES_URL", self.postgres_url.get_secret_value()),
                                ("REDIS_URL", self.redis_url.get_secret_value()),
                                ("KAFKA_BOOTSTRAP", self.kafka_bootstrap)):
                if not value:
                    raise ConfigurationError(f"{name} is required when TRIVENI_ENV=production")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigurationError(
                "set both TRIVENI_TLS_CERT_FILE and TRIVENI_TLS_KEY_FILE, or neither")
        self._check_merchant_webhooks()

    def check_http(self) -> None:
        """What serving the HTTP shim needs on top of check(): the dashboard's session key.
        Only `serve` needs it, so migrate, relay and worker start without it."""
        from server.errors import ConfigurationError

        if self.production and len(self.dashboard_secret.get_secret_value()) < 32:
            raise ConfigurationError("TRIVENI_DASHBOARD_SECRET (at least 32 characters) is "
                                     "required to serve when TRIVENI_ENV=production")

    def webhook_schedule(self) -> RetrySchedule:
        """TRIVENI_WEBHOOK_RETRY_SCHEDULE parsed."""
        from server.domain.merchant_webhooks import RetrySchedule

        return RetrySchedule.parse(self.webhook_retry_schedule)

    def _check_merchant_webhooks(self) -> None:
        from server.errors import ConfigurationError

        try:
            schedule = self.webhook_schedule()
        except ValueError as exc:
            raise ConfigurationError(f"TRIVENI_WEBHOOK_RETRY_SCHEDULE: {exc}") from None
        if self.production and self.allow_private_webhook_urls:
            raise ConfigurationError(
                "TRIVENI_ALLOW_PRIVATE_WEBHOOK_URLS cannot be set when TRIVENI_ENV=production")
        if self.production and schedule.total.total_seconds() < 3 * 86400:
            raise ConfigurationError(
                "TRIVENI_WEBHOOK_RETRY_SCHEDULE must retry for at least 3 days in production")


def load_settings() -> Settings:
    settings = Settings()
    settings.check()
    return settings
