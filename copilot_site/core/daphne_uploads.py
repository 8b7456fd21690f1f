"""Daphne hands request bodies to the application untouched; Twisted must not parse them.

Twisted's ``http.Request`` parses every ``multipart/form-data`` POST body into
``request.args`` before daphne sees the request: on the reactor thread, so a 20 MB upload
stalls every open stream of the process while it runs, and the result is never read
(daphne passes the raw body to Django, which parses it itself). A body Twisted cannot
parse is answered by Twisted with a bare 400 without headers or a body, so the client
never gets the API's JSON error. ``multipart_parsing_off`` makes daphne's requests skip
that step (Twisted's own ``parsePOSTFormSubmission=False``); ``copilot_site.asgi``
calls it when served by daphne.
"""

from __future__ import annotations

from typing import Any


def multipart_parsing_off() -> bool:
    """Make daphne's requests skip Twisted's form parsing; False when daphne is not installed."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # pragma: no cover - daphne is a dependency
        return False
    original = WebRequest.__init__
    if getattr(original, "_copilot_no_form_parsing", False):
        return True

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__._copilot_no_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__
    return True
