"""The fake must stay shaped like p4python: same attributes, same exception class and message layout."""

from __future__ import annotations

import socket

import P4
import pytest

from . import fakep4

USED = ("port", "user", "password", "client", "prog", "exception_level", "input", "errors", "warnings")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_attributes_and_methods_match_p4python():
    real, fake = P4.P4(), fakep4.P4()
    for name in USED:
        assert hasattr(real, name) and hasattr(fake, name), name
    assert real.exception_level == fake.exception_level == 2
    for name in (
        "connect",
        "connected",
        "disconnect",
        "run",
        "run_login",
        "run_sync",
        "fetch_client",
        "save_client",
    ):
        assert callable(getattr(real, name)) and callable(getattr(fake, name)), name
    assert fakep4.P4Exception is P4.P4Exception


def test_refused_connect_has_the_real_shape():
    port = f"127.0.0.1:{closed_port()}"
    real, fake = P4.P4(), fakep4.P4()
    real.port = fake.port = port
    with pytest.raises(P4.P4Exception) as r:
        real.connect()
    with pytest.raises(P4.P4Exception) as f:
        fake.connect()
    assert str(r.value) == str(f.value) == "Connect to server failed; check $P4PORT."
    assert r.value.errors == f.value.errors and r.value.warnings == f.value.warnings == []
    assert r.value.value.splitlines()[:2] == f.value.value.splitlines()[:2]
    assert r.value.value.splitlines()[2].endswith("Connection refused")


def test_exception_levels_and_up_to_date_warning(tmp_path):
    server = fakep4.FakeServer(port="fidelity:1666")
    fakep4.SERVERS[server.port] = server
    try:
        server.submit({"//depot/a/x.bin": b"x"})
        p4 = fakep4.P4()
        p4.port, p4.user, p4.client = server.port, "anyone", "c1"
        p4.connect()
        spec = p4.fetch_client("c1")
        assert isinstance(spec, P4.Spec) and spec["Host"]
        spec["Root"], spec["View"] = str(tmp_path), ["//depot/a/... //c1/..."]
        assert p4.save_client(spec) == ["Client c1 saved."]
        assert p4.run_sync("//depot/a/...")[0]["action"] == "added"
        with pytest.raises(P4.P4Exception) as e:  # level 2: warnings raise too
            p4.run_sync("//depot/a/...")
        assert e.value.warnings == ["//depot/a/... - file(s) up-to-date."] and e.value.errors == []
        assert e.value.value.startswith(
            '[P4#run] Warnings during command execution( "p4 sync //depot/a/..." )'
        )
        p4.exception_level = 1
        assert p4.run_sync("//depot/a/...") == [] and p4.warnings == ["//depot/a/... - file(s) up-to-date."]
        p4.exception_level = 0
        assert p4.run_files("//depot/a/...") == [] and p4.errors == [
            "Unknown command.  Try 'p4 help' for info."
        ]
    finally:
        fakep4.SERVERS.pop(server.port)


def test_progress_handler_is_accepted_by_p4python():
    from renderlab.jobs.fetch.progress import Reporter, p4_progress

    handler = p4_progress(P4, Reporter(quiet=True))
    real = P4.P4()
    real.progress = handler  # the C adapter rejects anything that is not a P4.Progress
    assert real.progress is handler
    handler.init(2)
    handler.setDescription("sync", P4.Progress.UNIT_FILES)
    handler.setTotal(4)
    handler.update(4)
    handler.done(0)
