from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """The project's user (a custom model from day one, as Django recommends).

    `chat_model` and `chat_mode` are the defaults of the chat composer's picker, set on
    the account page; a chat remembers its own choice once a message made one. "" is
    the site's default (`standard`; COPILOT_DEFAULT_MODE).
    """

    chat_model = models.CharField(
        max_length=20, blank=True, default="", choices=[("standard", "Standard"), ("advanced", "Advanced")]
    )
    chat_mode = models.CharField(
        max_length=20, blank=True, default="", choices=[("fast", "Fast"), ("extended_thinking", "Thinking")]
    )

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined,misc]
        constraints = [
            # Staff APIs look users up by email, so a non-empty email is unique.
            models.UniqueConstraint(
                Lower("email"), condition=~models.Q(email=""), name="accounts_user_email_ci_unique"
            ),
        ]


class ApiKey(models.Model):
    """A bearer key for API and WebSocket clients. Only a hash is stored.

    Keys are 256-bit random strings, so a plain SHA-256 (no salt, no slow hash)
    is enough: there is nothing to brute-force, and lookup stays one indexed query.
    """

    RAW_PREFIX = "cpk_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, shown to identify it.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="apikey_user_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()
