"""The public page of a share link, `/share/<token>`: no login, read-only, never indexed.

The snapshot (`SharedChat.messages`) is embedded as JSON (`json_script`, not a script
that runs) and rendered by `static/chat/shared.js` with the chat page's own code:
marked, then DOMPurify with the same allow-list, then the same message list.
Every answer, the 404 of an unknown or revoked token included, carries
`X-Robots-Tag: noindex` (and the page `<meta name="robots" content="noindex">`),
`Cache-Control: no-store` (a revoked link must not live on in a cache) and
`Referrer-Policy: no-referrer` (the token must not leak to the sites a message links to).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .shares import share_get_by_token


def shared_chat_page(request: HttpRequest, token: str) -> HttpResponse:
    share = share_get_by_token(token=token)
    if share is None:
        response = render(request, "chat/shared.html", {"share": None}, status=404)
    else:
        response = render(request, "chat/shared.html", {"share": share, "snapshot": share.messages})
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
