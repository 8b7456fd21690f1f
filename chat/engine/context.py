"""Building the LLM context of a turn: what the model is sent, within the token budget.

Pipeline: DB rows → prune trailing orphans (in memory) → filter (reasoning rows,
system notices, unresolved or malformed tool calls) → snapshot + gap → the
current user turn (page context and the ``[Attached files]`` note on the LLM copy
only) → merge consecutive same-role messages → compact when over the token budget
(images count a fixed estimate; the current turn, its images included, is never
compacted: only older history is summarised, cut or dropped) → image parts for
models that take images (``attachments.attach_image_parts``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tiktoken
from django.conf import settings

from chat.models import ChatMessage

from .attachments import IMAGE_IDS_KEY, AttachmentLike, carried, image_token_estimate, user_llm_message
from .providers.base import LLMMessage, ToolSchema

logger = logging.getLogger(__name__)

CONTEXT_COMPACTION_TOOL = "context_compaction"
CONTEXT_COMPACTION_OUTPUT = "Earlier messages were summarized to fit within context limits."
KEEP_VERBATIM = 6
SUMMARY_INPUT_MAX_CHARS = 4000  # per message, in the transcript sent to the summariser
TRUNCATION_STEPS = (8000, 2000, 500)
PAGE_CONTENT_MAX_CHARS = 32_000

BASE_PROMPT = """\
You are Copilot, a helpful assistant inside a chat application. Answer clearly and concisely, \
use Markdown when it helps, and say so when you are unsure instead of guessing.
"""

SHARED_TOOL_NOTES = """\
Working with tools:
- Use a tool when it gives a better answer than you could from memory (current time, exact \
arithmetic, fetching a page, the user's saved memories, the user's earlier chats).
- Call independent tools in the same step; wait for a result before a call that depends on it.
- A tool result that starts with an error explains what went wrong: fix the arguments or tell \
the user, and do not repeat an identical failing call.
- Never invent tool results, ids or URLs.
"""

FOLLOW_UP_NOTE = """\
Follow-up messages:
- A <user_follow_up> block means the user wrote while a tool was running.
- Acknowledge it at once ("Got your follow-up: {paraphrase}. {what I'll do}.").
- A question: stop the chain and answer it. A new requirement: fold it into the work. \
A correction: update the plan.
- Never echo the <user_follow_up> tags.
- Every turn must end with at least one short user-facing sentence.
"""

SUMMARY_SYSTEM_PROMPT = (
    "You summarize the earlier part of a conversation between a user and an assistant so it can "
    "continue without the full transcript. Keep facts, decisions, names, numbers, open questions "
    "and the user's preferences; drop pleasantries. Answer with the summary only."
)


def system_prompt() -> str:
    """The system prompt: tool documentation lives in the tools array, not here."""
    return f"{BASE_PROMPT}\n{SHARED_TOOL_NOTES}\n{FOLLOW_UP_NOTE}"


# ---------------------------------------------------------------- orphan pruning


def prune_orphan_tool_calls(messages: list[ChatMessage], log_prefix: str | None = None) -> int:
    """Drop a trailing assistant row whose tool calls are not all answered, the rows after
    it, and trailing stop markers — in memory only (the stored rows stay). Returns how many went."""
    resolved: set[str] = set()
    cut: int | None = None
    for index in range(len(messages) - 1, -1, -1):
        row = messages[index]
        if row.role == ChatMessage.Role.TOOL and row.tool_call_id:
            resolved.add(row.tool_call_id)
            continue
        if row.role == ChatMessage.Role.ASSISTANT and row.kind == ChatMessage.Kind.STOPPED:
            cut = index
            continue
        if row.role == ChatMessage.Role.ASSISTANT and row.tool_calls:
            ids = {str(call.get("id", "")) for call in row.tool_calls if isinstance(call, Mapping)}
            if not ids <= resolved:
                cut = index
        break
    if cut is None:
        return 0
    removed = len(messages) - cut
    del messages[cut:]
    if log_prefix is not None and removed:
        logger.info("%s Dropped %d trailing orphan tool-use/stop row(s) before starting new turn", log_prefix, removed)
    return removed


# ---------------------------------------------------------------- filtering


def _valid_call(call: Any) -> bool:
    if not isinstance(call, Mapping):
        return False
    function = call.get("function")
    return bool(call.get("id")) and isinstance(function, Mapping) and bool(function.get("name"))


def _normalised_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call["function"]
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments) if arguments is not None else "{}"
    return {
        "id": str(call["id"]),
        "type": "function",
        "function": {"name": str(function["name"]), "arguments": arguments or "{}"},
    }


def rows_to_llm_messages(
    rows: Iterable[ChatMessage], attachments: Mapping[str, AttachmentLike] | None = None
) -> list[LLMMessage]:
    """Stored rows → LLM messages, before merging.

    Dropped: reasoning rows, notice rows (stopped, error), roles the model never sees,
    tool calls missing an id or name (warning), tool calls with no later tool
    row, tool rows answering no kept call, and assistant rows left empty. A user row that
    carried files gets their ``[Attached files]`` note (``attachments``: the files by id).
    """
    rows = [
        row
        for row in rows
        if row.role in (ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT, ChatMessage.Role.TOOL)
        and row.kind == ChatMessage.Kind.MESSAGE
    ]
    answered = {row.tool_call_id for row in rows if row.role == ChatMessage.Role.TOOL and row.tool_call_id}
    out: list[LLMMessage] = []
    open_calls: set[str] = set()  # calls of the latest assistant message, answerable by tool rows
    for row in rows:
        if row.role == ChatMessage.Role.USER:
            out.append(user_llm_message(row.content or "", carried(row.file_ids, attachments or {})))
            open_calls = set()
        elif row.role == ChatMessage.Role.ASSISTANT:
            calls = []
            for call in row.tool_calls or []:
                if not _valid_call(call):
                    logger.warning("Dropping malformed tool call (missing id or name) in session %s", row.session_id)
                    continue
                if call["function"]["name"] == CONTEXT_COMPACTION_TOOL or str(call["id"]) not in answered:
                    continue
                calls.append(_normalised_call(call))
            if not calls and not row.content:
                continue
            message: LLMMessage = {"role": "assistant", "content": row.content or ""}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
            open_calls = {call["id"] for call in calls}
        elif row.tool_call_id in open_calls:
            out.append({"role": "tool", "tool_call_id": row.tool_call_id, "content": row.content or ""})
    return out


def merge_consecutive(messages: Iterable[LLMMessage]) -> list[LLMMessage]:
    """Merge consecutive assistant messages ("\\n"-joined, calls concatenated) and consecutive
    user messages ("\\n\\n"-joined). Inputs are not mutated."""
    out: list[LLMMessage] = []
    for message in messages:
        role = message.get("role")
        previous = out[-1] if out else None
        if previous is not None and role == previous.get("role") and role in ("user", "assistant"):
            separator = "\n" if role == "assistant" else "\n\n"
            texts = [t for t in (previous.get("content") or "", message.get("content") or "") if t]
            merged = {**previous, "content": separator.join(texts)}
            calls = list(previous.get("tool_calls") or []) + list(message.get("tool_calls") or [])
            if calls:
                merged["tool_calls"] = calls
            images = list(previous.get(IMAGE_IDS_KEY) or []) + list(message.get(IMAGE_IDS_KEY) or [])
            if images:
                merged[IMAGE_IDS_KEY] = images
            merged.pop("is_compact_summary", None)
            out[-1] = merged
        else:
            out.append(message)
    return out


_INTERNAL_KEYS = ("is_compact_summary", IMAGE_IDS_KEY)


def for_request(messages: Iterable[LLMMessage]) -> list[LLMMessage]:
    """Drop internal keys (``is_compact_summary``, an unresolved ``image_file_ids``) before a
    message list goes to a provider."""
    return [
        {k: v for k, v in message.items() if k not in _INTERNAL_KEYS}
        if any(key in message for key in _INTERNAL_KEYS)
        else message
        for message in messages
    ]


# ---------------------------------------------------------------- current turn


def page_context_suffix(page_context: Mapping[str, Any] | None) -> str:
    """``\\n\\n[Page URL: …]`` and ``\\n\\n[Page content]\\n…`` for the LLM copy only."""
    if not page_context:
        return ""
    suffix = ""
    url = page_context.get("url")
    if isinstance(url, str) and url.strip():
        suffix += f"\n\n[Page URL: {url.strip()[:2000]}]"
    content = page_context.get("content")
    if isinstance(content, str) and content.strip():
        suffix += f"\n\n[Page content]\n{content[:PAGE_CONTENT_MAX_CHARS]}"
    return suffix


def split_current_turn(rows: Sequence[ChatMessage]) -> int:
    """Index where the trailing run of user rows (the current user turn) starts."""
    index = len(rows)
    while index > 0 and rows[index - 1].role == ChatMessage.Role.USER:
        index -= 1
    return index


# ---------------------------------------------------------------- snapshot + gap


def snapshot_on_branch(prior_rows: Sequence[ChatMessage], watermark: int, last_sequence: int | None) -> bool:
    """Whether a snapshot with this watermark stands for these history rows of the current
    branch: its last covered row (`last_sequence`) is the branch's last row below the
    watermark. A snapshot written before the transcript became a tree names no last row;
    it stands for the branch only when every row below the watermark is on it."""
    covered = [row.sequence for row in prior_rows if row.sequence is not None and row.sequence < watermark]
    if last_sequence is None:
        return len(covered) == watermark
    return bool(covered) and covered[-1] == last_sequence


@dataclass
class SnapshotState:
    """What the loaded snapshot allows: its messages, the watermark, and whether we may
    overwrite it after this turn (not when it was stale or failed to load)."""

    messages: list[LLMMessage] | None = None
    watermark: int = 0
    may_write: bool = True


def load_snapshot_state(raw_messages: Any, watermark: int, *, total_prior: int, load_failed: bool) -> SnapshotState:
    if load_failed:
        return SnapshotState(may_write=False)
    if not isinstance(raw_messages, list) or not raw_messages or watermark <= 0:
        return SnapshotState()  # missing, empty or corrupt: full history, writing allowed
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in raw_messages):
        logger.warning("Corrupt context snapshot ignored")
        return SnapshotState()
    if watermark > total_prior:
        logger.warning(
            "Stale context snapshot (watermark %d > %d rows); using the full history", watermark, total_prior
        )
        return SnapshotState(may_write=False)
    return SnapshotState(messages=[dict(m) for m in raw_messages], watermark=watermark)


def history_messages(
    prior_rows: Sequence[ChatMessage],
    snapshot: SnapshotState,
    attachments: Mapping[str, AttachmentLike] | None = None,
) -> list[LLMMessage]:
    """Snapshot messages + the rows after its watermark, or every prior row without one."""
    if snapshot.messages is None:
        return rows_to_llm_messages(prior_rows, attachments)
    watermark = snapshot.watermark
    before = [row for row in prior_rows if row.sequence is not None and row.sequence < watermark]
    if before and before[-1].sequence == watermark - 1 and before[-1].role != ChatMessage.Role.ASSISTANT:
        logger.warning("Context snapshot watermark %d is misaligned; no gap added", watermark)
        return list(snapshot.messages)
    gap = [row for row in prior_rows if row.sequence is None or row.sequence >= watermark]
    return list(snapshot.messages) + rows_to_llm_messages(gap, attachments)


# ---------------------------------------------------------------- token estimates


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def encoding_for(model: str) -> tiktoken.Encoding:
    lowered = model.lower()
    modern = any(tag in lowered for tag in ("gpt-4o", "gpt-4.1", "gpt-5", "/o1", "/o3", "/o4"))
    return _encoding("o200k_base" if modern else "cl100k_base")


def count_text_tokens(text: str, model: str = "") -> int:
    if not text:
        return 0
    return len(encoding_for(model).encode(text, disallowed_special=()))


def estimate_tokens(messages: Iterable[LLMMessage], tools: Sequence[ToolSchema] = (), model: str = "") -> int:
    """A tiktoken estimate of a request's prompt (4 tokens of framing per message). An image
    counts ``COPILOT_IMAGE_TOKEN_ESTIMATE`` tokens, whether still a marker or already a part."""
    encoding = encoding_for(model)
    per_image = image_token_estimate()
    total = 3
    for message in messages:
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += len(encoding.encode(content, disallowed_special=()))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in ("image_url", "image"):
                    total += per_image
                elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += len(encoding.encode(part["text"], disallowed_special=()))
                else:
                    total += len(encoding.encode(json.dumps(part), disallowed_special=()))
        elif content:
            total += len(encoding.encode(json.dumps(content), disallowed_special=()))
        total += per_image * len(message.get(IMAGE_IDS_KEY) or ())
        if message.get("tool_calls"):
            total += len(encoding.encode(json.dumps(message["tool_calls"]), disallowed_special=()))
    if tools:
        total += len(encoding.encode(json.dumps(list(tools)), disallowed_special=()))
    return total


# ---------------------------------------------------------------- compaction

Summarizer = Callable[[list[LLMMessage]], Awaitable[str]]


@dataclass
class Compaction:
    messages: list[LLMMessage]
    before_tokens: int
    after_tokens: int
    summarized: int = 0
    dropped: int = 0
    used_summary: bool = False
    notes: list[str] = field(default_factory=list)


def _kept_start(history: Sequence[LLMMessage], keep: int) -> int:
    """Start of the verbatim tail: the last ``keep`` messages, moved back so that it never
    begins with a tool result (its assistant call must come along)."""
    start = max(0, len(history) - keep)
    while start > 0 and history[start].get("role") == "tool":
        start -= 1
    return start


def summary_transcript(messages: Sequence[LLMMessage]) -> str:
    lines = []
    for message in messages:
        role = message.get("role", "")
        content = message.get("content") or ""
        text = content if isinstance(content, str) else json.dumps(content)
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            text += f"\n[called {function.get('name')}({str(function.get('arguments', ''))[:500]})]"
        if len(text) > SUMMARY_INPUT_MAX_CHARS:
            text = text[:SUMMARY_INPUT_MAX_CHARS] + "… [truncated]"
        lines.append(f"{role}: {text}")
    return "\n\n".join(lines)


def _units(messages: Sequence[LLMMessage]) -> list[list[LLMMessage]]:
    """Messages grouped so that an assistant call and its tool results stay together."""
    units: list[list[LLMMessage]] = []
    for message in messages:
        if message.get("role") == "tool" and units:
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _truncate_progressively(
    messages: list[LLMMessage], measure: Callable[[list[LLMMessage]], int], budget: int
) -> list[LLMMessage]:
    protected = 2  # the newest messages stay whole
    for limit in TRUNCATION_STEPS:
        if measure(messages) <= budget:
            break
        changed = []
        for index, message in enumerate(messages):
            content = message.get("content")
            if index < len(messages) - protected and isinstance(content, str) and len(content) > limit:
                message = {**message, "content": content[:limit] + "… [truncated]"}
            changed.append(message)
        messages = changed
    return messages


def _drop_middle_out(
    messages: list[LLMMessage], measure: Callable[[list[LLMMessage]], int], budget: int
) -> tuple[list[LLMMessage], int]:
    units = _units(messages)
    dropped = 0
    while measure([m for unit in units for m in unit]) > budget and len(units) > 2:
        middle = len(units) // 2
        dropped += len(units.pop(middle))
    return [m for unit in units for m in unit], dropped


async def compact_history(
    history: list[LLMMessage],
    *,
    fixed_tokens: int,
    budget: int,
    model: str,
    summarize: Summarizer | None,
) -> Compaction | None:
    """Fit ``history`` into ``budget - fixed_tokens``; None when it already fits.

    LLM summary of everything but the last 6 messages, then progressive
    truncation, then middle-out deletion. A failing summariser falls back to
    the non-LLM steps.
    """

    def measure(messages: list[LLMMessage]) -> int:
        return fixed_tokens + estimate_tokens(messages, model=model)

    before = measure(history)
    if before <= budget:
        return None
    result = Compaction(messages=list(history), before_tokens=before, after_tokens=before)
    start = _kept_start(history, KEEP_VERBATIM)
    older, kept = history[:start], history[start:]
    if older and summarize is not None:
        try:
            summary = (await summarize(older)).strip()
        except Exception:
            logger.warning("Context summary failed; compacting without the LLM", exc_info=True)
        else:
            if summary:
                summary_message: LLMMessage = {
                    "role": "user",
                    "content": f"<conversation_summary>\n{summary}\n</conversation_summary>",
                    "is_compact_summary": True,
                }
                result.messages = [summary_message, *kept]
                result.summarized = len(older)
                result.used_summary = True
    if measure(result.messages) > budget:
        result.messages = _truncate_progressively(result.messages, measure, budget)
    if measure(result.messages) > budget:
        result.messages, result.dropped = _drop_middle_out(result.messages, measure, budget)
    result.after_tokens = measure(result.messages)
    logger.info(
        "Context compacted: %d -> %d tokens (%d summarized, %d dropped)",
        result.before_tokens,
        result.after_tokens,
        result.summarized,
        result.dropped,
    )
    return result


def budget_tokens() -> int:
    return int(settings.COPILOT_CONTEXT_TOKEN_BUDGET)
