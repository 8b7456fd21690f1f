"""Test profile: the production wiring (real Redis, real DB, real processes).

`copilot_site/testing/pytest_plugin.py` sets REDIS_URL / CELERY_BROKER_URL before
this module is imported (an embedded redis-server unless REDIS_URL is given).
"""

from __future__ import annotations

import os

from .base import *  # noqa: F403
from .base import COPILOT_ATTACHMENTS_S3_BUCKET, STATIC_ROOT, VAR_DIR

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only

# Static files straight from the source folders (no `collectstatic`); WhiteNoise still
# reads STATIC_ROOT and warns when it is missing.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Attachments of test runs go to their own folder (the processes the tests start read the
# same profile, so they share it), unless the environment names one.
if "COPILOT_ATTACHMENTS_ROOT" not in os.environ and not COPILOT_ATTACHMENTS_S3_BUCKET:
    COPILOT_ATTACHMENTS_ROOT = VAR_DIR / "test-attachments"
    COPILOT_ATTACHMENTS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(COPILOT_ATTACHMENTS_ROOT), "file_permissions_mode": 0o600},
    }
