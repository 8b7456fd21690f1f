"""get_current_time."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register


@register
class GetCurrentTime(Tool):
    name = "get_current_time"
    description = "Current date and time, in UTC and optionally in an IANA time zone such as Europe/Paris."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "description": "IANA time zone name.", "maxLength": 64, "default": "UTC"},
        },
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        zone_name = str(arguments.get("timezone") or "UTC")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ToolError(f"Unknown time zone '{zone_name}'.") from exc
        now: datetime = timezone.now()
        local = now.astimezone(zone)
        return {
            "utc": now.isoformat(timespec="seconds"),
            "timezone": zone_name,
            "local": local.isoformat(timespec="seconds"),
            "weekday": local.strftime("%A"),
        }
