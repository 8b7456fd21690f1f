from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "copilot_site.core"
    label = "core"
    verbose_name = "Site core"
