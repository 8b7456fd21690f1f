"""`collectstatic` under the production profile: hashed names, compressed copies, rewritten module
imports, and WhiteNoise serving them with a far-future cache life."""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
SOURCE = BASE_DIR / "static"
HASHED = re.compile(r"^(?P<stem>.+?)\.[0-9a-f]{12}(?P<ext>(\.[a-zA-Z0-9]+)?)$")
RELATIVE_IMPORT = re.compile(r"""\bfrom\s*["'](?P<url>\.{1,2}/[^"']+)["']""")

SERVE = """
import json, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from django.templatetags.static import static
setup_test_environment()
client = Client()
app = static("chat/app.js")
hashed = client.get(app, HTTP_ACCEPT_ENCODING="gzip, br", secure=True)
plain = client.get("/static/chat/app.js", secure=True)
print(json.dumps({
    "app_url": app,
    "hashed": [hashed.status_code, hashed["Cache-Control"], hashed.get("Content-Encoding"), hashed["Content-Type"]],
    "plain": [plain.status_code, plain["Cache-Control"]],
    "missing": client.get("/static/chat/nope.js", secure=True).status_code,
}))
"""


def _production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "copilot_site.settings.production",
        "DJANGO_SECRET_KEY": "s" * 64,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "COPILOT_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_STATIC_ROOT": str(tmp_path / "collected"),
    }


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp_path = tmp_path_factory.mktemp("collectstatic")
    env = _production_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "collected"
    manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
    return root, manifest


def test_every_source_file_gets_a_hashed_name(collected: tuple[Path, dict[str, str]]) -> None:
    root, manifest = collected
    sources = sorted(p.relative_to(SOURCE).as_posix() for p in SOURCE.rglob("*") if p.is_file())
    # the site's own files, and the apps' (the admin's, DRF's) beside them
    assert [name for name in sorted(manifest) if (SOURCE / name).is_file()] == sources
    assert "admin/css/base.css" in manifest
    for name, hashed in manifest.items():
        match = HASHED.match(hashed)
        assert match is not None, hashed
        assert match["stem"] + match["ext"] == name
        assert (root / hashed).is_file()


def test_scripts_and_styles_have_brotli_and_gzip_copies(collected: tuple[Path, dict[str, str]]) -> None:
    root, manifest = collected
    for name in ("chat/app.js", "site/site.css", "vendor/marked/marked.esm.js"):
        assert (root / (manifest[name] + ".br")).is_file()
        assert (root / (manifest[name] + ".gz")).is_file()


def test_module_imports_name_the_hashed_files(collected: tuple[Path, dict[str, str]]) -> None:
    root, manifest = collected
    site_scripts = [name for name in manifest if name.endswith(".js") and (SOURCE / name).is_file()]
    modules = [name for name in site_scripts if RELATIVE_IMPORT.search((SOURCE / name).read_text())]
    assert sorted(modules) == [
        "billing/billing.js",
        "chat/app.js",
        "chat/approvals.js",
        "chat/attachments.js",
        "chat/markdown.js",
        "chat/search.js",
        "chat/share.js",
        "chat/shared.js",
        "chat/versions.js",
        "chat/view.js",
        "site/usage.js",
    ]
    for name in modules:
        source_imports = RELATIVE_IMPORT.findall((SOURCE / name).read_text())
        hashed_imports = RELATIVE_IMPORT.findall((root / manifest[name]).read_text())
        assert len(hashed_imports) == len(source_imports)
        for original, rewritten in zip(source_imports, hashed_imports, strict=True):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), original))
            expected = posixpath.relpath(manifest[target], posixpath.dirname(name))
            if not expected.startswith("."):
                expected = "./" + expected
            assert rewritten == expected, (name, original)
    # and a file without imports is byte for byte its source
    assert (root / manifest["vendor/dompurify/purify.min.js"]).read_bytes() == (
        SOURCE / "vendor/dompurify/purify.min.js"
    ).read_bytes()


def test_whitenoise_serves_hashed_names_for_good_and_pages_link_them(
    collected: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, manifest = collected
    env = _production_env(tmp_path)
    env["DJANGO_STATIC_ROOT"] = str(root)
    # when
    result = subprocess.run(
        [sys.executable, "-c", SERVE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    # then
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["app_url"] == "/static/" + manifest["chat/app.js"]
    assert report["hashed"] == [200, "max-age=315360000, public, immutable", "br", 'text/javascript; charset="utf-8"']
    assert report["plain"] == [200, "max-age=60, public"]
    assert report["missing"] == 404
