from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "copilot_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"
