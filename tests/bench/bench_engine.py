"""Turn-engine benchmark: ``python -m tests.bench.bench_engine`` (run by ``make bench``).

One process: a temporary SQLite database (migrated in-process), the scripted LLM
server on loopback streaming 1,000 text chunks with no delay, and the engine
consuming it on uvloop, as the worker runs it. The same request is also streamed through the bare OpenAI SDK, so
the difference is what the engine adds: per-chunk overhead in µs, plus peak
memory. An embedded redis-server answers the turn's cache reads (the rate-limit
tier cache, as in a worker); the spend counters and the title task are stubbed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import uvloop

CHUNKS = 1000


def _setup_django(workdir: Path, redis_port: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.test")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["COPILOT_VAR_DIR"] = str(workdir)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _script(chunks: int) -> str:
    script = {
        "rounds": [{"chunks": chunks, "usage": {"prompt_tokens": 1000, "completion_tokens": chunks, "cost": 0.01}}]
    }
    return f"<<fake {json.dumps(script)}>>"


async def _engine_run(session_id: str, user_id: int) -> tuple[float, float, int]:
    """(turn seconds, first→last text-delta seconds, text deltas)."""
    from chat.engine.request import TurnHooks, TurnRequest
    from chat.engine.turn import run_turn

    deltas = 0
    first_delta = last_delta = 0.0
    started = time.perf_counter()
    request = TurnRequest(
        session_id=session_id, turn_id=str(uuid.uuid4()), user_id=user_id, mode="fast", claimed_at=time.time()
    )
    async for event in run_turn(request, TurnHooks()):
        if event.type == "text-delta":
            now = time.perf_counter()
            if deltas == 0:
                first_delta = now
            last_delta = now
            deltas += 1
    return time.perf_counter() - started, last_delta - first_delta, deltas


async def _sdk_run(base_url: str, body: dict[str, Any]) -> tuple[float, float, int]:
    """The same request through the bare SDK on the provider's transport, its body parsed by the
    provider's own SSE parser (`_sse_json`): (total seconds, first→last content chunk seconds, chunks). The SDK's own
    iterator builds a pydantic object per chunk and would flatter the engine."""
    import openai

    from chat.engine.providers.base import shared_ssl_context
    from chat.engine.providers.openai_compat import _sse_json
    from chat.engine.providers.transport import provider_transport

    # The same HTTP stack as the provider's (httpx on the asyncio network backend).
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="bench",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(transport=provider_transport(shared_ssl_context())),
    )
    request = {k: v for k, v in body.items() if k not in ("usage", "reasoning")}
    request["extra_body"] = {"usage": {"include": True}}
    chunks = 0
    first = last = 0.0
    started = time.perf_counter()
    async with client.chat.completions.with_streaming_response.create(**request) as response:
        async for event in _sse_json(response):
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if chunks == 0:
                        first = now
                    last = now
                    chunks += 1
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, last - first, chunks


def _new_session(user: Any, message: str) -> str:
    from chat.models import ChatSession
    from chat.services.messages import message_append_user

    session = ChatSession.objects.create(user=user, title="bench")
    message_append_user(session_id=session.pk, content=message)
    return str(session.pk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=CHUNKS)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    from copilot_site.core.embedded_redis import free_port, start_redis, stop_process

    workdir = Path(tempfile.mkdtemp(prefix="copilot-bench-"))
    redis_port = free_port()
    redis_server = start_redis(redis_port, workdir / "redis")
    try:
        return _bench(args, workdir, redis_port)
    finally:
        stop_process(redis_server)


def _bench(args: argparse.Namespace, workdir: Path, redis_port: int) -> int:
    _setup_django(workdir, redis_port)
    from unittest import mock

    from django.conf import settings

    from copilot_site.accounts.models import User
    from copilot_site.testing.llm_script import FakeLLMServer

    server = FakeLLMServer().start()
    settings.COPILOT_LLM_PROVIDER = "openai_compat"
    settings.COPILOT_LLM_BASE_URL = server.base_url
    settings.COPILOT_LLM_API_KEY = "bench"
    settings.COPILOT_LLM_MAX_RETRIES = 0
    settings.COPILOT_MODEL = "fake-model"
    user = User.objects.create(username="bench")
    message = _script(args.chunks)

    engine_totals: list[float] = []
    engine_streams: list[float] = []
    sdk_totals: list[float] = []
    sdk_streams: list[float] = []
    try:
        # Neither the title task's broker nor the spend counters' Redis (recording the spend,
        # reading it back for the end-of-turn usage warning) is part of the engine.
        with (
            mock.patch("chat.tasks.generate_title.delay"),
            mock.patch("ratelimits.services.usage_record"),
            mock.patch("ratelimits.services.usage_warning_consume", return_value=None),
        ):
            # Warm-up (imports, tiktoken, connection setup), and the exact request the engine sends.
            uvloop.run(_engine_run(_new_session(user, message), user.pk))
            body = server.requests[-1]["body"]
            uvloop.run(_sdk_run(server.base_url, body))
            for _ in range(args.runs):
                total, streaming, deltas = uvloop.run(_engine_run(_new_session(user, message), user.pk))
                assert deltas == args.chunks, deltas
                engine_totals.append(total)
                engine_streams.append(streaming)
                total, streaming, chunks = uvloop.run(_sdk_run(server.base_url, body))
                assert chunks == args.chunks, chunks
                sdk_totals.append(total)
                sdk_streams.append(streaming)
            session_id = _new_session(user, message)
            tracemalloc.start()
            uvloop.run(_engine_run(session_id, user.pk))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        server.stop()

    engine_total = statistics.median(engine_totals)
    sdk_total = statistics.median(sdk_totals)
    engine_stream = statistics.median(engine_streams)
    sdk_stream = statistics.median(sdk_streams)
    n = args.chunks
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"engine benchmark: {n} chunks, median of {args.runs} runs (scripted LLM on loopback, SQLite)")
    print(f"  bare SDK stream:            {sdk_total * 1000:8.1f} ms  ({sdk_total / n * 1e6:7.1f} µs/chunk)")
    print(f"  engine turn (end to end):   {engine_total * 1000:8.1f} ms  ({engine_total / n * 1e6:7.1f} µs/chunk)")
    print(f"  engine overhead per chunk:  {(engine_total - sdk_total) / n * 1e6:8.1f} µs  (incl. DB setup and saves)")
    print(
        f"  streaming overhead/chunk:   {(engine_stream - sdk_stream) / n * 1e6:8.1f} µs  "
        "(first→last delta, engine vs SDK)"
    )
    print(f"  peak traced memory (turn):  {peak / 1024 / 1024:8.2f} MiB")
    print(f"  max RSS (process):          {max_rss_kib / 1024:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
