"""kill -9 of the worker mid-turn: the text the user saw streamed is saved before the
failure notice, rebuilt from the turn's Redis stream by the reaper."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from chat.models import ChatMessage, TurnUsage
from chat.turns.registry import turn_meta_get
from copilot_site.testing.processes import start_celery_worker, start_daphne
from copilot_site.testing.pytest_plugin import BROKER_DB
from tests.chat.turns.helpers import SseResult, fake, person, read_sse, wait_until
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NOTICE = "The worker running this reply stopped unexpectedly. What it produced so far is saved; please try again."


def test_a_killed_worker_leaves_the_text_it_streamed_in_the_transcript_before_the_notice(
    live_env: dict[str, str],
) -> None:
    # given: a web server and a worker of our own, on a broker nobody else consumes
    broker = os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 2}"
    env = {**live_env, "CELERY_BROKER_URL": broker}
    web, port = start_daphne(env, ARTIFACTS / "logs")
    worker = start_celery_worker(env, ARTIFACTS / "logs", name="doomed-recovery")
    alice = person("alice")
    seen = SseResult(0, {})
    try:
        message = "long " + fake({"text": "z" * 80, "chunk_size": 2, "delay_ms": 100})
        reader = threading.Thread(
            target=read_sse,
            args=("POST", f"http://127.0.0.1:{port}/api/chat/sessions/{alice.session.id}/stream"),
            kwargs={"headers": alice.headers, "json_body": {"message": message}, "into": seen},
        )
        reader.start()
        wait_until(lambda: len(seen.text()) >= 10)
        # when: the worker dies without any cleanup, mid-answer
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        reader.join(timeout=60)
        assert not reader.is_alive()
        # then: the stream ends with the failure, and the transcript holds what was streamed, then the notice
        assert seen.types[-2:] == ["error", "finish"]
        streamed = seen.text()
        assert 10 <= len(streamed) < 80
        assert streamed == "z" * len(streamed)
        rows = list(
            ChatMessage.objects.filter(session=alice.session)
            .order_by("sequence")
            .values_list("role", "kind", "content")
        )
        assert rows == [
            ("user", "message", message),
            ("assistant", "message", streamed),
            ("assistant", "error_notice", NOTICE),
        ]
        assert turn_meta_get(alice.session.id).status == "failed"  # type: ignore[union-attr]
        assert TurnUsage.objects.get(session=alice.session).outcome == "failed"
    finally:
        worker.stop()
        web.stop()
