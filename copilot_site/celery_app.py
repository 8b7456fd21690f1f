"""The Celery application.

Configured from Django settings (the ``CELERY_`` namespace); every app keeps its
tasks in its own ``tasks.py``.
https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.local")

app = Celery("copilot_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
