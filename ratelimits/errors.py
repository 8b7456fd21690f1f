"""Rate-limit business errors. Each carries ``http_status``, ``message`` and ``extra``;
the API exception handler turns them into ``{"detail": message, **extra}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from django.utils import timezone


class RateLimitError(Exception):
    http_status = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as DRF renders datetimes, so every payload agrees."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_time_until(resets_at: datetime, now: datetime) -> str:
    """`2h 30m`, `15m` (no `0h`), or `now` when the reset is not in the future (SPEC §6.3.2)."""
    seconds = int((resets_at - now).total_seconds())
    if seconds <= 0:
        return "now"
    hours, minutes = seconds // 3600, (seconds % 3600) // 60
    return f"{hours}h {minutes}m" if hours > 0 else f"{minutes}m"


class RateLimitExceeded(RateLimitError):
    """The pre-turn check refused: HTTP 429 ``{detail, window, resets_at}``."""

    http_status = 429

    def __init__(
        self,
        window: Literal["daily", "weekly"],
        resets_at: datetime,
        *,
        now: datetime | None = None,
        personal_cap: bool = False,
    ) -> None:
        now = now or timezone.now()
        when = format_time_until(resets_at, now)
        if personal_cap:
            message = f"You've reached the personal daily spending cap you set. Resets in {when}."
        else:
            message = f"You've reached your {window} usage limit. Resets in {when}."
        extra: dict[str, Any] = {"window": window, "resets_at": iso_utc(resets_at)}
        if personal_cap:
            extra["personal_cap"] = True
        super().__init__(message, extra=extra)
        self.window = window
        self.resets_at = resets_at
        self.personal_cap = personal_cap


class TurnCostCapExceeded(RateLimitError):
    """For the engine: a single turn passed its tier's per-turn cost cap and was stopped.

    The text names no amount (users never see raw spend).
    """

    http_status = 429

    def __init__(self) -> None:
        super().__init__(
            "This response was stopped because it reached the cost limit for a single turn on your plan. "
            "Try a narrower request or split it into steps."
        )


class ResetUnavailable(RateLimitError):
    """Any 400 of the paid reset."""


class ResetInsufficientCredits(RateLimitError):
    http_status = 402

    def __init__(self) -> None:
        super().__init__("Insufficient credits to reset your rate limit.")


class ResetTooMany(RateLimitError):
    http_status = 429


class ResetFailed(RateLimitError):
    http_status = 503


class PersonalCapInvalid(RateLimitError):
    pass


class UserNotFound(RateLimitError):
    http_status = 404

    def __init__(self) -> None:
        super().__init__("User not found.")


class UsageResetFailed(RateLimitError):
    """Staff reset: the Redis DEL failed (SPEC §6.6.2)."""

    http_status = 500

    def __init__(self) -> None:
        super().__init__("Failed to reset usage")


class UserCapExceeded(RateLimitError):
    """A per-user abuse cap refused the request: HTTP 429 ``{detail, code}`` with
    ``Retry-After: retry_after``."""

    http_status = 429

    def __init__(self, message: str, *, code: str, retry_after: int) -> None:
        super().__init__(message, extra={"code": code})
        self.code = code
        self.retry_after = retry_after
