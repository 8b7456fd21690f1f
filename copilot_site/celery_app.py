"""The Celery application.

Configured from Django settings (the ``CELERY_`` namespace); every app keeps its
tasks in its own ``tasks.py``.
https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
"""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_failure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.local")

app = Celery("copilot_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging_from_settings(**kwargs: Any) -> None:
    """The worker logs as the web does (settings.LOGGING, LOG_FORMAT), not in Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@task_failure.connect
def _failure_count(exception: BaseException | None = None, **kwargs: Any) -> None:
    """A task that raised a Redis or database error counts as that failure (metrics)."""
    from copilot_site.core import metrics

    if exception is not None:
        metrics.failure_count(exception)
