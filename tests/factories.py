from __future__ import annotations

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
    class Meta:
        model = ChatMessage

    session = factory.SubFactory(ChatSessionFactory)
    sequence = factory.Sequence(lambda n: n)
    role = "user"
    content = "hello"
