"""Rate-limit business errors. Each fixes its HTTP ``status`` and ``code``;
``copilot_site.core.exceptions`` turns them into ``{"detail": detail, **extra}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from django.utils import timezone

from copilot_site.core.errors import ApplicationError


class RateLimitError(ApplicationError):
    """A rate-limit rule refused the request."""


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as DRF renders datetimes, so every payload agrees."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_time_until(resets_at: datetime, now: datetime) -> str:
    """`2h 30m`, `15m` (no `0h`; minutes round down), or `now` when the reset is not in the future."""
    seconds = int((resets_at - now).total_seconds())
    if seconds <= 0:
        return "now"
    hours, minutes = seconds // 3600, (seconds % 3600) // 60
    return f"{hours}h {minutes}m" if hours > 0 else f"{minutes}m"


class RateLimitExceeded(RateLimitError):
    """The pre-turn check refused: HTTP 429 ``{detail, window, resets_at}``, WebSocket ``rate_limited``."""

    status = 429
    code = "rate_limited"

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
            detail = f"You've reached the personal daily spending cap you set. Resets in {when}."
        else:
            detail = f"You've reached your {window} usage limit. Resets in {when}."
        extra: dict[str, Any] = {"window": window, "resets_at": iso_utc(resets_at)}
        if personal_cap:
            extra["personal_cap"] = True
        super().__init__(detail, extra=extra)
        self.window = window
        self.resets_at = resets_at
        self.personal_cap = personal_cap


class TurnCostCapExceeded(RateLimitError):
    """For the engine: a single turn passed its tier's per-turn cost cap and was stopped.

    The text names no amount (users never see raw spend).
    """

    status = 429
    code = "turn_cost_cap"

    def __init__(self) -> None:
        super().__init__(
            "This response was stopped because it reached the cost limit for a single turn on your plan. "
            "Try a narrower request or split it into steps."
        )


class ResetUnavailable(RateLimitError):
    """Any 400 of the paid reset."""


class ResetInsufficientCredits(RateLimitError):
    status = 402
    code = "insufficient_credits"

    def __init__(self) -> None:
        super().__init__("Insufficient credits to reset your rate limit.")


class ResetTooMany(RateLimitError):
    status = 429
    code = "too_many_resets"


class ResetFailed(RateLimitError):
    status = 503
    code = "unavailable"


class PersonalCapInvalid(RateLimitError):
    pass


class UserNotFound(RateLimitError):
    status = 404
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("User not found.")


class UsageResetFailed(RateLimitError):
    """Staff reset: the Redis DEL of the usage counters failed, so nothing was reset."""

    status = 500
    code = "reset_failed"

    def __init__(self) -> None:
        super().__init__("Failed to reset usage")


class UserCapExceeded(RateLimitError):
    """A per-user abuse cap refused the request: HTTP 429 ``{detail, code}`` with
    ``Retry-After: retry_after`` (seconds); on the WebSocket an ``error`` frame with the code."""

    status = 429
    code = "user_cap"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"code": self.code}, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class TooManyRunningTurns(UserCapExceeded):
    code = "too_many_running_turns"


class TooManyTurnsInFlight(UserCapExceeded):
    code = "too_many_turns_in_flight"


class TooManySends(UserCapExceeded):
    code = "too_many_sends"


class TooManySessions(UserCapExceeded):
    code = "too_many_sessions"
