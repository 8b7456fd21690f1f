"""Tool names for the model, and MCP results as tool output (pure functions)."""

from __future__ import annotations

import re

import pytest
from mcp import types

from chat.mcp.content import result_error_text, result_output
from chat.mcp.names import exposed_tool_name, server_name_problem, split_exposed_name

PROVIDER_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("_case", "server", "tool", "expected"),
    [
        ("plain", "docs", "search", "docs__search"),
        ("dots and spaces", "docs", "files.read all", "docs__files_read_all"),
        ("unicode", "docs", "résumé", "docs__r_sum_"),
    ],
)
def test_exposed_name_is_sanitised(_case: str, server: str, tool: str, expected: str) -> None:
    assert exposed_tool_name(server, tool) == expected
    assert PROVIDER_RULE.match(expected)


def test_long_names_are_cut_to_64_and_stay_distinct() -> None:
    # given
    a, b = "x" * 80 + "a", "x" * 80 + "b"
    # when
    name_a, name_b = exposed_tool_name("docs", a), exposed_tool_name("docs", b)
    # then
    assert len(name_a) == 64
    assert len(name_b) == 64
    assert name_a != name_b
    assert PROVIDER_RULE.match(name_a)


@pytest.mark.parametrize("name", ["docs", "ticket-tracker", "a1"])
def test_valid_server_names(name: str) -> None:
    assert server_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "Docs", "a__b", "a_b", "-a", "a-", "a--b", "x" * 33, "a b"])
def test_invalid_server_names(name: str) -> None:
    assert server_name_problem(name) is not None


def test_split_exposed_name() -> None:
    assert split_exposed_name("docs__search") == ("docs", "search")
    assert split_exposed_name("calculator") is None


def _result(*content: types.ContentBlock, structured: dict[str, object] | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), structuredContent=structured)


def test_one_text_part_is_the_output() -> None:
    assert result_output(_result(types.TextContent(type="text", text="hello\x1b[31m\x00"))) == "hello[31m"


def test_json_text_becomes_a_json_value() -> None:
    assert result_output(_result(types.TextContent(type="text", text='{"a": [1, 2]}'))) == {"a": [1, 2]}


def test_image_is_described_not_forwarded() -> None:
    # given
    image = types.ImageContent(type="image", data="iVBORw0KGgo=", mimeType="image/png")
    # when
    output = result_output(_result(types.TextContent(type="text", text="see"), image))
    # then
    assert output == {
        "content": [{"type": "text", "text": "see"}, {"type": "image", "media_type": "image/png", "size_bytes": 8}]
    }


def test_structured_content_when_there_is_no_content() -> None:
    assert result_output(_result(structured={"total": 3})) == {"total": 3}


def test_error_text() -> None:
    assert result_error_text(_result(types.TextContent(type="text", text=" boom "))) == "boom"
    assert result_error_text(_result()) == "the tool reported an error"
