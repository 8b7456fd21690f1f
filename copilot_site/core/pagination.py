"""Bounded `limit`/`offset` query parameters for the paginated list endpoints.

An unbounded offset reaches the database as `OFFSET n`; past 2**63 - 1 the driver cannot
bind it (a 500), and far below that it only makes the database skip rows for nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers


class OffsetField(serializers.IntegerField):
    """`offset`: an integer from 0 to COPILOT_API_MAX_OFFSET (read per request), default 0."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("default", 0)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        value = int(super().to_internal_value(data))
        maximum = int(settings.COPILOT_API_MAX_OFFSET)
        if value > maximum:
            self.fail("max_value", max_value=maximum)
        return value
