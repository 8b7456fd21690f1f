"""A resume id that looks like a stream id but is past Redis's 64-bit range replays from the start.

Found by probing `GET …/stream` the way the schema-driven fuzz does: `after` /
`Last-Event-ID` of `<ms>-<seq>` digits too large for Redis reached `XREAD`, which refused
it mid-stream, so the client got a 200 and then a broken stream with no `finish`.
"""

from __future__ import annotations

import pytest

from chat.turns.follow import _Position
from tests.chat.turns.helpers import fake, person, read_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOO_LARGE = [f"{2**64}-0", f"1-{2**64}", "9" * 30]


@pytest.mark.parametrize("after", TOO_LARGE)
def test_an_id_past_the_64_bit_range_is_read_as_no_position(after: str) -> None:
    position = _Position(after)
    assert (position.id, position.key) == ("0-0", (0, 0))


def test_the_largest_redis_id_is_still_a_position() -> None:
    largest = f"{2**64 - 1}-{2**64 - 1}"
    assert _Position(largest).id == largest


@pytest.mark.parametrize("header", [True, False])
def test_resuming_a_running_turn_with_a_too_large_id_replays_it_whole(stack: str, header: bool) -> None:
    # given: a slow turn, followed from its start by its sender
    alice = person("alice")
    text = "".join(f"w{i} " for i in range(12))
    message = "go " + fake({"text": text, "chunk_size": 3, "delay_ms": 40})
    url = f"{stack}/api/chat/sessions/{alice.session.id}/stream"
    first = read_sse(
        "POST", url, headers=alice.headers, json_body={"message": message}, stop_when=lambda r: len(r.events) >= 2
    )
    assert first.status == 200
    # when: a listener resumes with an id too large for Redis
    after = f"{2**64}-0"
    if header:
        resumed = read_sse("GET", url, headers={**alice.headers, "Last-Event-ID": after}, timeout=20)
    else:
        resumed = read_sse("GET", f"{url}?after={after}", headers=alice.headers, timeout=20)
    # then: the whole turn, from `start` to `finish`, then [DONE]
    assert resumed.status == 200
    assert resumed.types[0] == "start"
    assert resumed.types[-1] == "finish"
    assert resumed.text() == text
    assert resumed.done is True
