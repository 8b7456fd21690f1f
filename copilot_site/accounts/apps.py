from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "copilot_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from . import schema  # noqa: F401 - registers the OpenAPI security scheme
        from .signals import session_sockets_close

        user_logged_out.connect(session_sockets_close, dispatch_uid="accounts_session_sockets_close")
