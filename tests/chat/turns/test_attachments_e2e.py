"""Files in the chat end to end: daphne + a real Celery worker + Redis + the scripted LLM.

Upload a text file, a CSV, a PDF with known page texts and a PNG; send one message with
all four; the model receives the exact [Attached files] note and one image part; a scripted
read_workspace_file call reads the PDF's pages and the CSV; the transcript and a reload
show the attachments. Then every refusal, each leaving no row and no file behind.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from PIL import Image

from chat.models import Attachment, ChatMessage, TurnUsage
from chat.turns import scripts as rs
from copilot_site.testing.documents import pdf_with_pages, png_bytes
from tests.chat.files.conftest import clean_attachments_root, files_on_disk  # noqa: F401  (a fixture)
from tests.chat.test_ui_messages import _validator
from tests.chat.turns.helpers import Person, WsClient, fake, person, read_sse, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("clean_attachments_root"),
]

PDF_PAGES = ["Quarterly report for Acme", "Revenue grew 12 percent", "Outlook is steady"]
CSV = b"region,total\nnorth,12\nsouth,30\n"
NOTES = b"Remember: the meeting is on Tuesday.\n"


def upload(base: str, who: Person, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{base}/api/chat/files", headers=who.headers, files={"file": (name, data)}, timeout=60)


def _completions(fake_llm: Any) -> list[dict[str, Any]]:
    """The turn's requests (with tools), not the title's."""
    return [r["body"] for r in fake_llm.requests if r["path"].endswith("/chat/completions") and r["body"].get("tools")]


def _image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def _user_text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def test_a_message_with_four_files_reaches_the_model_and_the_transcript(stack: str, fake_llm: Any) -> None:
    # given: four uploads (and a file of someone else's)
    ann, bob = person("ann"), person("bob")
    big_png = png_bytes((2400, 1200), (10, 120, 200))
    uploads = {
        "notes.txt": NOTES,
        "sales.csv": CSV,
        "report.pdf": pdf_with_pages(PDF_PAGES),
        "chart.png": big_png,
    }
    files = {}
    for name, data in uploads.items():
        response = upload(stack, ann, name, data)
        assert response.status_code == 201, response.text
        files[name] = response.json()
    assert [files[n]["mime_type"] for n in uploads] == ["text/plain", "text/csv", "application/pdf", "image/png"]
    bobs = upload(stack, bob, "bob.txt", b"not for ann").json()["id"]
    ids = [files[n]["id"] for n in uploads]
    pdf_id, csv_id = files["report.pdf"]["id"], files["sales.csv"]["id"]
    script = fake(
        {
            "tool_calls": [
                {"name": "read_workspace_file", "arguments": {"file_id": pdf_id}, "id": "call_pdf"},
                {"name": "read_workspace_file", "arguments": {"file_id": csv_id.upper()}, "id": "call_csv"},
            ]
        },
        {"text": "Read both."},
    )
    text = "What do these say? " + script
    # when: the message carries them (plus bob's id, a non-id and a repeat in upper case)
    result = read_sse(
        "POST",
        f"{stack}/api/chat/sessions/{ann.session.id}/stream",
        headers=ann.headers,
        json_body={"message": text, "file_ids": [*ids, bobs, "not-a-uuid", ids[0].upper()]},
    )
    # then: the stream
    assert result.status == 200
    assert result.types[:2] == ["start", "data-attachments"]
    attached = result.events[1][1]["data"]["messages"]
    assert [[a["name"] for a in m["attachments"]] for m in attached] == [list(uploads)]
    outputs = {c["toolCallId"]: c["output"] for _, c in result.events if c["type"] == "tool-output-available"}
    pdf_text = "\n\n".join(f"--- Page {i} of 3 ---\n{page}" for i, page in enumerate(PDF_PAGES, start=1))
    assert outputs["call_pdf"].endswith(":\n\n" + pdf_text)
    assert outputs["call_csv"].endswith(":\n\n" + CSV.decode())
    assert result.text() == "Read both."
    # the model's copy: the exact note, one image part (resized to Anthropic's 1568 px)
    first, second = _completions(fake_llm)
    user = first["messages"][-1]
    kb = {n: f"{len(d) / 1024:.1f}" for n, d in uploads.items()}
    assert _user_text(user) == (
        f"{text}\n\n[Attached files]\n"
        f"- notes.txt (text/plain, {kb['notes.txt']} KB), file_id={ids[0]}\n"
        f"- sales.csv (text/csv, {kb['sales.csv']} KB), file_id={ids[1]}\n"
        f"- report.pdf (application/pdf, {kb['report.pdf']} KB), file_id={ids[2]}\n"
        f"- chart.png (image/png, {kb['chart.png']} KB), file_id={ids[3]}\n"
        "Use read_workspace_file with the file_id to access file contents."
    )
    images = _image_parts(first)
    assert len(images) == 1
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == (1568, 784)
    assert len(_image_parts(second)) == 1  # the same image in the tool round's request
    tool_messages = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert tool_messages["call_pdf"].endswith(pdf_text)
    # the stored row: the user's own words, the four files (bob's and the junk dropped)
    row = ChatMessage.objects.get(session=ann.session, role="user")
    assert (row.content, row.file_ids) == (text, ids)
    # reload: the transcript and the UI messages show them
    detail = httpx.get(f"{stack}/api/chat/sessions/{ann.session.id}", headers=ann.headers).json()
    shown = detail["messages"][0]["attachments"]
    assert [(a["id"], a["name"], a["mime_type"], a["deleted"]) for a in shown] == [
        (files[n]["id"], n, files[n]["mime_type"], False) for n in uploads
    ]
    ui = httpx.get(f"{stack}/api/chat/sessions/{ann.session.id}/ui-messages", headers=ann.headers).json()
    assert ui["messages"][0]["parts"] == [
        {"type": "text", "text": text},
        *[
            {
                "type": "file",
                "mediaType": files[n]["mime_type"],
                "filename": n,
                "url": f"/api/chat/files/{files[n]['id']}/content",
            }
            for n in uploads
        ],
    ]
    validated = _validator(ui["messages"])  # the AI SDK's own validateUIMessages (skips without node)
    assert validated.returncode == 0, validated.stderr


def test_a_websocket_send_with_only_a_file(stack: str, fake_llm: Any) -> None:
    ann = person("ann")
    csv_id = upload(stack, ann, "sales.csv", CSV).json()["id"]

    async def scenario() -> None:
        async with WsClient(stack, ann.session.id, ann.headers) as ws:
            await ws.send({"type": "send", "message": "hi", "file_ids": [csv_id] * 21})
            assert await ws.recv() == {
                "type": "error",
                "code": "too_many_files",
                "message": "A message can carry at most 20 files.",
            }
            await ws.send({"type": "send", "message": "", "file_ids": [csv_id]})
            await ws.until_finish()

    asyncio.run(scenario())
    row = ChatMessage.objects.get(session=ann.session, role="user")
    assert (row.content, row.file_ids) == ("", [csv_id])
    sent = _user_text(_completions(fake_llm)[-1]["messages"][-1])
    assert sent == (
        f"[Attached files]\n- sales.csv (text/csv, {len(CSV) / 1024:.1f} KB), file_id={csv_id}\n"
        "Use read_workspace_file with the file_id to access file contents."
    )


def _assert_nothing_new(owner: Person, rows_before: int) -> None:
    assert Attachment.objects.filter(owner=owner.user).count() == rows_before
    assert {p for p in files_on_disk() if p.parent.name == str(owner.user.pk)} == {
        Path(settings.COPILOT_ATTACHMENTS_ROOT) / a.storage_key for a in Attachment.objects.filter(owner=owner.user)
    }


def test_every_refusal_leaves_no_row_and_no_file(stack: str) -> None:
    ann, bob = person("ann"), person("bob")
    # 413: one byte over COPILOT_MAX_UPLOAD_BYTES (20 MB by default)
    too_big = upload(stack, ann, "big.txt", b"x" * (int(settings.COPILOT_MAX_UPLOAD_BYTES) + 1))
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "file_too_large"
    _assert_nothing_new(ann, 0)
    # 415: a Windows executable, whatever it is called
    exe = upload(stack, ann, "notes.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00")
    assert (exe.status_code, exe.json()["code"]) == (415, "unsupported_type")
    _assert_nothing_new(ann, 0)
    # 404: another user's file, on every operation
    bobs = upload(stack, bob, "bob.txt", b"bob's").json()["id"]
    for method, path in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        response = httpx.request(method, f"{stack}/api/chat/files/{bobs}{path}", headers=ann.headers)
        assert response.status_code == 404
    assert Attachment.objects.get(pk=bobs).deleted_at is None
    # file_ids: more than 20 is a 400 before anything is saved; someone else's id is dropped
    url = f"{stack}/api/chat/sessions/{ann.session.id}/stream"
    many = read_sse("POST", url, headers=ann.headers, json_body={"message": "hi", "file_ids": [str(uuid.uuid4())] * 21})
    assert many.status == 400
    assert many.json_body == {"file_ids": ["A message can carry at most 20 files."]}
    only_foreign = read_sse("POST", url, headers=ann.headers, json_body={"message": " ", "file_ids": [bobs]})
    assert only_foreign.status == 400
    assert only_foreign.json_body == {"detail": "Message must not be blank."}
    assert not ChatMessage.objects.filter(session=ann.session).exists()
    assert not TurnUsage.objects.filter(session=ann.session).exists()
    # 429: past COPILOT_UPLOADS_PER_MINUTE (30) in one clock minute; started early in a minute,
    # so that the window does not turn over mid-way (a bounded wait of at most 20 s)
    limit = int(settings.COPILOT_UPLOADS_PER_MINUTE)
    wait_until(lambda: time.time() % 60 < 40, timeout=25, interval=0.2)
    window = f"copilot:uploads:{ann.user.pk}:{int(time.time() // 60)}"
    counted = int(rs.redis_client().get(window) or 0)  # the refused type above counts in its minute
    statuses = [upload(stack, ann, f"{i}.txt", f"file {i}".encode()).status_code for i in range(limit - counted)]
    assert statuses == [201] * (limit - counted)
    refused = upload(stack, ann, "one-more.txt", b"one more")
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_uploads"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    _assert_nothing_new(ann, limit - counted)


def test_a_follow_up_queued_mid_turn_carries_its_files(stack: str, fake_llm: Any, slow_http: str) -> None:
    # given: a turn busy in a 3 s tool
    ann = person("ann")
    csv_id = upload(stack, ann, "sales.csv", CSV).json()["id"]
    url = f"{stack}/api/chat/sessions/{ann.session.id}/stream"
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"})
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.append(read_sse("POST", url, headers=ann.headers, json_body={"message": script}))
    )
    reader.start()
    wait_until(
        lambda: ChatMessage.objects.filter(session=ann.session, role="assistant").exclude(tool_calls=[]).exists()
    )
    # when: a follow-up with only a file
    queued = httpx.post(
        url, headers={"Accept": "application/json", **ann.headers}, json={"message": "", "file_ids": [csv_id]}
    )
    reader.join(timeout=60)
    # then
    assert queued.status_code == 202
    drained = [chunk for _, chunk in results[0].events if chunk["type"] == "data-pending-drained"]
    assert [[a["name"] for a in files] for files in drained[0]["data"]["attachments"]] == [["sales.csv"]]
    follow_up = next(
        m for m in _completions(fake_llm)[-1]["messages"] if m["role"] == "user" and "<user_follow_up>" in _user_text(m)
    )
    assert (
        "Message 1:\n\n[Attached files]\n"
        f"- sales.csv (text/csv, {len(CSV) / 1024:.1f} KB), file_id={csv_id}\n"
        "Use read_workspace_file with the file_id to access file contents.\n</user_follow_up>"
    ) in _user_text(follow_up)
    row = ChatMessage.objects.get(session=ann.session, role="user", content="")
    assert row.file_ids == [csv_id]
