"""The composer's model and mode end to end: remembered per chat, defaulted per user, recorded on
each answer (daphne + a real Celery worker + the scripted LLM)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from django.conf import settings

from chat.models import ChatMessage, ChatSession
from chat.turns.registry import turn_meta_get
from copilot_site.accounts.models import User
from tests.chat.turns.helpers import Person, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _send(base: str, p: Person, body: dict[str, Any], session: ChatSession | None = None) -> None:
    session = session or p.session
    result = read_sse("POST", f"{base}/api/chat/sessions/{session.id}/stream", headers=p.headers, json_body=body)
    assert result.status == 200, result.json_body
    wait_until(lambda: (meta := turn_meta_get(session.id)) is None or not meta.is_running)


def _requested_model(fake_llm: Any) -> str:
    completions = [r for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
    return str(completions[-1]["body"]["model"])


def test_a_chat_remembers_the_model_and_mode_and_each_answer_records_them(stack: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")
    # when: a message asks for the advanced model, fast
    _send(stack, alice, {"message": "One " + fake({"text": "A."}), "model": "advanced", "mode": "fast"})
    # then
    assert _requested_model(fake_llm) == settings.COPILOT_ADVANCED_MODEL
    session = ChatSession.objects.get(pk=alice.session.pk)
    assert (session.model, session.mode) == ("advanced", "fast")
    # when: the next message asks for nothing
    _send(stack, alice, {"message": "Two " + fake({"text": "B."})})
    # then: the chat's choice is used again
    assert _requested_model(fake_llm) == settings.COPILOT_ADVANCED_MODEL
    # when: a message picks the standard model
    _send(stack, alice, {"message": "Three " + fake({"text": "C."}), "model": "standard"})
    # then
    assert _requested_model(fake_llm) == settings.COPILOT_MODEL
    answers = ChatMessage.objects.filter(session=alice.session, role="assistant").order_by("sequence")
    assert list(answers.values_list("content", "model", "mode")) == [
        ("A.", "advanced", "fast"),
        ("B.", "advanced", "fast"),
        ("C.", "standard", "fast"),
    ]
    detail = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}", headers=alice.headers, timeout=10).json()
    assert (detail["session"]["model"], detail["session"]["mode"]) == ("standard", "fast")
    assert [(m["role"], m["model"], m["mode"]) for m in detail["messages"]] == [
        ("user", None, None),
        ("assistant", "advanced", "fast"),
        ("user", None, None),
        ("assistant", "advanced", "fast"),
        ("user", None, None),
        ("assistant", "standard", "fast"),
    ]
    ui = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}/ui-messages", headers=alice.headers, timeout=10)
    assert [(m["metadata"].get("model"), m["metadata"].get("mode")) for m in ui.json()["messages"][1::2]] == [
        ("advanced", "fast"),
        ("advanced", "fast"),
        ("standard", "fast"),
    ]


def test_a_new_chat_starts_from_the_users_defaults(stack: str, fake_llm: Any) -> None:
    # given: the account page's defaults
    alice = person("alice")
    User.objects.filter(pk=alice.user.pk).update(chat_model="advanced", chat_mode="fast")
    # when
    _send(stack, alice, {"message": "Hi " + fake({"text": "Hello."})})
    # then: the defaults were used, and the chat itself chose nothing yet
    assert _requested_model(fake_llm) == settings.COPILOT_ADVANCED_MODEL
    answer = ChatMessage.objects.get(session=alice.session, role="assistant")
    assert (answer.model, answer.mode) == ("advanced", "fast")
    session = ChatSession.objects.get(pk=alice.session.pk)
    assert (session.model, session.mode) == ("", "")


def test_the_account_page_saves_the_chat_defaults(client: Any, alice: Any) -> None:
    # given
    client.force_login(alice)
    # when
    saved = client.post("/account/chat-defaults/", {"chat_model": "advanced", "chat_mode": "fast"})
    refused = client.post("/account/chat-defaults/", {"chat_model": "huge", "chat_mode": "fast"})
    # then
    assert (saved.status_code, saved["Location"]) == (302, "/account/")
    assert refused.status_code == 400
    alice.refresh_from_db()
    assert (alice.chat_model, alice.chat_mode) == ("advanced", "fast")
    page = client.get("/account/").content.decode()
    assert '<option value="advanced" selected>Advanced — ' in page
    assert "uses your" in page


def test_a_websocket_send_picks_the_model_and_an_unknown_value_is_no_choice(stack: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")

    async def send(frame: dict[str, Any]) -> None:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", **frame})
            await ws.until_finish()

    # when: a frame picks the advanced model, then one names values that are no choice
    asyncio.run(send({"message": "One " + fake({"text": "A."}), "model": "advanced", "mode": "fast"}))
    wait_until(lambda: (meta := turn_meta_get(alice.session.id)) is None or not meta.is_running)
    asyncio.run(send({"message": "Two " + fake({"text": "B."}), "model": "huge", "mode": "slow"}))
    wait_until(lambda: (meta := turn_meta_get(alice.session.id)) is None or not meta.is_running)
    # then: the chat's choice stands and is used
    assert _requested_model(fake_llm) == settings.COPILOT_ADVANCED_MODEL
    session = ChatSession.objects.get(pk=alice.session.pk)
    assert (session.model, session.mode) == ("advanced", "fast")
    answers = ChatMessage.objects.filter(session=alice.session, role="assistant").order_by("sequence")
    assert list(answers.values_list("model", "mode")) == [("advanced", "fast"), ("advanced", "fast")]
