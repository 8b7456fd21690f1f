"""WebSocket helpers shared by the account tests."""

from __future__ import annotations

import asyncio

import websockets


async def ws_close_code(url: str, headers: dict[str, str]) -> int | None:
    """The close code a socket at `url` gets (after its first frame), or None if it stays open."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), timeout=10)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    return None
