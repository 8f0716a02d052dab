"""Perforce fetch logic against the P4-shaped fake, and against a real p4d when one is on PATH (opt-in lane)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from renderlab.jobs.fetch.credentials import Credentials
from renderlab.jobs.fetch.errors import AuthError, DestinationError, SourceError, UnreachableError
from renderlab.jobs.fetch.perforce import CLIENT_OPTIONS, client_name, fetch_depot
from renderlab.jobs.fetch.progress import Reporter
from renderlab.jobs.fetch.source import P4Source

from . import fakep4
from .conftest import run_cli
from .depots import FakeDepot, RealDepot, p4d_missing_reason

PROJECT = "//depot/songs/demo/..."
QUIET = Reporter(quiet=True)

C1 = {
    "//depot/songs/demo/song.mid": b"MThd" + bytes(range(200)),
    "//depot/songs/demo/audio/kick.wav": b"RIFF" + b"k" * 5000,
    "//depot/songs/demo/audio/snare.wav": b"RIFF" + b"s" * 7000,
    "//depot/songs/other/not-ours.txt": b"outside the project view",
}


@pytest.fixture(params=["fake", pytest.param("p4d", marks=pytest.mark.optin)])
def depot(request, tmp_path: Path):
    if request.param == "p4d":
        reason = p4d_missing_reason()
        if reason:
            pytest.skip(reason)
        d = RealDepot(tmp_path)
    else:
        d = FakeDepot()
    yield d
    d.close()


@pytest.fixture
def fake():
    d = FakeDepot()
    yield d
    d.close()


class Run:
    """Calls fetch_depot for one depot and records the backoff sleeps instead of sleeping."""

    def __init__(self, depot, dest: Path):
        self.depot, self.dest, self.sleeps = depot, dest, []

    def __call__(
        self, change: int | None = None, path: str = PROJECT, creds: Credentials | None = None, **kw
    ):
        src = P4Source(port=kw.pop("port", self.depot.port), depot_path=path, change=change)
        creds = creds or Credentials(self.depot.user, self.depot.password, kw.pop("fingerprint", None))
        return fetch_depot(
            src, self.dest, creds, QUIET, p4_factory=self.depot.p4_factory, sleep=self.sleeps.append, **kw
        )


def local_tree(dest: Path) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and ".renderlab" not in p.parts
    }


def expected(files: dict[str, bytes | None]) -> dict[str, bytes]:
    prefix = PROJECT.removesuffix("...")
    return {k.removeprefix(prefix): v for k, v in files.items() if k.startswith(prefix) and v is not None}


def manifest(dest: Path) -> dict:
    [only] = list((dest / ".renderlab").glob("manifest-*.json"))
    return json.loads(only.read_text())


def test_first_fetch_then_unchanged_refetch(depot, dest: Path):
    c1 = depot.submit(C1)
    run = Run(depot, dest)
    r = run()
    assert (r.changelist, r.files_total, r.files_transferred, r.files_removed) == (c1, 3, 3, 0)
    assert r.bytes_transferred == sum(len(v) for v in expected(C1).values())
    assert local_tree(dest) == expected(C1)
    doc = manifest(dest)
    assert doc["changelist"] == c1
    assert {f["path"]: f["digest"] for f in doc["files"]} == {
        k: hashlib.md5(v).hexdigest() for k, v in expected(C1).items()
    }

    again = run(change=c1)
    assert (again.changelist, again.files_transferred, again.bytes_transferred, again.files_removed) == (
        c1,
        0,
        0,
        0,
    )
    if depot.kind == "fake":
        assert sum("client -i" in c for c in depot.server.commands) == 1  # the workspace spec was saved once
        spec = depot.server.clients[client_name(dest.absolute())]
        assert spec["Root"] == str(dest.absolute())
        assert spec["Options"] == CLIENT_OPTIONS
        assert spec["View"] == [f"{PROJECT} //{client_name(dest.absolute())}/..."]
        assert "Host" not in spec  # no host lock: any pod may use the workspace


def test_changed_deleted_and_older_change(depot, dest: Path):
    c1 = depot.submit(C1)
    c2_files = {
        "//depot/songs/demo/song.mid": b"MThd-v2",
        "//depot/songs/demo/audio/snare.wav": None,
        "//depot/songs/demo/audio/hat.wav": b"RIFF" + b"h" * 300,
    }
    c2 = depot.submit(c2_files)
    run = Run(depot, dest)
    run(change=c1)
    r = run()  # latest
    assert (r.changelist, r.files_transferred, r.files_removed, r.files_total) == (c2, 2, 1, 3)
    assert local_tree(dest) == expected(C1 | c2_files)
    assert not (dest / "audio/snare.wav").exists()
    back = run(change=c1)
    assert (back.changelist, back.files_transferred, back.files_removed) == (c1, 2, 1)
    assert local_tree(dest) == expected(C1)
    assert manifest(dest)["changelist"] == c1


def test_damaged_files_are_force_synced_alone(depot, dest: Path):
    depot.submit(C1)
    run = Run(depot, dest)
    run()
    kick = dest / "audio/kick.wav"
    kick.chmod(0o644)
    kick.write_bytes(b"RIFF" + b"X" * 5000)  # same size, other bytes
    (dest / "song.mid").chmod(0o644)
    (dest / "song.mid").unlink()
    r = run()
    assert (r.files_transferred, r.files_removed) == (2, 0)
    assert local_tree(dest) == expected(C1)
    if depot.kind == "fake":
        [forced] = [c for c in depot.server.commands if c.startswith("p4 sync -f")]
        assert "kick.wav" in forced and "song.mid" in forced and "snare.wav" not in forced


def test_bad_depot_path_and_empty_change(depot, dest: Path):
    c1 = depot.submit(C1)
    run = Run(depot, dest)
    with pytest.raises(SourceError, match="must refer to client"):
        run(path="//nodepot/songs/demo/...")
    with pytest.raises(SourceError, match="no submitted changelist touches //depot/songs/empty/"):
        run(path="//depot/songs/empty/...")
    later = depot.submit({"//depot/songs/late/a.wav": b"a"})
    with pytest.raises(SourceError, match=f"at or before {c1}"):
        run(path="//depot/songs/late/...", change=c1)
    assert later > c1
    assert not list((dest / ".renderlab").glob("manifest-*"))


def test_wrong_password_fails_without_retries(depot, dest: Path):
    depot.submit(C1)
    run = Run(depot, dest)
    with pytest.raises(AuthError, match="Password invalid") as err:
        run(creds=Credentials(depot.user, "not-the-password"))
    assert run.sleeps == []
    assert "not-the-password" not in str(err.value)


def test_ticket_is_used_without_login(fake, dest: Path):
    fake.submit(C1)
    run = Run(fake, dest)
    r = run(creds=Credentials(fake.user, fakep4.ticket_for(fake.server, fake.user)))
    assert r.files_transferred == 3
    assert not any(c.startswith("p4 login") for c in fake.server.commands)
    with pytest.raises(AuthError, match=r"P4PASSWD\) invalid or unset"):
        run(creds=Credentials(fake.user, "0123456789ABCDEF0123456789ABCDEF"))


def test_unreachable_server_retries_with_backoff_then_fails(fake, dest: Path):
    fake.server.down = True
    run = Run(fake, dest)
    with pytest.raises(UnreachableError, match=r"Connect to server failed.*gave up after 4 attempts"):
        run(retries=3)
    assert run.sleeps == [1.0, 2.0, 4.0]


def test_transient_outages_are_retried(fake, dest: Path):
    fake.submit(C1)
    fake.server.refuse_connects = 2
    run = Run(fake, dest)
    assert run().files_transferred == 3
    assert run.sleeps == [1.0, 2.0]
    fake.server.drop_after_commands = 3  # the connection breaks in the middle of the next fetch
    fake.submit({"//depot/songs/demo/song.mid": b"v2"})
    r = run()
    assert (r.files_transferred, run.sleeps[-1]) == (1, 1.0)


def test_interrupted_sync_keeps_previous_manifest(fake, dest: Path):
    c1 = fake.submit(C1)
    run = Run(fake, dest)
    run()
    fake.submit({"//depot/songs/demo/song.mid": b"v2"})
    fake.server.drop_after_commands = 4  # login, client -o, changes, fstat; the sync finds the line dead
    with pytest.raises(UnreachableError):
        run(retries=0)
    assert manifest(dest)["changelist"] == c1
    r = run()
    assert r.changelist == c1 + 1
    assert manifest(dest)["changelist"] == c1 + 1


def test_ssl_trust(dest: Path):
    fp = ":".join(["AB"] * 32)
    d = FakeDepot(port="ssl:perforce.test:1666", fingerprint=fp)
    try:
        d.submit(C1)
        run = Run(d, dest)
        with pytest.raises(AuthError, match="P4TRUST_FINGERPRINT"):
            run()
        with pytest.raises(AuthError, match="IDENTIFICATION HAS CHANGED"):
            run(fingerprint=":".join(["CD"] * 32))
        assert run.sleeps == []
        assert run(fingerprint=fp).files_transferred == 3
    finally:
        d.close()


def test_full_share_during_sync(fake, dest: Path):
    fake.submit(C1)
    fake.server.write_error = fakep4.ENOSPC
    with pytest.raises(DestinationError, match="share is full"):
        Run(fake, dest)()


def test_cli_against_unreachable_server_with_real_p4python(tmp_path: Path, dest: Path):
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "Sup3r-Secret-Value"
    res = run_cli(
        "--source",
        f"p4://127.0.0.1:{port}//depot/songs/demo/...@latest",
        "--dest",
        str(dest),
        "--retries",
        "1",
        env={"P4USER": "fetcher", "P4PASSWD": secret},
    )
    assert res.returncode == 5, res.stderr
    assert "Connect to server failed" in res.stderr and "gave up after 2 attempts" in res.stderr
    assert "retrying in 1 s" in res.stderr
    assert secret not in res.stderr + res.stdout
    assert res.stdout == ""


def test_cli_without_credentials(dest: Path):
    res = run_cli(
        "--source",
        "p4://127.0.0.1:1//depot/x/...@latest",
        "--dest",
        str(dest),
        env={"P4USER": "", "P4PASSWD": ""},
    )
    assert res.returncode == 4
    assert "no Perforce user" in res.stderr


def test_sync_progress_reaches_stderr(fake, dest: Path, capsys):
    fake.submit(C1)
    src = P4Source(port=fake.port, depot_path=PROJECT, change=None)
    fetch_depot(
        src, dest, Credentials(fake.user, fake.password), Reporter(interval_s=0), p4_factory=fake.p4_factory
    )
    err = capsys.readouterr().err
    assert "fetch: sync: 3/3 files (100%)" in err
    assert fake.password not in err
