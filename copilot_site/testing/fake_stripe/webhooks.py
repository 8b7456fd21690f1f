"""Webhook delivery for local development: every event, signed, POSTed to one endpoint in order."""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request

from copilot_site.testing.fake_stripe.params import StripeObj
from copilot_site.testing.fake_stripe.signing import event_payload, sign_payload


class WebhookForwarder:
    """POSTs every event, signed, to one endpoint from a background thread, in order."""

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._queue: queue.Queue[StripeObj | None] = queue.Queue()
        self._deliveries: list[StripeObj] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, event: StripeObj) -> None:
        self._queue.put(event)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-stripe-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self.timeout + 1)
            self._thread = None

    def deliveries(self) -> list[StripeObj]:
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued event was attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: StripeObj) -> None:
        payload = event_payload(event)
        request = urllib.request.Request(  # noqa: S310 - the URL scheme is checked in __init__
            self.url,
            data=payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign_payload(payload, self.secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        record: StripeObj = {"event": event["id"], "type": event["type"], "status": None, "error": None}
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                record["status"] = reply.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
        except OSError as exc:
            record["error"] = str(exc)
        with self._lock:
            self._deliveries.append(record)
