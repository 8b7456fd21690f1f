"""`/metrics`: the token check, and exact values merged from the web, worker and test processes.

Turns run on the suite's real stack (daphne + a Celery worker + the scripted LLM); the
scrapes go to a second daphne that has a metrics token and ran none of them, so every
value it shows was read from the other processes' files. Counts are compared as the
change between two scrapes: other tests of the session share the processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from prometheus_client.parser import text_string_to_metric_families

from billing.services import credits_grant, credits_spend
from billing.stripe_gateway import API_VERSION
from chat.turns import scripts as rs
from copilot_site.core import metrics
from copilot_site.testing.fake_stripe.signing import sign_payload
from copilot_site.testing.processes import start_daphne
from ratelimits.errors import RateLimitExceeded
from tests.chat.turns.helpers import fake, person, read_sse, wait_until
from tests.conftest import ARTIFACTS
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-test-token"  # noqa: S105 (a test token)
WEBHOOK_SECRET = "whsec_metrics_test"  # noqa: S105 (a test signing secret)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server(live_env: dict[str, str]) -> Iterator[str]:
    """A daphne with COPILOT_METRICS_TOKEN set, sharing the stack's metric directory."""
    server, port = start_daphne({**live_env, "COPILOT_METRICS_TOKEN": TOKEN}, ARTIFACTS / "logs")
    yield f"http://127.0.0.1:{port}"
    server.stop()


def scrape(base: str) -> Samples:
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def changes(before: Samples, after: Samples, names: list[tuple[str, dict[str, str]]]) -> dict[str, float]:
    out = {}
    for name, labels in names:
        key = name + (json.dumps(labels, sort_keys=True) if labels else "")
        out[key] = value(after, name, **labels) - value(before, name, **labels)
    return out


def test_without_a_token_configured_metrics_is_404_even_with_a_bearer(daphne_server: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer"}):
        response = httpx.get(f"{daphne_server}/metrics", headers=headers, timeout=10)
        assert response.status_code == 404
        assert "copilot_turns_started_total" not in response.text


def test_a_missing_or_wrong_token_is_401_and_the_right_one_gets_the_text_format(metrics_server: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx.get(f"{metrics_server}/metrics", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert response.text == "Unauthorized\n"
    response = httpx.get(f"{metrics_server}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    # (a labelled counter appears with its first labels, once something has counted)
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "copilot_turns_started", "copilot_turns_running",
        "copilot_turn_time_to_first_token_seconds", "copilot_turn_duration_seconds",
        "copilot_chunk_relay_latency_seconds", "copilot_redis_errors", "copilot_database_errors",
        "copilot_credits_charged_cents", "copilot_celery_queue_depth",
    } <= families  # fmt: skip


TURN_METRICS: list[tuple[str, dict[str, str]]] = [
    ("copilot_turns_started_total", {}),
    ("copilot_turns_finished_total", {"outcome": "completed"}),
    ("copilot_turns_finished_total", {"outcome": "stopped"}),
    ("copilot_turns_failed_total", {"reason": "llm_error"}),
    ("copilot_turn_duration_seconds_count", {}),
    ("copilot_turn_time_to_first_token_seconds_count", {}),
    ("copilot_tool_calls_total", {"tool": "calculator", "outcome": "success"}),
    ("copilot_tool_calls_total", {"tool": "calculator", "outcome": "error"}),
    ("copilot_credits_charged_cents_total", {}),
]


def test_two_completed_turns_and_one_failed_turn_are_counted_exactly(
    daphne_server: str, celery_worker: Any, fake_llm: Any, metrics_server: str
) -> None:
    # given
    fake_llm.reset()
    alice = person("alice")
    url = f"{daphne_server}/api/chat/sessions/{alice.session.id}/stream"
    before = scrape(metrics_server)
    messages = [
        "hello " + fake({"text": "Hello there.", "chunk_size": 4}),
        "add " + fake({"tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}]}, {"text": "4"}),
        "fail " + fake({"error_after_chunks": 0}),
    ]
    relayed = 0
    lock = redis.Redis.from_url(settings.REDIS_URL)

    def ended(count: int) -> bool:
        # the turn's run is over on the worker and its session lock released
        ran = value(scrape(metrics_server), "copilot_turn_duration_seconds_count")
        return ran - value(before, "copilot_turn_duration_seconds_count") == count and not lock.exists(
            rs.cluster_lock_key(alice.session.id)
        )

    # when
    for count, message in enumerate(messages, start=1):
        result = read_sse("POST", url, headers=alice.headers, json_body={"message": message})
        assert result.status == 200
        relayed += len(result.events)
        wait_until(lambda count=count: ended(count))
    lock.close()
    expected = {
        "copilot_turns_started_total": 3.0,
        'copilot_turns_finished_total{"outcome": "completed"}': 2.0,
        'copilot_turns_finished_total{"outcome": "stopped"}': 0.0,
        'copilot_turns_failed_total{"reason": "llm_error"}': 1.0,
        "copilot_turn_duration_seconds_count": 3.0,
        "copilot_turn_time_to_first_token_seconds_count": 2.0,
        'copilot_tool_calls_total{"outcome": "success", "tool": "calculator"}': 1.0,
        'copilot_tool_calls_total{"outcome": "error", "tool": "calculator"}': 0.0,
        "copilot_credits_charged_cents_total": 0.0,
    }
    # then: the worker records a turn's end just after its last chunk; poll for it
    deadline = time.monotonic() + 30
    while True:
        after = scrape(metrics_server)
        got = changes(before, after, TURN_METRICS)
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == expected
    assert value(after, "copilot_turns_running") == 0.0
    relay_count = value(after, "copilot_chunk_relay_latency_seconds_count") - value(
        before, "copilot_chunk_relay_latency_seconds_count"
    )
    assert 1 <= relay_count <= relayed
    queues = {labels for name, labels in after if name == "copilot_celery_queue_depth"}
    assert queues == {frozenset({("queue", "copilot_default")}), frozenset({("queue", settings.COPILOT_TURN_QUEUE)})}


def test_refusals_charges_webhooks_and_failures_of_this_process_reach_the_scrape(metrics_server: str) -> None:
    """The test process is one more process of the directory: what it counts, the scrape shows."""
    from ratelimits.models import TierLimit
    from ratelimits.services import turn_allowed_check, usage_record

    names: list[tuple[str, dict[str, str]]] = [
        ("copilot_rate_limit_refusals_total", {"window": "daily"}),
        ("copilot_rate_limit_refusals_total", {"window": "weekly"}),
        ("copilot_credits_charged_cents_total", {}),
        ("copilot_stripe_webhook_events_total", {"type": "", "outcome": "invalid_signature"}),
        ("copilot_stripe_webhook_events_total", {"type": "metrics.test", "outcome": "unhandled"}),
        ("copilot_stripe_webhook_events_total", {"type": "metrics.test", "outcome": "duplicate"}),
        ("copilot_redis_errors_total", {}),
        ("copilot_database_errors_total", {}),
    ]
    before = scrape(metrics_server)
    # a send over the daily limit
    TierLimit.objects.update_or_create(
        tier="FREE", defaults={"daily_limit_microdollars": 10_000, "weekly_limit_microdollars": 5_000_000}
    )
    user = UserFactory(username="metrics-user")
    usage_record(user=user, microdollars=10_000)
    with pytest.raises(RateLimitExceeded):
        turn_allowed_check(user=user)
    # a 7-cent charge, then its replay (charges nothing)
    credits_grant(user=user, amount_cents=100, reason="test", idempotency_key="metrics-grant")
    credits_spend(user=user, amount_cents=7, idempotency_key="metrics-spend", reason="test")
    credits_spend(user=user, amount_cents=7, idempotency_key="metrics-spend", reason="test")
    # a webhook with a bad signature, then one unknown event delivered twice
    with override_settings(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET):
        client = Client()
        event = {
            "id": "evt_metrics_1", "object": "event", "type": "metrics.test", "api_version": API_VERSION,
            "created": int(time.time()), "livemode": False, "data": {"object": {}},
        }  # fmt: skip
        payload = json.dumps(event)
        statuses = [
            client.post(
                "/api/billing/stripe/webhook", data=payload, content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature,
            ).status_code
            for signature in ("t=1,v1=bad", *[sign_payload(payload, WEBHOOK_SECRET)] * 2)
        ]  # fmt: skip
    assert statuses == [400, 200, 200]
    # a Redis and a database failure escaping views
    with override_settings(ROOT_URLCONF=__name__):
        client = Client(raise_request_exception=False)
        # a Redis outage answers 503 (tests/core/test_outages.py) and is still counted; a
        # DatabaseError that is no OperationalError/InterfaceError is no outage: 500
        assert client.get("/redis-down").status_code == 503
        assert client.get("/database-down").status_code == 500
        assert client.get("/value-error").status_code == 500  # neither: not counted
    after = scrape(metrics_server)
    assert changes(before, after, names) == {
        'copilot_rate_limit_refusals_total{"window": "daily"}': 1.0,
        'copilot_rate_limit_refusals_total{"window": "weekly"}': 0.0,
        "copilot_credits_charged_cents_total": 7.0,
        'copilot_stripe_webhook_events_total{"outcome": "invalid_signature", "type": ""}': 1.0,
        'copilot_stripe_webhook_events_total{"outcome": "unhandled", "type": "metrics.test"}': 1.0,
        'copilot_stripe_webhook_events_total{"outcome": "duplicate", "type": "metrics.test"}': 1.0,
        "copilot_redis_errors_total": 1.0,
        "copilot_database_errors_total": 1.0,
    }


def _redis_down(request: HttpRequest) -> HttpResponse:
    raise redis.ConnectionError("connection refused")


def _database_down(request: HttpRequest) -> HttpResponse:
    raise DatabaseError("server closed the connection")


def _value_error(request: HttpRequest) -> HttpResponse:
    raise ValueError("a bug")


urlpatterns = [
    path("redis-down", _redis_down),
    path("database-down", _database_down),
    path("value-error", _value_error),
]


def test_queue_depth_is_read_from_the_brokers_lists_priorities_included() -> None:
    # given: a queue with 3 messages at priority 0 and 2 at priority 6, and an empty one
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.rpush("metrics-q", "a", "b", "c")
    client.rpush("metrics-q\x06\x166", "d", "e")
    # when
    families = list(metrics.QueueDepthCollector(settings.REDIS_URL, ["metrics-q", "metrics-empty"]).collect())
    # then
    assert [(s.name, s.labels, s.value) for family in families for s in family.samples] == [
        ("copilot_celery_queue_depth", {"queue": "metrics-q"}, 5.0),
        ("copilot_celery_queue_depth", {"queue": "metrics-empty"}, 0.0),
    ]
    client.close()


def test_queue_depth_is_absent_for_a_rabbitmq_broker_and_no_connection_is_made() -> None:
    before = metrics.REDIS_ERRORS._value.get()
    assert list(metrics.QueueDepthCollector("amqp://guest@127.0.0.1:1//", ["copilot_default"]).collect()) == []
    assert metrics.REDIS_ERRORS._value.get() == before
