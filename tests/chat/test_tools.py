"""Tools: registry and schema budget, the built-ins, execution limits and credit charging."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from billing.models import CreditTransaction
from billing.selectors import credit_balance
from billing.services import credits_grant
from chat.models import ChatMessage, ChatSession, Memory
from chat.tools import (
    Tool,
    ToolContext,
    ToolError,
    enabled_tools,
    execute_tool,
    registered_tools,
    schema_size_chars,
    tool_schemas,
    validate_arguments,
)
from chat.tools.builtin.calculator import Calculator, evaluate
from chat.tools.builtin.clock import GetCurrentTime

BUILT_INS = ["get_current_time", "calculator", "remember", "recall", "forget", "search_my_chats", "web_fetch"]


def ctx(
    user: Any = None, *, session_id: str = "s1", call_id: str = "call_1", cancel: asyncio.Event | None = None
) -> ToolContext:
    return ToolContext(user=user, session_id=session_id, turn_id="turn-1", tool_call_id=call_id, cancel=cancel)


async def call(name: str, arguments: dict[str, Any], context: ToolContext) -> Any:
    tools = {t.name: t for t in enabled_tools()}
    return await execute_tool(tool=tools.get(name), name=name, arguments=arguments, ctx=context)


# ---------------------------------------------------------------- registry


def test_every_built_in_is_registered_and_enabled() -> None:
    assert sorted(registered_tools()) == sorted(BUILT_INS)
    assert sorted(t.name for t in enabled_tools()) == sorted(BUILT_INS)


def test_total_schema_size_stays_within_the_budget(settings: Any) -> None:
    # when
    size = schema_size_chars(tool_schemas(enabled_tools()))
    # then
    assert size <= settings.COPILOT_TOOL_SCHEMA_BUDGET_CHARS == 32_000


def test_schemas_are_objects_with_bounds_in_the_schema_not_the_prose() -> None:
    for schema in tool_schemas(enabled_tools()):
        function = schema["function"]
        assert schema["type"] == "function"
        assert function["parameters"]["type"] == "object"
        assert not re.search(r"\bmax(imum)?\b\W*\d", function["description"], re.IGNORECASE), function["name"]


def test_operators_can_disable_tools(settings: Any) -> None:
    settings.COPILOT_DISABLED_TOOLS = ["web_fetch", "calculator"]
    assert sorted(t.name for t in enabled_tools()) == sorted(set(BUILT_INS) - {"web_fetch", "calculator"})


def test_tools_needing_a_user_are_not_offered_anonymously() -> None:
    assert sorted(t.name for t in enabled_tools(authenticated=False)) == ["calculator", "get_current_time", "web_fetch"]


def test_paid_tools_are_not_offered_while_credits_are_off(settings: Any) -> None:
    settings.COPILOT_TOOL_COST_CENTS = {"calculator": 5}
    settings.ENABLE_CREDIT = False
    assert "calculator" not in [t.name for t in enabled_tools()]


@pytest.mark.parametrize(
    ("_case", "arguments", "error"),
    [
        ("missing", {}, "Invalid arguments: 'expression' is required."),
        ("wrong type", {"expression": 3}, "Invalid arguments: 'expression' must be of type string."),
        ("too long", {"expression": "1" * 1001}, "Invalid arguments: 'expression' must have at most 1000 characters."),
        ("extra", {"expression": "1", "x": 1}, "Invalid arguments: unexpected argument 'x'."),
    ],
)
def test_arguments_are_checked_against_the_schema(_case: str, arguments: dict[str, Any], error: str) -> None:
    with pytest.raises(ToolError, match=re.escape(error)):
        validate_arguments(Calculator.parameters, arguments)


def test_defaults_are_filled_in() -> None:
    assert validate_arguments(GetCurrentTime.parameters, {}) == {"timezone": "UTC"}


# ---------------------------------------------------------------- calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("-3 ** 2", -9),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("1/4", 0.25),
        ("2^10", 1024),
        ("sqrt(16) + abs(-2)", 6),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 2)", 3.14),
        ("10 / 4", 2.5),
        ("2 ** -1", 0.5),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1/0", "Division by zero."),
        ("9 ** 99999", "Exponent too large."),
        ("10 ** 2000", "Result too large."),
        ("__import__('os')", "Unknown function '__import__'."),
        ("x + 1", "Unsupported expression"),
        ("'a' * 3", "Unsupported expression"),
        ("(1).real", "Unsupported expression"),
        ("1 +", "Invalid expression"),
        ("(-8) ** 0.5", "Result is not a real number."),
        ("sqrt(-1)", "Invalid call to sqrt"),
    ],
)
def test_calculator_refuses_what_is_not_bounded_arithmetic(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=re.escape(error)):
        evaluate(expression)


@pytest.mark.asyncio
async def test_calculator_tool_output() -> None:
    result = await call("calculator", {"expression": "6*7"}, ctx())
    assert (result.output, result.text, result.success) == (
        {"expression": "6*7", "result": 42},
        '{"expression": "6*7", "result": 42}',
        True,
    )


@pytest.mark.asyncio
async def test_get_current_time_in_a_zone() -> None:
    # when
    result = await call("get_current_time", {"timezone": "Asia/Tokyo"}, ctx())
    # then
    assert result.success is True
    assert result.output["timezone"] == "Asia/Tokyo"
    assert result.output["local"].endswith("+09:00")
    assert result.output["utc"].endswith("+00:00")
    bad = await call("get_current_time", {"timezone": "Mars/Base"}, ctx())
    assert (bad.output, bad.success) == ("Tool execution error: Unknown time zone 'Mars/Base'.", False)


# ---------------------------------------------------------------- web_fetch


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/page":
            body = (
                b"<html><head><style>p{}</style><script>x()</script></head>"
                b"<body><h1>Title</h1><p>Hello &amp; bye</p></body></html>"
            )
            self._send(200, "text/html; charset=utf-8", body)
        elif self.path == "/big":
            self._send(200, "text/plain", b"z" * 50_000)
        elif self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
        elif self.path == "/inside":
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/secret")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"nope")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def local_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def allow_local(settings: Any) -> None:
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("allow_local")
async def test_web_fetch_returns_page_text(local_site: str) -> None:
    # when
    result = await call("web_fetch", {"url": f"{local_site}/hop"}, ctx())
    # then
    assert result.success is True
    assert result.output == {
        "url": f"{local_site}/page",
        "status": 200,
        "content_type": "text/html",
        "content": "Title\nHello & bye",
        "truncated": False,
    }


@pytest.mark.asyncio
@pytest.mark.usefixtures("allow_local")
async def test_web_fetch_limits_size(local_site: str, settings: Any) -> None:
    # given
    settings.COPILOT_WEB_FETCH_MAX_BYTES = 10_000
    # when
    result = await call("web_fetch", {"url": f"{local_site}/big", "max_chars": 500}, ctx())
    # then
    assert (len(result.output["content"]), result.output["truncated"]) == (500, True)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "http://127.0.0.1:9/x",
            "Refusing to fetch 127.0.0.1: it resolves to 127.0.0.1, which is not a public address.",
        ),
        ("http://localhost:9/x", "Refusing to fetch localhost"),
        ("http://10.0.0.7/", "Refusing to fetch 10.0.0.7"),
        ("http://169.254.169.254/latest/meta-data", "Refusing to fetch 169.254.169.254"),
        ("http://[::1]:9/", "Refusing to fetch ::1"),
        ("http://[::ffff:192.168.0.1]/", "Refusing to fetch ::ffff:192.168.0.1"),
        ("file:///etc/passwd", "Only http and https URLs can be fetched."),
        ("ftp://example.com/x", "Only http and https URLs can be fetched."),
    ],
)
async def test_web_fetch_refuses_internal_addresses(url: str, error: str) -> None:
    result = await call("web_fetch", {"url": url}, ctx())
    assert result.success is False
    assert result.output.startswith(f"Tool execution error: {error}")


@pytest.mark.asyncio
@pytest.mark.usefixtures("allow_local")
async def test_web_fetch_checks_every_redirect(local_site: str) -> None:
    result = await call("web_fetch", {"url": f"{local_site}/inside"}, ctx())
    assert (result.output, result.success) == (
        "Tool execution error: Refusing to fetch 10.1.2.3: it resolves to 10.1.2.3, which is not a public address.",
        False,
    )


# ---------------------------------------------------------------- memories and chat search


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_remember_recall_forget_are_per_user(alice: Any, bob: Any) -> None:
    # given
    saved = await call("remember", {"content": "Alice likes green tea"}, ctx(alice))
    await call("remember", {"content": "Bob likes coffee"}, ctx(bob))
    memory_id = saved.output["id"]
    # when
    found = await call("recall", {"query": "tea"}, ctx(alice))
    everything = await call("recall", {}, ctx(alice))
    foreign = await call("forget", {"memory_id": memory_id}, ctx(bob))
    forgotten = await call("forget", {"memory_id": memory_id}, ctx(alice))
    # then
    assert saved.output == {"id": memory_id, "remembered": "Alice likes green tea"}
    assert [m["content"] for m in found.output["memories"]] == ["Alice likes green tea"]
    assert [m["content"] for m in everything.output["memories"]] == ["Alice likes green tea"]
    assert (foreign.output, foreign.success) == (f"Tool execution error: No memory with id {memory_id}.", False)
    assert (forgotten.output, forgotten.success) == (f"Forgot memory {memory_id}.", True)
    assert await sync_to_async(list)(Memory.objects.values_list("content", flat=True)) == ["Bob likes coffee"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_search_my_chats_sees_only_the_users_other_chats(alice: Any, bob: Any) -> None:
    # given
    @sync_to_async
    def seed() -> tuple[ChatSession, ChatSession]:
        old = ChatSession.objects.create(user=alice, title="Trip")
        current = ChatSession.objects.create(user=alice, title="Now")
        other = ChatSession.objects.create(user=bob, title="Bob's")
        ChatMessage.objects.create(session=old, sequence=0, role="user", content="Plan a trip to Lisbon in May")
        ChatMessage.objects.create(session=old, sequence=1, role="reasoning", content="Lisbon thoughts")
        ChatMessage.objects.create(session=old, sequence=2, role="assistant", content="Lisbon in May is lovely")
        ChatMessage.objects.create(session=current, sequence=0, role="user", content="search my chats for lisbon")
        ChatMessage.objects.create(session=other, sequence=0, role="user", content="Lisbon secrets of Bob")
        return old, current

    old, current = await seed()
    # when
    result = await call("search_my_chats", {"query": "lisbon"}, ctx(alice, session_id=str(current.pk)))
    # then
    assert [(r["session_id"], r["role"], r["snippet"]) for r in result.output["results"]] == [
        (str(old.pk), "assistant", "Lisbon in May is lovely"),
        (str(old.pk), "user", "Plan a trip to Lisbon in May"),
    ]
    assert result.output["results"][0]["session_title"] == "Trip"


# ---------------------------------------------------------------- execution limits


class _Sleepy(Tool):
    name = "sleepy"
    description = "Sleeps."

    async def run(self, ctx: ToolContext, **arguments: Any) -> str:
        await asyncio.sleep(5)
        return "woke up"


@pytest.mark.asyncio
async def test_a_tool_over_the_wait_cap_is_cancelled_with_the_spec_text(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    settings.COPILOT_MAX_TOOL_WAIT_S = 0.05
    # when
    with caplog.at_level(logging.WARNING):
        result = await execute_tool(tool=_Sleepy(), name="sleepy", arguments={}, ctx=ctx())
    # then
    assert result.success is False
    assert result.output == (
        "Tool 'sleepy' exceeded the 0.05s single-tool wait cap and was cancelled. Long-running work should go "
        "through run_sub_session — it uses async start+poll so nothing blocks the chat stream."
    )
    assert "copilot_tool_timeout tool=sleepy input_keys=[] user=None session=s1 cap_s=0.05" in caplog.text


def test_the_default_cap_text_says_300s(settings: Any) -> None:
    from chat.tools.execution import timeout_text

    assert timeout_text("x").startswith("Tool 'x' exceeded the 300s single-tool wait cap and was cancelled.")


@pytest.mark.asyncio
async def test_unknown_tools_fail_without_running() -> None:
    result = await execute_tool(tool=None, name="nope", arguments={}, ctx=ctx())
    assert (result.output, result.success) == ("Tool execution error: unknown tool 'nope'", False)


# ---------------------------------------------------------------- charging


@pytest.fixture
def paid_calculator(settings: Any) -> None:
    settings.COPILOT_TOOL_COST_CENTS = {"calculator": 5}
    settings.ENABLE_CREDIT = True


@sync_to_async
def grant(user: Any, cents: int) -> None:
    credits_grant(user=user, amount_cents=cents, idempotency_key=f"grant:{user.pk}:{cents}", reason="test")


@sync_to_async
def usage_rows(user: Any) -> list[tuple[int, str, dict[str, Any]]]:
    rows = CreditTransaction.objects.filter(user=user, kind="USAGE").order_by("pk")
    return [(r.amount_cents, r.idempotency_key, r.metadata) for r in rows]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_a_paid_tool_is_charged_once_after_it_ran(alice: Any) -> None:
    # given
    await grant(alice, 12)
    # when
    first = await call("calculator", {"expression": "1+1"}, ctx(alice, call_id="call_a"))
    repeat = await call("calculator", {"expression": "1+1"}, ctx(alice, call_id="call_a"))
    # then
    assert first.success
    assert repeat.success
    assert await usage_rows(alice) == [
        (
            -5,
            "tool:turn-1:call_a",
            {
                "reason": "copilot_tool_execution",
                "tool": "calculator",
                "session_id": "s1",
                "tool_call_id": "call_a",
                "input_keys": ["expression"],
            },
        )
    ]
    assert await sync_to_async(credit_balance)(user=alice) == 7


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_short_balance_refuses_before_running(alice: Any) -> None:
    # given
    await grant(alice, 3)
    # when
    with mock.patch.object(Calculator, "run") as run:
        result = await call("calculator", {"expression": "1+1"}, ctx(alice))
    # then
    assert (result.output, result.success) == ("Insufficient credits to run calculator.", False)
    run.assert_not_called()
    assert await usage_rows(alice) == []


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_a_failed_tool_is_not_charged(alice: Any) -> None:
    # given
    await grant(alice, 10)
    # when
    result = await call("calculator", {"expression": "1/0"}, ctx(alice))
    # then
    assert (result.output, result.success) == ("Tool execution error: Division by zero.", False)
    assert await usage_rows(alice) == []


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_a_failed_charge_logs_a_billing_leak_and_keeps_the_output(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    await grant(alice, 10)
    # when
    with (
        mock.patch("billing.services.credits_spend", side_effect=RuntimeError("ledger down")),
        caplog.at_level(logging.ERROR),
    ):
        result = await call("calculator", {"expression": "2*2"}, ctx(alice, call_id="call_x"))
    # then
    assert (result.output, result.success) == ({"expression": "2*2", "result": 4}, True)
    record = next(r for r in caplog.records if "BILLING_LEAK" in r.getMessage())
    assert record.getMessage() == (
        f"BILLING_LEAK[UNEXPECTED_ERROR]: tool executed but credit charge failed — user_id={alice.pk}, "
        "tool=calculator, tool_call_id=call_x, cost=5: ledger down"
    )
    assert record.billing_leak is True  # type: ignore[attr-defined]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_a_balance_spent_meanwhile_is_an_insufficient_balance_leak(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given: enough at the pre-check, gone by the charge
    await grant(alice, 5)
    from billing.errors import InsufficientCredits

    with (
        mock.patch("billing.services.credits_spend", side_effect=InsufficientCredits()),
        caplog.at_level(logging.ERROR),
    ):
        result = await call("calculator", {"expression": "2*2"}, ctx(alice))
    # then
    assert result.success is True
    assert "BILLING_LEAK[INSUFFICIENT_BALANCE]" in caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("paid_calculator")
async def test_cancellation_during_the_charge_bills_exactly_once(alice: Any) -> None:
    # given: a charge that takes a while
    await grant(alice, 10)
    from billing import services as billing_services

    real_spend = billing_services.credits_spend
    charging = threading.Event()

    charged = threading.Event()

    def slow_spend(**kwargs: Any) -> int:
        charging.set()
        time.sleep(0.3)
        try:
            return real_spend(**kwargs)
        finally:
            charged.set()

    # when: the caller is cancelled while the charge runs
    with mock.patch.object(billing_services, "credits_spend", slow_spend):
        task = asyncio.create_task(call("calculator", {"expression": "1+1"}, ctx(alice, call_id="call_c")))
        await asyncio.to_thread(charging.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # then: the shielded charge finishes on its own, once
    assert await asyncio.to_thread(charged.wait, 10)
    assert [row[:2] for row in await usage_rows(alice)] == [(-5, "tool:turn-1:call_c")]


@pytest.mark.asyncio
async def test_a_cancelled_turn_cancels_the_running_tool() -> None:
    # given
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, cancel.set)
    # when
    result = await execute_tool(tool=_Sleepy(), name="sleepy", arguments={}, ctx=ctx(cancel=cancel))
    # then
    assert (result.output, result.success) == ("Tool 'sleepy' was cancelled because the turn was stopped.", False)


@pytest.mark.asyncio
async def test_object_output_over_the_limit_becomes_truncated_text(settings: Any) -> None:
    # given
    settings.COPILOT_TOOL_OUTPUT_MAX_CHARS = 200

    class Big(Tool):
        name = "big"
        description = "Big."

        async def run(self, ctx: ToolContext, **arguments: Any) -> Any:
            return {"data": "y" * 500}

    # when
    result = await execute_tool(tool=Big(), name="big", arguments={}, ctx=ctx())
    # then
    assert isinstance(result.output, str)
    assert len(result.output) == 200
    assert result.output == result.text
    assert result.output.startswith(json.dumps({"data": "y" * 10})[:10])
