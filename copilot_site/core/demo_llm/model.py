"""The offline demo model: what ``make run`` answers when no LLM key is configured.

Pure (no I/O, no clock except the random suffix of tool-call ids). It echoes the
user, calls the offered tools for a few recognisable requests (the time, a
calculation, remember/recall, fetch a URL, search my chats), reports tool
results in prose, and answers title and summary requests.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from copilot_site.core.demo_llm.conversation import Api, Conversation, Message, ToolCallRef, ToolResult

TEXT_CHUNK_CHARS = 4
ARGS_CHUNK_CHARS = 8
# The marker the scripted test server looks for in a user message; a title stops before it.
SCRIPT_MARKER = "<<fake "

ReplyKind = Literal["demo", "demo_tool_result", "title", "summary"]


@dataclass(frozen=True)
class ToolCallSpec:
    name: str
    arguments: str
    id: str


@dataclass(frozen=True)
class DemoReply:
    """What the demo model answers: text, reasoning and tool calls (any may be empty)."""

    kind: ReplyKind
    text: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()


def split_pieces(text: str, size: int) -> list[str]:
    """Split ``text`` into pieces of ``size`` characters (whole text if size <= 0)."""
    if not text:
        return []
    if size <= 0:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def default_tool_call_id(round_index: int, n: int, api: Api = "openai") -> str:
    prefix = "toolu" if api == "anthropic" else "call"
    return f"{prefix}_{round_index}_{n}_{secrets.token_hex(4)}"


ECHO_TEMPLATE = (
    "**Demo model** — you said: “{text}”.\n\n"
    "This copilot is running offline without an LLM key; ask me the time, a calculation "
    "like 12*(3+4), or to remember something to see tools in action."
)

_ARITH_RE = re.compile(r"^[\d\s+\-*/%().^,]+$")
_OPERATOR_RE = re.compile(r"\d\s*(\*\*|[+\-*/%^])\s*[\d(]")
_WHAT_IS_RE = re.compile(r"^(?:what\s+is|what's|whats|how\s+much\s+is)\s+(.+)$", re.IGNORECASE)
_CALC_RE = re.compile(r"^(?:please\s+)?(?:calculate|compute|evaluate|calc)\s*:?\s+(.+)$", re.IGNORECASE)
_REMEMBER_RE = re.compile(r"^remember\s+(.+)$", re.IGNORECASE | re.DOTALL)
_RECALL_RE = re.compile(
    r"(?:what\s+do\s+you\s+remember(?:\s+about)?|\brecall(?:\s+what\s+you\s+know\s+about)?)"
    r"\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_FETCH_RE = re.compile(r"^(?:please\s+)?(?:fetch|open)\s+(https?://\S+)", re.IGNORECASE)
_SEARCH_RE = re.compile(r"search\s+my\s+chats\s+for\s+(.+)$", re.IGNORECASE | re.DOTALL)
_TIME_RE = re.compile(r"\b(?:time|date)\b", re.IGNORECASE)
_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_TITLE_RE = re.compile(r"\btitle\b", re.IGNORECASE)
_ROLE_PREFIX_RE = re.compile(r"^\s*(?:user|human|assistant|ai)\s*:\s*", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")


def _clean_query(text: str) -> str:
    return text.strip().strip("\"'“”‘’").rstrip("?.!").strip().strip("\"'“”‘’")


def extract_expression(text: str) -> str | None:
    """The arithmetic expression a message asks for, if any."""
    stripped = text.strip()
    calc = _CALC_RE.match(stripped)
    if calc:
        expression = calc.group(1).strip().rstrip("?.!=").strip()
        return expression or None
    what = _WHAT_IS_RE.match(stripped)
    candidate = what.group(1) if what else stripped
    candidate = candidate.strip().rstrip("?.!=").strip()
    if candidate and _ARITH_RE.match(candidate) and _OPERATOR_RE.search(candidate):
        return candidate
    return None


def _demo_intent(text: str, tools: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    """Tool call the demo model makes for a user message, if the tool is offered."""
    stripped = text.strip()
    lowered = stripped.lower()
    candidates: list[tuple[str, dict[str, Any]]] = []

    remember = _REMEMBER_RE.match(stripped)
    if remember:
        candidates.append(("remember", {"content": remember.group(1).strip()}))
    if "what do you remember" in lowered or re.search(r"\brecall\b", lowered):
        recall = _RECALL_RE.search(stripped)
        query = _clean_query(recall.group(1)) if recall else ""
        candidates.append(("recall", {"query": query}))
    fetch = _FETCH_RE.match(stripped)
    if fetch:
        candidates.append(("web_fetch", {"url": fetch.group(1).rstrip(".,;!?)")}))
    search = _SEARCH_RE.search(stripped)
    if search:
        candidates.append(("search_my_chats", {"query": _clean_query(search.group(1))}))
    expression = extract_expression(stripped)
    if expression is not None:
        candidates.append(("calculator", {"expression": expression}))
    if _TIME_RE.search(lowered):
        candidates.append(("get_current_time", {}))

    for name, arguments in candidates:
        if name in tools:
            return name, arguments
    return None


def _shorten(text: str, limit: int) -> str:
    collapsed = " ".join(text.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1] + "…"


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.text.strip():
            return message.text
    return ""


def _trailing_tool_results(messages: Sequence[Message]) -> list[ToolResult]:
    results: list[ToolResult] = []
    for message in reversed(messages):
        if message.tool_results and not message.text.strip():
            results[:0] = list(message.tool_results)
            continue
        break
    return results


def _format_number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def describe_time(content: str) -> str | None:
    """``It's 2026-11-21 14:05 UTC.`` from a get_current_time result."""
    match = _ISO_RE.search(content)
    if not match:
        return None
    raw = match.group(0).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"It's {moment:%Y-%m-%d %H:%M} UTC."


def describe_calculation(expression: str | None, content: str) -> str | None:
    """``2 + 2 = 4`` from a calculator result."""
    data = _json_or_none(content)
    result: object = None
    if isinstance(data, Mapping):
        if data.get("error"):
            return None
        for key in ("result", "value", "answer", "output"):
            if key in data:
                result = data[key]
                break
        if expression is None and isinstance(data.get("expression"), str):
            expression = data["expression"]
    elif isinstance(data, int | float) and not isinstance(data, bool):
        result = data
    elif data is None and content.strip():
        result = content.strip()
    if result is None or expression is None:
        return None
    return f"{expression} = {_format_number(result)}"


def _describe_tool_result(result: ToolResult, calls: Mapping[str, ToolCallRef]) -> str:
    call = calls.get(result.tool_call_id)
    name = call.name if call else ""
    if name == "get_current_time" or (not name and _ISO_RE.search(result.content)):
        sentence = describe_time(result.content)
        if sentence:
            return sentence
    if name == "calculator":
        arguments = _json_or_none(call.arguments) if call else None
        expression = arguments.get("expression") if isinstance(arguments, Mapping) else None
        sentence = describe_calculation(expression if isinstance(expression, str) else None, result.content)
        if sentence:
            return sentence
    return f"Done — the tool returned: {result.content[:500]}"


def title_from_text(text: str, max_words: int = 6) -> str:
    """Title Case, at most ``max_words`` words, no quotes or trailing punctuation."""
    lines = [_ROLE_PREFIX_RE.sub("", line) for line in text.splitlines()]
    first = next((line for line in lines if line.strip()), "")
    if SCRIPT_MARKER in first:
        first = first[: first.find(SCRIPT_MARKER)]
    words = [word.rstrip("'’-") for word in _WORD_RE.findall(first)][:max_words]
    if not words:
        return "New Chat"
    return " ".join(word[:1].upper() + word[1:] for word in words)


def summary_from(messages: Sequence[Message]) -> str:
    earlier = [m for m in messages if m.role != "system"]
    joined = " ".join(" ".join(m.text.split()) or " ".join(r.content for r in m.tool_results) for m in earlier)
    return f"Summary of {len(earlier)} earlier messages: {joined.strip()[:200]}"


def demo_reply(conversation: Conversation) -> DemoReply:
    """The offline demo model's reply to a conversation."""
    messages = conversation.messages
    tools = conversation.tool_names
    system = conversation.system
    reasoning = conversation.wants_reasoning

    if not tools and "summar" in system.lower():
        return DemoReply("summary", text=summary_from(messages))
    if not tools and _TITLE_RE.search(system):
        source = next((m.text for m in messages if m.role == "user" and m.text.strip()), "")
        return DemoReply("title", text=title_from_text(source))

    results = _trailing_tool_results(messages)
    if results:
        calls = {call.id: call for m in messages for call in m.tool_calls}
        text = "\n\n".join(_describe_tool_result(result, calls) for result in results)
        thought = "The tool returned a result; I'll report it plainly." if reasoning else None
        return DemoReply("demo_tool_result", text=text, reasoning=thought)

    user_text = _last_user_text(messages)
    intent = _demo_intent(user_text, tools)
    if intent is not None:
        name, arguments = intent
        thought = f"The user asked “{_shorten(user_text, 80)}”; I'll call {name}." if reasoning else None
        call = ToolCallSpec(
            name=name,
            arguments=json.dumps(arguments),
            id=default_tool_call_id(0, 0, conversation.api),
        )
        return DemoReply("demo", tool_calls=(call,), reasoning=thought)

    shown = _shorten(user_text, 300) if user_text.strip() else "(nothing)"
    thought = f"The user said “{_shorten(user_text, 80)}”. I'll answer briefly." if reasoning else None
    return DemoReply("demo", text=ECHO_TEMPLATE.format(text=shown), reasoning=thought)
