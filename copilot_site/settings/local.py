"""The embedded, single-machine profile used by `make run` (the default)."""

from __future__ import annotations

from .base import *  # noqa: F403
from .base import STATIC_ROOT, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# Static files straight from the source folders (no `collectstatic`); WhiteNoise still
# reads STATIC_ROOT and warns when it is missing.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
