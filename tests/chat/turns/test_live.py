"""Live fan-out against the real Redis server: the per-process pub/sub hub, the batched
stream appender, and the worker's turn supervisor (chat.turns.live, chat.turns.scripts,
chat.turns.runtime)."""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import redis

from chat.turns import live, runtime
from chat.turns import scripts as rs
from chat.turns.follow import ListenerDisconnected, StreamItem, follow_turn, turn_listeners_disconnect
from chat.turns.registry import mark_session_completed, turn_claim, turn_meta_get
from tests.chat.turns.helpers import publish_chunk

pytestmark = pytest.mark.django_db

SID = "22222222-2222-4222-8222-222222222222"
OTHER_SID = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def r() -> redis.Redis[bytes]:
    return rs.redis_client()


def _claim(session_id: str = SID) -> str:
    turn_id = turn_claim(session_id=session_id, user_id=1, origin_id="x", origin_name="x")
    assert turn_id is not None
    return turn_id


def _xread_calls(r: redis.Redis[bytes]) -> int:
    return int(r.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))


async def _publish_later(turn_id: str, chunks: list[dict[str, Any]], *, finish: bool = True) -> list[str]:
    """Publish from a thread (as the worker does, from another process) once listeners wait."""
    await asyncio.sleep(0.2)
    ids = [await asyncio.to_thread(publish_chunk, turn_id, chunk) for chunk in chunks]
    if finish:
        await asyncio.to_thread(mark_session_completed, SID)
    return ids


def _texts(n: int) -> list[dict[str, Any]]:
    return [{"type": "text-delta", "id": "t", "delta": f"d{i}"} for i in range(n)]


def test_live_chunks_come_over_pubsub_in_order_with_their_log_ids(r: redis.Redis[bytes]) -> None:
    # given: a listener following a running turn
    turn_id = _claim()
    chunks = _texts(20)

    async def scenario() -> tuple[list[StreamItem], list[str]]:
        publisher = asyncio.create_task(_publish_later(turn_id, chunks))
        items = [item async for item in follow_turn(SID)]
        return items, await publisher

    xreads_before = _xread_calls(r)
    # when
    items, ids = asyncio.run(scenario())
    # then: every chunk once, in order, with the id the log gave it, and the terminal finish
    assert [i.chunk for i in items] == [*chunks, {"type": "finish"}]
    assert [i.event_id for i in items[:20]] == ids
    assert [i.raw for i in items[:3]] == [json.dumps(c, separators=(",", ":")).encode() for c in chunks[:3]]
    # and the live part cost no XREAD per chunk: one read of the log when following began
    assert _xread_calls(r) - xreads_before == 1
    # and the listener left no subscription behind
    assert r.pubsub_numsub(rs.turn_live_channel(turn_id)) == [(rs.turn_live_channel(turn_id).encode(), 0)]


def test_listeners_in_one_process_share_one_subscription(r: redis.Redis[bytes]) -> None:
    turn_id = _claim()
    channel = rs.turn_live_channel(turn_id)
    seen_subscribers: list[int] = []

    async def scenario() -> list[list[StreamItem]]:
        async def publish_once_all_listen() -> None:
            hub, key = live.live_hub(), channel.encode()
            await _until(lambda: len(hub.subs.get(key, ())) == 3 and key in hub.confirmed)
            seen_subscribers.append(r.pubsub_numsub(channel)[0][1])
            await _publish_later(turn_id, _texts(3))

        publisher = asyncio.create_task(publish_once_all_listen())
        results = await asyncio.gather(_collect(), _collect(), _collect())
        await publisher
        return list(results)

    results = asyncio.run(scenario())
    assert seen_subscribers == [1]
    assert all([i.chunk for i in items] == [*_texts(3), {"type": "finish"}] for items in results)
    assert r.pubsub_numsub(channel)[0][1] == 0


async def _collect(**kwargs: Any) -> list[StreamItem]:
    return [item async for item in follow_turn(SID, **kwargs)]


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_two_first_listeners_at_once_share_one_pubsub_connection(r: redis.Redis[bytes]) -> None:
    # given: a fresh hub, and two turns whose listeners start at the same moment
    turns = {SID: _claim(), OTHER_SID: _claim(OTHER_SID)}
    connections: list[int] = []

    async def scenario() -> list[list[StreamItem]]:
        async def publish_once_both_listen() -> None:
            hub = live.live_hub()
            keys = [rs.turn_live_channel(t).encode() for t in turns.values()]
            await _until(lambda: all(k in hub.confirmed for k in keys))
            connections.append(len(r.client_list(_type="pubsub")))
            for session_id, turn_id in turns.items():
                await asyncio.to_thread(publish_chunk, turn_id, _texts(1)[0])
                await asyncio.to_thread(mark_session_completed, session_id)

        publisher = asyncio.create_task(publish_once_both_listen())
        results = await asyncio.gather(*(_collect_session(sid) for sid in turns))
        await publisher
        return list(results)

    # when
    results = asyncio.run(asyncio.wait_for(scenario(), timeout=8))  # a heartbeat (10 s) would mean a lost chunk
    # then: one connection carries both subscriptions, and both listeners got everything live
    assert connections == [1]
    assert [[i.chunk for i in items] for items in results] == [[*_texts(1), {"type": "finish"}]] * 2


async def _collect_session(session_id: str) -> list[StreamItem]:
    return [item async for item in follow_turn(session_id)]


def test_disconnect_closes_the_sessions_listeners_and_no_others(r: redis.Redis[bytes]) -> None:
    # given: two listeners on a running turn, and one on another session's turn
    turn_id, other_turn = _claim(), _claim(OTHER_SID)
    outcomes: dict[str, Any] = {}

    async def listen(name: str, session_id: str) -> None:
        items: list[StreamItem] = []
        try:
            async for item in follow_turn(session_id):
                items.append(item)
        except ListenerDisconnected:
            outcomes[name] = ("disconnected", [i.chunk for i in items])
            return
        outcomes[name] = ("finished", [i.chunk for i in items])

    async def scenario() -> int:
        tasks = [asyncio.create_task(listen(n, s)) for n, s in (("a1", SID), ("a2", SID), ("b", OTHER_SID))]
        hub = live.live_hub()
        kick = rs.listeners_disconnect_channel(SID).encode()
        await _until(lambda: len(hub.subs.get(kick, ())) == 2 and kick in hub.confirmed)
        await _until(lambda: all(s.ready.done() for subs in hub.subs.values() for s in subs))
        await asyncio.to_thread(publish_chunk, turn_id, _texts(1)[0])
        await _until(lambda: all(not s.items for subs in hub.subs.values() for s in subs))
        # when
        receivers = await asyncio.to_thread(turn_listeners_disconnect, SID)
        await asyncio.wait_for(asyncio.gather(tasks[0], tasks[1]), timeout=5)
        await asyncio.to_thread(publish_chunk, other_turn, _texts(2)[1])
        await asyncio.to_thread(mark_session_completed, OTHER_SID)
        await asyncio.wait_for(tasks[2], timeout=5)
        return receivers

    receivers = asyncio.run(scenario())
    # then: SID's listeners stopped after what they had, the other one saw its turn to the end
    assert receivers == 1  # one web process (this one) was listening
    assert outcomes == {
        "a1": ("disconnected", _texts(1)),
        "a2": ("disconnected", _texts(1)),
        "b": ("finished", [_texts(2)[1], {"type": "finish"}]),
    }
    # and the turn itself goes on; nothing is left subscribed
    meta = turn_meta_get(SID)
    assert meta is not None and meta.is_running and meta.turn_id == turn_id
    channels = [rs.listeners_disconnect_channel(SID), rs.turn_live_channel(turn_id), rs.turn_live_channel(other_turn)]
    assert [n for _, n in r.pubsub_numsub(*channels)] == [0, 0, 0]


async def _follow_after_one_live_chunk(
    turn_id: str, chunk: dict[str, Any]
) -> tuple[AsyncGenerator[StreamItem, None], list[StreamItem]]:
    """A listener of SID's turn that has received `chunk` live, and what it received."""
    agen = follow_turn(SID)
    publisher = asyncio.create_task(_publish_later(turn_id, [chunk], finish=False))
    items = [await agen.__anext__()]
    await publisher
    return agen, items


def test_a_lost_pubsub_connection_resyncs_from_the_log_without_gaps_or_repeats(r: redis.Redis[bytes]) -> None:
    # given: a listener that has seen one live chunk
    turn_id = _claim()
    first, second, third = _texts(3)

    async def scenario() -> list[StreamItem]:
        agen, items = await _follow_after_one_live_chunk(turn_id, first)
        # when: Redis drops the hub's pub/sub connection, and chunks are appended meanwhile
        link = live.live_hub().link
        assert link is not None
        host, port = link.transport.get_extra_info("sockname")[:2]
        assert r.client_kill(f"{host}:{port}") is True
        publish_chunk(turn_id, second)
        publish_chunk(turn_id, third)
        mark_session_completed(SID)
        items.extend([item async for item in agen])
        return items

    items = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    # then: nothing missed, nothing twice
    assert [i.chunk for i in items] == [first, second, third, {"type": "finish"}]


def test_a_listener_arriving_during_a_reconnect_does_not_strand_the_others(r: redis.Redis[bytes]) -> None:
    # given: a listener on one turn, whose hub connection Redis drops
    turns = {SID: _claim(), OTHER_SID: _claim(OTHER_SID)}
    channels = [rs.turn_live_channel(t) for t in turns.values()]
    seen: list[Any] = []

    async def scenario() -> list[list[StreamItem]]:
        hub = live.live_hub()
        first = asyncio.create_task(_collect_session(SID))
        await _until(lambda: channels[0].encode() in hub.confirmed)
        assert hub.link is not None
        host, port = hub.link.transport.get_extra_info("sockname")[:2]
        assert r.client_kill(f"{host}:{port}") is True
        await _until(lambda: hub.link is None)
        # when: a listener of another turn connects the hub before its reconnect delay is over
        second = asyncio.create_task(_collect_session(OTHER_SID))
        await _until(lambda: all(c.encode() in hub.confirmed for c in channels))
        seen.append([n for _, n in r.pubsub_numsub(*channels)])
        seen.append(len(r.client_list(_type="pubsub")))
        for session_id, turn_id in turns.items():
            await asyncio.to_thread(publish_chunk, turn_id, _texts(1)[0])
            await asyncio.to_thread(mark_session_completed, session_id)
        return [await first, await second]

    results = asyncio.run(asyncio.wait_for(scenario(), timeout=8))  # a heartbeat (10 s) would mean a lost chunk
    # then: the new connection carries both turns' channels, one subscription each
    assert seen == [[1, 1], 1]
    assert [[i.chunk for i in items] for items in results] == [[*_texts(1), {"type": "finish"}]] * 2


def test_a_listener_cancelled_while_the_hub_connects_does_not_strand_the_others(
    r: redis.Redis[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a hub slow to connect, and two listeners of one turn: the first sends the
    # SUBSCRIBE, the second waits for its confirmation
    turn_id = _claim()
    channel = rs.turn_live_channel(turn_id).encode()
    connect = live.LiveHub._connected

    async def slow_connect(self: live.LiveHub) -> Any:
        await asyncio.sleep(0.3)
        return await connect(self)

    monkeypatch.setattr(live.LiveHub, "_connected", slow_connect)
    leftover: list[Any] = []

    async def scenario() -> list[StreamItem]:
        hub = live.live_hub()
        first = asyncio.create_task(_collect())
        await _until(lambda: hub.confirming[channel] == 1)
        second = asyncio.create_task(_collect())
        await _until(lambda: len(hub.subs.get(channel, ())) == 2)
        # when: the first is cancelled while the hub is still connecting
        first.cancel()
        publisher = asyncio.create_task(_publish_later(turn_id, _texts(2)))
        items = await second
        await publisher
        leftover.append(+hub.confirming)
        return items

    items = asyncio.run(asyncio.wait_for(scenario(), timeout=8))
    # then: the second still got everything live, and no confirmation is left owed
    assert [i.chunk for i in items] == [*_texts(2), {"type": "finish"}]
    assert leftover == [collections.Counter()]


def test_a_subscribe_that_fails_after_its_listener_left_is_logged_by_the_hub(
    r: redis.Redis[bytes], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a hub whose connect fails after a while, and one listener waiting on it
    turn_id = _claim()
    channel = rs.turn_live_channel(turn_id).encode()

    async def failing_connect(self: live.LiveHub) -> Any:
        await asyncio.sleep(0.2)
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(live.LiveHub, "_connected", failing_connect)
    unhandled: list[dict[str, Any]] = []

    async def scenario() -> collections.Counter[bytes]:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(context))
        hub = live.live_hub()
        listener = asyncio.create_task(_collect())
        await _until(lambda: hub.confirming[channel] == 1)
        # when: the listener is cancelled, then the connect fails
        listener.cancel()
        await _until(lambda: not hub.confirming[channel])
        await asyncio.sleep(0)
        return +hub.confirming

    with caplog.at_level("WARNING", logger="chat.turns.live"):
        leftover = asyncio.run(asyncio.wait_for(scenario(), timeout=8))
    gc.collect()  # asyncio reports a never-retrieved exception when the task is collected
    # then: the hub logged the failure once; asyncio reported nothing; nothing is owed
    assert [rec.getMessage() for rec in caplog.records if rec.name == "chat.turns.live"] == [
        "Live hub could not subscribe: ConnectionError('refused')"
    ]
    assert unhandled == []
    assert leftover == collections.Counter()


def test_a_silent_pubsub_connection_is_replaced_and_the_listener_resyncs(
    r: redis.Redis[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a keepalive every 0.2 s, and a listener that has seen one live chunk
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.2)
    turn_id = _claim()
    first, second, third = _texts(3)
    ports: list[int] = []

    async def scenario() -> list[StreamItem]:
        agen, items = await _follow_after_one_live_chunk(turn_id, first)
        hub = live.live_hub()
        assert hub.link is not None
        old = hub.link
        ports.append(old.transport.get_extra_info("sockname")[1])
        # when: the connection goes silent (nothing it receives is read any more; no PONG either)
        old.transport.pause_reading()
        publish_chunk(turn_id, second)
        await _until(lambda: hub.link is not None and hub.link is not old)
        assert hub.link is not None
        ports.append(hub.link.transport.get_extra_info("sockname")[1])
        publish_chunk(turn_id, third)
        mark_session_completed(SID)
        items.extend([item async for item in agen])
        return items

    items = asyncio.run(asyncio.wait_for(scenario(), timeout=8))
    # then: a new connection replaced it, and the listener got everything once, in order
    assert ports[0] != ports[1]
    assert [i.chunk for i in items] == [first, second, third, {"type": "finish"}]
    assert len(r.client_list(_type="pubsub")) == 0


def test_a_listener_too_far_behind_reads_the_log_instead_of_an_endless_queue(
    r: redis.Redis[bytes], monkeypatch: Any
) -> None:
    # given: a queue bound of 5 live items, and a listener that stops reading
    monkeypatch.setattr(live, "QUEUE_MAX", 5)
    turn_id = _claim()
    chunks = _texts(30)

    async def scenario() -> list[StreamItem]:
        agen = follow_turn(SID)
        publisher = asyncio.create_task(_publish_later(turn_id, chunks[:1], finish=False))
        items = [await agen.__anext__()]
        await publisher
        for chunk in chunks[1:]:
            publish_chunk(turn_id, chunk)
        mark_session_completed(SID)
        await asyncio.sleep(0.3)  # everything has reached the hub while the listener was not reading
        hub_queues = [len(sub.items) for subs in live.live_hub().subs.values() for sub in subs]
        assert hub_queues and max(hub_queues) <= 5
        items.extend([item async for item in agen])
        return items

    items = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    # then: every chunk exactly once, in order
    assert [i.chunk for i in items] == [*chunks, {"type": "finish"}]


def test_an_unparseable_after_replays_the_turn_from_its_start(r: redis.Redis[bytes]) -> None:
    turn_id = _claim()
    chunks = _texts(2)
    for chunk in chunks:
        publish_chunk(turn_id, chunk)
    mark_session_completed(SID)
    items = asyncio.run(_collect(after="not-an-id"))
    assert [i.chunk for i in items] == [*chunks, {"type": "finish"}]


@pytest.mark.parametrize(
    ("entry_id", "key"),
    [
        ("1700000000000-3", (1700000000000, 3)),
        ("15", (15, 0)),
        ("0-0", (0, 0)),
        ("1-", None),
        ("-1", None),
        ("a-1", None),
        ("1-b", None),
        ("1-2-3", None),
        ("\uff11-2", None),  # a full-width digit is a digit to str.isdigit, not to Redis
        ("1-2\n", None),
        (" 1-2", None),
        ("+1-2", None),
        ("", None),
    ],
)
def test_entry_ids_parse_exactly_as_redis_writes_them(entry_id: str, key: tuple[int, int] | None) -> None:
    from chat.turns.follow import _entry_key

    assert _entry_key(entry_id) == key


def test_deltas_are_relayed_as_written_without_parsing_and_other_chunks_are_checked() -> None:
    from chat.consumers import _frame_text
    from chat.turns import follow
    from chat.turns.sse import sse_frame

    raw = b'{"type":"text-delta","id":"t","delta":"h\\u00e9"}'
    item = follow._decode_entry("5-1", "turn-1", raw)
    assert item is not None
    # when: both relays format it
    frame, event = _frame_text(item), sse_frame(item)
    # then: forwarded byte for byte, its JSON never parsed, and still a full chunk when asked
    assert frame == '{"event_id":"5-1","turn_id":"turn-1","chunk":' + raw.decode() + "}"
    assert event == b"id: 5-1\ndata: " + raw + b"\n\n"
    assert item._chunk is follow._UNPARSED
    assert (item.type, item.is_terminal, item.is_heartbeat) == ("text-delta", False, False)
    assert item.chunk == {"type": "text-delta", "id": "t", "delta": "hé"}
    # other chunks are parsed and checked as before
    finish = follow._decode_entry("5-2", "turn-1", b'{"type":"finish"}')
    assert finish is not None and finish.is_terminal and finish._chunk == {"type": "finish"}
    assert follow._decode_entry("5-3", "turn-1", b'{"type":"no-such-type"}') is None
    assert follow._decode_entry("5-4", "turn-1", b'{"type":"text-delta","id":') is None


def test_a_subscription_waits_on_one_timer_and_never_gives_up_early() -> None:
    async def scenario() -> tuple[float, bool, float, Any]:
        loop = asyncio.get_running_loop()
        sub = live.Subscription([b"c"], loop)
        started = loop.time()
        assert await sub.get(0.2) is None
        idle_wait = loop.time() - started
        # a wait answered by an item leaves its timer armed for the next wait to reuse
        loop.call_later(0.05, sub.push, ("1-0", b"{}"))
        assert await sub.get(0.2) == ("1-0", b"{}")
        armed = sub.timer is not None
        started = loop.time()
        assert await sub.get(0.2) is None  # the reused timer fires ~0.05 s early and moves on
        reused_wait = loop.time() - started
        sub.close()
        return idle_wait, armed, reused_wait, sub.timer

    idle_wait, armed, reused_wait, timer_after_close = asyncio.run(scenario())
    assert idle_wait >= 0.199
    assert armed is True
    assert reused_wait >= 0.199
    assert timer_after_close is None


def _deltas(r: redis.Redis[bytes], turn_id: str) -> list[str]:
    return [json.loads(fields[b"data"])["delta"] for _, fields in r.xrange(rs.turn_stream_key(turn_id))]


def _text(i: int) -> str:
    return json.dumps({"type": "text-delta", "id": "t", "delta": str(i)})


def test_the_appender_keeps_order_across_batches_and_a_script_flush(r: redis.Redis[bytes]) -> None:
    # given
    turn_id = _claim()

    async def scenario() -> None:
        appender = rs.loop_appender()
        for i in range(30):
            appender.append(turn_id, _text(i), f"1-{i + 1}")
            if i % 7 == 0:
                await asyncio.sleep(0)  # let a batch go out
            if i == 15:
                await appender.drain()
                r.script_flush()  # as after a Redis restart
        await appender.drain()
        await appender.aclose()
        await rs.loop_redis().aclose()

    # when
    asyncio.run(scenario())
    # then
    assert _deltas(r, turn_id) == [str(i) for i in range(30)]
    assert 0 < r.ttl(rs.turn_stream_key(turn_id)) <= rs.TURN_TTL_S


@pytest.mark.parametrize(
    "data", ['{"type":"text-delta","id":"t","delta":"hi"}', '{"delta":"' + "é€😀" * 3000 + '"}', ""]
)
def test_a_hand_packed_append_is_byte_for_byte_redis_pys_command(data: str) -> None:
    key, channel = rs.turn_stream_key("t-1"), rs.turn_live_channel("t-1")
    connection = rs.redis_client().connection_pool.make_connection()
    for entry_id in ("*", "1796346682291-12"):
        expected = b"".join(
            connection.pack_command("EVAL", rs.STREAM_APPEND, 1, key, channel, data, rs.TURN_TTL_S, entry_id)
        )
        assert rs.pack_stream_append(key, channel, data, entry_id) == expected


def test_the_appender_sends_new_chunks_while_redis_has_not_answered_earlier_ones(r: redis.Redis[bytes]) -> None:
    # given: a turn, and Redis paused (as when it is slow to answer)
    turn_id = _claim()
    seen: dict[str, int] = {}

    async def scenario() -> None:
        appender = rs.loop_appender()
        appender.append(turn_id, _text(0), "1-1")
        await appender.drain()  # connected
        r.execute_command("CLIENT", "PAUSE", 400, "ALL")
        for i in range(1, 4):  # three batches, one loop pass apart
            appender.append(turn_id, _text(i), f"1-{i + 1}")
            await asyncio.sleep(0.02)
        seen["sent"], seen["answered"] = appender.sent, appender.answered
        await appender.drain()
        seen["answered_after_drain"] = appender.answered
        await appender.aclose()
        await rs.loop_redis().aclose()

    # when
    asyncio.run(scenario())
    # then: all three were written without waiting for the first answer, and land in order
    assert seen == {"sent": 4, "answered": 1, "answered_after_drain": 4}
    assert _deltas(r, turn_id) == ["0", "1", "2", "3"]


def test_the_appender_reconnects_after_its_connection_is_killed(r: redis.Redis[bytes]) -> None:
    # given
    turn_id = _claim()
    failures: list[int] = []

    async def scenario() -> None:
        appender = rs.loop_appender()
        for i in range(3):
            appender.append(turn_id, _text(i), f"1-{i + 1}")
        await appender.drain()
        assert appender.conn is not None
        sockname = appender.conn._writer.get_extra_info("sockname")  # type: ignore[union-attr]
        # when: Redis drops the appender's connection (and only it)
        assert r.client_kill(f"{sockname[0]}:{sockname[1]}")
        for _ in range(100):
            if appender.conn is None:
                break
            await asyncio.sleep(0.01)
        for i in range(3, 6):
            appender.append(turn_id, _text(i), f"1-{i + 1}")
        await appender.drain()
        failures.append(appender.failures)
        await appender.aclose()
        await rs.loop_redis().aclose()

    asyncio.run(scenario())
    # then: one failure noticed, nothing lost, nothing twice, order kept
    assert failures == [1]
    assert _deltas(r, turn_id) == [str(i) for i in range(6)]


def _kill_connection(r: redis.Redis[bytes], conn: Any) -> None:
    sockname = conn._writer.get_extra_info("sockname")
    assert r.client_kill(f"{sockname[0]}:{sockname[1]}")


def test_after_a_restart_that_kept_nothing_the_appender_writes_its_recent_chunks_again(
    r: redis.Redis[bytes],
) -> None:
    # given: a turn's first chunks answered by Redis, and a listener on its live channel
    turn_id = _claim()
    announced: list[bytes] = []

    async def scenario() -> None:
        appender = rs.loop_appender()
        for i in range(3):
            appender.append(turn_id, _text(i), f"1-{i + 1}")
        await appender.drain()
        listener = r.pubsub()
        listener.subscribe(rs.turn_live_channel(turn_id))
        # when: Redis comes back empty (as after a restart without persistence)
        r.flushdb()
        _kill_connection(r, appender.conn)
        for i in range(3, 6):
            appender.append(turn_id, _text(i), f"1-{i + 1}")
        await appender.drain()
        deadline = time.monotonic() + 5
        while len(announced) < 6 and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.1)
            if message and message["type"] == "message":
                announced.append(message["data"].split(b" ", 1)[0])
        listener.close()
        await appender.aclose()
        await rs.loop_redis().aclose()

    asyncio.run(scenario())
    # then: the log is whole again, once each, in order, under the same ids
    assert _deltas(r, turn_id) == [str(i) for i in range(6)]
    assert [entry_id for entry_id, _ in r.xrange(rs.turn_stream_key(turn_id))] == [b"1-%d" % i for i in range(1, 7)]
    assert announced == [b"1-%d" % i for i in range(1, 7)]


def test_an_append_under_an_id_the_log_has_writes_and_announces_nothing(r: redis.Redis[bytes]) -> None:
    key, channel = rs.turn_stream_key("t-dup"), rs.turn_live_channel("t-dup")
    listener = r.pubsub()
    listener.subscribe(channel)
    assert listener.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
    first = r.eval(rs.STREAM_APPEND, 1, key, channel, _text(0), rs.TURN_TTL_S, "5-1")  # type: ignore[no-untyped-call]
    again = r.eval(rs.STREAM_APPEND, 1, key, channel, _text(9), rs.TURN_TTL_S, "5-1")  # type: ignore[no-untyped-call]
    older = r.eval(rs.STREAM_APPEND, 1, key, channel, _text(9), rs.TURN_TTL_S, "4-7")  # type: ignore[no-untyped-call]
    assert (first, again, older) == (b"5-1", None, None)
    assert _deltas(r, "t-dup") == ["0"]
    messages = [m for m in iter(lambda: listener.get_message(timeout=0.2), None) if m["type"] == "message"]
    assert [m["data"] for m in messages] == [b"5-1 " + _text(0).encode()]
    listener.close()


def test_completion_is_one_step_that_only_the_current_turn_can_take(r: redis.Redis[bytes]) -> None:
    # given: a running turn, and a completion naming another turn
    turn_id = _claim()
    r.set(rs.cluster_lock_key(SID), "worker:1")
    r.set(rs.alive_key(SID), turn_id)
    # when / then: the wrong turn changes nothing
    assert rs.complete_turn(SID, "some-other-turn", "completed", ['{"type":"finish"}']) is False
    assert r.hget(rs.turn_meta_key(SID), "status") == b"running"
    assert r.get(rs.cluster_lock_key(SID)) == b"worker:1"
    assert r.xlen(rs.turn_stream_key(turn_id)) == 0
    # and the right one ends it, frees the session and publishes, once
    assert rs.complete_turn(SID, turn_id, "completed", ['{"type":"finish"}']) is True
    assert rs.complete_turn(SID, turn_id, "failed", ['{"type":"finish"}']) is False
    assert r.hget(rs.turn_meta_key(SID), "status") == b"completed"
    assert (r.exists(rs.cluster_lock_key(SID)), r.exists(rs.alive_key(SID))) == (0, 0)
    assert [fields[b"data"] for _, fields in r.xrange(rs.turn_stream_key(turn_id))] == [b'{"type":"finish"}']


def test_the_supervisor_sees_a_stop_refreshes_liveness_and_interrupts_after_the_grace(
    r: redis.Redis[bytes], monkeypatch: Any
) -> None:
    # given: fast timings, and a turn guarded by the supervisor
    monkeypatch.setattr(runtime, "CANCEL_POLL_S", 0.05)
    monkeypatch.setattr(runtime, "ALIVE_REFRESH_S", 0.1)
    monkeypatch.setattr(runtime, "STOP_GRACE_S", 0.3)
    turn_id = _claim()

    async def scenario() -> tuple[runtime.TurnOutcome, runtime._TurnGuard, bool, list[str]]:
        outcome = runtime.TurnOutcome()
        cancel = asyncio.Event()
        guard = runtime._TurnGuard(SID, turn_id, "worker:1", cancel, outcome)
        guard.start(10**9)
        events: list[str] = []
        r.delete(rs.alive_key(SID))
        await _until(lambda: r.get(rs.alive_key(SID)) is not None)  # refreshed by the supervisor
        alive = r.get(rs.alive_key(SID)) == turn_id.encode()
        # when: the cancel flag names this turn
        r.set(rs.cancel_key(SID), turn_id)
        await asyncio.wait_for(cancel.wait(), timeout=2)
        events.append("cancel-event")
        try:
            await asyncio.sleep(5)  # an engine that ignores the stop
        except asyncio.CancelledError:
            events.append("interrupted")
            guard.uncancel()
        guard.stop()
        return outcome, guard, alive, events

    outcome, guard, alive, events = asyncio.run(scenario())
    # then
    assert alive is True
    assert events == ["cancel-event", "interrupted"]
    assert (outcome.stopped, outcome.error, guard.interrupted) == (True, None, True)


def test_the_supervisor_refreshes_each_turn_on_its_own_schedule_and_only_locks_it_owns(
    r: redis.Redis[bytes],
) -> None:
    # given: two running turns that started 2 s apart, one of which lost its cluster lock
    sid_a, sid_b = SID, "33333333-3333-4333-8333-333333333333"
    turn_a = _claim()
    turn_b = turn_claim(session_id=sid_b, user_id=1, origin_id="x", origin_name="x")
    assert turn_b is not None
    r.set(rs.cluster_lock_key(sid_a), "worker:1", ex=5)
    r.set(rs.stream_lock_key(sid_a), turn_a, ex=5)
    r.set(rs.cluster_lock_key(sid_b), "another-worker", ex=5)
    r.expire(rs.turn_meta_key(sid_a), 5)
    refreshed: dict[str, Any] = {}

    async def scenario() -> None:
        sup = runtime._Supervisor()
        guard_a = runtime._TurnGuard(sid_a, turn_a, "worker:1", asyncio.Event(), runtime.TurnOutcome())
        guard_b = runtime._TurnGuard(sid_b, turn_b, "worker:1", asyncio.Event(), runtime.TurnOutcome())
        t0 = guard_a.loop.time()
        sup.guards = {turn_a: guard_a, turn_b: guard_b}
        guard_a.alive_due, guard_a.locks_due = t0 + 5, t0 + 30
        guard_b.alive_due, guard_b.locks_due = t0 + 7, t0 + 32

        def due() -> dict[str, list[float]]:
            return {g.turn_id: [round(g.alive_due - t0, 1), round(g.locks_due - t0, 1)] for g in (guard_a, guard_b)}

        client = rs.loop_redis()
        # when: a round at t0+5.2, when only turn A's liveness is due
        await sup._refresh_due(client, [guard_a, guard_b], t0 + 5.2)
        refreshed["alive at 5.2"] = (r.get(rs.alive_key(sid_a)), r.get(rs.alive_key(sid_b)))
        # and a round at t0+30.2, when only turn A's locks are due, then one at t0+32.5 for B's
        await sup._refresh_due(client, [guard_a, guard_b], t0 + 30.2)
        refreshed["due at 30.2"] = due()
        await sup._refresh_due(client, [guard_a, guard_b], t0 + 32.5)
        refreshed["due at 32.5"] = due()
        await client.aclose()

    asyncio.run(scenario())
    # then: each turn is refreshed when its own time comes, never in one burst
    assert refreshed["alive at 5.2"] == (turn_a.encode(), None)
    assert refreshed["due at 30.2"] == {turn_a: [35.2, 60.2], turn_b: [35.2, 32.0]}
    assert refreshed["due at 32.5"] == {turn_a: [35.2, 60.2], turn_b: [35.2, 62.5]}
    # the lock this worker owns is extended (with the stream lock and meta), the other is left alone
    assert r.ttl(rs.cluster_lock_key(sid_a)) > 5
    assert r.ttl(rs.stream_lock_key(sid_a)) > 5
    assert r.ttl(rs.turn_meta_key(sid_a)) > 5
    assert r.get(rs.cluster_lock_key(sid_b)) == b"another-worker"
    assert r.ttl(rs.cluster_lock_key(sid_b)) <= 5
