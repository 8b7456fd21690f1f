"""End-to-end transport tests against a daphne with both transport patches turned off.

The tests are the transport suite's own, collected here a second time: their `stack`
fixture is overridden below with a daphne started with `COPILOT_TWISTED_WRITE_PATCH=0`
and `COPILOT_WS_FRAME_PATCH=0`, so SSE and WebSocket traffic goes through Twisted's
and autobahn's own write paths. Together they cover SSE streaming and resume, WebSocket
frames of every length encoding, fan-out to two sockets, WebSocket resume and the
subscribe socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot_site.testing.processes import start_daphne
from tests.chat.turns.test_e2e_turns import (  # noqa: F401 - collected here against the patches-off daphne
    test_disconnect_then_resume_misses_nothing_and_repeats_nothing,
    test_resume_over_websocket_replays_from_after,
    test_sse_post_streams_a_whole_turn_with_ai_sdk_framing,
    test_two_websockets_see_identical_event_sequences,
    test_websocket_frames_of_every_length_arrive_intact,
)
from tests.chat.turns.test_subscribe_socket import (  # noqa: F401 - as above
    test_a_new_subscribe_replaces_the_current_one_and_a_foreign_chat_changes_nothing,
    test_a_subscription_replays_the_running_turn_as_sse_payloads_and_ends_on_finish,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOGS = Path(__file__).resolve().parents[2] / "test-artifacts" / "logs"
PATCHES_OFF = {"COPILOT_TWISTED_WRITE_PATCH": "0", "COPILOT_WS_FRAME_PATCH": "0"}


@pytest.fixture(scope="module")
def daphne_patches_off(live_env: dict[str, str]) -> Iterator[str]:
    """A real daphne with both transport patches off (read from its startup log); its base URL."""
    server, port = start_daphne({**live_env, **PATCHES_OFF}, LOGS)
    try:
        deadline = time.monotonic() + 30
        while "Transport patches installed:" not in server.log() and time.monotonic() < deadline:
            server.assert_alive()
            time.sleep(0.05)
        installed = [line.split("Transport patches installed: ")[1] for line in server.log().splitlines()
                     if "Transport patches installed: " in line]  # fmt: skip
        assert installed == ["none"], server.log()[-4000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def stack(daphne_patches_off: str, celery_worker: Any, fake_llm: Any) -> str:
    """The transport suite's `stack`, served by the patches-off daphne."""
    fake_llm.reset()
    return daphne_patches_off
