"""The demo model over HTTP: an OpenAI-compatible ``/v1`` on a loopback port (stdlib only).

``GET …/models`` lists the model names; ``POST …/chat/completions`` answers with
:func:`~copilot_site.core.demo_llm.model.demo_reply`, streamed as server-sent
events (chunked) or as one JSON completion.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from copilot_site.core.demo_llm.conversation import normalize_openai
from copilot_site.core.demo_llm.model import demo_reply
from copilot_site.core.demo_llm.openai_wire import models_payload, openai_error, reply_completion, reply_stream

logger = logging.getLogger(__name__)


class _DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections

    def do_GET(self) -> None:
        if self._path().endswith("/models"):
            self._send_json(200, models_payload())
        elif self._path().endswith("/chat/completions"):
            self._send_json(405, openai_error(405, "use POST"))
        else:
            self._send_json(404, openai_error(404, f"no route for {self._path()}"))

    def do_POST(self) -> None:
        if not self._path().endswith("/chat/completions"):
            self._send_json(404, openai_error(404, f"no route for {self._path()}"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            self._send_json(400, openai_error(400, "request body must be a JSON object"))
            return
        conversation = normalize_openai(body)
        reply = demo_reply(conversation)
        if conversation.stream:
            self._send_stream(reply_stream(reply, conversation))
        else:
            self._send_json(200, reply_completion(reply, conversation))

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _send_json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: list[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("demo LLM: " + format, *args)


class DemoLLMServer(ThreadingHTTPServer):
    """The demo model on ``host:port`` (port 0 picks a free one)."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _DemoHandler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> threading.Thread:
        """Serve from a daemon thread (already listening: the socket is bound in the constructor)."""
        thread = threading.Thread(target=self.serve_forever, name="demo-llm", daemon=True)
        thread.start()
        return thread
