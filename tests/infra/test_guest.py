"""Waiting for a guest over SSH (infra/proxmox/guest.py): the banner, the endpoint map, hostile input."""

from __future__ import annotations

import socket
import threading

import pytest

from infra.proxmox import guest
from infra.proxmox.client import ProxmoxError, Timeout


def serve_once(payload: bytes) -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def answer():
        conn, _ = sock.accept()
        with conn, sock:
            conn.sendall(payload)

    threading.Thread(target=answer, daemon=True).start()
    return sock.getsockname()[1]


def test_banner_through_the_endpoint_map(monkeypatch):
    port = serve_once(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    monkeypatch.setenv(guest.ENDPOINTS_ENV, f"10.20.0.11=127.0.0.1:{port}")
    assert guest.ssh_banner("10.20.0.11") == "SSH-2.0-OpenSSH_9.2p1"


def test_something_that_is_not_ssh_is_not_up(monkeypatch):
    port = serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    monkeypatch.setenv(guest.ENDPOINTS_ENV, f"10.20.0.11=127.0.0.1:{port}")
    assert guest.ssh_banner("10.20.0.11") is None


def test_wait_ssh_times_out_with_what_to_check(monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: refused
    monkeypatch.setenv(guest.ENDPOINTS_ENV, f"10.20.0.11=127.0.0.1:{port}")
    with pytest.raises(Timeout, match="VM 211: no SSH answer on 10.20.0.11:22 after 0s.*routes to the lab"):
        guest.wait_ssh("10.20.0.11", "VM 211", timeout=0.05, poll=0.01)


@pytest.mark.parametrize("bad", ["10.20.0.11", "10.20.0.11=host", "x=127.0.0.1:22", "10.20.0.11=h:99999"])
def test_a_malformed_endpoint_map_is_one_clear_error(bad):
    with pytest.raises(ProxmoxError, match=r"RENDERLAB_GUEST_SSH entry .* is not ADDRESS=HOST:PORT"):
        guest.endpoints(bad)
