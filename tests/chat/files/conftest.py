"""Fixtures of the attachment tests: the attachments folder emptied around each test, and
moto's S3-compatible server for the storage contract."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.conf import settings

from chat.files import storage as storage_module
from copilot_site.testing.processes import ManagedProcess, start_s3_server
from tests.conftest import ARTIFACTS


def files_on_disk() -> list[Path]:
    """Every file under the attachments folder (the test profile's own)."""
    root = Path(settings.COPILOT_ATTACHMENTS_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def clean_attachments_root() -> Iterator[Path]:
    root = Path(settings.COPILOT_ATTACHMENTS_ROOT)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server: ManagedProcess
    server, endpoint = start_s3_server(ARTIFACTS / "logs")
    try:
        yield endpoint
    finally:
        server.stop()


S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[Any]:
    """A fresh bucket on the moto server; yields the boto3 Bucket."""
    import uuid

    s3 = boto3.resource("s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    bucket = s3.Bucket(f"copilot-test-{uuid.uuid4().hex[:12]}")
    bucket.create()
    yield bucket
    bucket.objects.all().delete()
    bucket.delete()


@pytest.fixture
def s3_storage_settings(s3_endpoint: str, s3_bucket: Any, settings: Any) -> Iterator[Any]:
    """COPILOT_ATTACHMENTS_STORAGE pointed at the moto bucket, as the settings build it from the env."""
    settings.COPILOT_ATTACHMENTS_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": s3_bucket.name,
            "endpoint_url": s3_endpoint,
            "region_name": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "location": "attachments",
            "addressing_style": "path",
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
    storage_module._build.cache_clear()
    yield s3_bucket
    storage_module._build.cache_clear()
