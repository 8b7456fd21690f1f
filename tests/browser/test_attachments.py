"""Files on the chat page in Chromium: attach by button, drag-and-drop and paste; the upload
progress bar; a refused type shows the server's reason; send; thumbnails and download links
in the sent message, before and after a reload."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Attachment, ChatMessage
from copilot_site.testing.documents import png_bytes
from tests.browser.conftest import Pages, fake, screenshot
from tests.chat.files.conftest import clean_attachments_root  # noqa: F401  (a fixture)
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("clean_attachments_root"),
]

UNSUPPORTED = (
    "This type of file is not supported. Upload text, Markdown, CSV, JSON, source code, PDF, PNG, JPEG, WebP or GIF "
    "files."
)

DROP_CSV = """([name, text]) => {
  const data = new DataTransfer();
  data.items.add(new File([text], name, { type: "text/csv" }));
  const form = document.querySelector("#composer");
  form.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
  form.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""

PASTE_PNG = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/png" }));
  const box = document.querySelector("#composer-input");
  box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
}"""


def chips(page: Any) -> Any:
    return page.get_by_test_id("attachment-chip")


def test_attach_by_button_drop_and_paste_then_send(pages: Pages) -> None:
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    # by the button: a large text file shows its progress bar, then is ready
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("attach").click()
    chooser.value.set_files(
        [{"name": "big-notes.txt", "mimeType": "text/plain", "buffer": b"line of notes\n" * 600_000}]
    )
    expect(page.get_by_test_id("attachment-progress")).to_have_count(1)
    expect(chips(page).nth(0)).to_have_attribute("data-state", "ready", timeout=30_000)
    # by drag-and-drop onto the composer
    page.evaluate(DROP_CSV, ["table.csv", "city,people\nLisbon,545000\n"])
    expect(chips(page).nth(1)).to_have_attribute("data-state", "ready")
    # by paste: an image, with its thumbnail
    page.evaluate(PASTE_PNG, ["pasted.png", base64.b64encode(png_bytes((60, 40))).decode()])
    expect(chips(page).nth(2)).to_have_attribute("data-state", "ready")
    thumb = chips(page).nth(2).get_by_test_id("attachment-thumb")
    expect(thumb).to_be_visible()
    page.wait_for_function("el => el.complete && el.naturalWidth === 60", arg=thumb.element_handle())
    # a refused type keeps its chip with the server's reason
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("attach").click()
    chooser.value.set_files([{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00" * 8}])
    expect(chips(page).nth(3)).to_have_attribute("data-state", "error")
    expect(chips(page).nth(3).get_by_test_id("attachment-error")).to_have_text(UNSUPPORTED)
    screenshot(page, "attachments-tray")
    assert list(Attachment.objects.order_by("created_at").values_list("name", flat=True)) == [
        "big-notes.txt",
        "table.csv",
        "pasted.png",
    ]
    # send: the three uploaded files go with the message; the refused one stays behind
    box = page.get_by_test_id("composer-input")
    box.fill("Here are my files " + fake({"text": "Got them."}))
    box.press("Enter")
    expect(page.get_by_test_id("assistant-message")).to_contain_text("Got them.", timeout=30_000)
    expect(chips(page)).to_have_count(1)
    message = page.get_by_test_id("user-message")
    expect(message.get_by_test_id("message-file")).to_have_text(["big-notes.txt", "table.csv"])
    expect(message.get_by_test_id("message-thumb")).to_have_count(1)
    row = ChatMessage.objects.get(role="user")
    assert row.file_ids == [str(a.pk) for a in Attachment.objects.order_by("created_at")]
    # the thumbnail opens full size
    message.get_by_test_id("message-thumb").click()
    expect(page.get_by_test_id("lightbox")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("lightbox")).to_have_count(0)
    # a reload shows the same attachments
    page.reload()
    message = page.get_by_test_id("user-message")
    expect(message.get_by_test_id("message-file")).to_have_text(["big-notes.txt", "table.csv"])
    expect(message.get_by_test_id("message-thumb")).to_have_count(1)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth === 60", arg=message.get_by_test_id("message-thumb").element_handle()
    )
    download = message.get_by_test_id("message-file").nth(1)
    assert download.get_attribute("href") == f"/api/chat/files/{row.file_ids[1]}/content"
    screenshot(page, "attachments-sent")


def test_a_message_with_only_a_file(pages: Pages) -> None:
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    page.evaluate(DROP_CSV, ["only.csv", "a,b\n1,2\n"])
    expect(chips(page).nth(0)).to_have_attribute("data-state", "ready")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("user-message").get_by_test_id("message-file")).to_have_text(["only.csv"])
    expect(page.get_by_test_id("assistant-message")).to_be_visible(timeout=30_000)
    assert ChatMessage.objects.get(role="user").content == ""
