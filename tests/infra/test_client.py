"""The Proxmox client's retry and wait rules, against fakepve over HTTPS."""

from __future__ import annotations

import threading
import time

import pytest
from proxmoxer.core import ResourceException

from infra.proxmox.client import Connection, ProxmoxError, Pve, Timeout
from tests.infra.conftest import FAST, TOKEN_ID, TOKEN_SECRET, assert_schema_clean


@pytest.fixture
def client(pve, fakepve_cafile):
    return Pve(Connection(pve.url, TOKEN_ID, True, fakepve_cafile), TOKEN_SECRET, FAST)


def count(pve, method, suffix):
    return len([1 for m, p, _ in pve.requests if m == method and p.endswith(suffix)])


@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "got no worker upid - unable to start"), (502, "Bad Gateway"), (595, "No route to host")],
)
def test_transient_errors_are_retried(pve, client, status, message):
    pve.fail("GET", "/nodes/pve1/qemu/9000/config", status, message, times=2)
    assert client.get("nodes/pve1/qemu/9000/config")["name"] == "debian-12-cloudinit"
    assert count(pve, "GET", "/qemu/9000/config") == 3


def test_permanent_errors_are_not_retried(pve, client):
    pve.fail("GET", "/nodes/pve1/qemu/9000/config", 500, "VM is locked (backup)")
    with pytest.raises(ResourceException, match="locked"):
        client.get("nodes/pve1/qemu/9000/config")
    assert count(pve, "GET", "/qemu/9000/config") == 1


def test_retries_give_up_after_the_attempts(pve, client):
    pve.fail("GET", "/version", 503, "Service Unavailable")
    with pytest.raises(ResourceException, match="503"):
        client.get("version")
    assert count(pve, "GET", "/version") == FAST.attempts


def test_warnings_exit_status_is_accepted(client, monkeypatch):
    answers = iter([{"status": "running"}, {"status": "stopped", "exitstatus": "WARNINGS: 2"}])
    monkeypatch.setattr(client, "get", lambda path, **_: next(answers))
    assert client.wait_task("UPID:pve1:0001:0002:0003:qmstart:211:root@pam:", "start") == "WARNINGS: 2"


def test_not_a_upid_is_a_clear_error(client):
    with pytest.raises(ProxmoxError, match="returned no task id"):
        client.wait_task(None, "start VM 1")


def test_wait_unlocked_waits_for_the_lock_to_clear(pve, client):
    pve.snapshot_lock(9000, "clone")

    def unlock_once_seen_locked():  # a barrier on the client's first look, not a race with a timer
        deadline = time.monotonic() + 30
        while count(pve, "GET", "/qemu/9000/config") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        pve.unlock(9000)

    threading.Thread(target=unlock_once_seen_locked, daemon=True).start()
    client.wait_unlocked("pve1", 9000)
    assert count(pve, "GET", "/qemu/9000/config") >= 2


def test_wait_unlocked_times_out_with_a_hint(pve, client):
    pve.snapshot_lock(9000, "backup")
    with pytest.raises(Timeout, match=r"still locked \(backup\).*qm unlock 9000"):
        client.wait_unlocked("pve1", 9000, timeout=0.1)


def test_one_clone_per_node_at_a_time(client):
    inside, overlap = [], []

    def clone():
        with client.clone_slot("pve1"):
            if inside:
                overlap.append(True)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=clone) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []


def test_missing_token_is_a_clear_error(pve):
    with pytest.raises(ProxmoxError, match="pulumi config set --secret renderlab:proxmox_api_token"):
        Pve(Connection(pve.url, TOKEN_ID), "", FAST)


def test_schema_check_catches_a_bad_parameter(pve, client):
    """The schema helper the provider tests use does fail on a parameter PVE would refuse."""
    with pytest.raises(ResourceException, match="400"):
        client.call("PUT", "nodes/pve1/qemu/9000/config", cores="many")
    with pytest.raises(AssertionError, match="cores"):
        assert_schema_clean(pve)


def test_certificate_errors_fail_at_once(pve):
    slept = []
    untrusted = Pve(Connection(pve.url, TOKEN_ID), TOKEN_SECRET, FAST, sleep=slept.append)
    with pytest.raises(ProxmoxError, match="SSLError"):
        untrusted.get("version")
    assert slept == []


def test_connection_refused_is_retried(fakepve_cafile):
    slept = []
    gone = Pve(
        Connection("https://127.0.0.1:9", TOKEN_ID, True, fakepve_cafile),
        TOKEN_SECRET,
        FAST,
        sleep=slept.append,
    )
    with pytest.raises(ProxmoxError, match="ConnectionError"):
        gone.get("version")
    assert len(slept) == FAST.attempts - 1
