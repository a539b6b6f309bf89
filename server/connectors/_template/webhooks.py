"""<PSP> webhook verification and parsing. TODO: replace every <PSP> placeholder.

Order matters: verify the signature over the RAW body bytes first (hmac.compare_digest, never
`==`), then check freshness (timestamp within a named tolerance constant) if the PSP sends a
timestamp, and only then parse. Write down here how replays are stopped (freshness window and/or
the dedupe id + the payment state machine) and how the dedupe id is built (the PSP's event id if
it has one, else a stable identity such as `<psp>:<payment id>:<status>`, so a redelivery of
the same event always yields the same id).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from server.connectors.base import ConnectorAccount, WebhookEvent

__all__ = ["compute_signature", "parse_webhook"]


def compute_signature(secret: str, body: bytes) -> str:
    """TODO: the PSP's signature scheme, exactly as documented.

    Keep it a pure function of (secret, signed bytes): the known-answer test calls it with a
    literal input and compares with a digest computed independently (openssl, hashlib).
    """
    raise NotImplementedError("compute the PSP's webhook signature")


def parse_webhook(
    account: ConnectorAccount, headers: Mapping[str, str], body: bytes, now: datetime
) -> WebhookEvent:
    """Verify, then parse, one delivery.

    TODO:
    - header names are case-insensitive: lower-case the mapping first;
    - missing signature → WebhookRejected("unsigned", …); mismatch → ("bad_signature", …);
      outside the tolerance → ("stale", …); unreadable or unknown body → ("malformed", …);
    - no secret configured on the account → Misconfigured (an operator must fix it);
    - return WebhookEvent(kind="payment"|"refund", dedupe_id=…, connector_payment_id=the id
      we stored at create time, status=mapped PspStatus, raw_status=the PSP's word, …).
    """
    raise NotImplementedError("verify and parse the PSP's webhook")
