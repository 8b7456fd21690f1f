from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "copilot_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the OpenAPI security scheme
