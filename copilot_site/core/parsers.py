"""JSON bodies with a size and a nesting cap, both checked before the JSON is decoded.

`json.loads` recurses once per nested array or object, so a few thousand brackets raise
`RecursionError` (a 500) in whichever process parses them. The depth is therefore measured
first by a linear scan that never recurses: strings are cut out (with their escapes), every
character but a bracket dropped, and the running sum of +1/-1 per bracket gives the depth.
On a valid prefix that is the parser's own depth; past an error it can only overcount, and
an overcount refuses a body that would have failed to parse anyway.

Used by the DRF default parser, the Stripe webhook (after its signature verifies) and the
WebSocket consumers' frames.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json as drf_json

from .errors import ApplicationError

# A string, or an unterminated one running to the end of the text (so a match never fails
# and the scan stays linear), or a run of anything that is neither a bracket nor a quote.
_STRING_OR_FILLER = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*\\?(?:"|\Z)|[^\[\]{}"]+', re.DOTALL)
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JsonBodyRejected(ApplicationError, ValueError):
    """A JSON body refused before parsing; the API answers `{detail, code}` with its status."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, extra={"code": self.code})


class RequestTooLarge(JsonBodyRejected):
    status = 413
    code = "request_too_large"


class JsonTooDeep(JsonBodyRejected):
    code = "json_too_deep"


def json_depth(text: str) -> int:
    """How deeply `text`'s arrays and objects nest (0 for a scalar), without recursing."""
    brackets = _STRING_OR_FILLER.sub("", text)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))


def json_size_check(size: int) -> None:
    limit = int(settings.COPILOT_API_MAX_BODY_BYTES)
    if size > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")


def json_depth_check(text: str) -> None:
    limit = int(settings.COPILOT_API_MAX_JSON_DEPTH)
    if json_depth(text) > limit:
        raise JsonTooDeep(f"The JSON is nested deeper than {limit} levels.")


def json_loads_bounded(data: str | bytes) -> Any:
    """`json.loads` behind the size and depth caps (`JsonBodyRejected`); bad JSON raises ValueError."""
    json_size_check(len(data) if isinstance(data, bytes) else len(data.encode("utf-8", errors="surrogatepass")))
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    json_depth_check(text)
    return json.loads(text)


def request_size_check(request: HttpRequest) -> None:
    """Refuse a request by its declared Content-Length, before any of its body is read."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        declared = 0
    json_size_check(declared)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind the caps: 413 past COPILOT_API_MAX_BODY_BYTES (judged on the
    declared Content-Length first, and never reading more than one byte past the cap), 400
    past COPILOT_API_MAX_JSON_DEPTH."""

    def parse(self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        request = parser_context.get("request")
        if request is not None:
            request_size_check(request)
        limit = int(settings.COPILOT_API_MAX_BODY_BYTES)
        raw: bytes = stream.read(limit + 1) if stream is not None else b""
        json_size_check(len(raw))
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        json_depth_check(text)
        try:
            return drf_json.loads(text, parse_constant=drf_json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
