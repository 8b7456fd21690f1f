"""The fake Stripe API on a loopback port: ``ThreadingHTTPServer`` in front of :class:`FakeStripeApp`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from copilot_site.testing.fake_stripe.app import FakeStripeApp
from copilot_site.testing.fake_stripe.state import FakeStripeState
from copilot_site.testing.fake_stripe.webhooks import WebhookForwarder


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: FakeStripeApp, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "FakeStripe/1.0"

    def _dispatch(self) -> None:
        server = cast(_FakeHTTPServer, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = server.app.handle(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch
    do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if cast(_FakeHTTPServer, self.server).verbose:
            super().log_message(format, *args)


class FakeStripeServer:
    """The fake Stripe API on a loopback port.

    >>> with FakeStripeServer() as server:            # doctest: +SKIP
    ...     client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.base_url})
    ...     pro = server.state.seed_price("pro", 2000)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_version: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.state = FakeStripeState(api_version=api_version)
        self.webhooks: WebhookForwarder | None = None
        if webhook_url:
            if not webhook_secret:
                raise ValueError("webhook_secret is required with webhook_url")
            self.webhooks = WebhookForwarder(webhook_url, webhook_secret)
            self.state.event_listeners.append(self.webhooks)
        self.app = FakeStripeApp(self.state, self.webhooks)
        self._httpd = _FakeHTTPServer((host, port), self.app, verbose)
        self.host = host
        self.port: int = self._httpd.server_port
        shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - display only
        self.base_url = f"http://{shown_host}:{self.port}"
        self.state.base_url = (public_url or self.base_url).rstrip("/")
        self._thread: threading.Thread | None = None

    @property
    def public_url(self) -> str:
        """Base of the checkout / portal URLs handed to browsers."""
        return self.state.base_url

    def start(self) -> FakeStripeServer:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            if self.webhooks is not None:
                self.webhooks.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-stripe", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (used by ``python -m copilot_site.testing.fake_stripe``)."""
        if self.webhooks is not None:
            self.webhooks.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._httpd.server_close()
            if self.webhooks is not None:
                self.webhooks.stop()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        if self.webhooks is not None:
            self.webhooks.stop()

    def reset(self) -> None:
        self.state.reset()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
