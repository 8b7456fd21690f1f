"""OpenAPI pieces the apps' API annotations share: the error bodies and the statuses they come with.

Every error but a validation failure is `{"detail": text}`, sometimes with machine fields
beside it (`code`, `window`, `resets_at`, …); a validation failure maps each field to its
errors (or carries `detail` and `code` when the JSON itself was refused).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text="A text to show the user.")


_DESCRIPTIONS = {
    400: "The body or the query failed validation: each field names its errors, or `detail` and `code` say why "
    "the JSON was refused (`json_too_deep`, a parse error).",
    401: "No credentials, or an API key that is unknown or revoked.",
    402: "Not enough credits.",
    403: "Not allowed: a cookie session without its CSRF token, or a staff operation for a non-staff user.",
    404: "Not found, or not yours.",
    409: "Refused by the current state, nothing changed (`code` says why: `turn_in_progress` while a reply "
    "is being written, `approval_decided`, …).",
    413: "The request body is larger than the server accepts (`code`: `request_too_large`).",
    422: "A well-formed request the rules refuse.",
    429: "Too many requests: from this address with wrong API keys (with `Retry-After`), or a limit of this operation.",
    500: "The operation failed on the server's side and changed nothing.",
    502: "The payment provider failed or refused.",
    503: "The feature is switched off or its service is unreachable.",
}

# Every API operation authenticates: a missing or bad credential (401) and an address
# throttled for wrong keys (429) apply to all of them.
_ALWAYS = (401, 429)


def api_errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation: `statuses` and those every operation has."""
    responses: dict[int, OpenApiResponse] = {}
    for status in sorted({*statuses, *_ALWAYS}):
        body: Any = OpenApiTypes.OBJECT if status == 400 else ErrorSerializer
        responses[status] = OpenApiResponse(body, description=_DESCRIPTIONS[status])
    return responses
