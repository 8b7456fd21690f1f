from __future__ import annotations

import hashlib
import mimetypes
import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.contrib.staticfiles import finders
from django.db import close_old_connections
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.views.decorators.http import require_GET, require_safe

from . import health


def _database_in_thread() -> str:
    try:
        return health.check_database()
    finally:
        close_old_connections()


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """`{database, redis, worker}`, each "ok" or an error string; 503 when one is down."""
    # The three checks run side by side so the worst case is ~1 s, not ~3 s.
    with ThreadPoolExecutor(max_workers=3) as pool:
        database = pool.submit(_database_in_thread)
        redis_status = pool.submit(health.check_redis)
        worker = pool.submit(health.check_worker)
        report = {"database": database.result(), "redis": redis_status.result(), "worker": worker.result()}
    status = 200 if all(value == "ok" for value in report.values()) else 503
    return JsonResponse(report, status=status)


@require_safe
def static_file(request: HttpRequest, path: str) -> HttpResponse:
    """Serve a file of `static/` (and the apps' static folders) through the staticfiles finders.

    daphne serves no static files itself and the site has no build step, so the
    pages' CSS and JS come from here in every mode; a reverse proxy in front can
    serve `collectstatic`'s STATIC_ROOT instead. The files are small, so they are
    read whole.
    """
    normalized = posixpath.normpath(path).lstrip("/")
    if normalized.startswith("..") or normalized != path.lstrip("/"):
        raise Http404("No such file.")
    found = finders.find(normalized)
    if not found or not isinstance(found, str) or not Path(found).is_file():
        raise Http404("No such file.")
    content = Path(found).read_bytes()
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(content, content_type=_content_type(normalized))
    response["ETag"] = etag
    # Names carry no content hash, so browsers revalidate every time (a 304 when unchanged).
    response["Cache-Control"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _content_type(path: str) -> str:
    if path.endswith((".js", ".mjs")):
        return "text/javascript; charset=utf-8"  # ES modules need a JavaScript type
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
