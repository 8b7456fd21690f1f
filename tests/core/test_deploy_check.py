"""The production profile's HTTPS settings (`check --deploy` clean, HSTS, redirect, proxy header)
and the Content-Security-Policy every page sends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parents[2]
TEMPLATES = BASE_DIR / "templates"

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(header: str | None) -> dict[str, str]:
    """The directives of a Content-Security-Policy header (django-csp orders them freely)."""
    assert header is not None
    return dict(part.split(" ", 1) for part in header.split("; "))


SERVE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
plain = client.get("/login/")
secure = client.get("/login/", secure=True)
forwarded = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
health = client.get("/healthz")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "secure": [secure.status_code, secure.get("Strict-Transport-Security"), secure.get("Content-Security-Policy")],
    "secure_cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "csrf_cookie_secure": "secure" in str(secure.cookies.get("csrftoken", "")).lower(),
    "forwarded": [forwarded.status_code, forwarded.get("Location")],
    "health": [health.status_code, health.get("Location")],
}))
"""


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a production deployment sets, and nothing else of ours."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "copilot_site.settings.production",
        "DJANGO_SECRET_KEY": "Zq7-" + "k3Vx9pL2" * 8,
        "DJANGO_ALLOWED_HOSTS": "copilot.example.com,testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "COPILOT_VAR_DIR": str(tmp_path / "var"),
        # /healthz probes Redis: a closed loopback port answers at once.
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **extra,
    }


def _run(tmp_path: Path, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env=_production_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"^\S*: \(\S+\.[WE]\d+\)", line) or "WARNINGS" in line]


def test_check_deploy_is_clean_under_the_production_profile(tmp_path: Path) -> None:
    result = _run(tmp_path, ["manage.py", "check", "--deploy"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (1 silenced).\n"
    assert _warnings(result.stdout + result.stderr) == []


def test_check_deploy_is_clean_with_preload_and_then_silences_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, ["manage.py", "check", "--deploy"], DJANGO_SECURE_HSTS_PRELOAD="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_check_deploy_warns_when_hsts_and_the_redirect_are_switched_off(tmp_path: Path) -> None:
    result = _run(
        tmp_path, ["manage.py", "check", "--deploy"], DJANGO_SECURE_HSTS_SECONDS="0", DJANGO_SECURE_SSL_REDIRECT="false"
    )
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[1].strip().split(")")[0] + ")" for line in _warnings(result.stderr)[1:]] == [
        "(security.W004)",
        "(security.W008)",
    ]


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`collectstatic`'s output: production pages name hashed files from its manifest."""
    tmp_path = tmp_path_factory.mktemp("deploy-static")
    root = str(tmp_path / "collected")
    result = _run(tmp_path, ["manage.py", "collectstatic", "--noinput"], DJANGO_STATIC_ROOT=root)
    assert result.returncode == 0, result.stderr
    return root


def test_production_redirects_to_https_sends_hsts_and_csp_and_exempts_healthz(tmp_path: Path, static_root: str) -> None:
    result = _run(tmp_path, ["-c", SERVE], DJANGO_STATIC_ROOT=static_root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["plain"] == [301, "https://testserver/login/"]
    assert report["secure"][:2] == [200, "max-age=31536000; includeSubDomains"]
    assert _policy(report["secure"][2]) == CSP
    assert report["secure_cookies"] == [True, True]
    assert report["csrf_cookie_secure"] is True
    # without DJANGO_TLS_PROXY a client's X-Forwarded-Proto is not believed
    assert report["forwarded"] == [301, "https://testserver/login/"]
    assert report["health"][0] == 503
    assert report["health"][1] is None


def test_behind_a_tls_proxy_its_forwarded_proto_counts_and_hsts_is_settable(tmp_path: Path, static_root: str) -> None:
    result = _run(
        tmp_path,
        ["-c", SERVE],
        DJANGO_STATIC_ROOT=static_root,
        DJANGO_TLS_PROXY="true",
        DJANGO_SECURE_HSTS_SECONDS="600",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["forwarded"] == [200, None]
    assert report["plain"] == [301, "https://testserver/login/"]
    assert report["secure"][1] == "max-age=600"


# --- Content-Security-Policy --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/signup/", "/password-reset/"], ids=["_login", "_signup", "_reset"])
def test_anonymous_pages_send_the_strict_policy(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert _policy(response["Content-Security-Policy"]) == CSP


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/copilot", "/billing/", "/account/"], ids=["_chat", "_billing", "_account"])
def test_signed_in_pages_send_the_strict_policy(alice: Any, path: str) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 200
    assert _policy(response["Content-Security-Policy"]) == CSP


@pytest.mark.django_db
def test_the_lockout_page_and_the_admin_send_the_strict_policy(staff: Any) -> None:
    client = Client()
    for _ in range(5):
        locked = client.post("/login/", {"username": "staff", "password": "wrong"})
    assert locked.status_code == 429
    assert _policy(locked["Content-Security-Policy"]) == CSP
    admin = Client()
    admin.force_login(staff)
    assert _policy(admin.get("/admin/")["Content-Security-Policy"]) == CSP


@pytest.mark.django_db
def test_the_api_docs_page_adds_only_the_swagger_cdn(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert _policy(response["Content-Security-Policy"]) == {
        **CSP,
        "script-src": "'self' https://cdn.jsdelivr.net",
        "style-src": "'self' https://cdn.jsdelivr.net 'unsafe-inline'",
        "img-src": "'self' data: https://cdn.jsdelivr.net",
    }
    assert "<script>" not in response.content.decode()


def test_no_template_has_an_inline_script_handler_or_style() -> None:
    """What the policy would block: an inline <script>, an on…= handler, a style= attribute or <style>."""
    offenders = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style\b"):
            offenders += [f"{template.relative_to(TEMPLATES)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert offenders == []
