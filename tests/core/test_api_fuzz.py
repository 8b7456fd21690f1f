"""A bounded, reproducible schema-driven fuzz of the whole API against the real server.

daphne (with payments on, pointed at the project's fake Stripe) and a real Celery worker
run the scripted LLM; the schema is loaded from the server's own `/api/schema/`. Every
operation is fuzzed by schemathesis with Hypothesis derandomized (the same cases every
run), in positive and negative mode, as a staff user holding an API key (Bearer):

- once with the generated path parameters (nearly always an unknown id: 404),
- once with a real one (a session of the user, the user's own id for the staff endpoints),
  a fresh session per operation so that `DELETE` or a running turn touches no other.

Each response must not be a 5xx and must match the schema: status code, content type
and body. Nothing is excluded: no operation here (session deletion included, thanks to
the fresh session) makes the others meaningless. All traffic stays on loopback.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat.models import ChatSession
from chat.services.attachments import attachment_create
from chat.services.shares import share_create
from copilot_site.accounts.services import api_key_create
from copilot_site.core.embedded_redis import free_port
from copilot_site.testing.fake_stripe import FakeStripeServer
from copilot_site.testing.payments_env import payments_env
from copilot_site.testing.processes import ManagedProcess, start_daphne
from tests.conftest import ARTIFACTS
from tests.core.test_openapi import STATUSES
from tests.factories import UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.fuzz, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_fuzz"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation and mode: the whole fuzz stays within about two minutes on two cores.
MAX_EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 30, schemathesis.GenerationMode.NEGATIVE: 20}
# Operations whose fuzzed requests must reach a success at least once (the others need a
# state the fuzz does not build: a reached limit, Stripe's signature, an allowed redirect).
SUCCEEDS = {
    "GET /api/chat/search",
    "GET /api/chat/sessions",
    "POST /api/chat/sessions",
    "GET /api/chat/sessions/{session_id}",
    "PATCH /api/chat/sessions/{session_id}",
    "DELETE /api/chat/sessions/{session_id}",
    "POST /api/chat/sessions/{session_id}/stream",
    "GET /api/chat/sessions/{session_id}/stream",
    "DELETE /api/chat/sessions/{session_id}/stream",
    "POST /api/chat/sessions/{session_id}/cancel",
    "GET /api/chat/sessions/{session_id}/export",
    "POST /api/chat/sessions/{session_id}/shares",
    "GET /api/chat/shares",
    "DELETE /api/chat/shares/{share_id}",
    "GET /api/chat/sessions/{session_id}/messages/pending",
    "GET /api/chat/sessions/{session_id}/ui-messages",
    "GET /api/chat/usage",
    "POST /api/chat/usage/personal-cap",
    "GET /api/admin/users/{user_ref}/rate-limit",
    "POST /api/admin/users/{user_ref}/rate-limit/reset",
    "POST /api/admin/users/{user_ref}/tier",
    "GET /api/billing/credits",
    "GET /api/billing/subscription",
    "POST /api/billing/subscription",
}
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture(scope="module")
def fuzz_site(live_env: dict[str, str], celery_worker: ManagedProcess) -> Iterator[str]:
    """daphne with payments and credits on against a fake Stripe; its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    stripe = FakeStripeServer(webhook_url=f"{base_url}/api/billing/stripe/webhook", webhook_secret=WEBHOOK_SECRET)
    stripe.start()
    env = payments_env(live_env, base_url=base_url, stripe=stripe, secret=WEBHOOK_SECRET)
    server, _ = start_daphne(env, ARTIFACTS / "logs", port=port)
    yield base_url
    server.stop()
    stripe.stop()


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    *,
    base_url: str,
    headers: dict[str, str],
    path_parameters: dict[str, Any] | None,
    seen: Counter[tuple[str, int]],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(FUZZ_SETTINGS, max_examples=MAX_EXAMPLES[mode])
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        seen[(operation.label, response.status_code)] += 1

    run()


def _wait_idle(base_url: str, headers: dict[str, str], session_id: str, *, timeout_s: float = 30.0) -> None:
    """Until the session's turn (if the fuzz started one) has ended: bounded poll through the API."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = requests.get(f"{base_url}/api/chat/sessions/{session_id}", headers=headers, timeout=10)
        if response.status_code == 404 or response.json()["active_turn"] is None:
            return
        time.sleep(0.2)
    raise AssertionError(f"the turn of session {session_id} did not end within {timeout_s}s")


def _share_of_a_new_chat(user: Any) -> Any:
    session = ChatSession.objects.create(user=user, title="fuzz")
    return share_create(user=user, session_id=session.pk, hide_tool_internals=False).share.pk


def test_the_whole_api_survives_a_schema_driven_fuzz(fuzz_site: str) -> None:
    # given
    user = UserFactory(username="fuzzer", email="fuzzer@example.com", is_staff=True)
    _, key = api_key_create(user=user, name="fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{fuzz_site}/api/schema/?format=json", headers=headers, timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    real_values: dict[str, Callable[[], Any]] = {
        "session_id": lambda: str(ChatSession.objects.create(user=user, title="fuzz").pk),
        "user_ref": lambda: str(user.pk),
        "file_id": lambda: str(attachment_create(owner=user, name="fuzz.txt", stream=io.BytesIO(b"fuzz file\n")).pk),
        "sequence": lambda: "0",
        "share_id": lambda: str(_share_of_a_new_chat(user)),
        "approval_id": lambda: str(uuid.uuid4()),  # no such approval: the 404 path with a well-formed id
    }
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    # when
    started = time.monotonic()
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        passes: list[dict[str, Any] | None] = [None]
        if names:
            passes.append({name: real_values[name]() for name in names})
        for path_parameters in passes:
            for mode in MAX_EXAMPLES:
                try:
                    _fuzz_operation(
                        operation, mode, base_url=fuzz_site, headers=headers, path_parameters=path_parameters, seen=seen
                    )
                # Every operation is fuzzed and all failures reported together; schemathesis
                # raises a group of them (a BaseExceptionGroup).
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.label} [{mode.value}, {path_parameters}]: {exc}")
            if path_parameters and "session_id" in path_parameters:
                _wait_idle(fuzz_site, headers, path_parameters["session_id"])
    elapsed = time.monotonic() - started
    # then
    assert failures == [], "\n\n".join(failures)
    assert {operation.label for operation in operations} == {f"{m.upper()} {p}" for m, p in STATUSES}
    assert {label for label, _ in seen} == {operation.label for operation in operations}
    succeeded = {label for label, status in seen if 200 <= status < 300}
    assert succeeded >= SUCCEEDS, sorted(SUCCEEDS - succeeded)
    for (label, status), count in sorted(seen.items()):
        print(f"{label}: {status} x{count}")
    print(f"fuzzed {len(operations)} operations in {elapsed:.0f}s")
