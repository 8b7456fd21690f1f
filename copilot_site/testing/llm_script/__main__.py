"""``python -m copilot_site.testing.llm_script --port N``: the scripted LLM server in the foreground."""

from __future__ import annotations

import argparse
import sys

from copilot_site.testing.llm_script.server import FakeLLMServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m copilot_site.testing.llm_script",
        description="Run the scripted OpenAI-compatible / Anthropic-format LLM server (tests and benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (0 picks a free one)")
    options = parser.parse_args(argv)
    server = FakeLLMServer(host=options.host, port=options.port)

    def announce() -> None:
        # A parent process started us with --port 0 reads the URL from this line.
        sys.stdout.write(f"Fake LLM server listening on {server.base_url}\n")
        sys.stdout.flush()

    server.run_forever(ready=announce)


if __name__ == "__main__":
    main()
