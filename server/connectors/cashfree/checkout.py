"""The Triveni-hosted page behind a Cashfree redirect_url (served by the HTTP shim).

Cashfree gives no checkout URL, only a `payment_session_id` for its JS SDK. The page at
`/checkout/cashfree/{order_id}?payment_session_id=…&mode=…` loads the SDK and opens Cashfree's
hosted checkout in the same tab. The session id is meant for the browser, so carrying it in the
URL exposes nothing new; the page holds no card field (card entry stays on Cashfree's page).
"""

from __future__ import annotations

import html
import json

__all__ = ["CASHFREE_JS_SDK_URL", "render_checkout_page"]

# [P] The v3 JS SDK location; the reference documents only that checkout opens from the SDK.
CASHFREE_JS_SDK_URL = "https://sdk.cashfree.com/js/v3/cashfree.js"
_MODES = frozenset({"sandbox", "production"})


def render_checkout_page(payment_session_id: str, mode: str) -> str:
    """HTML that opens Cashfree checkout for one session (mode: sandbox | production)."""
    if not payment_session_id:
        raise ValueError("payment_session_id is required")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}")
    # json.dumps + escaping '<' keeps the values inert inside the <script> block.
    options = json.dumps({"paymentSessionId": payment_session_id, "redirectTarget": "_self"})
    options = options.replace("<", "\\u003c")
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Redirecting to Cashfree"
        f"</title><script src=\"{html.escape(CASHFREE_JS_SDK_URL)}\"></script></head><body>"
        "<p>Opening the secure Cashfree checkout…</p><script>"
        f"Cashfree({{mode: {json.dumps(mode)}}}).checkout({options});"
        "</script></body></html>"
    )
