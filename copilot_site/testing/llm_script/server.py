"""The scripted LLM server: OpenAI-compatible and Anthropic-format, over real HTTP on loopback.

Stdlib asyncio only (see :mod:`~copilot_site.testing.llm_script.http`). It answers

* ``POST …/chat/completions`` in OpenAI Chat Completions format,
* ``POST …/messages`` in Anthropic Messages format (and ``…/messages/count_tokens``),
* ``GET  …/models`` with a small model list,
* ``GET  /_fake/requests`` / ``POST /_fake/reset`` for inspection.

What it answers is decided by :mod:`~copilot_site.testing.llm_script.script` (a
``<<fake {…}>>`` script in the conversation, or else the offline demo model).

In-process use::

    with FakeLLMServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="test")

Foreground use: ``python -m copilot_site.testing.llm_script --port 8765``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from copilot_site.core.demo_llm.openai_wire import models_payload, openai_error
from copilot_site.core.demo_llm.usage import tokens_estimate
from copilot_site.testing.llm_script.anthropic_stream import anthropic_complete, anthropic_error, anthropic_stream
from copilot_site.testing.llm_script.conversation import Api, normalize_anthropic
from copilot_site.testing.llm_script.http import Abort, BadRequest, Request, json_send, request_read
from copilot_site.testing.llm_script.openai_stream import openai_complete, openai_stream
from copilot_site.testing.llm_script.script import plan_reply

logger = logging.getLogger(__name__)

MAX_RECORDED = 500


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
                request = await request_read(reader)
                if request is None:
                    break
                keep_alive = await self._dispatch(request, writer)
                if not keep_alive:
                    break
        except (BadRequest, ValueError):
            with contextlib.suppress(ConnectionError):
                await json_send(writer, 400, {"error": {"message": "bad request"}}, False)
        except (ConnectionError, asyncio.IncompleteReadError, Abort):
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

    # -------------------------------------------------------------- dispatch

    def _record(self, request: Request, body: object) -> None:
        entry = {"path": request.path, "headers": dict(request.headers), "body": body}
        with self._lock:
            self._requests.append(entry)
            overflow = len(self._requests) - self.max_recorded
            if overflow > 0:
                del self._requests[:overflow]

    async def _dispatch(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path.rstrip("/") or "/"
        keep = request.keep_alive
        if path == "/_fake/requests" and request.method == "GET":
            return await json_send(writer, 200, {"requests": self.requests}, keep)
        if path == "/_fake/reset" and request.method == "POST":
            self.reset()
            return await json_send(writer, 200, {"ok": True}, keep)
        if path.endswith("/models") and request.method == "GET":
            return await json_send(writer, 200, models_payload(), keep)
        if path.endswith("/messages/count_tokens") and request.method == "POST":
            body = _parse_body(request.body)
            if not isinstance(body, dict):
                return await json_send(writer, 400, anthropic_error(400, "bad json"), keep)
            tokens = tokens_estimate(normalize_anthropic(body).prompt_chars)
            return await json_send(writer, 200, {"input_tokens": tokens}, keep)
        api: Api | None = None
        if path.endswith("/chat/completions"):
            api = "openai"
        elif path.endswith("/messages"):
            api = "anthropic"
        if api is None:
            return await json_send(writer, 404, openai_error(404, f"no route for {request.path}"), keep)
        if request.method != "POST":
            return await json_send(writer, 405, openai_error(405, "use POST"), keep)
        return await self._reply(api, request, writer)

    async def _reply(self, api: Api, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Record a completion request and answer it as its script (or the demo model) says."""
        keep = request.keep_alive
        body = _parse_body(request.body)
        self._record(request, body)
        if not isinstance(body, dict):
            error = (
                openai_error(400, "request body must be a JSON object")
                if api == "openai"
                else anthropic_error(400, "request body must be a JSON object")
            )
            return await json_send(writer, 400, error, keep)

        plan = plan_reply(body, api)
        rnd = plan.round
        if rnd.http_status is not None and rnd.http_status >= 300:
            if rnd.first_delay_ms:
                await asyncio.sleep(rnd.first_delay_ms / 1000)
            error = (
                openai_error(rnd.http_status, rnd.error_message)
                if api == "openai"
                else anthropic_error(rnd.http_status, rnd.error_message)
            )
            return await json_send(writer, rnd.http_status, error, keep)

        if api == "openai":
            if plan.conversation.stream:
                return await openai_stream(plan, writer, keep)
            return await openai_complete(plan, writer, keep)
        if plan.conversation.stream:
            return await anthropic_stream(plan, writer, keep)
        return await anthropic_complete(plan, writer, keep)


def _parse_body(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", errors="replace")
