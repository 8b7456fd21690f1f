"""read_workspace_file: text, CSV, PDF pages, images, offset/limit and the output cap, and
every refusal as a failed output with a plain reason."""

from __future__ import annotations

import io
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.services.attachments import attachment_create, attachment_delete
from chat.tools import ToolContext, enabled_tools, execute_tool, tool_cost_cents
from chat.tools.registry import registered_tools
from copilot_site.testing.documents import pdf_with_pages, png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_attachments_root")]


def ctx(user: Any) -> ToolContext:
    return ToolContext(user=user, session_id="s1", turn_id="turn-1", tool_call_id="call_1")


async def read(user: Any, **arguments: Any) -> Any:
    tools = {t.name: t for t in enabled_tools()}
    return await execute_tool(
        tool=tools.get("read_workspace_file"), name="read_workspace_file", arguments=arguments, ctx=ctx(user)
    )


async def stored(user: Any, name: str, data: bytes) -> str:
    attachment = await sync_to_async(attachment_create)(owner=user, name=name, stream=io.BytesIO(data))
    return str(attachment.pk)


@pytest.mark.asyncio
async def test_a_text_file_in_its_own_charset(alice: Any) -> None:
    file_id = await stored(alice, "menu.txt", "Caf\u00e9 cr\u00e8me \u2014 3,50 \u20ac".encode("cp1252"))
    result = await read(alice, file_id=file_id)
    assert result.success
    assert result.text == (
        "File menu.txt (text/plain, 0.0 KB), characters 0–19 of 19:\n\nCaf\u00e9 cr\u00e8me \u2014 3,50 \u20ac"
    )


@pytest.mark.asyncio
async def test_a_csv_and_a_pdf_by_page(alice: Any) -> None:
    csv_id = await stored(alice, "sales.csv", b"region,total\nnorth,12\nsouth,30\n")
    pdf_id = await stored(alice, "report.pdf", pdf_with_pages(["Quarterly report", "Revenue grew 12%", "Outlook"]))
    csv = await read(alice, file_id=csv_id)
    assert csv.text.endswith("\n\nregion,total\nnorth,12\nsouth,30\n")
    pdf = await read(alice, file_id=pdf_id.upper())
    assert pdf.success
    assert pdf.text.split(":\n\n", 1)[1] == (
        "--- Page 1 of 3 ---\nQuarterly report\n\n--- Page 2 of 3 ---\nRevenue grew 12%\n\n--- Page 3 of 3 ---\nOutlook"
    )


@pytest.mark.asyncio
async def test_offset_limit_and_the_output_cap(alice: Any, settings: Any) -> None:
    settings.COPILOT_TOOL_OUTPUT_MAX_CHARS = 1000  # a piece has 1000 - 600 = 400 characters at most
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    file_id = await stored(alice, "long.txt", text.encode())
    first = await read(alice, file_id=file_id)
    assert first.text == (
        f"File long.txt (text/plain, 1.0 KB), characters 0–400 of 1000:\n\n{text[:400]}\n\n"
        "[Truncated: showing characters 0–400 of 1000. Call read_workspace_file with offset=400 to read on.]"
    )
    assert len(first.text) <= 1000
    middle = await read(alice, file_id=file_id, offset=400, limit=10)
    assert middle.text.endswith(
        f"\n\n{text[400:410]}\n\n[Truncated: showing characters 400–410 of 1000. "
        "Call read_workspace_file with offset=410 to read on.]"
    )
    last = await read(alice, file_id=file_id, offset=990)
    assert last.text == f"File long.txt (text/plain, 1.0 KB), characters 990–1000 of 1000:\n\n{text[990:]}"


@pytest.mark.asyncio
async def test_an_image_is_described(alice: Any) -> None:
    file_id = await stored(alice, "chart.png", png_bytes((40, 30)))
    result = await read(alice, file_id=file_id)
    assert result.success
    assert result.text.startswith("chart.png is an image (image/png, 40×30 px, ")
    assert "given to you as images with that message" in result.text


@pytest.mark.asyncio
async def test_refusals_are_failed_outputs_with_a_reason(alice: Any, charlie: Any) -> None:
    alices = await stored(alice, "secret.txt", b"alice only")
    gone = await stored(alice, "gone.txt", b"deleted")
    await sync_to_async(attachment_delete)(attachment_id=gone, user=alice)
    broken = await stored(alice, "broken.pdf", b"%PDF-1.4\nnot really a pdf")
    cases = {
        "foreign": await read(charlie, file_id=alices),
        "deleted": await read(alice, file_id=gone),
        "malformed": await read(alice, file_id="../../etc/passwd"),
        "broken pdf": await read(alice, file_id=broken),
    }
    assert {name: result.success for name, result in cases.items()} == dict.fromkeys(cases, False)
    assert cases["foreign"].text == (
        f"Tool execution error: No file with id {alices} among the user's files (it may have been deleted)."
    )
    assert cases["deleted"].text.startswith(f"Tool execution error: No file with id {gone} ")
    assert cases["broken pdf"].text == "Tool execution error: broken.pdf: The PDF could not be read; it may be damaged."


def test_switchable_and_priceable_like_the_others(settings: Any) -> None:
    tool = registered_tools()["read_workspace_file"]
    settings.COPILOT_TOOL_COST_CENTS = {"read_workspace_file": 3}
    assert tool_cost_cents(tool) == 3
    settings.COPILOT_DISABLED_TOOLS = ["read_workspace_file"]
    assert "read_workspace_file" not in [t.name for t in enabled_tools()]
