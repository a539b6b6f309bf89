"""Connector accounts from a TOML file (TRIVENI_CONNECTORS_FILE), validated at start-up.

```toml
[accounts.instamojo_premium]
psp = "instamojo"
base_url = "https://api.instamojo.com"
tier = "premium"            # preferred above the premium threshold (seed: ₹10,000)
priority = 10               # lower = preferred in static order
timeout_seconds = 10
methods = ["upi", "card", "netbanking", "wallet"]
min_amount_minor = 900
max_amount_minor = 20000000
credentials = { client_id = "env:IM_PREMIUM_CLIENT_ID", client_secret = "file:/run/secrets/im" }
webhook_secret = "env:INSTAMOJO_PREMIUM_SALT"
options = { api_version = "v2" }
```
Secret values are never written in the file itself: `env:NAME` reads an environment variable,
`file:PATH` reads a file (Docker/Kubernetes secrets). Plain values are accepted only outside
production.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.connectors.base import AccountCapabilities, ConnectorAccount
from server.errors import ConfigurationError

__all__ = ["REQUIRED_CREDENTIALS", "dev_simulator_accounts", "load_accounts", "parse_accounts"]

REQUIRED_CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "simulator": (),
    "instamojo": ("client_id", "client_secret"),
    "razorpay": ("key_id", "key_secret"),
    "cashfree": ("client_id", "client_secret"),
    "payu": ("key", "salt"),
}
_INSTAMOJO_V1_CREDENTIALS = ("api_key", "auth_token")
_METHODS = frozenset({"upi", "card", "netbanking", "wallet"})


def dev_simulator_accounts(base_url: str) -> list[ConnectorAccount]:
    """The embedded stack's two accounts, mirroring the seed's premium/standard pair."""
    return [
        ConnectorAccount(name="simulator_premium", psp="simulator", base_url=base_url,
                         webhook_secret="whsec_dev_simulator_premium", tier="premium",
                         priority=20, timeout_seconds=5.0),
        ConnectorAccount(name="simulator_standard", psp="simulator", base_url=base_url,
                         webhook_secret="whsec_dev_simulator_standard", tier="standard",
                         priority=10, timeout_seconds=5.0),
    ]


def load_accounts(path: Path, *, production: bool) -> list[ConnectorAccount]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"TRIVENI_CONNECTORS_FILE {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from exc
    return parse_accounts(data, production=production, source=str(path))


def parse_accounts(data: Mapping[str, Any], *, production: bool,
                   source: str = "connectors") -> list[ConnectorAccount]:
    accounts_data = data.get("accounts")
    if not isinstance(accounts_data, dict) or not accounts_data:
        raise ConfigurationError(f"{source}: needs at least one [accounts.<name>] table")
    accounts = [_parse_account(name, raw, production=production, source=source)
                for name, raw in accounts_data.items()]
    return accounts


def _parse_account(name: str, raw: Any, *, production: bool, source: str) -> ConnectorAccount:
    where = f"{source}: accounts.{name}"
    try:
        return _parse_account_fields(name, raw, where=where, production=production)
    except (TypeError, ValueError) as exc:
        # A wrongly typed value (priority = "high", credentials = "...") still names its place.
        raise ConfigurationError(f"{where}: {exc}") from exc


def _table(raw: Any, key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}.{key} must be a table")
    return value


def _parse_account_fields(name: str, raw: Any, *, where: str, production: bool
                          ) -> ConnectorAccount:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where} must be a table")
    if not name.replace("_", "").isalnum():
        raise ConfigurationError(f"{where}: name may contain only letters, digits and _")
    psp = str(raw.get("psp", ""))
    if psp not in REQUIRED_CREDENTIALS:
        raise ConfigurationError(
            f"{where}.psp must be one of {sorted(REQUIRED_CREDENTIALS)}, got {psp!r}")
    base_url = raw.get("base_url", "")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{where}.base_url must be an http(s) URL")
    if production and base_url.startswith("http://"):
        raise ConfigurationError(f"{where}.base_url must use https in production")
    credentials = {key: _secret(value, f"{where}.credentials.{key}", production)
                   for key, value in _table(raw, "credentials", where).items()}
    options = {str(k): str(v) for k, v in _table(raw, "options", where).items()}
    required = REQUIRED_CREDENTIALS[psp]
    if psp == "instamojo" and options.get("api_version") == "v1.1":
        required = _INSTAMOJO_V1_CREDENTIALS
    missing = [key for key in required if not credentials.get(key)]
    if missing:
        raise ConfigurationError(f"{where}: missing credentials {', '.join(missing)}")
    webhook_secret = _secret(raw.get("webhook_secret", ""), f"{where}.webhook_secret",
                             production)
    if not webhook_secret:
        raise ConfigurationError(f"{where}.webhook_secret is required (webhooks are verified)")
    raw_methods = raw.get("methods", sorted(_METHODS))
    if not isinstance(raw_methods, list | tuple):
        raise ConfigurationError(
            f"{where}.methods must be a subset of {sorted(_METHODS)}, given as a list")
    methods = frozenset(raw_methods)
    if not methods or not methods <= _METHODS:
        raise ConfigurationError(f"{where}.methods must be a subset of {sorted(_METHODS)}")
    capabilities = AccountCapabilities(
        methods=methods, currencies=frozenset(raw.get("currencies", ["INR"])),
        min_amount_minor=int(raw.get("min_amount_minor", 100)),
        max_amount_minor=int(raw.get("max_amount_minor", 100_000_000)),
    )
    if capabilities.min_amount_minor > capabilities.max_amount_minor:
        raise ConfigurationError(f"{where}: min_amount_minor is above max_amount_minor")
    tier = raw.get("tier", "standard")
    if tier not in ("premium", "standard"):
        raise ConfigurationError(f"{where}.tier must be 'premium' or 'standard'")
    return ConnectorAccount(
        name=name, psp=psp, base_url=base_url.rstrip("/"), credentials=credentials,
        webhook_secret=webhook_secret, capabilities=capabilities, tier=tier,
        priority=int(raw.get("priority", 100)),
        timeout_seconds=float(raw.get("timeout_seconds", 10.0)), options=options,
    )


def _secret(value: Any, where: str, production: bool) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{where} must be a string")
    if value.startswith("env:"):
        name = value[4:]
        resolved = os.environ.get(name, "")
        if not resolved:
            raise ConfigurationError(f"{where}: environment variable {name} is not set")
        return resolved
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read secret file {path}") from exc
    if value and production:
        raise ConfigurationError(f"{where}: use env:NAME or file:PATH for secrets in production")
    return value
