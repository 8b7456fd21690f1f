"""Per-user turn caps end to end: a daphne of our own started with
COPILOT_USER_MAX_RUNNING_TURNS=2, the suite's Celery worker, the scripted LLM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from billing.models import CustomerAccount, Tier
from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.turns.registry import turn_meta_get
from copilot_site.testing.processes import start_daphne
from ratelimits import user_caps
from tests.chat.turns.helpers import Person, WsClient, fake, person, read_sse, wait_until
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLOW = "slow " + fake({"text": "z" * 60, "chunk_size": 2, "delay_ms": 150})  # ~4.5 s


@pytest.fixture
def capped_server(live_env: dict[str, str], celery_worker: Any, fake_llm: Any) -> Iterator[str]:
    fake_llm.reset()
    env = {**live_env, "COPILOT_USER_MAX_RUNNING_TURNS": "2", "COPILOT_USER_SENDS_PER_MINUTE": "0"}
    server, port = start_daphne(env, ARTIFACTS / "logs")
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _url(base: str, session: ChatSession) -> str:
    return f"{base}/api/chat/sessions/{session.id}/stream"


def _start_slow(base: str, p: Person, session: ChatSession) -> None:
    """Start a slow turn and leave it running (the stream is dropped at its first event)."""
    result = read_sse("POST", _url(base, session), headers=p.headers, json_body={"message": SLOW},
                      stop_when=lambda r: len(r.events) > 0)  # fmt: skip
    assert result.status == 200


def _running(session: ChatSession) -> bool:
    meta = turn_meta_get(session.id)
    return meta is not None and meta.is_running


def test_a_third_concurrent_turn_is_refused_and_another_user_is_unaffected(capped_server: str) -> None:
    alice = person("alice")
    sessions = [alice.session, *(ChatSession.objects.create(user=alice.user) for _ in range(2))]
    _start_slow(capped_server, alice, sessions[0])
    _start_slow(capped_server, alice, sessions[1])
    assert _running(sessions[0]) and _running(sessions[1])

    # when: a third chat of the same user sends while two turns run
    refused = read_sse("POST", _url(capped_server, sessions[2]), headers=alice.headers, json_body={"message": "third"})

    # then: 429, a clear text, Retry-After; no row, no turn
    assert refused.status == 429
    assert refused.headers["retry-after"] == "5"
    assert refused.json_body == {
        "detail": "You already have 2 replies running, the most your plan allows at once. "
        "Wait for one to finish, then send again.",
        "code": "too_many_running_turns",
    }
    assert not ChatMessage.objects.filter(session=sessions[2]).exists()
    assert not TurnUsage.objects.filter(session=sessions[2]).exists()
    assert turn_meta_get(sessions[2].id) is None
    assert sorted(user_caps.running_sessions(user_id=alice.user.pk)) == sorted(str(s.id) for s in sessions[:2])

    # and: another user is unaffected
    bob = person("bob")
    answered = read_sse("POST", _url(capped_server, bob.session), headers=bob.headers, json_body={"message": "hi"})
    assert answered.status == 200
    assert answered.types[-1] == "finish"

    # and: once the turns end (the worker frees their slots), the third chat starts
    wait_until(lambda: not _running(sessions[0]) and not _running(sessions[1]), timeout=60)
    assert user_caps.running_sessions(user_id=alice.user.pk) == []
    third = read_sse("POST", _url(capped_server, sessions[2]), headers=alice.headers, json_body={"message": "third"})
    assert third.status == 200
    assert TurnUsage.objects.filter(session=sessions[2]).count() == 1


def test_the_websocket_send_gets_the_cap_as_an_error_frame(capped_server: str) -> None:
    import asyncio

    alice = person("alice")
    sessions = [alice.session, *(ChatSession.objects.create(user=alice.user) for _ in range(2))]
    _start_slow(capped_server, alice, sessions[0])
    _start_slow(capped_server, alice, sessions[1])

    async def scenario() -> dict[str, Any]:
        async with WsClient(capped_server, sessions[2].id, alice.headers) as ws:
            await ws.send({"type": "send", "message": "third"})
            return await ws.recv()

    frame = asyncio.run(scenario())
    assert frame == {
        "type": "error",
        "code": "too_many_running_turns",
        "message": "You already have 2 replies running, the most your plan allows at once. "
        "Wait for one to finish, then send again.",
    }
    assert not TurnUsage.objects.filter(session=sessions[2]).exists()


def test_a_higher_tier_gets_the_scaled_cap(capped_server: str) -> None:
    carol = person("carol")
    CustomerAccount.objects.update_or_create(user=carol.user, defaults={"tier": Tier.PRO})
    sessions = [carol.session, *(ChatSession.objects.create(user=carol.user) for _ in range(2))]
    for session in sessions:  # PRO: 2 × 5 = 10 at once
        _start_slow(capped_server, carol, session)
    assert all(_running(s) for s in sessions)
    assert TurnUsage.objects.filter(session__user=carol.user).count() == 3
