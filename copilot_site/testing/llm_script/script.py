"""The script language of the scripted LLM server: which reply a test asks for.

Everything in here is pure (no I/O, no clock except the default tool-call ids'
random suffix), so it can be unit-tested without a server.

A request is first normalised into a :class:`Conversation` (OpenAI Chat
Completions and Anthropic Messages bodies both map onto it); then
:func:`plan_reply` decides what to answer and returns a :class:`Plan` whose
:class:`Round` describes the reply (text, reasoning, tool calls, usage, timing
and failure injection). With no script the offline demo model answers. The
stream modules turn a round into wire events.

Script marker (in the newest user message that has one)::

    <<fake {"rounds": [{"tool_calls": [{"name": "calculator",
                                         "arguments": {"expression": "1+1"}}]},
                       {"text": "1 + 1 = 2"}]}>>

The full reference is :data:`SCRIPT_REFERENCE`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from copilot_site.core.demo_llm.model import (
    ARGS_CHUNK_CHARS,
    SCRIPT_MARKER,
    TEXT_CHUNK_CHARS,
    ReplyKind,
    ToolCallSpec,
    default_tool_call_id,
    demo_reply,
    split_pieces,
)
from copilot_site.core.demo_llm.usage import Usage, cost_estimate, tokens_estimate
from copilot_site.testing.llm_script.conversation import Api, Conversation, Message, normalize

ReasoningField = Literal["reasoning", "reasoning_content", "reasoning_details"]
ErrorMode = Literal["event", "disconnect"]

MARKER = SCRIPT_MARKER
DEFAULT_ERROR_MESSAGE = "Upstream provider error"
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
# Rounds
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageOverride:
    """Usage keys given by a script; ``None`` fields fall back to defaults."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    cost_given: bool = False
    cost: float | None = None


_NO_RAW: Any = object()


@dataclass(frozen=True)
class Round:
    text: str | None = None
    chunk_size: int = TEXT_CHUNK_CHARS
    reasoning: str | None = None
    reasoning_field: ReasoningField = "reasoning"
    reasoning_chunk_size: int | None = None
    reasoning_raw: Any = _NO_RAW
    signature: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    args_chunk_size: int = ARGS_CHUNK_CHARS
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


def compute_usage(rnd: Round, prompt_chars: int, completion_chars: int) -> Usage | None:
    """Usage to report for a finished round (``None``: report none at all)."""
    if not rnd.usage_enabled:
        return None
    over = rnd.usage
    prompt = over.prompt_tokens if over.prompt_tokens is not None else tokens_estimate(prompt_chars)
    completion = over.completion_tokens if over.completion_tokens is not None else tokens_estimate(completion_chars)
    cost = over.cost if over.cost_given else cost_estimate(prompt, completion)
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
        chunk_size=_get_int(obj, "chunk_size", TEXT_CHUNK_CHARS) or 0,
        reasoning=_get_str(obj, "reasoning"),
        reasoning_field=reasoning_field,
        reasoning_chunk_size=_get_int(obj, "reasoning_chunk_size", None),
        reasoning_raw=obj.get("reasoning_raw", _NO_RAW),
        signature=_get_str(obj, "signature"),
        tool_calls=tuple(calls),
        args_chunk_size=_get_int(obj, "args_chunk_size", ARGS_CHUNK_CHARS) or 0,
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

PlanKind = Literal["script", "invalid_script"] | ReplyKind


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
    reply = demo_reply(conversation)
    rnd = Round(text=reply.text, reasoning=reply.reasoning, tool_calls=reply.tool_calls)
    return Plan(reply.kind, rnd, 0, conversation)
