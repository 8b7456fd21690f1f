"""Per-user abuse caps against the real Redis: running and in-flight turn slots, sends
and chat creations per minute, API keys per user, tier scaling, failing open."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from billing.models import Tier
from chat.models import ChatSession
from copilot_site.accounts.models import ApiKey
from copilot_site.accounts.services import ApiKeyLimitReached, api_key_create, api_key_revoke
from ratelimits import user_caps
from ratelimits.errors import UserCapExceeded

pytestmark = pytest.mark.django_db

# A client that reads JSON only: a queued follow-up answers 202 JSON, not the follow-up stream.
JSON_ONLY = "application/json"


def _reserve(user: Any, n: int, *, queued: int = 0) -> str:
    turn_id = f"turn-{n}"
    user_caps.turn_slot_reserve(user=user, session_id=f"s{n}", turn_id=turn_id, queued=queued)
    return turn_id


def test_the_running_cap_refuses_the_slot_past_it_and_a_release_frees_one(alice: Any, bob: Any, settings: Any) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 2
    _reserve(alice, 1)
    _reserve(alice, 2)
    with pytest.raises(UserCapExceeded) as refused:
        _reserve(alice, 3)
    assert refused.value.status == 429
    assert refused.value.code == "too_many_running_turns"
    assert refused.value.retry_after == 5
    assert refused.value.detail == (
        "You already have 2 replies running, the most your plan allows at once. "
        "Wait for one to finish, then send again."
    )
    assert sorted(user_caps.running_sessions(user_id=alice.pk)) == ["s1", "s2"]  # the refused one took nothing
    _reserve(bob, 1)  # another user is unaffected
    user_caps.turn_slot_release(user_id=alice.pk, session_id="s1", turn_id="turn-1")
    _reserve(alice, 3)
    assert sorted(user_caps.running_sessions(user_id=alice.pk)) == ["s2", "s3"]


def test_the_in_flight_cap_counts_queued_follow_ups(alice: Any, settings: Any) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 5
    settings.COPILOT_USER_MAX_IN_FLIGHT_TURNS = 4
    _reserve(alice, 1)
    with pytest.raises(UserCapExceeded) as refused:
        _reserve(alice, 2, queued=3)  # 1 running + 3 queued: full, this one would be the 5th
    assert refused.value.code == "too_many_turns_in_flight"
    _reserve(alice, 2, queued=1)  # 1 running + 1 queued + this one = 3
    user_caps.turn_queue_check(user=alice, queued=1)  # 2 running + 1 queued + this one = 4
    with pytest.raises(UserCapExceeded) as queued_refused:
        user_caps.turn_queue_check(user=alice, queued=2)
    assert queued_refused.value.detail == (
        "You already have 4 messages running or queued, the most your plan allows. "
        "Wait for some to finish, then send again."
    )


@pytest.mark.parametrize(("tier", "allowed"), [(Tier.FREE, 2), (Tier.PRO, 10), (Tier.BUSINESS, 40)])
def test_the_caps_scale_with_the_tier(
    alice: Any, set_tier: Callable[..., None], settings: Any, tier: str, allowed: int
) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 2
    settings.COPILOT_USER_MAX_IN_FLIGHT_TURNS = 0
    set_tier(alice, tier)
    for n in range(allowed):
        _reserve(alice, n)
    with pytest.raises(UserCapExceeded):
        _reserve(alice, allowed)
    assert len(user_caps.running_sessions(user_id=alice.pk)) == allowed


def test_a_past_due_account_gets_the_free_caps(alice: Any, set_tier: Callable[..., None], settings: Any) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 2
    set_tier(alice, Tier.PRO, past_due=True)
    assert user_caps.user_cap(alice, "COPILOT_USER_MAX_RUNNING_TURNS") == 2


def test_zero_means_no_cap(alice: Any, settings: Any) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 0
    settings.COPILOT_USER_MAX_IN_FLIGHT_TURNS = 0
    for n in range(30):
        _reserve(alice, n)


def test_sends_per_minute(alice: Any, bob: Any, settings: Any) -> None:
    settings.COPILOT_USER_SENDS_PER_MINUTE = 3
    for _ in range(3):
        user_caps.user_send_check(user=alice)
    with pytest.raises(UserCapExceeded) as refused:
        user_caps.user_send_check(user=alice)
    assert refused.value.code == "too_many_sends"
    assert 1 <= refused.value.retry_after <= 61
    assert refused.value.detail == (
        f"Too many messages: your plan allows 3 a minute. Try again in {refused.value.retry_after} s."
    )
    user_caps.user_send_check(user=bob)


def test_a_dead_redis_fails_open(alice: Any, settings: Any, dead_redis_url: str, caplog: Any) -> None:
    settings.COPILOT_USER_MAX_RUNNING_TURNS = 1
    settings.COPILOT_USER_SENDS_PER_MINUTE = 1
    for n in range(3):
        _reserve(alice, n)
        user_caps.user_send_check(user=alice)
    assert "User caps: Redis unavailable" in caplog.text


def test_sessions_per_minute_through_the_api(alice_client: APIClient, alice: Any, bob: Any, settings: Any) -> None:
    settings.COPILOT_USER_SESSIONS_PER_MINUTE = 3
    statuses = [alice_client.post("/api/chat/sessions", {}, format="json").status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    refused = alice_client.post("/api/chat/sessions", {"title": "one too many"}, format="json")
    assert refused.status_code == 429
    body = refused.json()
    assert body == {
        "detail": f"Too many new chats: your plan allows 3 a minute. Try again in {refused['Retry-After']} s.",
        "code": "too_many_sessions",
    }
    assert 1 <= int(refused["Retry-After"]) <= 61
    assert ChatSession.objects.filter(user=alice).count() == 3
    assert not ChatSession.objects.filter(title="one too many").exists()
    bob_client = APIClient()
    bob_client.force_authenticate(bob)
    assert bob_client.post("/api/chat/sessions", {}, format="json").status_code == 201


def test_sessions_per_minute_scale_with_the_tier(
    alice_client: APIClient, alice: Any, set_tier: Callable[..., None], settings: Any
) -> None:
    settings.COPILOT_USER_SESSIONS_PER_MINUTE = 1
    set_tier(alice, Tier.PRO)
    statuses = [alice_client.post("/api/chat/sessions", {}, format="json").status_code for _ in range(6)]
    assert statuses == [201] * 5 + [429]


def test_api_keys_per_user(alice: Any, bob: Any, settings: Any) -> None:
    settings.COPILOT_USER_MAX_API_KEYS = 2
    api_key_create(user=alice, name="one")
    second, _ = api_key_create(user=alice, name="two")
    with pytest.raises(ApiKeyLimitReached) as refused:
        api_key_create(user=alice, name="three")
    assert refused.value.detail == (
        "You already have 2 active API keys, the most allowed. Revoke one to create another."
    )
    assert ApiKey.objects.filter(user=alice).count() == 2
    api_key_create(user=bob, name="bob's")
    # a revoked key frees its place
    assert api_key_revoke(user=alice, key_id=second.pk)
    api_key_create(user=alice, name="three")
    assert ApiKey.objects.filter(user=alice, revoked_at__isnull=True).count() == 2


def test_api_key_cap_on_the_account_page(alice: Any, settings: Any) -> None:
    settings.COPILOT_USER_MAX_API_KEYS = 1
    client = Client()
    client.force_login(alice)
    assert client.post("/account/keys/", {"name": "first"}).status_code == 200
    refused = client.post("/account/keys/", {"name": "second"})
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "You already have 1 active API keys, the most allowed." in refused.content.decode()
    assert list(ApiKey.objects.filter(user=alice).values_list("name", flat=True)) == ["first"]


def _busy_session(user: Any) -> ChatSession:
    """A chat whose turn is running (claimed and holding its slot), so every send is queued."""
    from chat.turns.registry import turn_claim

    session = ChatSession.objects.create(user=user)
    turn_id = turn_claim(session_id=session.pk, user_id=user.pk, origin_id="chat_stream", origin_name="chat")
    assert turn_id is not None
    user_caps.turn_slot_hold(user_id=user.pk, session_id=session.pk, turn_id=turn_id)
    return session


def test_sends_per_minute_through_the_stream_api(alice_client: APIClient, alice: Any, settings: Any) -> None:
    from chat.turns.pending import pending_peek

    settings.COPILOT_USER_SENDS_PER_MINUTE = 3
    session = _busy_session(alice)
    url = f"/api/chat/sessions/{session.id}/stream"
    answers = [alice_client.post(url, {"message": f"m{i}"}, format="json", HTTP_ACCEPT=JSON_ONLY) for i in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[3].json() == {
        "detail": f"Too many messages: your plan allows 3 a minute. Try again in {answers[3]['Retry-After']} s.",
        "code": "too_many_sends",
    }
    assert [m.content for m in pending_peek(session.pk)] == ["m0", "m1", "m2"]  # the refused one is not queued


def test_the_in_flight_cap_through_the_stream_api(alice_client: APIClient, alice: Any, settings: Any) -> None:
    from chat.turns.pending import pending_peek

    settings.COPILOT_USER_MAX_IN_FLIGHT_TURNS = 3
    session = _busy_session(alice)
    url = f"/api/chat/sessions/{session.id}/stream"
    answers = [alice_client.post(url, {"message": f"m{i}"}, format="json", HTTP_ACCEPT=JSON_ONLY) for i in range(3)]
    # one running + two queued = three in flight; the third follow-up is refused
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2]["Retry-After"] == "5"
    assert answers[2].json()["code"] == "too_many_turns_in_flight"
    assert [m.content for m in pending_peek(session.pk)] == ["m0", "m1"]
    # and a new chat of the same user cannot start a turn either
    other = ChatSession.objects.create(user=alice)
    refused = alice_client.post(f"/api/chat/sessions/{other.id}/stream", {"message": "new"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_turns_in_flight"
    assert not other.messages.exists()
    assert not other.turns.exists()


def test_the_create_api_key_command_refuses_past_the_cap(alice: Any, settings: Any) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.COPILOT_USER_MAX_API_KEYS = 1
    api_key_create(user=alice, name="only")
    with pytest.raises(CommandError, match="You already have 1 active API keys, the most allowed."):
        call_command("create_api_key", "alice")
    assert ApiKey.objects.filter(user=alice).count() == 1
