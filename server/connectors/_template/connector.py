"""<PSP> connector. TODO: replace every <PSP> placeholder and every NotImplementedError.

A connector is a stateless translator (see server/connectors/base.py): it builds HttpRequests,
sends them with `await transport.send(account, request)` (never its own socket), parses the
answers, maps statuses (models.py) and classifies errors into the base.py tree:

    Declined        the PSP refused for good (4xx business errors)     → do not retry
    TransientError  nothing happened at the PSP (5xx on a read, ...)   → retry / fail over
    RateLimited     HTTP 429, with retry_after_seconds when given
    UnknownOutcome  a write may have reached the PSP                   → status sync first
    Misconfigured   credentials / account setup (401/403, missing credential)

The shared HttpExecutor already raises Misconfigured (401/403, redirects), RateLimited (429),
TransientError/UnknownOutcome (network, 5xx) and retries requests marked safe_to_retry; it
hands back 2xx and the other 4xx for the connector to read, since only the connector knows the
PSP's error body. Still handle every status yourself: tests may use another Transport.

Write the docstring of this module for the next reader: the identity choice (which id is
`connector_payment_id`, known before the call?), how a retried create avoids a second charge,
what `redirect_url` is, and which credentials/options the account needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from server.connectors._template import webhooks
from server.connectors.base import (
    ConnectorAccount,
    ConnectorPayment,
    ConnectorRefund,
    CreatePaymentInput,
    RefundInput,
    Transport,
    WebhookEvent,
)

__all__ = ["TemplateConnector"]


class TemplateConnector:
    """TODO: rename (e.g. AcmepayConnector) and set `psp` to the registry name."""

    psp = "template"

    async def create_payment(
        self, transport: Transport, account: ConnectorAccount, data: CreatePaymentInput
    ) -> ConnectorPayment:
        """Start a payment at the PSP.

        TODO:
        - send `data.attempt_id` as the PSP's order id / receipt / txnid (or an idempotency
          key), so a retried create can never charge twice; if the PSP refuses a duplicate id,
          read the existing object instead of failing;
        - format `data.amount` once in the PSP's unit (Money.to_major_string() for rupee
          strings, amount_minor for paise) and sign/send that exact string;
        - mark the request safe_to_retry only if the PSP deduplicates it;
        - return REQUIRES_ACTION with the URL the customer must open (redirect_url), the PSP
          reference for status queries (connector_payment_id) and any other ids in references.
        """
        raise NotImplementedError("create the payment at the PSP")

    async def get_payment(
        self, transport: Transport, account: ConnectorAccount, connector_payment_id: str,
        references: Mapping[str, str],
    ) -> ConnectorPayment:
        """Ask the PSP for the payment's current status (status sync).

        TODO: GET (or the PSP's status command) by connector_payment_id; map the status with
        models.py; fill amount_captured on success and error_code/error_message on failure;
        decide (and document) what "the PSP has never heard of it" means.
        """
        raise NotImplementedError("read the payment status from the PSP")

    async def refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput
    ) -> ConnectorRefund:
        """Refund all or part of a captured payment.

        TODO: send `data.refund_id` as the PSP's refund id / idempotency key so a retry never
        refunds twice (on "already exists", read the existing refund); send `data.amount` in
        the PSP's unit; map over-refund and not-captured refusals to Declined.
        """
        raise NotImplementedError("refund at the PSP")

    async def get_refund(
        self, transport: Transport, account: ConnectorAccount, data: RefundInput,
        connector_refund_id: str,
    ) -> ConnectorRefund:
        """Read one refund's status.

        TODO: query by connector_refund_id (or by data.refund_id when the PSP accepts ours, so
        a refund whose create timed out can still be found); map with REFUND_STATUS_MAP.
        """
        raise NotImplementedError("read the refund status from the PSP")

    def parse_webhook(
        self, account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify the signature (constant time) BEFORE parsing; see webhooks.py."""
        return webhooks.parse_webhook(account, headers, body, now)
