from __future__ import annotations

from django.apps import AppConfig


class RatelimitsConfig(AppConfig):
    name = "ratelimits"
