"""Project package: settings, URL and ASGI wiring, the Celery app, accounts."""

from __future__ import annotations

# Make `celery -A copilot_site worker` find the app.
from .celery_app import app as celery_app

__all__ = ("celery_app",)
