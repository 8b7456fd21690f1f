"""Script language and demo-model behaviour of the fake LLM server.

Everything in here is pure (no I/O, no clock except the default tool-call
ids' random suffix), so it can be unit-tested without a server.

A request is first normalised into a :class:`Conversation` (OpenAI Chat
Completions and Anthropic Messages bodies both map onto it); then
:func:`plan_reply` decides what to answer and returns a :class:`Plan` whose
:class:`Round` describes the reply (text, reasoning, tool calls, usage,
timing and failure injection).  The server turns a round into wire events.

Script marker (in the newest user message that has one)::

    <<fake {"rounds": [{"tool_calls": [{"name": "calculator",
                                         "arguments": {"expression": "1+1"}}]},
                       {"text": "1 + 1 = 2"}]}>>

The full reference is :data:`SCRIPT_REFERENCE`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Api = Literal["openai", "anthropic"]
ReasoningField = Literal["reasoning", "reasoning_content", "reasoning_details"]
ErrorMode = Literal["event", "disconnect"]

MARKER = "<<fake "
DEFAULT_ERROR_MESSAGE = "Upstream provider error"
DEFAULT_MODEL = "fake-model"
DEFAULT_STAMP_CHUNKS = 20

SCRIPT_REFERENCE = """\
<<fake {JSON}>> in the newest user message that contains it selects a script.
The JSON is {"rounds": [round, ...], ...defaults} or a single round object.
Round index = number of assistant messages after that user message; the last
round repeats forever.  Top-level keys other than "rounds" are defaults that
every round inherits.  Round keys (all optional):
  text, chunk_size(4), reasoning, reasoning_field(reasoning|reasoning_content|
  reasoning_details), reasoning_chunk_size(=chunk_size), reasoning_raw,
  signature (anthropic thinking signature), tool_calls[{name, arguments, id}],
  args_chunk_size(8), usage{prompt_tokens, completion_tokens, cached_tokens,
  cache_creation_tokens, cost} | null, delay_ms, first_delay_ms,
  error_after_chunks, error_mode(event|disconnect), error_message,
  http_status, stamp, chunks.
"""


class ScriptError(ValueError):
    """The script JSON is malformed or has a value of the wrong type."""


# --------------------------------------------------------------------------
# Normalised conversation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCallRef:
    """A tool call the assistant made earlier in the conversation."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """A tool result sent back by the client."""

    tool_call_id: str
    content: str


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    text: str
    tool_calls: tuple[ToolCallRef, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class Conversation:
    api: Api
    model: str
    stream: bool
    system: str
    messages: tuple[Message, ...]
    tool_names: frozenset[str]
    wants_reasoning: bool
    prompt_chars: int


def _as_text(content: object) -> str:
    """Text of a message content: a string or the concatenated text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in (
                None,
                "text",
                "input_text",
            ):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return ""


def _content_chars(content: object) -> int:
    """All character data in a content value (text, tool results, ...)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(_content_chars(part) for part in content)
    if isinstance(content, Mapping):
        total = 0
        for key in ("text", "content", "thinking", "partial_json"):
            if key in content:
                total += _content_chars(content[key])
        if "input" in content:
            total += len(json.dumps(content["input"]))
        return total
    return 0


def _tool_names(tools: object) -> frozenset[str]:
    names: set[str] = set()
    if isinstance(tools, list):
        for tool in tools:
            if not isinstance(tool, Mapping):
                continue
            function = tool.get("function")
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                names.add(function["name"])
            elif isinstance(tool.get("name"), str):
                names.add(tool["name"])
    return frozenset(names)


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else DEFAULT_MODEL


def normalize_openai(body: Mapping[str, Any]) -> Conversation:
    """Normalise an OpenAI Chat Completions request body."""
    raw_messages = body.get("messages")
    messages: list[Message] = []
    system_parts: list[str] = []
    chars = 0
    for raw in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(raw, Mapping):
            continue
        role = str(raw.get("role", ""))
        content = raw.get("content")
        text = _as_text(content)
        chars += _content_chars(content)
        if role in ("system", "developer"):
            system_parts.append(text)
            messages.append(Message(role="system", text=text))
        elif role == "tool":
            call_id = raw.get("tool_call_id")
            messages.append(
                Message(
                    role="tool",
                    text="",
                    tool_results=(ToolResult(str(call_id or ""), text),),
                )
            )
        elif role == "assistant":
            calls: list[ToolCallRef] = []
            raw_calls = raw.get("tool_calls")
            for call in raw_calls if isinstance(raw_calls, list) else []:
                if not isinstance(call, Mapping):
                    continue
                function = call.get("function")
                if not isinstance(function, Mapping):
                    continue
                arguments = function.get("arguments")
                args_text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                chars += len(args_text)
                calls.append(
                    ToolCallRef(
                        str(call.get("id", "")),
                        str(function.get("name", "")),
                        args_text,
                    )
                )
            messages.append(Message(role="assistant", text=text, tool_calls=tuple(calls)))
        else:
            messages.append(Message(role=role or "user", text=text))
    reasoning = body.get("reasoning")
    wants_reasoning = reasoning is not None and reasoning is not False
    if isinstance(reasoning, Mapping):
        wants_reasoning = reasoning.get("enabled") is not False and reasoning.get("effort") != "none"
    return Conversation(
        api="openai",
        model=_model(body),
        stream=body.get("stream") is True,
        system="\n".join(system_parts),
        messages=tuple(messages),
        tool_names=_tool_names(body.get("tools")),
        wants_reasoning=wants_reasoning,
        prompt_chars=chars,
    )


def normalize_anthropic(body: Mapping[str, Any]) -> Conversation:
    """Normalise an Anthropic Messages request body."""
    system = _as_text(body.get("system"))
    chars = len(system)
    messages: list[Message] = []
    raw_messages = body.get("messages")
    for raw in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(raw, Mapping):
            continue
        role = str(raw.get("role", "user"))
        content = raw.get("content")
        chars += _content_chars(content)
        text = _as_text(content)
        calls: list[ToolCallRef] = []
        results: list[ToolResult] = []
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, Mapping):
                    continue
                if block.get("type") == "tool_use":
                    calls.append(
                        ToolCallRef(
                            str(block.get("id", "")),
                            str(block.get("name", "")),
                            json.dumps(block.get("input", {})),
                        )
                    )
                elif block.get("type") == "tool_result":
                    results.append(
                        ToolResult(
                            str(block.get("tool_use_id", "")),
                            _as_text(block.get("content")),
                        )
                    )
        messages.append(
            Message(
                role=role,
                text=text,
                tool_calls=tuple(calls),
                tool_results=tuple(results),
            )
        )
    thinking = body.get("thinking")
    wants_reasoning = isinstance(thinking, Mapping) and thinking.get("type") in (
        "enabled",
        "adaptive",
    )
    return Conversation(
        api="anthropic",
        model=_model(body),
        stream=body.get("stream") is True,
        system=system,
        messages=tuple(messages),
        tool_names=_tool_names(body.get("tools")),
        wants_reasoning=wants_reasoning,
        prompt_chars=chars,
    )


def normalize(body: Mapping[str, Any], api: Api) -> Conversation:
    return normalize_openai(body) if api == "openai" else normalize_anthropic(body)


# --------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCallSpec:
    name: str
    arguments: str
    id: str


@dataclass(frozen=True)
class UsageOverride:
    """Usage keys given by a script; ``None`` fields fall back to defaults."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    cost_given: bool = False
    cost: float | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    cost: float | None  # None: report usage without a cost key

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def openai(self) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": self.cached_tokens}
        if self.cache_creation_tokens:
            details["cache_write_tokens"] = self.cache_creation_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": details,
        }
        if self.cost is not None:
            usage["cost"] = self.cost
        return usage

    @property
    def anthropic_input_tokens(self) -> int:
        """Uncached input: Anthropic's input_tokens excludes cache reads/writes."""
        return max(0, self.prompt_tokens - self.cached_tokens - self.cache_creation_tokens)


_NO_RAW: Any = object()


@dataclass(frozen=True)
class Round:
    text: str | None = None
    chunk_size: int = 4
    reasoning: str | None = None
    reasoning_field: ReasoningField = "reasoning"
    reasoning_chunk_size: int | None = None
    reasoning_raw: Any = _NO_RAW
    signature: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    args_chunk_size: int = 8
    usage_enabled: bool = True
    usage: UsageOverride = field(default_factory=UsageOverride)
    delay_ms: float = 0.0
    first_delay_ms: float = 0.0
    error_after_chunks: int | None = None
    error_mode: ErrorMode = "event"
    error_message: str = DEFAULT_ERROR_MESSAGE
    http_status: int | None = None
    stamp: bool = False
    chunks: int | None = None

    @property
    def has_reasoning_raw(self) -> bool:
        return self.reasoning_raw is not _NO_RAW

    def text_pieces(self) -> list[str]:
        """Text deltas (not for ``stamp`` rounds, whose pieces are made at send time)."""
        if self.text is None:
            if self.chunks is not None:
                return [f"tok{i} " for i in range(self.chunks)]
            return []
        return split_pieces(self.text, self.chunk_size)

    def reasoning_pieces(self) -> list[str]:
        if not self.reasoning:
            return []
        size = self.reasoning_chunk_size or self.chunk_size
        return split_pieces(self.reasoning, size)

    def stamp_count(self) -> int:
        if self.chunks is not None:
            return self.chunks
        if self.text:
            return len(split_pieces(self.text, self.chunk_size))
        return DEFAULT_STAMP_CHUNKS


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


def compute_usage(rnd: Round, prompt_chars: int, completion_chars: int) -> Usage | None:
    """Usage to report for a finished round (``None``: report none at all)."""
    if not rnd.usage_enabled:
        return None
    over = rnd.usage
    prompt = over.prompt_tokens if over.prompt_tokens is not None else max(1, prompt_chars // 4)
    completion = over.completion_tokens if over.completion_tokens is not None else max(1, completion_chars // 4)
    cost = over.cost if over.cost_given else (prompt * 3 + completion * 15) / 1e6
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=over.cached_tokens or 0,
        cache_creation_tokens=over.cache_creation_tokens or 0,
        cost=cost,
    )


def _get_int(obj: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{key!r} must be a number, got {value!r}")
    return int(value)


def _get_float(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key, 0)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{key!r} must be a number, got {value!r}")
    return float(value)


def _get_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ScriptError(f"{key!r} must be a string, got {value!r}")
    return value


def _parse_usage(value: object) -> UsageOverride:
    if not isinstance(value, Mapping):
        raise ScriptError(f"'usage' must be an object or null, got {value!r}")
    cost_given = "cost" in value
    cost = value.get("cost")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
        raise ScriptError(f"'cost' must be a number or null, got {cost!r}")
    return UsageOverride(
        prompt_tokens=_get_int(value, "prompt_tokens", None),
        completion_tokens=_get_int(value, "completion_tokens", None),
        cached_tokens=_get_int(value, "cached_tokens", None),
        cache_creation_tokens=_get_int(value, "cache_creation_tokens", None),
        cost_given=cost_given,
        cost=float(cost) if cost is not None else None,
    )


def parse_round(obj: object, round_index: int = 0, api: Api = "openai") -> Round:
    """Build a :class:`Round` from a script round object (unknown keys ignored)."""
    if not isinstance(obj, Mapping):
        raise ScriptError(f"a round must be an object, got {obj!r}")
    reasoning_field = obj.get("reasoning_field", "reasoning")
    if reasoning_field not in ("reasoning", "reasoning_content", "reasoning_details"):
        raise ScriptError(f"unknown reasoning_field {reasoning_field!r}")
    error_mode = obj.get("error_mode", "event")
    if error_mode not in ("event", "disconnect"):
        raise ScriptError(f"unknown error_mode {error_mode!r}")

    calls: list[ToolCallSpec] = []
    raw_calls = obj.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ScriptError("'tool_calls' must be a list")
    for n, raw in enumerate(raw_calls):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise ScriptError(f"tool call {n} needs a string 'name'")
        arguments = raw.get("arguments", "")
        args_text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call_id = _get_str(raw, "id") or default_tool_call_id(round_index, n, api)
        calls.append(ToolCallSpec(name=raw["name"], arguments=args_text, id=call_id))

    usage_enabled = True
    usage = UsageOverride()
    if "usage" in obj:
        if obj["usage"] is None:
            usage_enabled = False
        else:
            usage = _parse_usage(obj["usage"])

    http_status = _get_int(obj, "http_status", None)
    if http_status is not None and not 100 <= http_status <= 599:
        raise ScriptError(f"'http_status' out of range: {http_status}")

    return Round(
        text=_get_str(obj, "text"),
        chunk_size=_get_int(obj, "chunk_size", 4) or 0,
        reasoning=_get_str(obj, "reasoning"),
        reasoning_field=reasoning_field,
        reasoning_chunk_size=_get_int(obj, "reasoning_chunk_size", None),
        reasoning_raw=obj.get("reasoning_raw", _NO_RAW),
        signature=_get_str(obj, "signature"),
        tool_calls=tuple(calls),
        args_chunk_size=_get_int(obj, "args_chunk_size", 8) or 0,
        usage_enabled=usage_enabled,
        usage=usage,
        delay_ms=_get_float(obj, "delay_ms"),
        first_delay_ms=_get_float(obj, "first_delay_ms"),
        error_after_chunks=_get_int(obj, "error_after_chunks", None),
        error_mode=error_mode,
        error_message=_get_str(obj, "error_message") or DEFAULT_ERROR_MESSAGE,
        http_status=http_status,
        stamp=obj.get("stamp") is True,
        chunks=_get_int(obj, "chunks", None),
    )


# --------------------------------------------------------------------------
# Finding the script
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptMatch:
    """A marker found in the conversation."""

    round_index: int
    script: dict[str, Any] | None  # None when the JSON was invalid
    error: str | None = None


def parse_marker(text: str) -> dict[str, Any] | None:
    """Parse the JSON after the first ``<<fake `` in ``text``.

    Returns ``None`` when there is no marker; raises :class:`ScriptError`
    when the JSON is invalid or not an object.
    """
    start = text.find(MARKER)
    if start < 0:
        return None
    rest = text[start + len(MARKER) :]
    stripped = rest.lstrip()
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise ScriptError(str(exc)) from exc
    if not isinstance(value, dict):
        raise ScriptError("the script must be a JSON object")
    return value


def find_script(messages: Sequence[Message]) -> ScriptMatch | None:
    """Newest user message with a marker and the round index after it."""
    assistants_after = 0
    for message in reversed(messages):
        if message.role == "assistant":
            assistants_after += 1
            continue
        if message.role != "user" or MARKER not in message.text:
            continue
        try:
            script = parse_marker(message.text)
        except ScriptError as exc:
            return ScriptMatch(round_index=assistants_after, script=None, error=str(exc))
        return ScriptMatch(round_index=assistants_after, script=script)
    return None


def select_round(script: Mapping[str, Any], round_index: int, api: Api = "openai") -> Round:
    """Round ``round_index`` of a script (the last round repeats)."""
    if "rounds" not in script:
        return parse_round(script, round_index, api)
    rounds = script["rounds"]
    if not isinstance(rounds, list) or not rounds:
        raise ScriptError("'rounds' must be a non-empty list")
    defaults = {key: value for key, value in script.items() if key != "rounds"}
    chosen = rounds[min(round_index, len(rounds) - 1)]
    if not isinstance(chosen, Mapping):
        raise ScriptError(f"a round must be an object, got {chosen!r}")
    return parse_round({**defaults, **chosen}, round_index, api)


# --------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------

PlanKind = Literal["script", "invalid_script", "demo", "demo_tool_result", "title", "summary"]


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    round: Round
    round_index: int
    conversation: Conversation


def plan_reply(body: Mapping[str, Any], api: Api) -> Plan:
    """Decide the reply for a request body (never raises for bad scripts)."""
    conversation = normalize(body, api)
    match = find_script(conversation.messages)
    if match is not None:
        if match.script is None:
            rnd = Round(text=f"Invalid fake script: {match.error}")
            return Plan("invalid_script", rnd, match.round_index, conversation)
        try:
            rnd = select_round(match.script, match.round_index, api)
        except ScriptError as exc:
            rnd = Round(text=f"Invalid fake script: {exc}")
            return Plan("invalid_script", rnd, match.round_index, conversation)
        return Plan("script", rnd, match.round_index, conversation)
    kind, rnd = demo_round(conversation)
    return Plan(kind, rnd, 0, conversation)


# --------------------------------------------------------------------------
# Demo model
# --------------------------------------------------------------------------

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
    if MARKER in first:
        first = first[: first.find(MARKER)]
    words = [word.rstrip("'’-") for word in _WORD_RE.findall(first)][:max_words]
    if not words:
        return "New Chat"
    return " ".join(word[:1].upper() + word[1:] for word in words)


def summary_from(messages: Sequence[Message]) -> str:
    earlier = [m for m in messages if m.role != "system"]
    joined = " ".join(" ".join(m.text.split()) or " ".join(r.content for r in m.tool_results) for m in earlier)
    return f"Summary of {len(earlier)} earlier messages: {joined.strip()[:200]}"


def demo_round(conversation: Conversation) -> tuple[PlanKind, Round]:
    """The offline demo model's reply."""
    messages = conversation.messages
    tools = conversation.tool_names
    system = conversation.system
    reasoning = conversation.wants_reasoning

    if not tools and "summar" in system.lower():
        return "summary", Round(text=summary_from(messages))
    if not tools and _TITLE_RE.search(system):
        source = next((m.text for m in messages if m.role == "user" and m.text.strip()), "")
        return "title", Round(text=title_from_text(source))

    results = _trailing_tool_results(messages)
    if results:
        calls = {call.id: call for m in messages for call in m.tool_calls}
        text = "\n\n".join(_describe_tool_result(result, calls) for result in results)
        thought = "The tool returned a result; I'll report it plainly." if reasoning else None
        return "demo_tool_result", Round(text=text, reasoning=thought)

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
        return "demo", Round(tool_calls=(call,), reasoning=thought)

    shown = _shorten(user_text, 300) if user_text.strip() else "(nothing)"
    thought = f"The user said “{_shorten(user_text, 80)}”. I'll answer briefly." if reasoning else None
    return "demo", Round(text=ECHO_TEMPLATE.format(text=shown), reasoning=thought)
