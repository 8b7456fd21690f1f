"""A scripted OpenAI-compatible (and Anthropic-format) LLM server.

Stdlib asyncio only: a tiny HTTP/1.1 server (keep-alive, Content-Length or
chunked request bodies, chunked SSE responses) that answers

* ``POST …/chat/completions`` in OpenAI Chat Completions format,
* ``POST …/messages`` in Anthropic Messages format,
* ``GET  …/models`` with a small model list,
* ``GET  /_fake/requests`` / ``POST /_fake/reset`` for inspection.

What it answers is decided by :mod:`chat.llm_fake.script` (a ``<<fake {…}>>``
script in the conversation, or the offline demo model).

In-process use::

    with FakeLLMServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="test")

Foreground use: ``python manage.py fake_llm --port 8765``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from chat.llm_fake.script import (
    Api,
    Plan,
    Round,
    Usage,
    compute_usage,
    normalize_anthropic,
    plan_reply,
)

logger = logging.getLogger(__name__)

MAX_RECORDED = 500
MAX_HEADER_LINES = 200
MODELS = ("fake-model", "fake-model-large", "fake-claude")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _BadRequest(Exception):
    """The client sent something that is not HTTP/1.x."""


@dataclass
class _Request:
    method: str
    target: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


EventKind = Literal["reasoning", "reasoning_raw", "text", "tool_start", "tool_args"]


@dataclass
class _Event:
    """One content chunk of a reply (API-neutral)."""

    kind: EventKind
    text: str = ""
    stamp: bool = False  # text is made at send time: "@<time.time_ns()>;"
    tool_index: int = 0
    raw: Any = None

    def resolve(self) -> str:
        if self.stamp:
            self.text = f"@{time.time_ns()};"
        return self.text


def _content_events(rnd: Round) -> list[_Event]:
    events = [_Event("reasoning", piece) for piece in rnd.reasoning_pieces()]
    if rnd.has_reasoning_raw:
        events.append(_Event("reasoning_raw", raw=rnd.reasoning_raw))
    if rnd.stamp:
        events.extend(_Event("text", stamp=True) for _ in range(rnd.stamp_count()))
    else:
        events.extend(_Event("text", piece) for piece in rnd.text_pieces())
    for index, call in enumerate(rnd.tool_calls):
        events.append(_Event("tool_start", tool_index=index))
        size = rnd.args_chunk_size if rnd.args_chunk_size > 0 else max(1, len(call.arguments))
        for start in range(0, len(call.arguments), size):
            events.append(_Event("tool_args", call.arguments[start : start + size], tool_index=index))
    return events


def _completion_chars(events: list[_Event]) -> int:
    """Characters of generated reasoning, text and tool arguments (after sending)."""
    return sum(len(e.text) for e in events if e.kind in ("reasoning", "text", "tool_args"))


class _Abort(Exception):
    """Raised inside a stream to close the connection without a clean end."""


class FakeLLMServer:
    """Scripted LLM server; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_recorded: int = MAX_RECORDED,
    ) -> None:
        self.host = host
        self.port = port
        self.max_recorded = max_recorded
        self._requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ API

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (``http://host:port/v1``)."""
        return f"{self.root_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (it appends ``/v1/messages`` itself)."""
        return self.root_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of the recorded completion requests (oldest first)."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self, timeout: float = 10.0) -> Self:
        """Serve from a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._thread_main, name=f"fake-llm-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("FakeLLMServer did not start in time")
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("FakeLLMServer failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop_event, thread = self._loop, self._stop_event, self._thread
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Serve in the current thread until interrupted (Ctrl-C) or :meth:`stop`.

        On uvloop: a stand-in for a remote provider should cost the machine as
        little CPU as it can, so the benchmarks measure the project, not the fake.
        """
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(self.serve(ready))

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Listen and serve until :meth:`stop` is called (or the task is cancelled)."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._handle_connection, self.host, self.port, limit=1 << 20)
        self.port = int(server.sockets[0].getsockname()[1])
        logger.info("fake LLM server listening on %s", self.base_url)
        if ready is not None:
            ready()
        try:
            async with server:
                await self._stop_event.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.gather(*self._connections, return_exceptions=True)

    # -------------------------------------------------------------- threading

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve(self._ready.set))
        except BaseException as exc:  # reported to start() or logged
            self._startup_error = exc
            if not self._ready.is_set():
                self._ready.set()
            else:
                logger.exception("fake LLM server crashed")

    # ------------------------------------------------------------- HTTP layer

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                keep_alive = await self._dispatch(request, writer)
                if not keep_alive:
                    break
        except (_BadRequest, ValueError):
            with contextlib.suppress(ConnectionError):
                await self._send_json(writer, 400, {"error": {"message": "bad request"}}, False)
        except (ConnectionError, asyncio.IncompleteReadError, _Abort):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("fake LLM server: unhandled error")
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        line = await reader.readline()
        while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests
            line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").strip().split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(line[:100])
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            raw = await reader.readline()
            if not raw:
                raise asyncio.IncompleteReadError(raw, None)
            if raw in (b"\r\n", b"\n"):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise _BadRequest(raw[:100])
            headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest("too many headers")

        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length < 0:
                raise _BadRequest("negative content-length")
            body = await reader.readexactly(length)

        connection = headers.get("connection", "").lower()
        # HTTP/1.1 connections persist unless closed; HTTP/1.0 ones only on request.
        keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        path = target.split("?", 1)[0]
        return _Request(method.upper(), target, path, headers, body, keep_alive)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    @staticmethod
    def _head(status: int, headers: Mapping[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: object,
        keep_alive: bool,
        extra_headers: Mapping[str, str] | None = None,
    ) -> bool:
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "keep-alive" if keep_alive else "close",
            **(extra_headers or {}),
        }
        writer.write(self._head(status, headers) + body)
        await writer.drain()
        return keep_alive

    async def _start_stream(self, writer: asyncio.StreamWriter, keep_alive: bool, extra: Mapping[str, str]) -> None:
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            "Connection": "keep-alive" if keep_alive else "close",
            **extra,
        }
        writer.write(self._head(200, headers))
        await writer.drain()

    @staticmethod
    async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()

    @staticmethod
    async def _end_stream(writer: asyncio.StreamWriter) -> None:
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    # -------------------------------------------------------------- dispatch

    def _record(self, request: _Request, body: object) -> None:
        entry = {"path": request.path, "headers": dict(request.headers), "body": body}
        with self._lock:
            self._requests.append(entry)
            overflow = len(self._requests) - self.max_recorded
            if overflow > 0:
                del self._requests[:overflow]

    async def _dispatch(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path.rstrip("/") or "/"
        keep = request.keep_alive
        if path == "/_fake/requests" and request.method == "GET":
            return await self._send_json(writer, 200, {"requests": self.requests}, keep)
        if path == "/_fake/reset" and request.method == "POST":
            self.reset()
            return await self._send_json(writer, 200, {"ok": True}, keep)
        if path.endswith("/models") and request.method == "GET":
            return await self._send_json(writer, 200, self._models_payload(), keep)
        if path.endswith("/messages/count_tokens") and request.method == "POST":
            body = self._parse_body(request.body)
            if not isinstance(body, dict):
                return await self._send_json(writer, 400, _anthropic_error(400, "bad json"), keep)
            tokens = max(1, normalize_anthropic(body).prompt_chars // 4)
            return await self._send_json(writer, 200, {"input_tokens": tokens}, keep)
        api: Api | None = None
        if path.endswith("/chat/completions"):
            api = "openai"
        elif path.endswith("/messages"):
            api = "anthropic"
        if api is None:
            return await self._send_json(writer, 404, _openai_error(404, f"no route for {request.path}"), keep)
        if request.method != "POST":
            return await self._send_json(writer, 405, _openai_error(405, "use POST"), keep)

        body = self._parse_body(request.body)
        self._record(request, body)
        if not isinstance(body, dict):
            error = (
                _openai_error(400, "request body must be a JSON object")
                if api == "openai"
                else _anthropic_error(400, "request body must be a JSON object")
            )
            return await self._send_json(writer, 400, error, keep)

        plan = plan_reply(body, api)
        rnd = plan.round
        if rnd.http_status is not None and rnd.http_status >= 300:
            if rnd.first_delay_ms:
                await asyncio.sleep(rnd.first_delay_ms / 1000)
            error = (
                _openai_error(rnd.http_status, rnd.error_message)
                if api == "openai"
                else _anthropic_error(rnd.http_status, rnd.error_message)
            )
            return await self._send_json(writer, rnd.http_status, error, keep)

        if api == "openai":
            if plan.conversation.stream:
                return await self._openai_stream(plan, writer, keep)
            return await self._openai_complete(plan, writer, keep)
        if plan.conversation.stream:
            return await self._anthropic_stream(plan, writer, keep)
        return await self._anthropic_complete(plan, writer, keep)

    @staticmethod
    def _parse_body(raw: bytes) -> object:
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return raw.decode("utf-8", errors="replace")

    @staticmethod
    def _models_payload() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {
                    "id": model,
                    "object": "model",
                    "created": created,
                    "owned_by": "fake-llm",
                }
                for model in MODELS
            ],
        }

    # ------------------------------------------------------ shared streaming

    @staticmethod
    async def _pace(rnd: Round, index: int) -> None:
        delay = rnd.first_delay_ms if index == 0 else rnd.delay_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    @staticmethod
    def _error_due(rnd: Round, sent: int) -> bool:
        """Whether the injected failure is due after ``sent`` content chunks."""
        return rnd.error_after_chunks is not None and sent >= rnd.error_after_chunks

    # ----------------------------------------------------------------- OpenAI

    async def _openai_stream(self, plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
        rnd = plan.round
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        model = plan.conversation.model

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def send(payload: object) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await self._write_chunk(writer, f"data: {data}\n\n".encode())

        await self._start_stream(writer, keep, {"x-request-id": completion_id})
        events = _content_events(rnd)
        for index, event in enumerate(events):
            if self._error_due(rnd, index):
                break
            await self._pace(rnd, index)
            delta = _openai_delta(event, rnd)
            if index == 0:
                delta = {"role": "assistant", **delta}
            await send(chunk(delta))
        if rnd.error_after_chunks is not None:
            if not events:
                await self._pace(rnd, 0)
            return await self._stream_error(writer, rnd, {"error": _stream_error_body(rnd)})

        if not events:
            await self._pace(rnd, 0)
        finish = "tool_calls" if rnd.tool_calls else "stop"
        final_delta: dict[str, Any] = {} if events else {"role": "assistant", "content": ""}
        await send(chunk(final_delta, finish))
        usage = compute_usage(rnd, plan.conversation.prompt_chars, _completion_chars(events))
        if usage is not None:
            final = chunk({})
            final["choices"] = []
            final["usage"] = usage.openai()
            await send(final)
        await send("[DONE]")
        await self._end_stream(writer)
        return keep

    async def _stream_error(
        self,
        writer: asyncio.StreamWriter,
        rnd: Round,
        payload: dict[str, Any],
        event: str = "",
    ) -> bool:
        if rnd.error_mode == "disconnect":
            raise _Abort
        prefix = f"event: {event}\n" if event else ""
        await self._write_chunk(writer, f"{prefix}data: {json.dumps(payload)}\n\n".encode())
        await self._end_stream(writer)
        return False  # close the connection after an error event

    async def _openai_complete(self, plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
        rnd = plan.round
        events = _content_events(rnd)
        await self._sleep_generation(rnd, len(events))
        if rnd.error_after_chunks is not None:
            if rnd.error_mode == "disconnect":
                raise _Abort
            return await self._send_json(writer, 502, {"error": _stream_error_body(rnd)}, False)
        for event in events:
            event.resolve()
        text = "".join(e.text for e in events if e.kind == "text")
        reasoning = "".join(e.text for e in events if e.kind == "reasoning")
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if reasoning or rnd.has_reasoning_raw:
            if rnd.reasoning_field == "reasoning_details" or rnd.has_reasoning_raw:
                details: Any = [{"type": "reasoning.text", "text": reasoning}] if reasoning else []
                message["reasoning_details"] = rnd.reasoning_raw if rnd.has_reasoning_raw else details
            if rnd.reasoning_field != "reasoning_details" and reasoning:
                message[rnd.reasoning_field] = reasoning
        if rnd.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in rnd.tool_calls
            ]
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": plan.conversation.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if rnd.tool_calls else "stop",
                }
            ],
        }
        usage = compute_usage(rnd, plan.conversation.prompt_chars, _completion_chars(events))
        if usage is not None:
            payload["usage"] = usage.openai()
        return await self._send_json(writer, 200, payload, keep)

    @staticmethod
    async def _sleep_generation(rnd: Round, count: int) -> None:
        total = rnd.first_delay_ms + rnd.delay_ms * max(0, count - 1)
        if total > 0:
            await asyncio.sleep(total / 1000)

    # -------------------------------------------------------------- Anthropic

    async def _anthropic_stream(self, plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
        rnd = plan.round
        message_id = f"msg_{secrets.token_hex(12)}"
        start_usage = compute_usage(rnd, plan.conversation.prompt_chars, 0)

        async def send(event: str, payload: dict[str, Any]) -> None:
            data = json.dumps({"type": event, **payload})
            await self._write_chunk(writer, f"event: {event}\ndata: {data}\n\n".encode())

        await self._start_stream(writer, keep, {"request-id": message_id})
        await send(
            "message_start",
            {
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": plan.conversation.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _anthropic_input_usage(start_usage, output_tokens=1),
                }
            },
        )
        await send("ping", {})

        events = _content_events(rnd)
        block_index = -1
        open_kind: str | None = None

        async def close_block() -> None:
            nonlocal open_kind
            if open_kind == "reasoning":
                signature = rnd.signature or _signature(rnd.reasoning or "")
                await send(
                    "content_block_delta",
                    {
                        "index": block_index,
                        "delta": {"type": "signature_delta", "signature": signature},
                    },
                )
            if open_kind is not None:
                await send("content_block_stop", {"index": block_index})
            open_kind = None

        async def open_block(kind: str, block: dict[str, Any]) -> None:
            nonlocal block_index, open_kind
            await close_block()
            block_index += 1
            open_kind = kind
            await send("content_block_start", {"index": block_index, "content_block": block})

        for index, event in enumerate(events):
            if self._error_due(rnd, index):
                break
            await self._pace(rnd, index)
            if event.kind == "reasoning":
                if open_kind != "reasoning":
                    await open_block(
                        "reasoning",
                        {"type": "thinking", "thinking": "", "signature": ""},
                    )
                delta = {"type": "thinking_delta", "thinking": event.resolve()}
                await send("content_block_delta", {"index": block_index, "delta": delta})
            elif event.kind == "reasoning_raw":
                data = event.raw if isinstance(event.raw, str) else json.dumps(event.raw)
                await open_block("redacted", {"type": "redacted_thinking", "data": data})
            elif event.kind == "text":
                if open_kind != "text":
                    await open_block("text", {"type": "text", "text": ""})
                delta = {"type": "text_delta", "text": event.resolve()}
                await send("content_block_delta", {"index": block_index, "delta": delta})
            elif event.kind == "tool_start":
                call = rnd.tool_calls[event.tool_index]
                await open_block(
                    "tool",
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
                )
            else:  # tool_args of the open tool_use block
                delta = {"type": "input_json_delta", "partial_json": event.resolve()}
                await send("content_block_delta", {"index": block_index, "delta": delta})

        if rnd.error_after_chunks is not None:
            if not events:
                await self._pace(rnd, 0)
            error = _anthropic_error(502, rnd.error_message)
            return await self._stream_error(writer, rnd, error, event="error")

        if not events:
            await self._pace(rnd, 0)
        await close_block()
        usage = compute_usage(rnd, plan.conversation.prompt_chars, _completion_chars(events))
        await send(
            "message_delta",
            {
                "delta": {
                    "stop_reason": "tool_use" if rnd.tool_calls else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": usage.completion_tokens if usage else 0},
            },
        )
        await send("message_stop", {})
        await self._end_stream(writer)
        return keep

    async def _anthropic_complete(self, plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
        rnd = plan.round
        events = _content_events(rnd)
        await self._sleep_generation(rnd, len(events))
        if rnd.error_after_chunks is not None:
            if rnd.error_mode == "disconnect":
                raise _Abort
            return await self._send_json(writer, 502, _anthropic_error(502, rnd.error_message), False)
        for event in events:
            event.resolve()
        content: list[dict[str, Any]] = []
        reasoning = "".join(e.text for e in events if e.kind == "reasoning")
        if reasoning:
            signature = rnd.signature or _signature(reasoning)
            content.append({"type": "thinking", "thinking": reasoning, "signature": signature})
        if rnd.has_reasoning_raw:
            raw = rnd.reasoning_raw
            content.append(
                {
                    "type": "redacted_thinking",
                    "data": raw if isinstance(raw, str) else json.dumps(raw),
                }
            )
        text = "".join(e.text for e in events if e.kind == "text")
        if text:
            content.append({"type": "text", "text": text})
        for call in rnd.tool_calls:
            try:
                parsed = json.loads(call.arguments) if call.arguments else {}
            except json.JSONDecodeError:
                parsed = {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": parsed if isinstance(parsed, dict) else {},
                }
            )
        usage = compute_usage(rnd, plan.conversation.prompt_chars, _completion_chars(events))
        payload = {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": plan.conversation.model,
            "content": content,
            "stop_reason": "tool_use" if rnd.tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": _anthropic_input_usage(usage, output_tokens=usage.completion_tokens if usage else 0),
        }
        return await self._send_json(writer, 200, payload, keep)


# ---------------------------------------------------------------- formatting


def _openai_delta(event: _Event, rnd: Round) -> dict[str, Any]:
    if event.kind == "reasoning":
        piece = event.resolve()
        if rnd.reasoning_field == "reasoning_details":
            return {"reasoning_details": [{"type": "reasoning.text", "text": piece}]}
        return {rnd.reasoning_field: piece}
    if event.kind == "reasoning_raw":
        return {"reasoning_details": event.raw}
    if event.kind == "text":
        return {"content": event.resolve()}
    call = rnd.tool_calls[event.tool_index]
    if event.kind == "tool_start":
        return {
            "tool_calls": [
                {
                    "index": event.tool_index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        }
    return {"tool_calls": [{"index": event.tool_index, "function": {"arguments": event.resolve()}}]}


def _stream_error_body(rnd: Round) -> dict[str, Any]:
    return {"message": rnd.error_message, "code": 502}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        kind = "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _anthropic_input_usage(usage: Usage | None, output_tokens: int) -> dict[str, Any]:
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    return {
        "input_tokens": usage.anthropic_input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
    }


def _signature(reasoning: str) -> str:
    digest = hashlib.sha256(reasoning.encode()).digest()
    return base64.b64encode(b"fake-signature:" + digest).decode()
