from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    """Every page says when the offline demo model is answering."""
    return {"is_demo_model": settings.COPILOT_DEMO_MODEL}
