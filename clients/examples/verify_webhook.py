"""A tiny merchant webhook receiver (standard library only) that verifies Triveni deliveries.

    TRIVENI_WEBHOOK_SECRETS=whsec_new,whsec_old python clients/examples/verify_webhook.py

Listens on 127.0.0.1:$PORT (default 8000). Answers 400 to a delivery that fails verification,
200 to a verified one (and to a duplicate, which it does not process twice).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from triveni import webhooks

_seen_event_ids: set[str] = set()  # use your database in production: deliveries repeat
_seen_lock = threading.Lock()


class WebhookHandler(BaseHTTPRequestHandler):
    secrets: list[str] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)  # the raw bytes: verify before parsing
        try:
            webhooks.verify_signature(
                body, self.headers.get(webhooks.SIGNATURE_HEADER, ""), self.secrets
            )
            event = webhooks.parse_event(body)
        except (webhooks.SignatureVerificationError, ValueError) as exc:
            self.log_message("rejected delivery: %s", exc)
            self._reply(400, b"invalid signature\n")
            return
        event_id = self.headers.get(webhooks.EVENT_ID_HEADER, "")
        with _seen_lock:
            duplicate = event_id in _seen_event_ids
            _seen_event_ids.add(event_id)
        if not duplicate:
            sequence = self.headers.get(webhooks.SEQUENCE_HEADER, "?")
            print(f"event {event_id} #{sequence}: {event.get('type', '?')}", flush=True)
        self._reply(200, b"ok\n")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    secrets = [s for s in os.environ.get("TRIVENI_WEBHOOK_SECRETS", "").split(",") if s]
    if not secrets:
        parser.error("set TRIVENI_WEBHOOK_SECRETS (comma-separated; newest first)")
    WebhookHandler.secrets = secrets
    server = ThreadingHTTPServer(("127.0.0.1", args.port), WebhookHandler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
