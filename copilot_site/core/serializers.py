"""Request-serializer strictness shared by the apps' APIs.

DRF's `CharField` turns a JSON number into its text (`{"message": 123}` becomes "123")
and a plain `Serializer` silently drops keys it does not declare; these refuse both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A `CharField` that takes only a JSON string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class UnknownKeysRefusedMixin:
    """For a `Serializer`: a body key the serializer does not declare is a 400 naming the key."""

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["This field is not allowed."] for key in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]
