"""JSON size and depth caps: the DRF parser on real endpoints, the Stripe webhook, the WebSocket frames."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from billing.models import StripeEvent
from billing.stripe_gateway import API_VERSION
from chat import consumers
from chat.models import ChatSession
from copilot_site.core.parsers import BoundedJSONParser, JsonBodyRejected, json_depth, json_loads_bounded
from copilot_site.testing.fake_stripe.signing import sign_payload

TOO_DEEP = {"detail": "The JSON is nested deeper than 32 levels.", "code": "json_too_deep"}
TOO_LARGE = {"detail": "The request body is larger than 1048576 bytes.", "code": "request_too_large"}
WEBHOOK_SECRET = "whsec_parsers_test"  # noqa: S105 (a test signing secret)


def nested(depth: int, inner: str = "1") -> str:
    """`depth` nested arrays around `inner`."""
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "]]]]]]", "b": [[["[[[[[["]]]}', 4),
        (r'["\"[[[[[", [[]]]', 3),
        (r'["\\", [[]]]', 3),
        ('"unterminated [[[[[[', 0),
        ('["unterminated \\', 1),
        (nested(5000), 5000),
        ("]]]]]][[", 0),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_is_linear_on_escaped_quotes_that_never_close() -> None:
    # given: half a megabyte of `"\"` — a backtracking string pattern would take minutes
    text = '"\\' * 250_000
    # when
    started = time.monotonic()
    depth = json_depth(text)
    # then
    assert (depth, time.monotonic() - started < 2.0) == (0, True)


def test_json_loads_bounded_refuses_before_decoding() -> None:
    with pytest.raises(JsonBodyRejected) as deep:
        json_loads_bounded(nested(5000))
    with pytest.raises(JsonBodyRejected) as large:
        json_loads_bounded(b" " * (1024 * 1024 + 1))
    assert (deep.value.status, deep.value.code, deep.value.detail) == (400, "json_too_deep", TOO_DEEP["detail"])
    assert (large.value.status, large.value.code) == (413, "request_too_large")
    assert json_loads_bounded(nested(32)) == json.loads(nested(32))


def test_parser_reads_at_most_one_byte_past_the_cap(settings: Any) -> None:
    # given: a stream far longer than the cap and no declared length
    settings.COPILOT_API_MAX_BODY_BYTES = 100
    stream = io.BytesIO(b'{"a": "' + b"x" * 10_000 + b'"}')
    # when
    with pytest.raises(JsonBodyRejected) as refused:
        BoundedJSONParser().parse(stream, "application/json", {})
    # then
    assert (refused.value.status, stream.tell()) == (413, 101)


# ---------------------------------------------------------------- through the real URL conf


@pytest.mark.django_db
def test_body_over_the_size_cap_is_413_and_creates_nothing(alice_client: APIClient) -> None:
    # given: 3 MB of valid JSON
    body = json.dumps({"title": "x" * (3 * 1024 * 1024)})
    # when
    response = alice_client.post("/api/chat/sessions", data=body, content_type="application/json")
    # then
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert ChatSession.objects.count() == 0


@pytest.mark.django_db
def test_declared_length_over_the_cap_is_413_before_the_body_is_read(alice_client: APIClient, settings: Any) -> None:
    # given
    settings.COPILOT_API_MAX_BODY_BYTES = 10
    # when
    response = alice_client.post("/api/chat/sessions", data='{"title": "long enough"}', content_type="application/json")
    # then
    assert (response.status_code, response.json()) == (
        413,
        {"detail": "The request body is larger than 10 bytes.", "code": "request_too_large"},
    )
    assert ChatSession.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/chat/sessions"),
        ("patch", "/api/chat/sessions/{session}"),
        ("post", "/api/chat/sessions/{session}/stream"),
        ("post", "/api/billing/credits/top-up"),
        ("post", "/api/billing/subscription"),
        ("post", "/api/chat/usage/personal-cap"),
    ],
)
def test_five_thousand_deep_body_is_400_on_every_endpoint(
    alice_client: APIClient, alice: Any, method: str, path: str
) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="kept")
    body = '{"message": ' + nested(5000) + "}"
    # when
    response = getattr(alice_client, method)(
        path.format(session=session.pk), data=body, content_type="application/json"
    )
    # then
    assert (response.status_code, response.json()) == (400, TOO_DEEP)
    assert list(ChatSession.objects.values_list("title", flat=True)) == ["kept"]


@pytest.mark.django_db
def test_depth_at_the_cap_is_parsed_and_reaches_the_serializer(alice_client: APIClient) -> None:
    # given: an object holding 31 arrays is 32 levels deep
    body = '{"title": ' + nested(31) + "}"
    # when
    response = alice_client.post("/api/chat/sessions", data=body, content_type="application/json")
    # then
    assert (response.status_code, response.json()) == (400, {"title": ["Not a valid string."]})
    assert ChatSession.objects.count() == 0


@pytest.mark.django_db
def test_brackets_inside_strings_do_not_count(alice_client: APIClient) -> None:
    response = alice_client.post("/api/chat/sessions", data={"title": "[" * 150}, format="json")
    assert (response.status_code, response.json()["title"]) == (201, "[" * 150)


# ---------------------------------------------------------------- the Stripe webhook


def _signed_post(client: APIClient, payload: str) -> Any:
    return client.post(
        "/api/billing/stripe/webhook",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(payload, WEBHOOK_SECRET),
    )


@pytest.mark.django_db
def test_validly_signed_deep_webhook_is_400_and_records_nothing(api_client: APIClient, settings: Any) -> None:
    # given
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    payload = (
        f'{{"id": "{event_id}", "object": "event", "api_version": "{API_VERSION}", "created": {int(time.time())},'
        f' "type": "invoice.paid", "data": {{"object": {{"deep": {nested(5000)}}}}}}}'
    )
    # when
    response = _signed_post(api_client, payload)
    # then
    assert (response.status_code, response.json()) == (400, {"detail": TOO_DEEP["detail"]})
    assert StripeEvent.objects.count() == 0


@pytest.mark.django_db
def test_deep_webhook_with_a_bad_signature_is_refused_for_the_signature(api_client: APIClient, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    response = api_client.post(
        "/api/billing/stripe/webhook",
        data=nested(5000),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(nested(5000), "whsec_someone_else"),
    )
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid signature"})


@pytest.mark.django_db
def test_webhook_over_the_size_cap_is_413_and_records_nothing(api_client: APIClient, settings: Any) -> None:
    # given
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.COPILOT_API_MAX_BODY_BYTES = 1000
    payload = json.dumps({"id": "evt_big", "type": "invoice.paid", "data": {"object": {"pad": "x" * 2000}}})
    # when
    response = _signed_post(api_client, payload)
    # then
    assert (response.status_code, response.json()) == (413, {"detail": "The request body is larger than 1000 bytes."})
    assert StripeEvent.objects.count() == 0


# ---------------------------------------------------------------- WebSocket frames


@pytest.mark.django_db
def test_deep_websocket_frame_is_an_invalid_frame_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # given
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    sends: list[Any] = []

    async def yes(*args: Any) -> bool:
        return True

    async def send(*args: Any) -> None:
        sends.append(args)

    monkeypatch.setattr(consumers, "_owns_session", yes)
    monkeypatch.setattr(consumers, "_send", send)

    async def exchange() -> list[Any]:
        communicator = WebsocketCommunicator(consumers.ChatConsumer.as_asgi(), "/ws/chat/s/")
        communicator.scope["user"] = SimpleNamespace(is_authenticated=True, pk=1)
        communicator.scope["url_route"] = {"kwargs": {"session_id": "s"}}
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_to(text_data='{"type": "send", "message": ' + nested(5000, '"hi"') + "}")
        frames = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()
        return frames

    # when
    frames = asyncio.run(exchange())
    # then
    assert frames == [
        {"type": "ready", "session_id": "s"},
        {"type": "error", "code": "invalid_frame", "message": "The JSON is nested deeper than 32 levels."},
    ]
    assert sends == []
