"""Webhook signing in Stripe's scheme, with no dependency on the ``stripe`` SDK.

``sign_payload`` builds a ``Stripe-Signature`` header ``t=<timestamp>,v1=<signature>`` where the
signature is the hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` keyed by the endpoint secret, which
is what ``stripe.Webhook.construct_event`` verifies (the tests check the SDK accepts it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["SIGNATURE_SCHEME", "event_payload", "sign_payload"]

SIGNATURE_SCHEME = "v1"


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed with ``secret``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signature = hmac.new(secret.encode("utf-8"), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},{SIGNATURE_SCHEME}={signature}"


def event_payload(event: Mapping[str, Any]) -> str:
    """Stable JSON for an event (sorted keys, two-space indent like Stripe's payloads)."""
    return json.dumps(event, indent=2, sort_keys=True)
