"""The OpenAPI schema at /api/schema/ tells generated clients the truth.

Each operation's own request body, both ways to authenticate, the Stripe webhook, the
streams as `text/event-stream`, and exactly the statuses each operation can answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from chat.models import ChatSession

BASE_DIR = Path(__file__).resolve().parents[2]
STREAM = "/api/chat/sessions/{session_id}/stream"
WEBHOOK = "/api/billing/stripe/webhook"

# Every status each operation documents; each one is a response the view can give.
STATUSES: dict[tuple[str, str], set[str]] = {
    ("get", "/api/admin/users/{user_ref}/rate-limit"): {"200", "401", "403", "404", "429"},
    ("post", "/api/admin/users/{user_ref}/rate-limit/reset"): {"200", "400", "401", "403", "404", "413", "429", "500"},
    ("post", "/api/admin/users/{user_ref}/tier"): {"200", "400", "401", "403", "404", "413", "429"},
    ("get", "/api/billing/credits"): {"200", "400", "401", "429"},
    ("post", "/api/billing/credits/top-up"): {"200", "400", "401", "403", "413", "422", "429", "502", "503"},
    ("get", "/api/billing/subscription"): {"200", "401", "429"},
    ("post", "/api/billing/subscription"): {"200", "400", "401", "403", "413", "422", "429", "502", "503"},
    ("get", "/api/chat/search"): {"200", "400", "401", "429"},
    ("get", "/api/chat/sessions"): {"200", "400", "401", "429"},
    ("post", "/api/chat/sessions"): {"201", "400", "401", "403", "413", "429"},
    ("get", "/api/chat/sessions/{session_id}"): {"200", "400", "401", "404", "429"},
    ("patch", "/api/chat/sessions/{session_id}"): {"200", "400", "401", "403", "404", "413", "429"},
    ("delete", "/api/chat/sessions/{session_id}"): {"204", "401", "403", "404", "429"},
    ("get", "/api/chat/sessions/{session_id}/export"): {"200", "400", "401", "404", "429"},
    ("post", "/api/chat/sessions/{session_id}/approvals/{approval_id}"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "429",
    },  # fmt: skip
    ("post", "/api/chat/sessions/{session_id}/cancel"): {"200", "401", "403", "404", "429"},
    ("get", "/api/chat/sessions/{session_id}/messages/pending"): {"200", "401", "404", "429"},
    ("post", "/api/chat/sessions/{session_id}/messages/{sequence}/versions"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "429",
        "503",
    },  # fmt: skip
    ("put", "/api/chat/sessions/{session_id}/branch"): {"200", "400", "401", "403", "404", "409", "413", "429"},
    ("get", STREAM): {"200", "204", "401", "404", "429"},
    ("post", STREAM): {"200", "202", "400", "401", "403", "404", "413", "429", "503"},
    ("delete", STREAM): {"204", "401", "403", "404", "429"},
    ("post", "/api/chat/sessions/{session_id}/shares"): {"201", "400", "401", "403", "404", "413", "429"},
    ("get", "/api/chat/shares"): {"200", "400", "401", "429"},
    ("delete", "/api/chat/shares/{share_id}"): {"204", "401", "403", "404", "429"},
    ("get", "/api/chat/sessions/{session_id}/ui-messages"): {"200", "400", "401", "404", "429"},
    ("get", "/api/chat/usage"): {"200", "401", "429"},
    ("post", "/api/chat/usage/personal-cap"): {"200", "400", "401", "403", "413", "429"},
    ("post", "/api/chat/usage/reset"): {"200", "400", "401", "402", "403", "429", "503"},
    ("post", WEBHOOK): {"200", "400", "413", "500", "503"},
    ("get", "/api/chat/files"): {"200", "400", "401", "429"},
    ("post", "/api/chat/files"): {"201", "400", "401", "403", "413", "415", "429"},
    ("get", "/api/chat/files/{file_id}"): {"200", "401", "404", "429"},
    ("delete", "/api/chat/files/{file_id}"): {"204", "401", "403", "404", "429"},
    ("get", "/api/chat/files/{file_id}/content"): {"200", "401", "404", "429"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return result


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node["$ref"]
    assert ref.startswith("#/components/schemas/")
    resolved: dict[str, Any] = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved


def _request_schema(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = schema["paths"][path][method]["requestBody"]["content"]
    assert list(content) == ["application/json"]
    return _resolve(schema, content["application/json"]["schema"])


@pytest.mark.parametrize(
    ("method", "path", "properties", "required"),
    [
        ("post", "/api/chat/sessions", ["title"], []),
        ("patch", "/api/chat/sessions/{session_id}", ["title"], ["title"]),
        (
            "post",
            STREAM,
            ["message", "client_message_id", "context", "file_ids", "mode", "model", "delivery"],
            ["message"],
        ),
        ("post", "/api/chat/usage/personal-cap", ["daily_cap_microdollars"], ["daily_cap_microdollars"]),
        ("post", "/api/admin/users/{user_ref}/rate-limit/reset", ["reset_weekly", "reason"], []),
        ("post", "/api/admin/users/{user_ref}/tier", ["tier", "reason"], ["tier"]),
        (
            "post",
            "/api/billing/credits/top-up",
            ["amount", "success_url", "cancel_url"],
            ["amount", "success_url", "cancel_url"],
        ),
        ("post", "/api/billing/subscription", ["tier", "success_url", "cancel_url"], ["tier"]),
    ],
)
def test_each_operation_documents_its_own_request_body(
    schema: dict[str, Any], method: str, path: str, properties: list[str], required: list[str]
) -> None:
    body = _request_schema(schema, method, path)
    assert list(body["properties"]) == properties
    assert sorted(body.get("required", [])) == sorted(required)


def test_component_names_are_unique_to_their_operation(schema: dict[str, Any]) -> None:
    refs = {
        (method, path): schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for method, path in [
            ("post", "/api/chat/sessions"),
            ("post", STREAM),
            ("post", "/api/chat/usage/personal-cap"),
            ("post", "/api/admin/users/{user_ref}/rate-limit/reset"),
            ("post", "/api/admin/users/{user_ref}/tier"),
        ]
    }
    assert refs == {
        ("post", "/api/chat/sessions"): "#/components/schemas/SessionCreateInput",
        ("post", STREAM): "#/components/schemas/MessageSendInput",
        ("post", "/api/chat/usage/personal-cap"): "#/components/schemas/PersonalCapSetInput",
        ("post", "/api/admin/users/{user_ref}/rate-limit/reset"): "#/components/schemas/StaffRateLimitResetInput",
        ("post", "/api/admin/users/{user_ref}/tier"): "#/components/schemas/StaffTierSetInput",
    }


def test_bearer_and_cookie_security_schemes_are_declared(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"] == {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key",
            "description": "`Authorization: Bearer <key>` with an API key made on the account page (`cpk_…`).",
        },
        "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    }
    securities = {
        (method, path): op["security"]
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if path != WEBHOOK
    }
    assert len(securities) == len(STATUSES) - 1
    assert all(security == [{"bearerAuth": []}, {"cookieAuth": []}] for security in securities.values())


def test_the_stripe_webhook_is_documented_without_client_auth(schema: dict[str, Any]) -> None:
    operation = schema["paths"][WEBHOOK]["post"]
    assert list(schema["paths"][WEBHOOK]) == ["post"]
    assert operation["security"] == []
    assert [(p["in"], p["name"], p["required"]) for p in operation["parameters"]] == [
        ("header", "Stripe-Signature", True)
    ]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["required"] == ["received", "outcome"]


def test_the_streams_answer_text_event_stream(schema: dict[str, Any]) -> None:
    post = schema["paths"][STREAM]["post"]["responses"]
    get = schema["paths"][STREAM]["get"]["responses"]
    event_ref = {"$ref": "#/components/schemas/StreamEvent"}
    assert post["200"]["content"] == {"text/event-stream": {"schema": event_ref}}
    assert get["200"]["content"] == {"text/event-stream": {"schema": event_ref}}
    event = _resolve(schema, event_ref)
    assert list(event["properties"]) == ["id", "event", "data"]
    assert event["required"] == ["data"]
    assert "content" not in get["204"]
    queued = _resolve(schema, post["202"]["content"]["application/json"]["schema"])
    assert queued["required"] == ["buffer_length", "max_buffer_length", "turn_in_flight"]


def test_every_operation_documents_exactly_the_statuses_it_answers(schema: dict[str, Any]) -> None:
    documented = {
        (method, path): set(op["responses"]) for path, ops in schema["paths"].items() for method, op in ops.items()
    }
    assert documented == STATUSES


def test_every_error_response_has_a_json_body(schema: dict[str, Any]) -> None:
    errors = [
        (method, path, status, response)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        for status, response in op["responses"].items()
        if int(status) >= 400
    ]
    assert errors
    for method, path, status, response in errors:
        body = response["content"]["application/json"]["schema"]
        expected = {"type": "object", "additionalProperties": {}} if status == "400" and path != WEBHOOK else None
        if expected is not None:
            assert body == expected, (method, path, status)
        else:
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


def test_spectacular_validates_with_no_warning() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "copilot_site.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", os.devnull],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    assert "Error" not in result.stderr.replace("ERRORS", "")


# ------------------------------------------------ the shared error statuses, answered for real


def _operations(schema: dict[str, Any], status: str) -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if status in op["responses"] and path != WEBHOOK
    )


def _url(path: str, session_id: object, user_id: object) -> str:
    path = path.replace("{approval_id}", str(uuid.uuid4())).replace("{sequence}", "0")
    return path.replace("{session_id}", str(session_id)).replace("{user_ref}", str(user_id))


@pytest.mark.django_db
def test_every_operation_answers_401_without_credentials(schema: dict[str, Any]) -> None:
    operations = _operations(schema, "401")
    assert len(operations) == len(STATUSES) - 1
    client = APIClient()
    answers = {
        (method, path): getattr(client, method)(_url(path, uuid.uuid4(), 1), {}, format="json")
        for method, path in operations
    }
    assert {key: response.status_code for key, response in answers.items()} == dict.fromkeys(operations, 401)
    assert {response.json()["detail"] for response in answers.values()} == {
        "Authentication credentials were not provided."
    }
    assert {response["WWW-Authenticate"] for response in answers.values()} == {'Bearer realm="api"'}


@pytest.mark.django_db
def test_every_operation_documenting_403_refuses_a_cookie_write_without_csrf(
    schema: dict[str, Any], staff: Any
) -> None:
    session = ChatSession.objects.create(user=staff, title="kept")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    operations = [(m, p) for m, p in _operations(schema, "403") if m != "get"]
    answers = {
        (method, path): getattr(client, method)(_url(path, session.pk, staff.pk), {}, format="json")
        for method, path in operations
    }
    assert {key: response.status_code for key, response in answers.items()} == dict.fromkeys(operations, 403)
    assert {response.json()["detail"] for response in answers.values()} == {"CSRF Failed: CSRF cookie not set."}
    assert ChatSession.objects.get().title == "kept"
    # The one GET documenting 403 is a staff endpoint.
    assert [(m, p) for m, p in _operations(schema, "403") if m == "get"] == [
        ("get", "/api/admin/users/{user_ref}/rate-limit")
    ]


@pytest.mark.django_db
def test_every_operation_documenting_413_refuses_a_body_over_the_cap(
    schema: dict[str, Any], staff: Any, settings: Any
) -> None:
    settings.COPILOT_API_MAX_BODY_BYTES = 100
    session = ChatSession.objects.create(user=staff, title="kept")
    client = APIClient()
    client.force_authenticate(staff)
    body = '{"title": "' + "x" * 200 + '"}'
    # The upload takes multipart only: its 413 is the file's size (tests/chat/files/test_file_api.py).
    operations = [op for op in _operations(schema, "413") if op != ("post", "/api/chat/files")]
    answers = {
        (method, path): getattr(client, method)(
            _url(path, session.pk, staff.pk), data=body, content_type="application/json"
        )
        for method, path in operations
    }
    assert {key: response.status_code for key, response in answers.items()} == dict.fromkeys(operations, 413)
    assert {response.json()["code"] for response in answers.values()} == {"request_too_large"}
    assert ChatSession.objects.get().title == "kept"


@pytest.mark.django_db
def test_every_operation_documenting_429_refuses_an_address_past_the_api_key_failure_limit(
    schema: dict[str, Any], settings: Any
) -> None:
    settings.COPILOT_API_KEY_FAILURE_LIMIT = 2
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer cpk_wrong")
    warm_up = [client.get("/api/chat/usage").status_code for _ in range(2)]
    operations = _operations(schema, "429")
    answers = {
        (method, path): getattr(client, method)(_url(path, uuid.uuid4(), 1), {}, format="json")
        for method, path in operations
    }
    assert warm_up == [401, 401]
    assert len(operations) == len(STATUSES) - 1
    assert {key: response.status_code for key, response in answers.items()} == dict.fromkeys(operations, 429)
    assert all(int(response["Retry-After"]) > 0 for response in answers.values())
    details = {response.json()["detail"] for response in answers.values()}
    assert all(
        re.fullmatch(r"Too many failed API key attempts from this address\. Expected available in \d+ seconds\.", d)
        for d in details
    ), details
