"""A turn task reserved by a worker that dies runs on a live worker within 30 s, once.

The broker is Redis: a task a worker received and never acknowledged goes back to
the queue once it has been unacknowledged for the visibility timeout. The tests
use workers of their own on a broker database nobody else consumes.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import redis
from django.conf import settings

from chat.engine.request import TurnRequest
from chat.models import ChatMessage, TurnUsage
from chat.services.messages import messages_save_new
from chat.services.usage import turn_usage_create
from chat.turns.registry import turn_claim, turn_meta_get
from copilot_site.celery_app import app
from copilot_site.testing.processes import ManagedProcess, start_celery_worker
from copilot_site.testing.pytest_plugin import BROKER_DB
from tests.chat.turns.helpers import Person, fake, person, wait_until
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REDELIVERY_DEADLINE_S = 30


@pytest.fixture
def private_broker(live_env: dict[str, str]) -> tuple[str, dict[str, str]]:
    broker = os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 2}"
    redis.Redis.from_url(broker).flushdb()
    return broker, {**live_env, "CELERY_BROKER_URL": broker}


def _claim_turn(p: Person, message: str) -> dict[str, Any]:
    """What `turn_send` does before it enqueues: the claim, the user row, the turn record."""
    turn_id = turn_claim(session_id=p.session.pk, user_id=p.user.pk, origin_id="chat_stream", origin_name="chat")
    assert turn_id is not None
    messages_save_new(
        session_id=p.session.pk, messages=[ChatMessage(role=ChatMessage.Role.USER, content=message, turn_id=turn_id)]
    )
    turn_usage_create(turn_id=turn_id, session=p.session, user=p.user)
    now = time.time()
    return TurnRequest(
        session_id=str(p.session.pk), turn_id=turn_id, user_id=p.user.pk, arrived_at=now, claimed_at=now
    ).to_payload()


def _publish(broker: str, payload: dict[str, Any], **options: Any) -> None:
    with app.connection_for_write(broker) as connection:
        app.send_task("chat.run_turn", kwargs={"payload": payload}, connection=connection, **options)


def _kill(worker: ManagedProcess) -> None:
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)


def _turn_completions(fake_llm: Any) -> int:
    """The model calls of turns (a new chat's title request, if any worker makes one, is not one)."""
    from chat.engine.titles import TITLE_SYSTEM_PROMPT

    return len(
        [
            r
            for r in fake_llm.requests
            if r["path"].endswith("/chat/completions")
            and not any(m.get("content") == TITLE_SYSTEM_PROMPT for m in r["body"]["messages"])
        ]
    )


def test_a_turn_reserved_by_a_killed_worker_runs_once_on_the_other_within_30s(
    private_broker: tuple[str, dict[str, str]], fake_llm: Any
) -> None:
    # given: a worker that has received a turn's task but not started it (the task
    # carries an ETA, so the worker holds it reserved and unacknowledged)
    broker, env = private_broker
    fake_llm.reset()
    alice = person("alice")
    payload = _claim_turn(alice, "hello " + fake({"text": "answered once"}))
    turn_id = payload["turn_id"]
    doomed = start_celery_worker(env, ARTIFACTS / "logs", name="doomed", concurrency=2)
    survivor: ManagedProcess | None = None
    try:
        _publish(broker, payload, countdown=20)
        wait_until(lambda: redis.Redis.from_url(broker).hlen("unacked") == 1, timeout=15)
        # and a second worker, live
        survivor = start_celery_worker(env, ARTIFACTS / "logs", name="survivor", concurrency=2)
        meta = turn_meta_get(alice.session.id)
        assert meta is not None and meta.is_running and meta.started_at is None  # not started anywhere yet
        # when: the worker holding it dies without any cleanup
        _kill(doomed)
        killed_at = time.monotonic()
        # then: the live worker runs the turn, within the deadline
        wait_until(
            lambda: TurnUsage.objects.filter(turn_id=turn_id, outcome="completed").exists(),
            timeout=REDELIVERY_DEADLINE_S,
            interval=0.2,
        )
        assert time.monotonic() - killed_at < REDELIVERY_DEADLINE_S
        # and ran once: one answer, one model call, one completed record
        wait_until(lambda: not turn_meta_get(alice.session.id).is_running)  # type: ignore[union-attr]
        assert turn_meta_get(alice.session.id).status == "completed"  # type: ignore[union-attr]
        rows = list(
            ChatMessage.objects.filter(session=alice.session).order_by("sequence").values_list("role", "content")
        )
        assert [(role, content) for role, content in rows if role != "reasoning"] == [
            ("user", "hello " + fake({"text": "answered once"})),
            ("assistant", "answered once"),
        ]
        assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]
        assert _turn_completions(fake_llm) == 1
        assert f"Turn {turn_id} of session {alice.session.id} was redelivered; running it here" in survivor.log()
        assert "No worker picked up this reply in time" not in survivor.log()
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


def test_a_copy_delivered_while_the_turn_runs_is_dropped_and_the_turn_runs_once(
    private_broker: tuple[str, dict[str, str]], fake_llm: Any
) -> None:
    # given: a turn that runs longer than the visibility timeout, on the only worker
    broker, env = private_broker
    fake_llm.reset()
    alice = person("alice")
    seconds = settings.COPILOT_TASK_VISIBILITY_TIMEOUT_S + 12
    text = "s" * seconds
    message = "long " + fake({"text": text, "chunk_size": 1, "delay_ms": 1000})
    payload = _claim_turn(alice, message)
    turn_id = payload["turn_id"]
    worker = start_celery_worker(env, ARTIFACTS / "logs", name="lone", concurrency=2)
    try:
        # when: the broker delivers the unacknowledged task again while the turn runs
        _publish(broker, payload)
        drop = f"Dropping the task of turn {turn_id} (session {alice.session.id}, redelivered): a live worker"
        wait_until(lambda: drop in worker.log(), timeout=seconds + 10, interval=0.2)
        # then: the copy was dropped and the turn goes on to its one answer
        wait_until(
            lambda: TurnUsage.objects.filter(turn_id=turn_id, outcome="completed").exists(),
            timeout=seconds + 20,
            interval=0.2,
        )
        assistant = list(
            ChatMessage.objects.filter(session=alice.session, role="assistant").values_list("content", flat=True)
        )
        assert assistant == [text]
        assert _turn_completions(fake_llm) == 1
        assert TurnUsage.objects.filter(session=alice.session).count() == 1
        assert worker.log().count("was redelivered; running it here") == 0
        assert redis.Redis.from_url(broker).hlen("unacked") == 0  # nothing left to deliver again
    finally:
        worker.stop()


def test_the_celery_settings_redeliver_a_dead_workers_tasks_quickly() -> None:
    from copilot_site.celery_app import app as celery_app

    conf = celery_app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert conf.broker_url.startswith("redis://")
    assert conf.broker_transport_options == {
        "visibility_timeout": 15,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 10,
    }
