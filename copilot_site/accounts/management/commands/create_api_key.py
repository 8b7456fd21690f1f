from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from copilot_site.accounts.services import ApiKeyLimitReached, api_key_create


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="CLI key")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {options['username']!r}.") from exc
        try:
            _, raw = api_key_create(user=user, name=options["name"])
        except ApiKeyLimitReached as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(raw)
