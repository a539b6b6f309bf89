"""Routing administration: connector accounts' live state, manual overrides, and each
merchant's routing policy (versioned, validated, optimistic concurrency).

Who may do what: connector accounts are platform-wide (every merchant's payments share them),
so any authenticated key may read their state and its own merchant's policy, and only keys
flagged admin (`api_keys.is_admin`, `python -m server create-merchant --admin`) may write:
SetConnectorOverride steers every merchant's traffic, and SetRoutingPolicy is kept to admins so
that routing changes go through the people who own the PSP contracts.

A merchant policy may not carry the platform-wide sections (`health`: the circuit breakers,
`capacity`: the PSP accounts' caps, `scoring.window_*`: the shared success-rate windows); those
come from the global policy (TRIVENI_ROUTING_FILE or the built-in seed rule).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from server.domain.routing import Override, RoutingPolicy, parse_policy
from server.errors import IllegalTransition, NotFound, PermissionDenied, ValidationError
from server.service_layer.routing import AccountStatus, PolicyRouter

__all__ = [
    "AdminAudit",
    "Caller",
    "PolicyRepository",
    "RoutingAdmin",
    "StoredPolicy",
    "VersionConflict",
    "merchant_policy",
]

PLATFORM_WIDE_SECTIONS = ("health", "capacity")
PLATFORM_WIDE_SCORING = ("window_size", "window_max_age_seconds")
MAX_POLICY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """One version of a merchant's routing policy document (version 0: the global policy)."""

    merchant_id: str
    version: int
    document: dict[str, Any]
    updated_at: datetime | None
    updated_by: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the API key's merchant, the audit actor, and the admin flag."""

    merchant_id: str
    actor: str
    is_admin: bool


class VersionConflict(IllegalTransition):
    """expected_version is not the current version (→ FAILED_PRECONDITION)."""

    def __init__(self, current: int, expected: int) -> None:
        super().__init__(f"expected_version {expected} does not match the current version "
                         f"{current}: read the policy again and re-apply your change")
        self.current = current
        self.expected = expected


class PolicyRepository(Protocol):
    async def latest(self, merchant_id: str) -> StoredPolicy | None: ...
    async def save(self, merchant_id: str, document: Mapping[str, Any], *,
                   expected_version: int, actor: str) -> StoredPolicy: ...


class AdminAudit(Protocol):
    async def record(self, *, merchant_id: str, actor: str, action: str, target: str,
                     details: Mapping[str, object]) -> None: ...


def merchant_policy(document: Mapping[str, Any], known_accounts: Collection[str],
                    global_policy: RoutingPolicy) -> RoutingPolicy:
    """Validate a merchant's policy document into the policy routing uses.

    Raises ValidationError naming the document field (e.g. `rules[0].connectors[1]`).
    """
    if not isinstance(document, Mapping):
        raise ValidationError("policy", "must be a JSON object")
    for section in PLATFORM_WIDE_SECTIONS:
        if section in document:
            raise ValidationError(section, "is platform-wide (shared connector accounts): set "
                                           "it in TRIVENI_ROUTING_FILE, not in a merchant policy")
    scoring = document.get("scoring")
    if isinstance(scoring, Mapping):
        for key in PLATFORM_WIDE_SCORING:
            if key in scoring:
                raise ValidationError(f"scoring.{key}", "the success-rate windows are shared by "
                                                        "every merchant: set it globally")
    parsed = parse_policy(dict(document), known_accounts=known_accounts)
    return replace(
        parsed, health=global_policy.health, capacity=global_policy.capacity,
        scoring=replace(parsed.scoring, window_size=global_policy.scoring.window_size,
                        window_max_age_seconds=global_policy.scoring.window_max_age_seconds),
    )


class RoutingAdmin:
    """The RoutingService use cases."""

    def __init__(self, router: PolicyRouter, policies: PolicyRepository, audit: AdminAudit,
                 *, global_document: Mapping[str, Any],
                 on_policy_saved: Callable[[str], None] = lambda merchant_id: None) -> None:
        self._router = router
        self._policies = policies
        self._audit = audit
        self._global_document = dict(global_document)
        self._on_policy_saved = on_policy_saved

    async def list_accounts(self) -> list[AccountStatus]:
        return await self._router.account_statuses()

    async def set_override(self, caller: Caller, name: str, override: Override | None,
                           reason: str) -> AccountStatus:
        """FORCE_UP / FORCE_DOWN / AUTO (Override.NONE) for one account; admin keys only."""
        _require_admin(caller, "SetConnectorOverride")
        if not name:
            raise ValidationError("name", "is required")
        if name not in self._router.account_names:
            raise NotFound(f"no connector account {name!r}")
        if override is None:
            raise ValidationError("override", "must be AUTO, FORCE_UP or FORCE_DOWN")
        if len(reason) > 500:
            raise ValidationError("reason", "must be at most 500 characters")
        await self._router.set_override(name, override)
        await self._audit.record(
            merchant_id=caller.merchant_id, actor=caller.actor, action="connector.override",
            target=name, details={"override": override.value or "auto", "reason": reason})
        statuses = await self._router.account_statuses()
        return next(s for s in statuses if s.name == name)

    async def get_policy(self, caller: Caller) -> StoredPolicy:
        stored = await self._policies.latest(caller.merchant_id)
        if stored is not None:
            return stored
        return StoredPolicy(caller.merchant_id, 0, dict(self._global_document), None, "")

    async def set_policy(self, caller: Caller, policy_json: str,
                         expected_version: int) -> StoredPolicy:
        """Validate and store the next version; applies to the merchant's next payment."""
        _require_admin(caller, "SetRoutingPolicy")
        if expected_version < 0:
            raise ValidationError("expected_version", "must not be negative")
        if not policy_json.strip():
            raise ValidationError("policy_json", "is required")
        if len(policy_json.encode()) > MAX_POLICY_BYTES:
            raise ValidationError("policy_json", f"must be at most {MAX_POLICY_BYTES} bytes")
        try:
            document = json.loads(policy_json)
        except json.JSONDecodeError as exc:
            raise ValidationError("policy_json", f"not valid JSON: {exc.msg} at line "
                                                 f"{exc.lineno} column {exc.colno}") from None
        if not isinstance(document, dict):
            raise ValidationError("policy_json", "must be a JSON object")
        try:
            merchant_policy(document, self._router.account_names, self._router.policy)
        except ValidationError as exc:
            raise ValidationError(f"policy_json.{exc.field}", exc.message) from None
        stored = await self._policies.save(caller.merchant_id, document,
                                           expected_version=expected_version, actor=caller.actor)
        self._on_policy_saved(caller.merchant_id)
        return stored


def _require_admin(caller: Caller, rpc: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"{rpc} needs an admin API key (connector accounts and routing "
                               "are shared by every merchant); this key may only read")
