"""Two patches of Twisted's and autobahn's private internals in the web process (daphne).

**twisted_write** (`COPILOT_TWISTED_WRITE_PATCH`): Twisted's `FileDescriptor.write`
never sends right away: it buffers the bytes, registers the socket with the loop for
writability, sends on the next loop pass and unregisters it again. For a live stream
that is two epoll updates and one extra loop pass for every WebSocket frame or SSE
event (`make bench`: a fifth of daphne's CPU under 200 live turns). asyncio's own
transports try the send first and only buffer what the kernel did not take; the patch
gives Twisted's plain TCP connections the same behaviour. The fast path only runs
when nothing is buffered already (so bytes stay in order) on a plain, open, non-TLS
connection; anything else (a partial send, a full socket buffer, an error, TLS) falls
through to Twisted's own `write`, which buffers and lets the reactor deal with it.

**ws_frame** (`COPILOT_WS_FRAME_PATCH`): daphne hands every outgoing message to
autobahn's `sendMessage`, which checks its arguments, counts traffic statistics,
considers compression, fragmentation, masking and frame logging, builds the frame in
`sendFrame` and writes it through `sendData`: ~9 % of daphne's profile samples at 200
live turns, as much again as the frame's socket write. For the connections daphne
actually makes (a server: unmasked frames, no permessage-deflate, no
auto-fragmentation, no frame or octet logging, no timing tracker) a text message is
one unfragmented frame: two header bytes (plus 2 or 8 for the length) and the UTF-8
payload. The patch writes exactly that frame and leaves every other case (binary,
closing, compression or any of those options enabled, a payload over the size limit,
queued sync data) to autobahn. Autobahn's traffic counters are not updated on the fast
path; daphne never reads them.

Both replace private code, so an upgrade of Twisted, autobahn or daphne could break
them silently. `transport_patches_install` therefore applies a patch only when its
setting is on, logs a warning when an installed package is not the version in
`WRITTEN_FOR`, and skips the patch (with an error log, never an exception) when the
attribute it replaces or a private attribute it reads no longer exists.
`tests/core/test_transport_patches.py` fails while the installed versions differ from
`WRITTEN_FOR`: re-read the patch against the new source and re-run `make bench` before
updating the table.
"""

from __future__ import annotations

import errno
import functools
import importlib
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

Method = Callable[..., None]

# The exact versions each patch was written and measured (`make bench`) against.
WRITTEN_FOR: dict[str, dict[str, str]] = {
    "twisted_write": {"Twisted": "26.10.0"},
    "ws_frame": {"daphne": "4.2.3", "autobahn": "26.10.2"},
}


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2) carrying `payload`."""
    n = len(payload)
    if n <= 125:
        return bytes((0x81, n)) + payload
    if n <= 0xFFFF:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _write_through(buffered_write: Method) -> Method:
    """`tcp.Connection.write` that sends at once when nothing is buffered."""

    @functools.wraps(buffered_write)
    def write(self: Any, data: bytes) -> None:
        if (
            type(data) is bytes
            and data
            and self.connected
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
            and not getattr(self, "TLS", False)
        ):
            try:
                sent = self.socket.send(data)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR):
                    buffered_write(self, data)  # Twisted meets the error on its own send
                    return
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        buffered_write(self, data)

    return write


def _direct_text_frames(slow_send: Method) -> Method:
    """daphne's `WebSocketProtocol.serverSend` that writes a plain text frame itself."""
    from daphne.ws_protocol import WebSocketProtocol

    state_open = WebSocketProtocol.STATE_OPEN

    @functools.wraps(slow_send)
    def server_send(self: Any, content: Any, binary: bool = False) -> None:
        if (
            not binary
            and self.state == state_open
            and self._perMessageCompress is None
            and not self.send_queue
            and not self.autoFragmentSize
            and not self.maskServerFrames
            and not self.logFrames
            and not self.logOctets
            and not self.trackedTimings
        ):
            payload = content.encode()
            if not 0 < self.maxMessagePayloadSize < len(payload):
                self.transport.write(text_frame(payload))
                return
        slow_send(self, content, binary)

    return server_send


@dataclass(frozen=True)
class TransportPatch:
    name: str
    setting: str
    owner: str  # "module:Class" whose attribute is replaced
    attribute: str
    reads: tuple[str, ...]  # instance attributes the replacement reads
    build: Callable[[Method], Method]  # the library's function -> its replacement

    def owner_load(self) -> type:
        module, _, cls = self.owner.partition(":")
        owner: type = getattr(importlib.import_module(module), cls)
        return owner


PATCHES: tuple[TransportPatch, ...] = (
    TransportPatch(
        name="twisted_write",
        setting="COPILOT_TWISTED_WRITE_PATCH",
        owner="twisted.internet.tcp:Connection",
        attribute="write",
        reads=("connected", "_writeDisconnected", "_tempDataBuffer", "offset", "dataBuffer", "socket"),
        build=_write_through,
    ),
    TransportPatch(
        name="ws_frame",
        setting="COPILOT_WS_FRAME_PATCH",
        owner="daphne.ws_protocol:WebSocketProtocol",
        attribute="serverSend",
        reads=(
            "state",
            "STATE_OPEN",
            "_perMessageCompress",
            "send_queue",
            "autoFragmentSize",
            "maskServerFrames",
            "logFrames",
            "logOctets",
            "trackedTimings",
            "maxMessagePayloadSize",
            "transport",
        ),
        build=_direct_text_frames,
    ),
)

# The replacement each patch installed, by patch name (installing twice is a no-op).
_replacements: dict[str, Method] = {}


def version_installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _class_names(cls: type) -> set[str]:
    """Every attribute defined on `cls` and its bases or named by their code.

    Instance attributes exist only on instances, so an attribute the library's own
    methods no longer mention has been renamed or removed.
    """
    names: set[str] = set()

    def code_names(code: types.CodeType) -> None:
        names.update(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                code_names(const)

    for klass in cls.__mro__:
        names.update(vars(klass))
        for value in vars(klass).values():
            for function in (getattr(value, "__func__", value), getattr(value, "fget", None)):
                if isinstance(function, types.FunctionType):
                    code_names(function.__code__)
    return names


def _version_mismatches(patch: TransportPatch) -> list[str]:
    installed = {distribution: version_installed(distribution) for distribution in WRITTEN_FOR[patch.name]}
    return [
        f"{distribution} {installed[distribution] or 'not installed'} (written for {expected})"
        for distribution, expected in WRITTEN_FOR[patch.name].items()
        if installed[distribution] != expected
    ]


def _patch_apply(patch: TransportPatch) -> bool:
    """Replace the patched attribute; False (with an error log) when the library no longer fits."""
    try:
        owner = patch.owner_load()
    except (ImportError, AttributeError) as exc:
        logger.error("Transport patch %s skipped: %s not found (%s)", patch.name, patch.owner, exc)
        return False
    current = getattr(owner, patch.attribute, None)
    if current is not None and current is _replacements.get(patch.name):
        return True
    if not isinstance(current, types.FunctionType):
        logger.error("Transport patch %s skipped: %s has no method %s", patch.name, patch.owner, patch.attribute)
        return False
    known = _class_names(owner)
    missing = [name for name in patch.reads if name not in known]
    if missing:
        logger.error("Transport patch %s skipped: %s no longer has %s", patch.name, patch.owner, ", ".join(missing))
        return False
    replacement = patch.build(current)
    setattr(owner, patch.attribute, replacement)
    _replacements[patch.name] = replacement
    return True


def transport_patches_install() -> list[str]:
    """Apply each patch whose setting is on; the names of those in place, also logged."""
    installed = []
    for patch in PATCHES:
        if not getattr(settings, patch.setting):
            continue
        if mismatches := _version_mismatches(patch):
            logger.warning(
                "Transport patch %s meets versions it was not written for: %s;"
                " applied only if what it replaces is there",
                patch.name,
                ", ".join(mismatches),
            )
        if _patch_apply(patch):
            installed.append(patch.name)
    logger.info("Transport patches installed: %s", ", ".join(installed) or "none")
    return installed
