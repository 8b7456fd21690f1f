"""``python -m copilot_site.testing.fake_stripe --port 12111``: run the fake Stripe API in the foreground."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from copilot_site.testing.fake_stripe.server import FakeStripeServer


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_INTERVALS = ("day", "week", "month", "year", "one_time")


def _seed_parse(spec: str) -> tuple[str, int, str | None]:
    """``LOOKUP:CENTS[:INTERVAL]`` (interval ``day|week|month|year|one_time``, default month)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(f"--seed-price expects LOOKUP:CENTS[:INTERVAL], got {spec!r}")
    interval = parts[2] if len(parts) == 3 else "month"
    if interval not in _INTERVALS:
        raise argparse.ArgumentTypeError(f"unknown interval {interval!r} in --seed-price {spec!r}")
    return parts[0], int(parts[1]), None if interval == "one_time" else interval


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m copilot_site.testing.fake_stripe",
        description="Run the fake Stripe API server (tests / local development) in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=12111, help="Port to bind (default 12111, 0 = any free port).")
    parser.add_argument(
        "--public-url",
        default=None,
        help="Base URL browsers use for checkout/portal pages (default http://HOST:PORT).",
    )
    parser.add_argument("--webhook-url", default=None, help="POST every event, signed, to this URL.")
    parser.add_argument("--webhook-secret", default=None, help="Signing secret (whsec_...) for --webhook-url.")
    parser.add_argument(
        "--seed-price",
        action="append",
        default=[],
        type=_seed_parse,
        metavar="LOOKUP:CENTS[:INTERVAL]",
        help="Create a product and price with this lookup key at start (repeatable).",
    )
    parser.add_argument("--log-requests", action="store_true", help="Log every HTTP request to stderr.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.webhook_url and not options.webhook_secret:
        parser.error("--webhook-secret is required with --webhook-url")
    try:
        server = FakeStripeServer(
            options.host,
            options.port,
            public_url=options.public_url,
            webhook_url=options.webhook_url,
            webhook_secret=options.webhook_secret,
            verbose=options.log_requests,
        )
    except OSError as exc:
        parser.error(f"cannot listen on {options.host}:{options.port}: {exc}")
    for lookup, cents, interval in options.seed_price:
        price_id = server.state.seed_price(lookup, cents, interval)
        _say(f"seeded price {lookup}: {price_id} ({cents} cents / {interval or 'one time'})")
    _say(f"Fake Stripe API listening on {server.base_url} (STRIPE_API_BASE={server.base_url})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
