"""Run the simulator PSP standalone: `python -m server.connectors.simulator --port 9001 ...`."""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence

import uvicorn

from server.connectors.simulator.app import (
    FAILURE_MODES,
    OPERATIONS,
    SimulatorSettings,
    build_simulator_app,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.connectors.simulator",
                                     description="Triveni's simulator PSP (local HTTP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--success-rate", type=float, default=1.0)
    parser.add_argument("--failure-mode", choices=sorted(FAILURE_MODES), default="none")
    parser.add_argument("--failure-rate", type=float, default=1.0)
    parser.add_argument("--failure-count", type=int, default=0,
                        help="fail only the next N matching requests (0 = all)")
    parser.add_argument("--failure-operations", default="create_payment",
                        help=f"comma list of {','.join(sorted(OPERATIONS))}")
    parser.add_argument("--retry-after", type=int, default=1,
                        help="Retry-After seconds for rate_limit")
    parser.add_argument("--hang-seconds", type=float, default=30.0,
                        help="how long the timeout mode holds a response")
    parser.add_argument("--auto-complete-ms", type=float, default=None,
                        help="complete every payment by itself after this many ms")
    parser.add_argument("--duplicate-webhooks", type=int, default=0)
    parser.add_argument("--refund-delay-ms", type=float, default=0.0)
    parser.add_argument("--webhook-secret", default="",
                        help="secret for every account (default: whsec_dev_<account>)")
    parser.add_argument("--account-secret", action="append", default=[], metavar="NAME=SECRET",
                        help="webhook secret of one account (repeatable)")
    parser.add_argument("--api-key", default="", help="require Authorization: Bearer <key>")
    parser.add_argument("--public-url", default="", help="base of checkout_url links")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> SimulatorSettings:
    account_secrets: dict[str, str] = {}
    for item in args.account_secret:
        name, sep, secret = item.partition("=")
        if not sep or not name or not secret:
            raise SystemExit(f"--account-secret expects NAME=SECRET, got {item!r}")
        account_secrets[name] = secret
    settings = SimulatorSettings(
        latency_ms=args.latency_ms, latency_jitter_ms=args.jitter_ms,
        success_rate=args.success_rate, failure_mode=args.failure_mode,
        failure_rate=args.failure_rate, failure_count=args.failure_count,
        failure_operations=tuple(op for op in args.failure_operations.split(",") if op),
        retry_after_seconds=args.retry_after, hang_seconds=args.hang_seconds,
        auto_complete=args.auto_complete_ms is not None,
        auto_complete_ms=args.auto_complete_ms or 0.0,
        duplicate_webhooks=args.duplicate_webhooks, refund_delay_ms=args.refund_delay_ms,
        webhook_secret=args.webhook_secret, webhook_secrets=account_secrets,
        api_key=args.api_key, public_url=args.public_url,
    )
    try:
        settings.validate()
    except ValueError as exc:
        raise SystemExit(f"invalid settings: {exc}") from exc
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed) if args.seed is not None else None
    app = build_simulator_app(settings_from(args), rng=rng)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                lifespan="off")


if __name__ == "__main__":
    main()
