"""``python manage.py fake_llm``: run the scripted fake LLM server in the foreground."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from chat.llm_fake import FakeLLMServer


class Command(BaseCommand):
    help = (
        "Run the scripted OpenAI-compatible / Anthropic-format fake LLM server "
        "(for tests, benchmarks and offline demos). Prints its base URL once listening."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument("--port", type=int, default=8765, help="port to bind (0 picks a free one)")

    def handle(self, *args: Any, **options: Any) -> None:
        server = FakeLLMServer(host=options["host"], port=options["port"])

        def announce() -> None:
            # A parent process started us with --port 0 reads the URL from this line.
            self.stdout.write(f"Fake LLM server listening on {server.base_url}")
            self.stdout.flush()

        server.run_forever(ready=announce)
