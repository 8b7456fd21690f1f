"""The offline demo model, served by ``manage.py demo_llm`` and driven by the official ``openai`` SDK."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from copilot_site.core.embedded_redis import free_port, stop_process

BASE_DIR = Path(__file__).resolve().parents[2]
DEMO_PACKAGE = BASE_DIR / "copilot_site" / "core" / "demo_llm"

HELLO_REPLY = (
    "**Demo model** — you said: “hello”.\n\n"
    "This copilot is running offline without an LLM key; ask me the time, a calculation "
    "like 12*(3+4), or to remember something to see tools in action."
)
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in ("get_current_time", "calculator")
]


def _models_status(base_url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except OSError:
        return None


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "demo_llm", "--host", "127.0.0.1", "--port", str(port)],
        cwd=BASE_DIR,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while _models_status(url) != 200:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "manage.py demo_llm did not answer within 30 s"
            time.sleep(0.05)
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="demo", max_retries=0)


def test_a_plain_message_gets_the_exact_echo_reply_and_usage(client: OpenAI) -> None:
    # when
    completion = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hello"}])

    # then
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", HELLO_REPLY, "stop")
    assert choice.message.tool_calls is None
    assert completion.model == "fake-model"
    # prompt: 5 characters → 1 token; reply: 183 characters → 45 tokens; $3 / $15 per million tokens
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        1,
        45,
        46,
    )
    assert completion.usage.model_extra == {"cost": 0.000678}


def test_the_reply_streams_in_four_character_chunks_then_finish_then_usage(client: OpenAI) -> None:
    # when
    chunks = list(
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hello"}], stream=True)
    )

    # then
    content = [c.choices[0].delta.content for c in chunks[:-2]]
    assert content == [HELLO_REPLY[i : i + 4] for i in range(0, len(HELLO_REPLY), 4)]
    assert len(chunks) == 46 + 2
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.role for c in chunks[1:-2]] == [None] * 45
    assert [c.choices[0].finish_reason for c in chunks[:-2]] == [None] * 46
    finish = chunks[-2]
    assert (finish.choices[0].finish_reason, finish.choices[0].delta.content, finish.usage) == ("stop", None, None)
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (1, 45, 46)
    assert final.usage.model_extra == {"cost": 0.000678}
    assert len({c.id for c in chunks}) == 1


def test_reasoning_streams_first_when_asked_and_counts_as_completion(client: OpenAI) -> None:
    # when
    chunks = list(
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            extra_body={"reasoning": {"max_tokens": 2000}},
        )
    )

    # then
    reasoning = [(c.choices[0].delta.model_extra or {}).get("reasoning") for c in chunks if c.choices]
    text = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(r for r in reasoning if r) == "The user said “hello”. I'll answer briefly."
    assert reasoning.index(None) == 11  # 43 characters: 11 reasoning chunks, then the text
    assert "".join(t for t in text if t) == HELLO_REPLY
    assert all(t is None for t in text[:11])
    # 43 + 183 generated characters → 56 tokens
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 56)


def test_asking_the_time_streams_a_get_current_time_call(client: OpenAI) -> None:
    # when
    chunks = list(
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "What time is it?"}],
            tools=TOOLS,
            stream=True,
        )
    )

    # then
    calls = [
        call for c in chunks if c.choices and c.choices[0].delta.tool_calls for call in c.choices[0].delta.tool_calls
    ]
    assert len(calls) == 2
    start, args = calls
    assert start.function is not None and args.function is not None
    assert (start.index, start.type, start.function.name, start.function.arguments) == (
        0,
        "function",
        "get_current_time",
        "",
    )
    assert start.id is not None and start.id.startswith("call_0_0_")
    assert (args.index, args.id, args.function.arguments) == (0, None, "{}")
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [None, None, None]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None
    # prompt: 16 characters → 4 tokens; arguments: 2 characters → at least 1 token
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 1)


def test_a_calculator_result_is_reported_in_prose(client: OpenAI) -> None:
    # given
    messages: list[Any] = [
        {"role": "user", "content": "what is 2 + 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2 + 2"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": '{"result": 4.0}'},
    ]

    # when
    completion = client.chat.completions.create(model="fake-model", messages=messages, tools=TOOLS)

    # then
    assert completion.choices[0].message.content == "2 + 2 = 4"
    assert completion.choices[0].message.tool_calls is None


def test_a_title_request_gets_title_case_words(client: OpenAI) -> None:
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


def test_models_are_listed_and_unknown_routes_are_404(client: OpenAI, base_url: str) -> None:
    # when
    models = [model.id for model in client.models.list()]
    with pytest.raises(openai.NotFoundError) as missing:
        client.post("/messages", body={"model": "x"}, cast_to=dict)

    # then
    assert models == ["fake-model", "fake-model-large", "fake-claude"]
    assert missing.value.status_code == 404
    assert missing.value.body == {"message": "no route for /v1/messages", "type": "invalid_request_error", "code": 404}


def test_a_body_that_is_not_a_json_object_is_400(base_url: str) -> None:
    # given
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base_url}/chat/completions", data=b"[1, 2]", headers={"Content-Type": "application/json"}, method="POST"
    )

    # when
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback only

    # then
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {
        "error": {"message": "request body must be a JSON object", "type": "invalid_request_error", "code": 400}
    }


def test_no_demo_module_imports_the_test_machinery() -> None:
    # given
    modules = sorted(DEMO_PACKAGE.rglob("*.py"))

    # when
    imported: dict[str, list[str]] = {}
    for path in modules:
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
        imported[path.name] = names

    # then
    assert sorted(imported) == ["__init__.py", "conversation.py", "model.py", "openai_wire.py", "server.py", "usage.py"]
    offending = {
        name: [m for m in names if m == "copilot_site.testing" or m.startswith("copilot_site.testing.")]
        for name, names in imported.items()
    }
    assert offending == dict.fromkeys(imported, [])
    assert all(
        not m.startswith(("chat", "billing", "ratelimits", "tests")) for names in imported.values() for m in names
    )
