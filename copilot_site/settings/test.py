"""Test profile: the production wiring (real Redis, real DB, real processes).

`copilot_site/testing/pytest_plugin.py` sets REDIS_URL / CELERY_BROKER_URL before
this module is imported (an embedded redis-server unless REDIS_URL is given).
"""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import STATIC_ROOT

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

# Static files straight from the source folders (no `collectstatic`); WhiteNoise still
# reads STATIC_ROOT and warns when it is missing.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# MCP: ping servers at every turn's start (a server stopped between two turns is noticed
# by the next one) and retry a down server at least every 2 s.
COPILOT_MCP_HEALTH_TTL_S = 0.0
COPILOT_MCP_RECONNECT_MAX_S = 2.0
