"""The turn registry against the real Redis server: claim, completion, locks, pending."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.turns import scripts as rs
from chat.turns.follow import follow_turn
from chat.turns.pending import (
    PENDING_DUPLICATE_QUEUED,
    PENDING_DUPLICATE_RUNNING,
    PENDING_FULL,
    PendingMessage,
    pending_drain,
    pending_peek,
    pending_push,
    pending_requeue,
)
from chat.turns.registry import mark_session_completed, turn_cancel_request, turn_claim, turn_meta_get
from tests.chat.turns.helpers import publish_chunk

# Completion records the turn's duration on its last assistant row (none exists here).
pytestmark = pytest.mark.django_db

SID = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def r() -> redis.Redis[bytes]:
    return rs.redis_client()


def test_only_one_of_many_concurrent_claims_wins(r: redis.Redis[bytes]) -> None:
    # given
    results: list[str | None] = []
    barrier = threading.Barrier(20)

    def claim() -> None:
        barrier.wait()
        results.append(turn_claim(session_id=SID, user_id=7, origin_id="chat_stream", origin_name="chat"))

    threads = [threading.Thread(target=claim) for _ in range(20)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    winners = [t for t in results if t is not None]
    assert len(winners) == 1
    meta = turn_meta_get(SID)
    assert meta is not None
    assert (meta.status, meta.turn_id, meta.user_id, meta.origin_id) == ("running", winners[0], "7", "chat_stream")
    assert 0 < r.ttl(rs.turn_meta_key(SID)) <= 3600


def test_completion_is_once_frees_the_lock_and_publishes_finish(r: redis.Redis[bytes]) -> None:
    # given
    turn_id = turn_claim(session_id=SID, user_id=1, origin_id="x", origin_name="x")
    assert turn_id is not None
    r.set(rs.cluster_lock_key(SID), "worker-a:task-1")
    # when
    first = mark_session_completed(SID, error_message="Boom")
    r.set(rs.cluster_lock_key(SID), "worker-b:task-2")  # a successor's lock
    second = mark_session_completed(SID)
    # then
    assert (first, second) == (True, False)
    assert turn_meta_get(SID).status == "failed"  # type: ignore[union-attr]
    assert r.get(rs.cluster_lock_key(SID)) == b"worker-b:task-2"  # the second call deleted nothing
    chunks = [json.loads(f[b"data"]) for _, f in r.xrange(rs.turn_stream_key(turn_id))]
    assert chunks == [{"type": "error", "errorText": "Boom"}, {"type": "finish"}]


def test_a_stale_owner_cannot_release_a_successors_lock(r: redis.Redis[bytes]) -> None:
    # given: A holds the lock, it is deleted externally (force-release), B acquires it
    key = rs.cluster_lock_key(SID)
    assert r.set(key, "A", nx=True, ex=300)
    r.delete(key)
    assert r.set(key, "B", nx=True, ex=300)
    # when: A's late release and refresh (the script its supervisor runs)
    released = rs.compare_and_delete(key, "A")
    refreshed = bool(
        r.eval(rs.REFRESH_TURN_LOCKS, 3, key, rs.stream_lock_key(SID), rs.turn_meta_key(SID), "A", 999, "t", 120, 3600)
    )
    # then
    assert (released, refreshed) == (False, False)
    assert r.get(key) == b"B"
    assert r.ttl(key) <= 300
    assert rs.compare_and_delete(key, "B") is True
    assert r.exists(key) == 0


def test_a_full_pending_buffer_refuses_the_push_and_keeps_the_first_ten(r: redis.Redis[bytes]) -> None:
    # when
    lengths = [pending_push(SID, PendingMessage(content=f"m{i}")) for i in range(13)]
    # then: the three that do not fit are refused; nothing queued is dropped
    assert lengths == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, PENDING_FULL, PENDING_FULL, PENDING_FULL]
    assert [m.content for m in pending_peek(SID)] == [f"m{i}" for i in range(10)]
    assert 0 < r.ttl(rs.pending_key(SID)) <= 3600
    assert [m.content for m in pending_drain(SID)] == [f"m{i}" for i in range(10)]
    assert pending_drain(SID) == []
    # and once drained the buffer takes messages again
    assert pending_push(SID, PendingMessage(content="m13")) == 1


def test_a_client_message_id_is_queued_once(r: redis.Redis[bytes]) -> None:
    # given
    assert pending_push(SID, PendingMessage(content="a", client_message_id="c-1")) == 1
    assert pending_push(SID, PendingMessage(content="b")) == 2
    # when / then: the same id again, with any text, is not queued; other ids and no id are
    assert pending_push(SID, PendingMessage(content="a again", client_message_id="c-1")) == PENDING_DUPLICATE_QUEUED
    assert pending_push(SID, PendingMessage(content="b")) == 3
    assert pending_push(SID, PendingMessage(content="c", client_message_id="c-2")) == 4
    assert [(m.content, m.client_message_id) for m in pending_peek(SID)] == [
        ("a", "c-1"), ("b", None), ("b", None), ("c", "c-2")
    ]  # fmt: skip


def test_the_running_turns_own_client_message_id_is_not_queued(r: redis.Redis[bytes]) -> None:
    # given: a turn claimed for the message with id c-1
    turn_id = turn_claim(
        session_id=SID, user_id=7, origin_id="chat_stream", origin_name="chat", client_message_id="c-1"
    )
    assert turn_id is not None
    # when / then
    assert pending_push(SID, PendingMessage(content="x", client_message_id="c-1")) == PENDING_DUPLICATE_RUNNING
    assert pending_peek(SID) == []
    # and once that turn has ended, the id is no longer the running turn's
    assert mark_session_completed(SID, turn_id=turn_id) is True
    assert pending_push(SID, PendingMessage(content="x", client_message_id="c-1")) == 1


def test_pending_peek_does_not_consume_and_malformed_entries_are_skipped(r: redis.Redis[bytes]) -> None:
    pending_push(SID, PendingMessage(content="first"))
    r.rpush(rs.pending_key(SID), b"{not json", json.dumps({"content": ""}), "\xff".encode("latin-1"))
    pending_push(SID, PendingMessage(content="second", context={"url": "https://example.com"}))
    assert [m.content for m in pending_peek(SID)] == ["first", "second"]
    assert r.llen(rs.pending_key(SID)) == 5
    drained = pending_drain(SID)
    assert [(m.content, m.context) for m in drained] == [("first", None), ("second", {"url": "https://example.com"})]


def test_requeue_restores_the_original_order_at_the_head() -> None:
    pending_push(SID, PendingMessage(content="later"))
    pending_requeue(SID, [PendingMessage(content="a"), PendingMessage(content="b")])
    assert [m.content for m in pending_peek(SID)] == ["a", "b", "later"]


def test_concurrent_pushes_and_drains_lose_and_duplicate_nothing() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def push(i: int) -> None:
        for j in range(5):
            pending_push(SID, PendingMessage(content=f"{i}-{j}"))

    def drain() -> None:
        for _ in range(20):
            got = pending_drain(SID)
            with lock:
                seen.extend(m.content for m in got)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)] + [threading.Thread(target=drain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen.extend(m.content for m in pending_drain(SID))
    assert sorted(seen) == sorted(f"{i}-{j}" for i in range(2) for j in range(5))


def test_cancel_on_an_idle_session_reports_no_active_session() -> None:
    assert turn_cancel_request(SID) == {"cancelled": True, "reason": "no_active_session"}


def test_cancel_unconfirmed_within_5s_fails_the_turn_and_frees_the_lock(r: redis.Redis[bytes]) -> None:
    turn_id = turn_claim(session_id=SID, user_id=1, origin_id="x", origin_name="x")
    r.set(rs.cluster_lock_key(SID), "dead-worker")
    assert turn_cancel_request(SID) == {"cancelled": True, "reason": None}
    assert turn_meta_get(SID).status == "failed"  # type: ignore[union-attr]
    assert r.exists(rs.cluster_lock_key(SID)) == 0
    assert r.get(rs.cancel_key(SID)) == turn_id.encode()  # type: ignore[union-attr]
    chunks = [json.loads(f[b"data"]) for _, f in r.xrange(rs.turn_stream_key(turn_id))]
    assert chunks == [{"type": "error", "errorText": "Cancelled"}, {"type": "finish"}]


async def _collect(session_id: str, **kwargs: Any) -> list[Any]:
    return [item async for item in follow_turn(session_id, **kwargs)]


def test_follow_replays_every_chunk_type_including_reasoning_and_skips_unknown(r: redis.Redis[bytes]) -> None:
    # given
    turn_id = turn_claim(session_id=SID, user_id=1, origin_id="x", origin_name="x")
    chunks = [
        {"type": "start", "messageId": "m1"},
        {"type": "reasoning-start", "id": "r1"},
        {"type": "reasoning-delta", "id": "r1", "delta": "hmm"},
        {"type": "reasoning-end", "id": "r1"},
        {"type": "bogus-type"},
        {"type": "data-usage", "data": {"totalTokens": 3}},
    ]
    ids = [publish_chunk(turn_id, c) for c in chunks]
    mark_session_completed(SID)
    # when
    items = asyncio.run(_collect(SID))
    # then
    assert [i.chunk for i in items] == [c for c in chunks if c["type"] != "bogus-type"] + [{"type": "finish"}]
    assert [i.event_id for i in items][:5] == [ids[0], ids[1], ids[2], ids[3], ids[5]]
    # and resuming after an event id yields only what follows it
    after = asyncio.run(_collect(SID, after=ids[2]))
    assert [i.chunk["type"] for i in after] == ["reasoning-end", "data-usage", "finish"]


def test_follow_ends_within_a_heartbeat_when_finish_was_lost(r: redis.Redis[bytes], settings: Any) -> None:
    # given: a running turn whose `finish` never reaches the stream
    settings.COPILOT_SSE_HEARTBEAT_S = 0.2
    turn_id = turn_claim(session_id=SID, user_id=1, origin_id="x", origin_name="x")
    r.set(rs.alive_key(SID), turn_id, ex=30)  # type: ignore[arg-type]
    publish_chunk(turn_id, {"type": "start", "messageId": "m"})

    async def scenario() -> list[Any]:
        async def end_later() -> None:
            await asyncio.sleep(0.3)
            r.hset(rs.turn_meta_key(SID), "status", "completed")

        task = asyncio.create_task(end_later())
        items = await asyncio.wait_for(_collect(SID), timeout=5)
        await task
        return items

    # when
    items = asyncio.run(scenario())
    # then
    kinds = [i.chunk["type"] if i.chunk else "heartbeat" for i in items]
    assert kinds[0] == "start"
    assert kinds[-1] == "finish"
    assert items[-1].event_id is None
    assert set(kinds[1:-1]) == {"heartbeat"}


def test_follow_waits_for_a_meta_written_just_after_subscribing(r: redis.Redis[bytes]) -> None:
    async def scenario() -> list[Any]:
        async def claim_later() -> None:
            await asyncio.sleep(0.15)
            turn_id = turn_claim(session_id=SID, user_id=1, origin_id="x", origin_name="x")
            publish_chunk(turn_id, {"type": "start", "messageId": "late"})  # type: ignore[arg-type]
            await sync_to_async(mark_session_completed)(SID)

        task = asyncio.create_task(claim_later())
        items = await asyncio.wait_for(_collect(SID), timeout=5)
        await task
        return items

    items = asyncio.run(scenario())
    assert [i.chunk for i in items] == [{"type": "start", "messageId": "late"}, {"type": "finish"}]


def test_follow_with_no_meta_ends_with_finish_only() -> None:
    items = asyncio.run(_collect(SID))
    assert [(i.event_id, i.chunk) for i in items] == [(None, {"type": "finish"})]


def test_settings_use_the_test_redis_database() -> None:
    assert settings.REDIS_URL.endswith("/9")
