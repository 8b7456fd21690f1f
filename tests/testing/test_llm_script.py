"""The scripted fake LLM server, driven over real HTTP by the official SDKs.

No Django and no database: the server is a plain class started in a thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from copilot_site.core.demo_llm.conversation import normalize_openai
from copilot_site.core.demo_llm.model import extract_expression, title_from_text
from copilot_site.testing.llm_script import FakeLLMServer
from copilot_site.testing.llm_script.script import plan_reply


def fake(script: dict[str, Any]) -> str:
    return f"<<fake {json.dumps(script)}>>"


def default_cost(prompt: int, completion: int) -> float:
    return (prompt * 3 + completion * 15) / 1e6


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def client(server: FakeLLMServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def stream_deltas(client: OpenAI, content: str, **kwargs: Any) -> list[openai.types.chat.ChatCompletionChunk]:
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": content}],
        stream=True,
        **kwargs,
    )
    return list(stream)


def collect_text(client: OpenAI, content: str, *, into: list[str]) -> None:
    """Stream a reply, appending each text delta to ``into`` as it arrives."""
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": content}], stream=True
    )
    for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


# ----------------------------------------------------------------- OpenAI text


def test_streamed_text_reassembles_exactly_with_usage_and_cost(server: FakeLLMServer) -> None:
    # given
    text = "Hello, streaming world! 🌍 Ünïcode too."
    content = fake({"text": text, "chunk_size": 5})

    async def run() -> list[openai.types.chat.ChatCompletionChunk]:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = await client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": content}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    # when
    chunks = asyncio.run(run())

    # then
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == text
    assert len(pieces) == math.ceil(len(text) / 5)
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    prompt = len(content) // 4
    completion = len(text) // 4
    assert usage_chunk.usage.prompt_tokens == prompt
    assert usage_chunk.usage.completion_tokens == completion
    assert usage_chunk.usage.total_tokens == prompt + completion
    assert usage_chunk.usage.prompt_tokens_details is not None
    assert usage_chunk.usage.prompt_tokens_details.cached_tokens == 0
    assert usage_chunk.usage.model_extra == {"cost": default_cost(prompt, completion)}


def test_non_streamed_completion(client: OpenAI) -> None:
    # given
    content = fake({"text": "A whole answer at once.", "usage": {"prompt_tokens": 10}})

    # when
    completion = client.chat.completions.create(model="some/model", messages=[{"role": "user", "content": content}])

    # then
    assert completion.object == "chat.completion"
    assert completion.model == "some/model"
    assert completion.choices[0].message.content == "A whole answer at once."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    assert completion.usage.completion_tokens == len("A whole answer at once.") // 4
    assert completion.usage.model_extra == {"cost": default_cost(10, 5)}


def test_usage_override_and_cost_null(client: OpenAI) -> None:
    # given
    usage = {"prompt_tokens": 1200, "completion_tokens": 30, "cached_tokens": 1000, "cost": None}

    # when
    chunks = stream_deltas(client, fake({"text": "ok", "usage": usage}))

    # then
    final = chunks[-1]
    assert final.usage is not None
    assert final.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 1200,
        "completion_tokens": 30,
        "total_tokens": 1230,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }


def test_usage_null_sends_no_usage_chunk(client: OpenAI) -> None:
    # when
    chunks = stream_deltas(
        client, fake({"text": "no usage here", "usage": None}), stream_options={"include_usage": True}
    )

    # then
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


# ------------------------------------------------------------ OpenAI tool calls


def test_tool_call_split_over_chunks_reassembles_with_sdk_stream_helper(client: OpenAI) -> None:
    # given
    arguments = {"expression": "12*(3+4)", "precision": 2}
    arguments_text = json.dumps(arguments)
    content = fake({"tool_calls": [{"name": "calculator", "arguments": arguments, "id": "call_x"}]})

    # when
    with client.chat.completions.stream(model="fake-model", messages=[{"role": "user", "content": content}]) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    # then
    fragments = [
        call.function.arguments
        for e in events
        if e.type == "chunk" and e.chunk.choices and e.chunk.choices[0].delta.tool_calls
        for call in e.chunk.choices[0].delta.tool_calls
        if call.function is not None and call.function.arguments
    ]
    assert len(fragments) == math.ceil(len(arguments_text) / 8)
    assert all(len(fragment) <= 8 for fragment in fragments)
    tool_calls = final.choices[0].message.tool_calls
    assert tool_calls is not None
    assert len(tool_calls) == 1
    assert tool_calls[0].id == "call_x"
    assert tool_calls[0].function.name == "calculator"
    assert tool_calls[0].function.arguments == arguments_text
    assert final.choices[0].finish_reason == "tool_calls"


def test_two_tool_calls_in_one_round_use_index_0_and_1(client: OpenAI) -> None:
    # given
    content = fake(
        {
            "args_chunk_size": 3,
            "tool_calls": [
                {"name": "get_current_time", "arguments": {}, "id": "call_a"},
                {"name": "web_fetch", "arguments": '{"url": "https://x.test"', "id": "call_b"},
            ],
        }
    )

    # when
    chunks = stream_deltas(client, content)

    # then
    starts: list[tuple[int, str | None, str | None, str | None]] = []
    arguments: dict[int, str] = {0: "", 1: ""}
    for chunk in chunks:
        if not chunk.choices or not chunk.choices[0].delta.tool_calls:
            continue
        for call in chunk.choices[0].delta.tool_calls:
            assert call.function is not None
            if call.id is not None:
                starts.append((call.index, call.id, call.type, call.function.name))
                assert call.function.arguments == ""
            else:
                assert call.type is None
                assert call.function.name is None
            arguments[call.index] += call.function.arguments or ""
    assert starts == [
        (0, "call_a", "function", "get_current_time"),
        (1, "call_b", "function", "web_fetch"),
    ]
    assert arguments == {0: "{}", 1: '{"url": "https://x.test"'}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


def test_default_tool_call_ids_name_round_and_position(client: OpenAI) -> None:
    # given
    content = fake({"tool_calls": [{"name": "a"}, {"name": "b", "arguments": "{}"}]})

    # when
    completion = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": content}])

    # then
    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None
    ids = [call.id for call in tool_calls]
    assert [i.rsplit("_", 1)[0] for i in ids] == ["call_0_0", "call_0_1"]
    assert all(len(i.rsplit("_", 1)[1]) == 8 for i in ids)


def test_round_index_counts_assistant_messages_and_last_round_repeats(client: OpenAI) -> None:
    # given
    script = fake({"rounds": [{"text": "first"}, {"text": "second"}]})
    conversations: list[list[Any]] = [
        [{"role": "user", "content": script}],
        [
            {"role": "user", "content": script},
            {"role": "assistant", "content": "first"},
        ],
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "prefix " + script}]},
            {"role": "assistant", "content": "first"},
            {"role": "user", "content": "no marker in this one"},
            {"role": "assistant", "content": "second"},
            {"role": "user", "content": "still going"},
        ],
    ]

    # when
    answers = [
        client.chat.completions.create(model="fake-model", messages=messages).choices[0].message.content
        for messages in conversations
    ]

    # then
    assert answers == ["first", "second", "second"]


def test_newest_marker_wins_and_restarts_round_count(client: OpenAI) -> None:
    # given
    messages: list[Any] = [
        {"role": "user", "content": fake({"text": "old"})},
        {"role": "assistant", "content": "old"},
        {"role": "user", "content": fake({"rounds": [{"text": "new 0"}, {"text": "new 1"}]})},
    ]

    # when
    completion = client.chat.completions.create(model="fake-model", messages=messages)

    # then
    assert completion.choices[0].message.content == "new 0"


# ------------------------------------------------------------- OpenAI reasoning


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_string_fields_arrive_on_the_delta(client: OpenAI, field: str) -> None:
    # given
    content = fake({"reasoning": "Let me think hard.", "reasoning_field": field, "text": "42"})

    # when
    chunks = stream_deltas(client, content)

    # then
    extras = [c.choices[0].delta.model_extra for c in chunks if c.choices]
    reasoning = [extra[field] for extra in extras if extra and field in extra]
    assert "".join(reasoning) == "Let me think hard."
    assert reasoning[0] == "Let "
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["42"]


def test_reasoning_details_and_raw_payload_arrive_on_the_delta(client: OpenAI) -> None:
    # given
    raw = {"type": "reasoning.encrypted", "data": "opaque"}
    content = fake(
        {
            "reasoning": "abcdefgh",
            "reasoning_field": "reasoning_details",
            "reasoning_raw": raw,
            "text": "done",
        }
    )

    # when
    chunks = stream_deltas(client, content)

    # then
    details = [
        c.choices[0].delta.model_extra["reasoning_details"]
        for c in chunks
        if c.choices and c.choices[0].delta.model_extra
        if "reasoning_details" in c.choices[0].delta.model_extra
    ]
    assert details == [
        [{"type": "reasoning.text", "text": "abcd"}],
        [{"type": "reasoning.text", "text": "efgh"}],
        raw,
    ]


# ------------------------------------------------------------- failure injection


def test_error_after_chunks_raises_api_error_after_exactly_n_deltas(client: OpenAI) -> None:
    # given
    content = fake({"text": "abcdefghijkl", "chunk_size": 2, "error_after_chunks": 3})
    received: list[str] = []

    # when
    with pytest.raises(openai.APIError) as raised:
        collect_text(client, content, into=received)

    # then
    assert raised.type is openai.APIError
    assert raised.value.message == "Upstream provider error"
    assert raised.value.body == {"message": "Upstream provider error", "code": 502}
    assert received == ["ab", "cd", "ef"]


def test_error_mode_disconnect_breaks_the_chunked_body(client: OpenAI) -> None:
    # given
    content = fake({"text": "abcdefgh", "chunk_size": 2, "error_after_chunks": 2, "error_mode": "disconnect"})
    received: list[str] = []

    # when
    with pytest.raises(httpx.RemoteProtocolError):
        collect_text(client, content, into=received)

    # then
    assert received == ["ab", "cd"]
    follow_up = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": fake({"text": "alive"})}]
    )
    assert follow_up.choices[0].message.content == "alive"


def test_http_status_500_raises_internal_server_error(client: OpenAI) -> None:
    # given
    content = fake({"http_status": 500, "error_message": "boom"})

    # when
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": content}], stream=True)

    # then
    assert raised.value.status_code == 500
    assert raised.value.body == {"message": "boom", "type": "server_error", "code": 500}


def test_http_status_429_raises_rate_limit_error(client: OpenAI) -> None:
    # when
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": fake({"http_status": 429})}],
        )

    # then
    assert raised.value.status_code == 429


def test_invalid_script_answers_with_the_parse_error(client: OpenAI) -> None:
    # when
    completion = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "<<fake {not json}>>"}]
    )

    # then
    assert completion.choices[0].message.content == (
        "Invalid fake script: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


# ------------------------------------------------------------------- inspection


def test_recorded_requests_hold_the_exact_body_over_http(server: FakeLLMServer, client: OpenAI) -> None:
    # given
    httpx.post(f"{server.root_url}/_fake/reset").raise_for_status()
    messages: list[Any] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": fake({"text": "recorded"})},
    ]

    # when
    client.chat.completions.create(
        model="fake-model",
        messages=messages,
        temperature=0.25,
        extra_body={"usage": {"include": True}},
    )
    recorded = httpx.get(f"{server.root_url}/_fake/requests").json()["requests"]

    # then
    assert len(recorded) == 1
    assert recorded[0]["path"] == "/v1/chat/completions"
    assert recorded[0]["headers"]["authorization"] == "Bearer test"
    assert recorded[0]["body"] == {
        "model": "fake-model",
        "messages": messages,
        "temperature": 0.25,
        "usage": {"include": True},
    }
    assert server.requests == recorded


def test_models_endpoint_lists_models(client: OpenAI) -> None:
    # when
    models = client.models.list()

    # then
    assert [model.id for model in models] == ["fake-model", "fake-model-large", "fake-claude"]


# -------------------------------------------------------------------- Anthropic


def test_anthropic_stream_thinking_text_and_tool_use_reassemble(server: FakeLLMServer) -> None:
    # given
    tool_input = {"query": "sourdough", "limit": 3}
    content = fake(
        {
            "reasoning": "I should search.",
            "text": "Searching your chats.",
            "tool_calls": [{"name": "search_my_chats", "arguments": tool_input, "id": "toolu_1"}],
            "usage": {"prompt_tokens": 500, "cached_tokens": 300, "cache_creation_tokens": 50},
        }
    )

    async def run() -> tuple[list[str], anthropic.types.Message]:
        client = anthropic.AsyncAnthropic(base_url=server.root_url, api_key="test", max_retries=0)
        async with client.messages.stream(
            model="claude-test",
            max_tokens=1024,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": content}],
        ) as stream:
            delta_types: list[str] = [event.delta.type async for event in stream if event.type == "content_block_delta"]
            return delta_types, await stream.get_final_message()

    # when
    delta_types, message = asyncio.run(run())

    # then
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    thinking, text, tool_use = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "I should search."
    assert thinking.signature != ""
    assert text.type == "text"
    assert text.text == "Searching your chats."
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == ("toolu_1", "search_my_chats", tool_input)
    args_len = len(json.dumps(tool_input))
    assert delta_types.count("thinking_delta") == math.ceil(len("I should search.") / 4)
    assert delta_types.count("signature_delta") == 1
    assert delta_types.count("text_delta") == math.ceil(len("Searching your chats.") / 4)
    assert delta_types.count("input_json_delta") == math.ceil(args_len / 8)
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 150
    assert message.usage.cache_read_input_tokens == 300
    assert message.usage.cache_creation_input_tokens == 50
    completion_chars = len("I should search.") + len("Searching your chats.") + args_len
    assert message.usage.output_tokens == completion_chars // 4


def test_anthropic_non_streaming_and_error_status(server: FakeLLMServer) -> None:
    # given
    client = anthropic.Anthropic(base_url=server.root_url, api_key="test", max_retries=0)

    # when
    message = client.messages.create(
        model="claude-test",
        max_tokens=100,
        system="be nice",
        messages=[{"role": "user", "content": fake({"text": "plain"})}],
    )
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(
            model="claude-test",
            max_tokens=100,
            messages=[{"role": "user", "content": fake({"http_status": 429})}],
        )

    # then
    assert message.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "plain")]
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Upstream provider error"},
    }


# ------------------------------------------------------------------- demo model

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": name,
            "parameters": {"type": "object", "properties": {}},
        },
    }
    for name in ("get_current_time", "calculator", "remember")
]


def test_demo_what_time_with_tool_calls_get_current_time(client: OpenAI) -> None:
    # when
    chunks = stream_deltas(client, "What time is it?", tools=TOOLS)

    # then
    calls = [
        call for c in chunks if c.choices and c.choices[0].delta.tool_calls for call in c.choices[0].delta.tool_calls
    ]
    assert calls[0].function is not None
    assert (calls[0].index, calls[0].function.name) == (0, "get_current_time")
    assert "".join((c.function.arguments or "") for c in calls if c.function) == "{}"
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None


def test_demo_what_time_without_tools_echoes(client: OpenAI) -> None:
    # when
    completion = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "What time is it?"}]
    )

    # then
    assert completion.choices[0].message.content == (
        "**Demo model** — you said: “What time is it?”.\n\n"
        "This copilot is running offline without an LLM key; ask me the time, a calculation "
        "like 12*(3+4), or to remember something to see tools in action."
    )


def test_demo_streams_reasoning_when_asked(client: OpenAI) -> None:
    # when
    chunks = stream_deltas(client, "hello", extra_body={"reasoning": {"max_tokens": 2000}})

    # then
    reasoning = "".join(
        c.choices[0].delta.model_extra.get("reasoning", "")
        for c in chunks
        if c.choices and c.choices[0].delta.model_extra
    )
    assert reasoning == "The user said “hello”. I'll answer briefly."


def test_demo_answers_tool_results_in_prose(client: OpenAI) -> None:
    # given
    messages: list[Any] = [
        {"role": "user", "content": "what time is it and what is 2 + 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_t",
                    "type": "function",
                    "function": {"name": "get_current_time", "arguments": "{}"},
                },
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2 + 2"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_t", "content": '{"utc": "2026-11-21T14:05:09Z"}'},
        {"role": "tool", "tool_call_id": "call_c", "content": '{"result": 4.0}'},
    ]

    # when
    completion = client.chat.completions.create(model="fake-model", messages=messages, tools=TOOLS)

    # then
    assert completion.choices[0].message.content == "It's 2026-11-21 14:05 UTC.\n\n2 + 2 = 4"


def test_demo_title_request_gives_at_most_six_title_case_words(client: OpenAI) -> None:
    # when
    completion = client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "Write a short title for this conversation."},
            {"role": "user", "content": "how do I bake 'sourdough' bread at home quickly?"},
        ],
    )

    # then
    assert completion.choices[0].message.content == "How Do I Bake Sourdough Bread"


def test_demo_summary_request(client: OpenAI) -> None:
    # when
    completion = client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "Summarize the conversation below."},
            {"role": "user", "content": "I like tea."},
            {"role": "assistant", "content": "Noted:   tea."},
        ],
    )

    # then
    assert completion.choices[0].message.content == ("Summary of 2 earlier messages: I like tea. Noted: tea.")


# --------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is 12*(3+4)?", "12*(3+4)"),
        ("2 + 2", "2 + 2"),
        ("calculate sqrt(2) please", "sqrt(2) please"),
        ("what is love", None),
        ("42", None),
    ],
)
def test_extract_expression(text: str, expected: str | None) -> None:
    assert extract_expression(text) == expected


def test_title_from_text_drops_quotes_punctuation_and_extra_words() -> None:
    assert title_from_text('"Plan a trip to Lisbon, in May!" please now') == ("Plan A Trip To Lisbon In")


def test_demo_intents_need_the_tool_in_the_request() -> None:
    # given
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "remember I prefer metric units"}],
        "tools": [{"name": "remember", "input_schema": {"type": "object"}}],
    }

    # when
    with_tool = plan_reply(body, "anthropic").round
    without_tool = plan_reply({"messages": body["messages"]}, "anthropic").round

    # then
    assert [(c.name, c.arguments) for c in with_tool.tool_calls] == [
        ("remember", '{"content": "I prefer metric units"}')
    ]
    assert without_tool.tool_calls == ()
    assert without_tool.text is not None
    assert without_tool.text.startswith("**Demo model** — you said: “remember I prefer")


def test_prompt_chars_count_text_parts_and_tool_arguments() -> None:
    # given
    body: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abcd"}]},
            {
                "role": "assistant",
                "content": "ef",
                "tool_calls": [{"id": "1", "function": {"name": "x", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "ghi"},
        ]
    }

    # when
    conversation = normalize_openai(body)

    # then
    assert conversation.prompt_chars == 4 + 2 + 2 + 3


# -------------------------------------------------------------- latency helpers


def test_stamp_mode_sends_send_time_stamps(client: OpenAI) -> None:
    # given
    before = time.time_ns()

    # when
    chunks = stream_deltas(client, fake({"stamp": True, "chunks": 5, "delay_ms": 2}))
    after = time.time_ns()

    # then
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 5
    stamps = [int(t.removeprefix("@").removesuffix(";")) for t in texts]
    assert all(text == f"@{stamp};" for text, stamp in zip(texts, stamps, strict=True))
    assert stamps == sorted(stamps)
    assert before <= stamps[0]
    assert stamps[-1] <= after


def test_thousand_chunks_stream_quickly_and_exactly(server: FakeLLMServer) -> None:
    # given
    content = fake({"chunks": 1000})

    async def run() -> list[str]:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": content}], stream=True
        )
        return [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]

    # when
    started = time.monotonic()
    pieces = asyncio.run(run())
    elapsed = time.monotonic() - started

    # then
    assert len(pieces) == 1000
    assert pieces[0] == "tok0 "
    assert pieces[-1] == "tok999 "
    assert elapsed < 30
