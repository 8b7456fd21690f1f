"""The vendored tiktoken rank files in chat/tiktoken_data load with no network.

No Django or database needed:
    pytest tests/chat/test_tiktoken_offline.py -p no:django -p no:cacheprovider
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "chat" / "tiktoken_data"

# Token ids of "hello world", checked against the real encodings.
HELLO_WORLD_IDS = {
    "cl100k_base": [15339, 1917],
    "o200k_base": [24912, 2375],
}


def _blob_url_and_hash(name: str) -> tuple[str, str]:
    """URL and expected_hash of the load_tiktoken_bpe call in the installed
    tiktoken_ext.openai_public constructor for `name`."""
    from tiktoken_ext import openai_public

    tree = ast.parse(inspect.getsource(getattr(openai_public, name)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load_tiktoken_bpe":
            url = ast.literal_eval(node.args[0])
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            return url, kw["expected_hash"]
    raise AssertionError(f"no load_tiktoken_bpe call found in openai_public.{name}")


@pytest.mark.parametrize("name", sorted(HELLO_WORLD_IDS))
def test_vendored_file_matches_tiktoken_expected_hash(name: str) -> None:
    url, expected_hash = _blob_url_and_hash(name)
    assert len(expected_hash) == 64
    # tiktoken.load.read_file_cached names cache entries sha1(url).
    path = DATA_DIR / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    assert path.is_file(), f"missing vendored {name} rank file {path.name}"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected_hash


_CHILD = r"""
import json, sys
import tiktoken, tiktoken.load

def _no_network(blobpath):
    raise RuntimeError(f"network fetch attempted: {blobpath}")

# Belt and braces: besides the dead proxy, refuse any download outright.
tiktoken.load.read_file = _no_network
out = {name: tiktoken.get_encoding(name).encode("hello world") for name in sys.argv[1:]}
print(json.dumps(out))
"""


def test_get_encoding_works_offline() -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    dead_proxy = "http://127.0.0.1:9"
    env.update(
        TIKTOKEN_CACHE_DIR=str(DATA_DIR),
        HTTPS_PROXY=dead_proxy,
        HTTP_PROXY=dead_proxy,
        https_proxy=dead_proxy,
        http_proxy=dead_proxy,
    )
    env.pop("DATA_GYM_CACHE_DIR", None)
    names = sorted(HELLO_WORLD_IDS)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == HELLO_WORLD_IDS
