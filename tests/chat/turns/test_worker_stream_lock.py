"""The session's stream lock has one holder: the worker runtime (chat.turns.runtime), around the engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from chat.engine.request import TurnRequest
from chat.models import ChatMessage, ChatSession
from chat.turns import runtime
from chat.turns import scripts as rs
from chat.turns.registry import turn_claim, turn_meta_get
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.factories import link_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def r() -> redis.Redis[bytes]:
    return rs.redis_client()


def _claimed(session: ChatSession) -> TurnRequest:
    turn_id = turn_claim(session_id=session.pk, user_id=session.user_id, origin_id="x", origin_name="x")
    assert turn_id is not None
    ChatMessage.objects.create(session=session, sequence=0, role="user", content=fake({"text": "hi"}), turn_id=turn_id)
    link_rows(session)
    return TurnRequest(session_id=str(session.pk), turn_id=turn_id, user_id=session.user_id)


def test_another_active_stream_refuses_the_turn_before_the_engine_runs(
    r: redis.Redis[bytes], llm: FakeLLMServer, alice: Any
) -> None:
    # given: a claimed turn whose session's stream lock another stream holds
    session = ChatSession.objects.create(user=alice, title="Existing title")
    request = _claimed(session)
    r.set(rs.stream_lock_key(session.pk), "another-turn", ex=60)

    # when
    outcome = asyncio.run(runtime.execute_turn(request, owner_token="worker:1"))

    # then: the turn ends failed with the lock error; no model call, no reply row, the lock untouched
    assert (outcome.ran, outcome.error, outcome.stopped) == (True, runtime.STREAM_LOCKED_ERROR, False)
    assert llm.requests == []
    assert list(ChatMessage.objects.filter(session=session).values_list("role", flat=True)) == ["user"]
    assert r.get(rs.stream_lock_key(session.pk)) == b"another-turn"
    meta = turn_meta_get(session.pk)
    assert meta is not None and meta.status == "failed"
    log = [json.loads(fields[b"data"]) for _, fields in r.xrange(rs.turn_stream_key(request.turn_id))]
    assert log[-2:] == [{"type": "error", "errorText": runtime.STREAM_LOCKED_ERROR}, {"type": "finish"}]


def test_the_worker_releases_the_stream_lock_it_took_when_the_turn_ends(
    r: redis.Redis[bytes], llm: FakeLLMServer, alice: Any
) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="Existing title")
    request = _claimed(session)

    # when
    outcome = asyncio.run(runtime.execute_turn(request, owner_token="worker:1"))

    # then: the engine ran under the lock, and the lock is gone
    assert (outcome.ran, outcome.error, outcome.stopped) == (True, None, False)
    assert len(llm.requests) == 1
    assert list(ChatMessage.objects.filter(session=session).values_list("role", "content")) == [
        ("user", fake({"text": "hi"})),
        ("assistant", "hi"),
    ]
    assert r.get(rs.stream_lock_key(session.pk)) is None
