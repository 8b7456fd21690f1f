"""Redis restarted mid-stream: an SSE listener gets `error` + `finish` (or the rest of the
stream) within 10 s, with heartbeats meanwhile; never a hang. Runs on a redis-server of
the test's own, which it kills and starts again; the suite's Redis is untouched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from chat.models import ChatMessage
from chat.turns.follow import STREAM_INTERRUPTED_TEXT
from copilot_site.core.embedded_redis import free_port, start_redis, stop_process
from copilot_site.core.outages import OUTAGE_DETAILS
from copilot_site.testing.processes import start_celery_worker, start_daphne
from copilot_site.testing.pytest_plugin import BROKER_DB
from tests.chat.turns.helpers import SseResult, WsClient, fake, person, read_sse, wait_until
from tests.conftest import ARTIFACTS

REDIS_DETAIL = OUTAGE_DETAILS["redis_unavailable"]

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("down_s", [3.0, None], ids=["restarted-after-3s", "never-back"])
def test_an_sse_listener_ends_within_10_s_when_redis_goes_down_mid_stream(
    live_env: dict[str, str], down_s: float | None
) -> None:
    # given: web and worker on a Redis of this test's own (the broker stays on the suite's)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="copilot-restart-redis-"))
    own_redis = start_redis(port, workdir)
    broker = os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 3}"
    env = {**live_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "CELERY_BROKER_URL": broker}
    web, web_port = start_daphne(env, ARTIFACTS / "logs")
    worker = start_celery_worker(env, ARTIFACTS / "logs", name="restart")
    alice = person("alice")
    seen = SseResult(0, {})
    try:
        message = "long " + fake({"text": "r" * 80, "chunk_size": 2, "delay_ms": 150})
        reader = threading.Thread(
            target=read_sse,
            args=("POST", f"http://127.0.0.1:{web_port}/api/chat/sessions/{alice.session.id}/stream"),
            kwargs={"headers": alice.headers, "json_body": {"message": message}, "into": seen, "timeout": 30},
        )
        reader.start()
        wait_until(lambda: len(seen.text()) >= 6)
        # when: that Redis dies mid-stream (and, but for never-back, starts again empty)
        os.killpg(own_redis.pid, signal.SIGKILL)
        own_redis.wait(timeout=10)
        killed_at = time.monotonic()
        heard_before = len(seen.comments)
        if down_s is not None:
            wait_until(lambda: time.monotonic() - killed_at >= down_s or seen.done, timeout=down_s + 1)
            assert seen.done is False  # still streaming (heartbeats) while Redis is away
            assert len(seen.comments) > heard_before
            own_redis = start_redis(port, workdir)
        back_at = time.monotonic()
        # then: within 10 s the listener has its end: error + finish, or the rest of the stream
        wait_until(lambda: seen.done or not reader.is_alive(), timeout=10)
        assert time.monotonic() - back_at < 10
        reader.join(timeout=5)
        assert not reader.is_alive()
        assert seen.status == 200
        assert seen.done is True
        assert seen.types[-1] == "finish"
        if "error" in seen.types:
            assert seen.types[-2] == "error"
            assert seen.events[-2][1]["errorText"] in {STREAM_INTERRUPTED_TEXT, "Stream error."}
        else:
            assert seen.text() == "r" * 80
        assert seen.text() == "r" * len(seen.text())
        # and the web server kept serving: the chat's rows are readable
        assert ChatMessage.objects.filter(session=alice.session, role="user").count() == 1
        assert "Exception inside application" not in web.log()
    finally:
        worker.stop()
        web.stop()
        if own_redis.poll() is None:
            stop_process(own_redis)


def test_a_websocket_listener_ends_with_error_and_finish_when_redis_stays_down(live_env: dict[str, str]) -> None:
    port = free_port()
    own_redis = start_redis(port, Path(tempfile.mkdtemp(prefix="copilot-restart-redis-")))
    broker = os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 3}"
    env = {**live_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "CELERY_BROKER_URL": broker}
    web, web_port = start_daphne(env, ARTIFACTS / "logs")
    worker = start_celery_worker(env, ARTIFACTS / "logs", name="restart-ws")
    alice = person("alice")

    async def scenario() -> tuple[list[dict[str, Any]], float, Any]:
        async with WsClient(f"http://127.0.0.1:{web_port}", alice.session.id, alice.headers) as ws:
            message = "long " + fake({"text": "w" * 80, "chunk_size": 2, "delay_ms": 150})
            await ws.send({"type": "send", "message": message})
            await ws.until(lambda f: f.get("chunk", {}).get("type") == "text-delta", timeout=30)
            os.killpg(own_redis.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            chunks = await ws.until_finish(timeout=12)
            ended_in = time.monotonic() - killed_at
            after: list[Any] = []
            closed: Any = "open"
            try:
                while True:
                    after.append(json.loads(await asyncio.wait_for(ws.ws.recv(), 3)))
            except websockets.ConnectionClosed as exc:
                closed = exc.rcvd.code if exc.rcvd is not None else "no close frame"
            except TimeoutError:
                pass
            # an error frame with its code may follow, then a normal close
            assert after in ([], [{"type": "error", "code": "redis_unavailable", "message": REDIS_DETAIL}])
            return chunks, ended_in, closed

    try:
        chunks, ended_in, closed = asyncio.run(scenario())
        assert ended_in < 10
        assert [c["type"] for c in chunks][-2:] == ["error", "finish"]
        assert chunks[-2]["errorText"] in {STREAM_INTERRUPTED_TEXT, REDIS_DETAIL}
        assert closed in {"open", 1000}  # never 1011
    finally:
        worker.stop()
        web.stop()
        if own_redis.poll() is None:
            stop_process(own_redis)
