"""``python manage.py demo_llm``: serve the offline demo model in the foreground until Ctrl-C."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from copilot_site.core.demo_llm import DemoLLMServer


class Command(BaseCommand):
    help = "Serve the offline demo model (OpenAI-compatible) on a loopback port. Prints its base URL once listening."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument("--port", type=int, default=8391, help="port to bind (0 picks a free one)")

    def handle(self, *args: Any, **options: Any) -> None:
        with DemoLLMServer(options["host"], options["port"]) as server:
            # A parent process started us with --port 0 reads the URL from this line.
            self.stdout.write(f"Demo LLM listening on {server.base_url}")
            self.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
