"""The transport patches' installer: each patch behind its setting, checked against the
library versions it was written for and skipped when what it replaces is gone."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import twisted
from daphne import ws_protocol
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from copilot_site.core import transport_patches
from copilot_site.core.transport_patches import PATCHES, WRITTEN_FOR, transport_patches_install, version_installed
from copilot_site.testing.processes import BASE_DIR, process_env

LOGGER = "copilot_site.core.transport_patches"


@pytest.fixture
def pristine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both patched methods are the libraries' own during the test and put back as they were after."""
    monkeypatch.setattr(tcp.Connection, "write", inspect.unwrap(tcp.Connection.write))
    monkeypatch.setattr(WebSocketProtocol, "serverSend", inspect.unwrap(WebSocketProtocol.serverSend))


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def _twisted_write_is_twisteds() -> bool:
    return Path(inspect.getfile(tcp.Connection.write)).is_relative_to(Path(twisted.__file__).parent)


def _server_send_is_daphnes() -> bool:
    return inspect.getfile(WebSocketProtocol.serverSend) == str(ws_protocol.__file__)


def _is_patched(method: Callable[..., Any]) -> bool:
    return inspect.getfile(method) == transport_patches.__file__


def test_the_installed_versions_are_the_ones_the_patches_were_written_for() -> None:
    installed = {name: {dist: version_installed(dist) for dist in table} for name, table in WRITTEN_FOR.items()}
    differ = [
        f"{dist} {installed[name][dist]} is installed, the {name} patch was written for {expected}"
        for name, table in WRITTEN_FOR.items()
        for dist, expected in table.items()
        if installed[name][dist] != expected
    ]
    assert not differ, (
        "UPGRADE TRIPWIRE for copilot_site.core.transport_patches: "
        + "; ".join(differ)
        + ". The patches replace private Twisted/autobahn/daphne internals: re-read each against the new"
        " source, run the transport tests with it on and off and `make bench`, then set WRITTEN_FOR to the"
        " new versions (or turn the patch off with its setting and say so)."
    )


@pytest.mark.parametrize(
    ("twisted_write", "ws_frame", "expected"),
    [
        (False, False, []),
        (True, False, ["twisted_write"]),
        (False, True, ["ws_frame"]),
        (True, True, ["twisted_write", "ws_frame"]),
    ],
)
def test_each_setting_decides_whether_its_patch_is_installed(
    pristine: None,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    twisted_write: bool,
    ws_frame: bool,
    expected: list[str],
) -> None:
    # given
    settings.COPILOT_TWISTED_WRITE_PATCH, settings.COPILOT_WS_FRAME_PATCH = twisted_write, ws_frame
    # when
    with caplog.at_level(logging.INFO, logger=LOGGER):
        installed = transport_patches_install()
    # then
    assert installed == expected
    assert _twisted_write_is_twisteds() is not twisted_write
    assert _is_patched(tcp.Connection.write) is twisted_write
    assert _server_send_is_daphnes() is not ws_frame
    assert _is_patched(WebSocketProtocol.serverSend) is ws_frame
    assert _records(caplog) == [("INFO", f"Transport patches installed: {', '.join(expected) or 'none'}")]


def test_a_patch_wraps_the_librarys_own_method_once(pristine: None, settings: Any) -> None:
    twisteds, daphnes = tcp.Connection.write, WebSocketProtocol.serverSend
    assert transport_patches_install() == ["twisted_write", "ws_frame"]
    first = (tcp.Connection.write, WebSocketProtocol.serverSend)
    assert transport_patches_install() == ["twisted_write", "ws_frame"]
    assert (tcp.Connection.write, WebSocketProtocol.serverSend) == first  # not wrapped again
    assert (inspect.unwrap(first[0]), inspect.unwrap(first[1])) == (twisteds, daphnes)


def test_another_version_logs_one_warning_naming_it_and_the_patch_still_applies(
    pristine: None, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a newer Twisted and autobahn, the same daphne
    faked = {"Twisted": "27.1.0", "autobahn": "27.3.0"}
    real = transport_patches.version_installed
    monkeypatch.setattr(transport_patches, "version_installed", lambda dist: faked.get(dist) or real(dist))
    # when
    with caplog.at_level(logging.INFO, logger=LOGGER):
        installed = transport_patches_install()
    # then: one warning per patch, naming each version that differs; both still applied
    assert installed == ["twisted_write", "ws_frame"]
    assert _records(caplog) == [
        (
            "WARNING",
            "Transport patch twisted_write meets versions it was not written for: Twisted 27.1.0 (written for"
            " 26.10.0); applied only if what it replaces is there",
        ),
        (
            "WARNING",
            "Transport patch ws_frame meets versions it was not written for: autobahn 27.3.0 (written for"
            " 26.10.2); applied only if what it replaces is there",
        ),
        ("INFO", "Transport patches installed: twisted_write, ws_frame"),
    ]
    assert _is_patched(tcp.Connection.write)
    assert _is_patched(WebSocketProtocol.serverSend)


def test_a_patch_whose_method_is_gone_is_skipped_with_an_error(
    pristine: None, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a daphne without `serverSend` (and of no known version)
    monkeypatch.delattr(WebSocketProtocol, "serverSend")
    real = transport_patches.version_installed
    monkeypatch.setattr(transport_patches, "version_installed", lambda dist: None if dist == "daphne" else real(dist))
    # when
    with caplog.at_level(logging.INFO, logger=LOGGER):
        installed = transport_patches_install()
    # then: the other patch is applied, nothing is set on daphne's class, nothing raised
    assert installed == ["twisted_write"]
    assert "serverSend" not in vars(WebSocketProtocol)
    assert not hasattr(WebSocketProtocol, "serverSend")
    assert _records(caplog) == [
        (
            "WARNING",
            "Transport patch ws_frame meets versions it was not written for: daphne not installed (written for"
            " 4.2.3); applied only if what it replaces is there",
        ),
        ("ERROR", "Transport patch ws_frame skipped: daphne.ws_protocol:WebSocketProtocol has no method serverSend"),
        ("INFO", "Transport patches installed: twisted_write"),
    ]


def test_a_patch_reading_a_private_attribute_the_library_lacks_is_skipped(
    pristine: None, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the write patch reads an attribute Twisted's connections do not have
    twisted_write, ws_frame = PATCHES
    renamed = dataclasses.replace(twisted_write, reads=(*twisted_write.reads, "_tempDataChunks"))
    monkeypatch.setattr(transport_patches, "PATCHES", (renamed, ws_frame))
    # when
    with caplog.at_level(logging.INFO, logger=LOGGER):
        installed = transport_patches_install()
    # then
    assert installed == ["ws_frame"]
    assert _twisted_write_is_twisteds()
    assert _records(caplog) == [
        (
            "ERROR",
            "Transport patch twisted_write skipped: twisted.internet.tcp:Connection no longer has _tempDataChunks",
        ),
        ("INFO", "Transport patches installed: ws_frame"),
    ]


PROBE = "import twisted.internet.reactor, copilot_site.asgi"  # what daphne does before serving


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({}, "Transport patches installed: twisted_write, ws_frame"),
        ({"COPILOT_TWISTED_WRITE_PATCH": "0"}, "Transport patches installed: ws_frame"),
        (
            {"COPILOT_TWISTED_WRITE_PATCH": "off", "COPILOT_WS_FRAME_PATCH": "false"},
            "Transport patches installed: none",
        ),
    ],
)
def test_the_asgi_module_under_twisted_installs_what_the_environment_turns_on(
    tmp_path: Path, overrides: dict[str, str], line: str
) -> None:
    env = process_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", **overrides)
    for name in ("COPILOT_TWISTED_WRITE_PATCH", "COPILOT_WS_FRAME_PATCH"):
        if name not in overrides:
            env.pop(name, None)
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [entry.split(" INFO ")[-1] for entry in done.stderr.splitlines() if LOGGER in entry] == [f"{LOGGER} {line}"]
