"""The turn request: what dispatch hands the worker through Celery, as JSON."""

from __future__ import annotations

import json

import pytest

from chat.engine.request import InvalidTurnPayload, TurnRequest


def test_a_request_survives_the_json_round_trip_exactly():
    request = TurnRequest(
        session_id="6f1c0b1e-0000-4000-8000-000000000001",
        turn_id="t-1",
        user_id=7,
        mode="fast",
        model="advanced",
        page_context={"url": "https://example.org/a", "content": "page"},
        arrived_at=1700000000.25,
        claimed_at=1700000000.5,
    )
    payload = json.loads(json.dumps(request.to_payload()))
    assert payload == {
        "session_id": "6f1c0b1e-0000-4000-8000-000000000001",
        "turn_id": "t-1",
        "user_id": 7,
        "mode": "fast",
        "model": "advanced",
        "page_context": {"url": "https://example.org/a", "content": "page"},
        "arrived_at": 1700000000.25,
        "claimed_at": 1700000000.5,
    }
    assert TurnRequest.from_payload(payload) == request


def test_the_previous_releases_payload_is_read():
    old = {
        "session_id": "s",
        "user_id": 3,
        "turn_id": "t",
        "mode": None,
        "model": None,
        "context": {"url": "u"},
        "request_arrival_at": 12.5,
    }
    assert TurnRequest.from_payload(old) == TurnRequest(
        session_id="s", turn_id="t", user_id=3, page_context={"url": "u"}, arrived_at=12.5, claimed_at=12.5
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"turn_id": "t", "user_id": 1}, "turn payload has no 'session_id'"),
        ({"session_id": "s", "turn_id": "t", "user_id": "1"}, "turn payload's user_id is not an integer"),
        ({"session_id": "s", "turn_id": "t", "user_id": True}, "turn payload's user_id is not an integer"),
        ({"session_id": "s", "turn_id": "t", "user_id": 1, "mode": 3}, "turn payload holds 3 where a string"),
        ({"session_id": "s", "turn_id": "t", "user_id": 1, "page_context": []}, "page_context is not an object"),
    ],
)
def test_a_payload_that_is_not_a_request_is_refused(payload, message):
    with pytest.raises(InvalidTurnPayload) as caught:
        TurnRequest.from_payload(payload)
    assert message in str(caught.value)
