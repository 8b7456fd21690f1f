"""The worker's shared event loop, and keeping the cyclic GC out of live streams' way.

Below every user of the loop (the turn runtime, the title service): it imports
nothing of the app.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

GIL_SWITCH_INTERVAL_S = 0.0005


class _SharedLoop:
    """One event loop per worker process, on its own thread, running every live turn.

    Celery's `threads` pool hands each task a thread; that thread only submits the
    turn here and waits for it. With all turns on one loop the process multiplexes
    their network waits without threads contending for the GIL, which keeps
    per-chunk latency flat as the number of live turns grows.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = _new_turn_loop()
                thread = threading.Thread(target=loop.run_forever, name="copilot-turns", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop()).result()


def _new_turn_loop() -> asyncio.AbstractEventLoop:
    """The turn loop runs on uvloop: its C transports and callbacks cut the worker's
    CPU per streamed chunk by about a third (`make bench`)."""
    import uvloop

    return uvloop.new_event_loop()


shared_loop = _SharedLoop()


def quiet_gc() -> None:
    """Keep the cyclic GC from pausing every live stream of the process.

    The modules, settings and tables loaded at start are never garbage: `gc.freeze()`
    moves them out of the collector's way, so a full collection no longer walks
    hundreds of MB of them. (A larger young generation saved ~15 % of CPU in the
    live-turn benchmark but its p99 moved within the run-to-run noise either way,
    so the thresholds stay CPython's.)
    """
    gc.collect()
    gc.freeze()
