"""Test profile: the production wiring (real Redis, real DB, real processes).

`copilot_site/testing/pytest_plugin.py` sets REDIS_URL / CELERY_BROKER_URL before
this module is imported (an embedded redis-server unless REDIS_URL is given).
"""

from __future__ import annotations

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
