"""MCP tools end to end: daphne + the real Celery worker + the scripted LLM + a real FastMCP server.

The worker keeps one pooled session per server; the servers here are real
subprocesses on loopback (streamable HTTP with a bearer token, and stdio).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import httpx
import pytest

from billing.models import CreditTransaction
from billing.selectors import credit_balance
from billing.services import credits_grant
from chat.mcp.probe import mcp_server_test
from chat.mcp.services import mcp_server_create
from chat.models import ChatMessage, McpServer, McpTool, ToolApproval, TurnUsage
from chat.turns.registry import turn_meta_get
from copilot_site.testing.mcp_server import McpTestServer, stdio_command
from tests.chat.mcp.conftest import TOKEN
from tests.chat.turns.helpers import Person, SseResult, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _send(stack: str, p: Person, message: str) -> SseResult:
    result = read_sse(
        "POST", f"{stack}/api/chat/sessions/{p.session.id}/stream", headers=p.headers, json_body={"message": message}
    )
    assert result.status == 200
    wait_until(lambda: (meta := turn_meta_get(p.session.id)) is None or not meta.is_running)
    return result


def _outputs(result: SseResult) -> dict[str, Any]:
    return {c["toolCallId"]: c["output"] for _, c in result.events if c["type"] == "tool-output-available"}


def _tool_rows(p: Person) -> list[tuple[str | None, str | None, str | None]]:
    rows = ChatMessage.objects.filter(session=p.session, role="tool").order_by("sequence")
    return [(m.name, m.tool_call_id, m.content) for m in rows]


def _completions(fake_llm: Any) -> list[dict[str, Any]]:
    """The turns' model requests (the title request offers no tools)."""
    return [r["body"] for r in fake_llm.requests if r["path"].endswith("/chat/completions") and r["body"].get("tools")]


def _offered(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


def _mcp_offered(body: dict[str, Any]) -> list[str]:
    return sorted(name for name in _offered(body) if "__" in name)


def _call(tool: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"name": tool, "id": call_id, "arguments": arguments}


def _http_server(server: McpTestServer, **kwargs: Any) -> McpServer:
    return mcp_server_create(name="docs", url=server.url, bearer_token=TOKEN, **kwargs)


ALL_TOOLS = ["add", "big", "echo", "fail", "getenv", "grow", "image", "session", "sleep", "whoami"]


def test_http_server_tools_run_and_land_in_stream_and_transcript(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given
    _http_server(mcp_http)
    alice = person("alice")
    script = fake(
        {"tool_calls": [_call("docs__echo", "c1", text="hi"), _call("docs__add", "c2", a=2, b=3),
                        _call("docs__image", "c3")]},
        {"text": "All done."},
    )  # fmt: skip
    # when
    result = _send(stack, alice, "use the tools " + script)
    # then: the stream
    assert _outputs(result) == {
        "c1": "echo: hi",
        "c2": "5",
        "c3": {"content": [{"type": "image", "media_type": "image/png", "size_bytes": 70}]},
    }
    starts = [(c["toolCallId"], c["toolName"]) for _, c in result.events if c["type"] == "tool-input-start"]
    assert starts == [("c1", "docs__echo"), ("c2", "docs__add"), ("c3", "docs__image")]
    assert result.text() == "All done."
    # the transcript
    image_text = '{"content": [{"type": "image", "media_type": "image/png", "size_bytes": 70}]}'
    assert _tool_rows(alice) == [("docs__echo", "c1", "echo: hi"), ("docs__add", "c2", "5"),
                                 ("docs__image", "c3", image_text)]  # fmt: skip
    assert TurnUsage.objects.get(session=alice.session).outcome == "completed"
    # what the model was offered and sent back
    first, second = _completions(fake_llm)
    assert _mcp_offered(first) == [f"docs__{name}" for name in ALL_TOOLS]
    echo = next(t for t in first["tools"] if t["function"]["name"] == "docs__echo")["function"]
    assert echo["description"] == "[MCP server: docs] Repeat the given text."
    assert echo["parameters"]["properties"] == {"text": {"title": "Text", "type": "string"}}
    assert [m["content"] for m in second["messages"] if m["role"] == "tool"] == ["echo: hi", "5", image_text]
    # the worker recorded the server's status
    server = McpServer.objects.get()
    assert (server.last_reachable, server.last_tool_count, server.last_error) == (True, 10, "")


def test_failing_and_slow_tools_fail_plainly_and_the_turn_goes_on(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a 1 s per-call timeout, a tool that raises and one that sleeps 3 s
    _http_server(mcp_http, timeout_s=1.0)
    alice = person("alice")
    script = fake(
        {"tool_calls": [_call("docs__fail", "c1"), _call("docs__sleep", "c2", seconds=3),
                        _call("docs__echo", "c3", text="still here")]},
        {"text": "Recovered."},
    )  # fmt: skip
    # when
    result = _send(stack, alice, "try " + script)
    # then
    fail_text = (
        "Tool execution error: The MCP server 'docs' reported an error: Error executing tool fail: "
        "the tool failed on purpose"
    )
    timeout_text = "Tool execution error: The MCP server 'docs' did not answer within 1 s; the call was abandoned."
    assert _outputs(result) == {"c1": fail_text, "c2": timeout_text, "c3": "echo: still here"}
    assert _tool_rows(alice) == [
        ("docs__fail", "c1", fail_text), ("docs__sleep", "c2", timeout_text), ("docs__echo", "c3", "echo: still here"),
    ]  # fmt: skip
    assert result.text() == "Recovered."
    assert "error" not in result.types
    assert TurnUsage.objects.get(session=alice.session).outcome == "completed"


def test_paid_tool_is_charged_once_per_success_and_never_on_failure(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: the tool rows from a "test connection", priced by the operator
    server = _http_server(mcp_http)
    assert mcp_server_test(server=server).reachable is True
    McpTool.objects.filter(server=server, name__in=["add", "fail"]).update(cost_cents=5)
    alice = person("alice")
    credits_grant(user=alice.user, amount_cents=12, idempotency_key="grant:alice", reason="test")
    script = fake(
        {"tool_calls": [_call("docs__add", "c1", a=1, b=1), _call("docs__fail", "c2"),
                        _call("docs__add", "c3", a=2, b=2), _call("docs__add", "c4", a=3, b=3)]},
        {"text": "Counted."},
    )  # fmt: skip
    # when
    result = _send(stack, alice, "add " + script)
    # then: two successful adds charged (12 → 7 → 2), the failure not, the fourth refused before running
    outputs = _outputs(result)
    assert (outputs["c1"], outputs["c3"]) == ("2", "4")
    assert outputs["c2"].startswith("Tool execution error: The MCP server 'docs' reported an error")
    assert outputs["c4"] == "Insufficient credits to run docs__add."
    turn_id = str(TurnUsage.objects.get(session=alice.session).turn_id)
    spends = CreditTransaction.objects.filter(user=alice.user).exclude(idempotency_key="grant:alice")
    assert sorted(spends.values_list("idempotency_key", "amount_cents")) == [
        (f"tool:{turn_id}:c1", -5), (f"tool:{turn_id}:c3", -5),
    ]  # fmt: skip
    assert credit_balance(user=alice.user) == 2


def test_server_down_between_turns_loses_only_its_tools_and_comes_back(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a turn that used the server
    _http_server(mcp_http)
    alice = person("alice")
    first = _send(stack, alice, "one " + fake({"tool_calls": [_call("docs__echo", "c1", text="a")]}, {"text": "ok"}))
    assert _outputs(first) == {"c1": "echo: a"}
    builtins = sorted(name for name in _offered(_completions(fake_llm)[0]) if "__" not in name)
    # when: the server goes down, and the next turn does not call it
    mcp_http.stop()
    fake_llm.reset()
    second = _send(stack, alice, "two " + fake({"text": "fine without it"}))
    # then: its tools are gone from the request, the built-ins are not, the turn completed
    (body,) = _completions(fake_llm)
    assert _mcp_offered(body) == []
    assert sorted(_offered(body)) == builtins
    assert second.text() == "fine without it"
    assert "error" not in second.types
    wait_until(lambda: McpServer.objects.get().last_reachable is False)
    assert McpServer.objects.get().last_error != ""
    # when: it comes back on the same port
    mcp_http.start()
    wait_until(lambda: McpServer.objects.get().last_reachable is True, timeout=30)
    fake_llm.reset()
    third = _send(stack, alice, "three " + fake({"tool_calls": [_call("docs__echo", "c9", text="b")]}, {"text": "ok"}))
    # then
    assert _mcp_offered(_completions(fake_llm)[0]) == [f"docs__{name}" for name in ALL_TOOLS]
    assert _outputs(third) == {"c9": "echo: b"}
    assert [t.outcome for t in TurnUsage.objects.filter(session=alice.session).order_by("started_at")] == [
        "completed", "completed", "completed",
    ]  # fmt: skip


def test_stdio_server_runs_once_and_is_restarted_when_it_exits(stack: str, fake_llm: Any) -> None:
    # given
    mcp_server_create(
        name="local", transport="stdio", command=stdio_command(), timeout_s=4.0, env={"COPILOT_TEST_SECRET": "s-42"}
    )
    alice = person("alice")
    each = fake(
        {"tool_calls": [_call("local__add", "a1", a=20, b=22), _call("local__image", "i1"), _call("local__fail", "f1"),
                        _call("local__sleep", "s1", seconds=6),
                        _call("local__getenv", "g1", name="COPILOT_TEST_SECRET"),
                        _call("local__getenv", "g2", name="DJANGO_SETTINGS_MODULE")]},
        {"text": "k"},
    )  # fmt: skip
    assert _outputs(_send(stack, alice, "each " + each)) == {
        "a1": "42",
        "i1": {"content": [{"type": "image", "media_type": "image/png", "size_bytes": 70}]},
        "f1": "Tool execution error: The MCP server 'local' reported an error: Error executing tool fail: the tool "
        "failed on purpose",
        "s1": "Tool execution error: The MCP server 'local' did not answer within 4 s; the call was abandoned.",
        "g1": "s-42",  # the server's stored environment
        "g2": "(unset)",  # and nothing of the worker's own
    }
    whoami = fake({"tool_calls": [_call("local__whoami", "w1"), _call("local__echo", "e1", text="x")]}, {"text": "k"})
    first = _send(stack, alice, "who " + whoami)
    second = _send(stack, alice, "again " + whoami)
    # then: one process served both turns
    pid_first, pid_second = _outputs(first)["w1"], _outputs(second)["w1"]
    assert pid_first == pid_second
    assert pid_first.startswith("pid ")
    assert _outputs(second)["e1"] == "echo: x"
    # when: the server process exits between turns
    os.kill(int(pid_first.split()[1]), signal.SIGKILL)
    third = _send(stack, alice, "after " + whoami)
    # then: a new process answers the next turn
    outputs = _outputs(third)
    assert outputs["w1"].startswith("pid ")
    assert outputs["w1"] != pid_first
    assert outputs["e1"] == "echo: x"


def test_tier_restricted_server_is_not_offered_to_other_tiers(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a server for PRO users only; alice is on FREE
    _http_server(mcp_http, allowed_tiers=["PRO"])
    alice = person("alice")
    # when
    _send(stack, alice, "hi " + fake({"text": "hello"}))
    # then
    (body,) = _completions(fake_llm)
    assert _mcp_offered(body) == []
    assert "calculator" in _offered(body)


def test_a_call_to_a_tool_that_is_not_offered_fails_without_reaching_the_server(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a disabled server
    _http_server(mcp_http, enabled=False)
    alice = person("alice")
    # when: the model calls its tool anyway
    result = _send(stack, alice, "x " + fake({"tool_calls": [_call("docs__echo", "c1", text="a")]}, {"text": "ok"}))
    # then
    assert _outputs(result) == {"c1": "Tool execution error: unknown tool 'docs__echo'"}
    assert McpServer.objects.get().last_checked_at is None  # never contacted


def test_long_output_is_cut_at_the_tool_output_cap(stack: str, fake_llm: Any, mcp_http: McpTestServer) -> None:
    # given
    _http_server(mcp_http)
    alice = person("alice")
    # when: the tool returns 150,000 characters (the cap is COPILOT_TOOL_OUTPUT_MAX_CHARS, 100,000)
    script = fake({"tool_calls": [_call("docs__big", "c1", chars=150_000)]}, {"text": "k"})
    result = _send(stack, alice, "big " + script)
    # then
    output = _outputs(result)["c1"]
    note = "\n\n[Output truncated: 150000 characters, showing the first 99935.]"
    assert output == "x" * 99_935 + note
    assert len(output) == 100_000
    assert _tool_rows(alice) == [("docs__big", "c1", output)]


def test_tool_list_change_notification_offers_the_new_tool_next_turn(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a turn whose tool call makes the server add a tool and notify
    server = _http_server(mcp_http)
    alice = person("alice")
    grow = fake({"tool_calls": [_call("docs__grow", "c1", name="extra")]}, {"text": "grown"})
    assert _outputs(_send(stack, alice, "grow " + grow)) == {"c1": "added extra"}
    assert "docs__extra" not in _mcp_offered(_completions(fake_llm)[0])
    # when: the worker re-lists on the notification (the cached list is replaced)
    wait_until(lambda: McpTool.objects.filter(server=server, name="extra").exists())
    fake_llm.reset()
    call = fake({"tool_calls": [_call("docs__extra", "c2")]}, {"text": "used"})
    result = _send(stack, alice, "use it " + call)
    # then
    assert "docs__extra" in _mcp_offered(_completions(fake_llm)[0])
    assert _outputs(result) == {"c2": "I am extra"}


def test_turns_of_different_users_share_one_pooled_session(stack: str, fake_llm: Any, mcp_http: McpTestServer) -> None:
    # given
    _http_server(mcp_http)
    people = [person(name) for name in ("alice", "bob", "charlie")]
    script = fake({"tool_calls": [_call("docs__session", "s1")]}, {"text": "k", "delay_ms": 200})
    results: dict[str, SseResult] = {}

    def run(p: Person) -> None:
        results[p.user.username] = _send(stack, p, "which " + script)

    # when: three users' turns at once, then one more for alice
    threads = [threading.Thread(target=run, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    later = _send(stack, people[0], "again " + script)
    # then: every call arrived on the same MCP session
    sessions = {name: _outputs(r)["s1"] for name, r in results.items()}
    assert sorted(sessions) == ["alice", "bob", "charlie"]
    assert sessions == {"alice": "session 1 of 1", "bob": "session 1 of 1", "charlie": "session 1 of 1"}
    assert _outputs(later)["s1"] == "session 1 of 1"


def test_stopping_a_turn_during_a_call_leaves_the_pooled_session_usable(
    stack: str, fake_llm: Any, mcp_http: McpTestServer
) -> None:
    # given: a turn waiting on a 20 s call, with a paid tool
    server = _http_server(mcp_http)
    assert mcp_server_test(server=server).reachable is True
    McpTool.objects.filter(server=server, name="sleep").update(cost_cents=3)
    alice = person("alice")
    credits_grant(user=alice.user, amount_cents=10, idempotency_key="grant:alice", reason="test")
    slow = fake({"tool_calls": [_call("docs__sleep", "c1", seconds=20)]}, {"text": "never"})
    first = read_sse(
        "POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream", headers=alice.headers,
        json_body={"message": "slow " + slow}, stop_when=lambda r: "tool-input-available" in r.types,
    )  # fmt: skip
    assert first.status == 200
    # when: the user stops it mid-call
    cancel = httpx.post(f"{stack}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
    assert cancel.json() == {"cancelled": True, "reason": None}
    wait_until(lambda: (meta := turn_meta_get(alice.session.id)) is None or not meta.is_running)
    # then: nothing charged, and the next turn uses the same session
    assert credit_balance(user=alice.user) == 10
    second = _send(stack, alice, "next " + fake({"tool_calls": [_call("docs__session", "s1")]}, {"text": "k"}))
    assert _outputs(second) == {"s1": "session 1 of 1"}
    outcomes = TurnUsage.objects.filter(session=alice.session).order_by("started_at").values_list("outcome", flat=True)
    assert list(outcomes) == ["cancelled", "completed"]


def test_a_tool_whose_policy_is_always_asks_the_user_first(stack: str, fake_llm: Any, mcp_http: McpTestServer) -> None:
    # given: echo marked "always ask" by the operator
    server = _http_server(mcp_http)
    assert mcp_server_test(server=server).reachable is True
    McpTool.objects.filter(server=server, name="session").update(approval_policy="always")
    alice = person("alice")
    script = fake({"tool_calls": [_call("docs__session", "c1")]}, {"tool_calls": [_call("docs__session", "c2")]},
                  {"text": "done"})  # fmt: skip
    result = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream"),
        kwargs={"headers": alice.headers, "json_body": {"message": "ask " + script}, "into": result},
        daemon=True,
    )
    reader.start()

    def approval_for(call_id: str) -> dict[str, Any]:
        return wait_until(
            lambda: next(
                (c for _, c in result.events if c["type"] == "tool-approval-request" and c["toolCallId"] == call_id),
                None,
            )
        )

    def decide(approval_id: str, approved: bool) -> int:
        url = f"{stack}/api/chat/sessions/{alice.session.id}/approvals/{approval_id}"
        return httpx.post(url, headers=alice.headers, json={"approved": approved}, timeout=10).status_code

    # when: the first call is approved, the second denied
    first = approval_for("c1")
    assert ToolApproval.objects.get(pk=first["approvalId"]).reason == "tool_policy"
    assert decide(first["approvalId"], True) == 200
    second = approval_for("c2")
    assert decide(second["approvalId"], False) == 200
    reader.join(timeout=30)
    # then: only the approved call reached the server
    assert _outputs(result) == {"c1": "session 1 of 1"}
    assert {"type": "tool-output-denied", "toolCallId": "c2"} in [c for _, c in result.events]
    assert _tool_rows(alice)[1] == (
        "docs__session",
        "c2",
        "The user denied running tool 'docs__session'; it was not run.",
    )
    assert result.text() == "done"
