"""kill -9 the worker mid-turn: the turn ends as failed and the session takes a new turn."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from chat.models import ChatMessage, TurnUsage
from chat.turns.registry import turn_meta_get
from copilot_site.testing.processes import start_celery_worker, start_daphne
from copilot_site.testing.pytest_plugin import BROKER_DB
from tests.chat.turns.helpers import fake, person, read_sse, wait_until
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_killed_worker_fails_the_turn_and_the_session_recovers(live_env: dict[str, str]) -> None:
    # given: a web server and a worker of our own, on a broker nobody else consumes
    broker = os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 1}"
    env = {**live_env, "CELERY_BROKER_URL": broker}
    web, port = start_daphne(env, ARTIFACTS / "logs")
    worker = start_celery_worker(env, ARTIFACTS / "logs", name="doomed")
    base = f"http://127.0.0.1:{port}"
    alice = person("alice")
    url = f"{base}/api/chat/sessions/{alice.session.id}/stream"
    try:
        results: list[Any] = []
        message = "long " + fake({"text": "y" * 60, "chunk_size": 2, "delay_ms": 150})
        reader = threading.Thread(
            target=lambda: results.append(read_sse("POST", url, headers=alice.headers, json_body={"message": message}))
        )
        reader.start()
        wait_until(lambda: ChatMessage.objects.filter(session=alice.session).count() == 1 and _started(alice))
        # when: the worker dies without any cleanup
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        reader.join(timeout=60)
        # then: the listener sees the turn fail within the liveness window
        first = results[0]
        assert first.types[-2:] == ["error", "finish"]
        assert first.events[-2][1] == {
            "type": "error",
            "errorText": "The worker running this reply stopped unexpectedly. "
            "What it produced so far is saved; please try again.",
        }
        assert first.done is True
        assert turn_meta_get(alice.session.id).status == "failed"  # type: ignore[union-attr]
        assert TurnUsage.objects.get(session=alice.session).outcome == "failed"
        # and with a new worker the session takes a new turn at once
        replacement = start_celery_worker(env, ARTIFACTS / "logs", name="replacement")
        try:
            second = read_sse("POST", url, headers=alice.headers, json_body={"message": "are you there?"})
            # The failed turn's question and the new one reach the model together
            # (consecutive user rows merge), so the scripted model answers the first.
            assert "error" not in second.types
            assert second.types[-1] == "finish"
            assert second.text() == "y" * 60
            assert _outcomes(alice) == [
                "failed", "completed"
            ]  # fmt: skip
        finally:
            replacement.stop()
    finally:
        worker.stop()
        web.stop()


def _started(p: Any) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is not None and meta.started_at is not None


def _outcomes(p: Any) -> list[str]:
    return list(TurnUsage.objects.filter(session=p.session).order_by("started_at").values_list("outcome", flat=True))
