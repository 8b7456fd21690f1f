"""Webhook signing for tests, using the stripe SDK's own signature computation.

``sign_payload`` builds a ``Stripe-Signature`` header (``t=<ts>,v1=<hmac>``) exactly
as Stripe does: HMAC-SHA256 of ``"<timestamp>.<payload>"`` keyed by the endpoint
secret, computed with ``stripe.WebhookSignature._compute_signature`` so it cannot
drift from what ``stripe.Webhook.construct_event`` verifies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import stripe

__all__ = ["event_payload", "sign_payload"]

# The SDK function is untyped; pin the signature we rely on.
_compute_signature: Callable[[str, str], str] = stripe.WebhookSignature._compute_signature


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed with ``secret``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signature = _compute_signature(f"{ts}.{payload}", secret)
    return f"t={ts},{stripe.WebhookSignature.EXPECTED_SCHEME}={signature}"


def event_payload(event: Mapping[str, Any]) -> str:
    """Stable JSON for an event (sorted keys, two-space indent like Stripe's payloads)."""
    return json.dumps(event, indent=2, sort_keys=True)
