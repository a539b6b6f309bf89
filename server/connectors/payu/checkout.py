"""The Triveni-hosted page behind a PayU redirect_url (served by the HTTP shim).

`/checkout/payu/{txnid}` looks up the attempt's references (kept by the service layer) and
returns this page: a form with PayU's fields, hash included, that submits itself to PayU's
`_payment` URL (a browser form POST is the only way into PayU's hosted checkout). The fields
are rendered exactly as signed; nothing is re-formatted.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

__all__ = ["form_from_references", "render_checkout_page"]


def form_from_references(references: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(action URL, fields) stored by PayuConnector.create_payment."""
    action = references.get("payu_form_action", "")
    fields = json.loads(references.get("payu_form_fields", "{}"))
    if not action or not isinstance(fields, dict) or "hash" not in fields:
        raise ValueError("references hold no PayU checkout form")
    return action, {str(k): str(v) for k, v in fields.items()}


def render_checkout_page(references: Mapping[str, str]) -> str:
    """HTML that POSTs the signed form to PayU as soon as it loads."""
    action, fields = form_from_references(references)
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Redirecting to PayU</title>"
        "</head><body onload=\"document.forms[0].submit()\">"
        f"<form method=\"post\" action=\"{html.escape(action)}\">{inputs}"
        "<noscript><button type=\"submit\">Continue to PayU</button></noscript></form>"
        "</body></html>"
    )
