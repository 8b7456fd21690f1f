"""Stripe's form encoding (``a[b][0][c]=v``, ``expand[]=x``) decoded into nested dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY_PART = re.compile(r"\[([^\[\]]*)\]")
_NO_LISTIFY = frozenset({"metadata"})


def _split_key(key: str) -> list[str]:
    """``a[b][0][c]`` → ``["a", "b", "0", "c"]``; ``expand[]`` → ``["expand", ""]``."""
    start = key.find("[")
    if start <= 0:
        return [key]
    parts = [key[:start]]
    position = start
    for match in _KEY_PART.finditer(key, start):
        if match.start() != position:
            return [key]
        parts.append(match.group(1))
        position = match.end()
    if position != len(key):
        return [key]
    return parts


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key not in _NO_LISTIFY and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_form(raw: str) -> dict[str, Any]:
    """Decode Stripe's form encoding into nested dicts and lists (values stay strings).

    ``items[0][price]=p`` → ``{"items": [{"price": "p"}]}``, ``expand[]=a&expand[]=b``
    → ``{"expand": ["a", "b"]}``, ``metadata[user_id]=7`` → ``{"metadata": {"user_id": "7"}}``
    (metadata keys are never turned into list indexes).
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(raw, keep_blank_values=True):
        parts = _split_key(raw_key)
        node = root
        for index, part in enumerate(parts):
            name = part if part != "" else str(len(node))
            if index == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    result = _listify(root, None)
    assert isinstance(result, dict)
    return result
