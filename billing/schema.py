"""The Stripe webhook in the OpenAPI schema.

`POST /api/billing/stripe/webhook` is a plain Django view (Stripe signs its deliveries; no
session, no API key), so the generator does not see it: this hook adds its path.
"""

from __future__ import annotations

from typing import Any

WEBHOOK_PATH = "/api/billing/stripe/webhook"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}


_ERROR_REF = "#/components/schemas/Error"

_WEBHOOK_OPERATION: dict[str, Any] = {
    "operationId": "billing_stripe_webhook",
    "summary": "Stripe event delivery",
    "description": (
        "Called by Stripe, not by clients. The body is verified against the `Stripe-Signature` header "
        "with `STRIPE_WEBHOOK_SECRET`; each event id is processed once (a repeat answers `duplicate`)."
    ),
    "tags": ["billing"],
    "security": [],
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Stripe's signature of the body (`t=…,v1=…`).",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Stripe event object.",
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "api_version": {"type": "string"},
                        "created": {"type": "integer"},
                        "data": {"type": "object", "properties": {"object": {"type": "object"}}},
                    },
                    "required": ["id", "type", "data"],
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "Processed (or acknowledged as a duplicate or an unhandled type).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "received": {"type": "boolean"},
                            "outcome": {"type": "string"},
                        },
                        "required": ["received", "outcome"],
                    }
                }
            },
        },
        "400": _error("The signature, the payload or its API version does not verify."),
        "413": _error("The body is larger than the server accepts."),
        "500": _error("The handler failed; the event is kept unprocessed and Stripe's retry runs it again."),
        "503": _error("No webhook secret is configured: every delivery is refused."),
    },
}


def stripe_webhook_path(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the webhook's path to the generated schema."""
    result.setdefault("paths", {})[WEBHOOK_PATH] = {"post": _WEBHOOK_OPERATION}
    return result
