"""``python manage.py fake_stripe --port 12111``: run the fake Stripe API in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.fake_stripe import FakeStripeServer


def _parse_seed(spec: str) -> tuple[str, int, str | None]:
    """``LOOKUP:CENTS[:INTERVAL]`` (interval ``day|week|month|year|one_time``, default month)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise CommandError(f"--seed-price expects LOOKUP:CENTS[:INTERVAL], got {spec!r}")
    interval = parts[2] if len(parts) == 3 else "month"
    if interval not in ("day", "week", "month", "year", "one_time"):
        raise CommandError(f"unknown interval {interval!r} in --seed-price {spec!r}")
    return parts[0], int(parts[1]), None if interval == "one_time" else interval


class Command(BaseCommand):
    help = "Run the fake Stripe API server (tests / local development) in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
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
            metavar="LOOKUP:CENTS[:INTERVAL]",
            help="Create a product and price with this lookup key at start (repeatable).",
        )
        parser.add_argument("--log-requests", action="store_true", help="Log every HTTP request to stderr.")

    def handle(self, *args: Any, **options: Any) -> None:
        seeds = [_parse_seed(spec) for spec in options["seed_price"]]
        if options["webhook_url"] and not options["webhook_secret"]:
            raise CommandError("--webhook-secret is required with --webhook-url")
        try:
            server = FakeStripeServer(
                options["host"],
                options["port"],
                public_url=options["public_url"],
                webhook_url=options["webhook_url"],
                webhook_secret=options["webhook_secret"],
                verbose=options["log_requests"],
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from exc
        for lookup, cents, interval in seeds:
            price_id = server.state.seed_price(lookup, cents, interval)
            self.stdout.write(f"seeded price {lookup}: {price_id} ({cents} cents / {interval or 'one time'})")
        self.stdout.write(f"Fake Stripe API listening on {server.base_url} (STRIPE_API_BASE={server.base_url})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")
