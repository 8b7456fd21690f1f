from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import health, metrics


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


@require_GET
def metrics_scrape(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics for `Authorization: Bearer $COPILOT_METRICS_TOKEN`.

    Without a token configured the endpoint does not exist (404). With one, a missing or
    wrong token is 401: the path is public knowledge, and a scraper with a stale token
    should be told so rather than see a page that seems to have gone.
    """
    token = settings.COPILOT_METRICS_TOKEN
    if not token:
        raise Http404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    registry = metrics.registry_for_scrape(broker_url=settings.CELERY_BROKER_URL, queues=queues)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
