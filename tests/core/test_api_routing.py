"""One URL, one APIView per operation: the method router behind the chat URLs."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from chat.models import ChatSession


def test_each_method_reaches_its_own_operation(alice: Any, alice_client: APIClient) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="Before")
    url = f"/api/chat/sessions/{session.id}"
    # when
    renamed = alice_client.patch(url, {"title": "After"}, format="json")
    fetched = alice_client.get(url)
    deleted = alice_client.delete(url)
    # then
    assert (renamed.status_code, renamed.json()["title"]) == (200, "After")
    assert (fetched.status_code, fetched.json()["session"]["title"]) == (200, "After")
    assert deleted.status_code == 204
    assert not ChatSession.objects.filter(pk=session.pk).exists()


def test_a_method_no_operation_serves_answers_405_listing_the_url_operations(alice_client: APIClient) -> None:
    # when
    response = alice_client.put("/api/chat/sessions", {}, format="json")
    # then
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PUT" not allowed.'}
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert ChatSession.objects.count() == 0


def test_head_is_served_by_the_get_operation(alice: Any, alice_client: APIClient) -> None:
    # given
    ChatSession.objects.create(user=alice, title="One")
    # when
    response = alice_client.head("/api/chat/sessions")
    # then
    assert response.status_code == 200
    assert response.content == b""


def test_options_describes_the_url_without_running_an_operation(alice_client: APIClient) -> None:
    # when
    response = alice_client.options("/api/chat/sessions")
    # then
    assert response.status_code == 200
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert response.json()["name"] == "Sessions Api"
    assert ChatSession.objects.count() == 0
