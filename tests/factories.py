from __future__ import annotations

from typing import Any

import factory

from chat.models import ChatMessage, ChatSession
from copilot_site.accounts.models import User


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")


class ChatSessionFactory(factory.django.DjangoModelFactory[ChatSession]):
    class Meta:
        model = ChatSession

    user = factory.SubFactory(UserFactory)
    title = None


class ChatMessageFactory(factory.django.DjangoModelFactory[ChatMessage]):
    """A row appended to its session's current branch (unless `parent_sequence` is given),
    which it then ends, as `messages_save_new` does."""

    class Meta:
        model = ChatMessage

    session = factory.SubFactory(ChatSessionFactory)
    sequence = factory.Sequence(lambda n: n)
    role = "user"
    content = "hello"

    @classmethod
    def _create(cls, model_class: type[ChatMessage], *args: Any, **kwargs: Any) -> ChatMessage:
        session = kwargs["session"]
        if "parent_sequence" not in kwargs:
            session.refresh_from_db(fields=["leaf_sequence"])
            kwargs["parent_sequence"] = session.leaf_sequence
        row = super()._create(model_class, *args, **kwargs)
        ChatSession.objects.filter(pk=session.pk).update(leaf_sequence=row.sequence)
        session.leaf_sequence = row.sequence
        return row


def link_rows(session: ChatSession) -> None:
    """Link rows a test wrote directly into one branch, in sequence order, ending at the last."""
    previous: int | None = None
    for row in ChatMessage.objects.filter(session=session).order_by("sequence"):
        ChatMessage.objects.filter(pk=row.pk).update(parent_sequence=previous)
        previous = row.sequence
    ChatSession.objects.filter(pk=session.pk).update(leaf_sequence=previous)
    session.leaf_sequence = previous
