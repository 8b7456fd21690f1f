from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from copilot_site.accounts.services import user_create


class Command(BaseCommand):
    help = "Create the demo user if missing and print its password (only when it is created)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if get_user_model().objects.filter(username=username).exists():
            self.stdout.write(
                f"Demo login: {username} (password printed when it was created; "
                f"reset it with `python manage.py changepassword {username}`)"
            )
            return
        password = secrets.token_urlsafe(9)
        user_create(username=username, password=password, email=f"{username}@example.com")
        self.stdout.write(self.style.SUCCESS(f"Demo login: {username} / {password}  (shown once)"))
