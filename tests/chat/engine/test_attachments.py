"""Attachments in the engine: image parts for models that take images (OpenAI and Anthropic
forms, resized to the provider's limits), the note alone for text-only models, follow-ups
with files, context compression counting images and keeping the newest turn's."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from chat.engine.attachments import ANTHROPIC_IMAGE_LIMITS, image_for_model
from chat.engine.context import estimate_tokens
from chat.engine.followups import PendingFollowUp
from chat.models import Attachment, ChatMessage, ChatSession
from chat.services.attachments import attachment_create
from chat.services.messages import message_duplicate_of, messages_save_new
from copilot_site.testing.documents import png_bytes
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import CALC, request_messages, start_turn
from tests.chat.files.conftest import clean_attachments_root  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_attachments_root")]


def _store(user: Any, name: str, data: bytes) -> Attachment:
    return attachment_create(owner=user, name=name, stream=io.BytesIO(data))


def _user_row(session: ChatSession, content: str, file_ids: list[str]) -> None:
    messages_save_new(session_id=session.pk, messages=[ChatMessage(role="user", content=content, file_ids=file_ids)])


async def _turn(session: ChatSession, **kwargs: Any) -> list[Any]:
    return [event async for event in start_turn(session, **kwargs)]


def _parts(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message.get("content")
    return [p for p in content if p.get("type") == kind] if isinstance(content, list) else []


@pytest.mark.asyncio
async def test_a_vision_model_gets_the_image_as_a_part(llm: FakeLLMServer, session: ChatSession) -> None:
    png = png_bytes((8, 6))
    image = await sync_to_async(_store)(session.user, "dot.png", png)
    await sync_to_async(_user_row)(session, "Look " + fake({"text": "A red dot."}), [str(image.pk)])
    await _turn(session)
    last = request_messages(llm)[-1]
    assert [p["type"] for p in last["content"]] == ["text", "image_url"]
    assert last["content"][1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert "image_file_ids" not in last


@pytest.mark.asyncio
async def test_a_text_only_model_gets_the_note_only(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    settings.COPILOT_VISION_MODELS = ["openai/gpt-4o*"]  # the configured anthropic/… model is not in it
    image = await sync_to_async(_store)(session.user, "dot.png", png_bytes())
    await sync_to_async(_user_row)(session, "Look " + fake({"text": "ok"}), [str(image.pk)])
    await _turn(session)
    last = request_messages(llm)[-1]
    assert isinstance(last["content"], str)
    assert last["content"].endswith(
        f"[Attached files]\n- dot.png (image/png, {image.size_bytes / 1024:.1f} KB), file_id={image.pk}\n"
        "Use read_workspace_file with the file_id to access file contents."
    )
    assert not any(_parts(m, "image_url") for m in request_messages(llm))


@pytest.mark.asyncio
async def test_anthropic_gets_a_base64_image_block(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    settings.COPILOT_LLM_PROVIDER = "anthropic"
    png = png_bytes((4, 4))
    image = await sync_to_async(_store)(session.user, "dot.png", png)
    await sync_to_async(_user_row)(session, "Look " + fake({"text": "ok"}), [str(image.pk)])
    await _turn(session, mode="fast")
    body = [r["body"] for r in llm.requests if r["path"].endswith("/messages")][-1]
    blocks = body["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["text", "image"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png).decode()}


def test_images_over_the_limits_are_resized() -> None:
    kind, data = image_for_model(png_bytes((4000, 1000)), "image/png", ANTHROPIC_IMAGE_LIMITS)
    with Image.open(io.BytesIO(data)) as resized:
        assert (kind, resized.size) == ("image/jpeg", (1568, 392))
    small = png_bytes((10, 10))
    assert image_for_model(small, "image/png", ANTHROPIC_IMAGE_LIMITS) == ("image/png", small)
    with pytest.raises(ValueError, match="unreadable image"):
        image_for_model(b"\x89PNG\r\n\x1a\nbroken", "image/png", ANTHROPIC_IMAGE_LIMITS)


@pytest.mark.asyncio
async def test_a_follow_up_with_a_file_gets_its_note_and_image(llm: FakeLLMServer, session: ChatSession) -> None:
    image = await sync_to_async(_store)(session.user, "later.png", png_bytes())
    batches = [[], [PendingFollowUp(content="and this one", file_ids=(str(image.pk),))], []]

    async def drain() -> list[PendingFollowUp]:
        return batches.pop(0) if batches else []

    await sync_to_async(_user_row)(session, fake({"rounds": [{"tool_calls": [CALC]}, {"text": "Both."}]}), [])
    events = await _turn(session, drain_pending=drain)
    last = request_messages(llm)[-1]
    text = "".join(p["text"] for p in _parts(last, "text"))
    assert (
        "Message 1:\nand this one\n[Attached files]\n"
        f"- later.png (image/png, {image.size_bytes / 1024:.1f} KB), file_id={image.pk}\n"
        "Use read_workspace_file with the file_id to access file contents.\n</user_follow_up>"
    ) in text
    assert len(_parts(last, "image_url")) == 1
    row = await sync_to_async(ChatMessage.objects.get)(session=session, content="and this one")
    assert row.file_ids == [str(image.pk)]
    notice = next(e for e in events if e.type == "data-pending-drained").to_wire()["data"]
    assert [[a["name"] for a in files] for files in notice["attachments"]] == [["later.png"]]


def test_images_count_a_fixed_estimate(settings: Any) -> None:
    settings.COPILOT_IMAGE_TOKEN_ESTIMATE = 1000
    plain = estimate_tokens([{"role": "user", "content": "hello"}])
    marked = estimate_tokens([{"role": "user", "content": "hello", "image_file_ids": ["a", "b"]}])
    parts = estimate_tokens(
        [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {}}]}]
    )
    assert (marked - plain, parts - plain) == (2000, 1000)


@pytest.mark.asyncio
async def test_compaction_keeps_the_newest_turns_image(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    old = await sync_to_async(_store)(session.user, "old.png", png_bytes((5, 5), (0, 0, 255)))
    new = await sync_to_async(_store)(session.user, "new.png", png_bytes((5, 5), (0, 255, 0)))

    def history() -> None:
        rows = []
        for index in range(8):
            rows.append(ChatMessage(role="user", content=f"old {index} " + "word " * 300, file_ids=[str(old.pk)]))
            rows.append(ChatMessage(role="assistant", content="answer " * 300))
        messages_save_new(session_id=session.pk, messages=rows)

    await sync_to_async(history)()
    await sync_to_async(_user_row)(session, "Now this " + fake({"text": "Green."}), [str(new.pk)])
    settings.COPILOT_IMAGE_TOKEN_ESTIMATE = 1600
    settings.COPILOT_CONTEXT_TOKEN_BUDGET = 6000  # the history (~6,000 words, 8 images) is far over it
    events = await _turn(session)
    assert any(e.type == "tool-input-start" for e in events)  # the context_compaction notice
    turn_request = request_messages(llm)
    last = turn_request[-1]
    images = [p for m in turn_request for p in _parts(m, "image_url")]
    green = "data:image/png;base64," + base64.b64encode(png_bytes((5, 5), (0, 255, 0))).decode()
    assert _parts(last, "image_url") == [{"type": "image_url", "image_url": {"url": green}}]
    assert len(images) < 9  # older images went with the summarised part


def test_the_duplicate_rule_counts_the_files(session: ChatSession) -> None:
    _user_row(session, "compare", ["11111111-1111-1111-1111-111111111111"])
    same = message_duplicate_of(
        session_id=session.pk, content="compare", file_ids=["11111111-1111-1111-1111-111111111111"]
    )
    other = message_duplicate_of(
        session_id=session.pk, content="compare", file_ids=["22222222-2222-2222-2222-222222222222"]
    )
    none = message_duplicate_of(session_id=session.pk, content="compare")
    assert (same, other, none) == ("", None, None)
