"""The samba role on the storage host: the share works for its user over the network, and only for it."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import uuid

import pytest
import smbclient
from smbprotocol.connection import Connection, Dialects
from smbprotocol.exceptions import SMBAuthenticationError, SMBResponseException
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

pytestmark = pytest.mark.group("storage")


@pytest.fixture(scope="module")
def server(lab_vars) -> str:
    return lab_vars["ansible_host"]


@pytest.fixture(scope="module")
def share_unc(lab_vars, server) -> str:
    return rf"\\{server}\{lab_vars['renderlab_share_name']}"


def smb_session(server: str, user: str, password: str, dialect: int | None = None) -> tuple:
    conn = Connection(uuid.uuid4(), server, 445)
    conn.connect(dialect=dialect, timeout=10)
    session = Session(conn, user, password, require_encryption=False, auth_protocol="ntlm")
    try:
        session.connect()
    except BaseException:
        conn.disconnect()
        raise
    return conn, session


def effective_param(host, name: str) -> str:
    return host.check_output(f"testparm -s --suppress-prompt --parameter-name='{name}' 2>/dev/null")


def test_smbd_active_on_445_only(host):
    assert host.service("smbd").is_running
    assert host.service("smbd").is_enabled
    assert not host.service("nmbd").is_running
    assert host.socket("tcp://445").is_listening
    assert not host.socket("tcp://139").is_listening


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("server min protocol", "SMB3"),
        ("server signing", "required"),
        ("server smb encrypt", "required"),
        ("map to guest", "Never"),
        ("restrict anonymous", "2"),
        ("disable netbios", "Yes"),
    ],
)
def test_security_settings(host, name, value):
    assert effective_param(host, name).lower() == value.lower()


def test_share_directory_owner_and_mode(host, lab_vars):
    d = host.file(lab_vars["renderlab_share_path"])
    assert d.is_directory
    assert d.user == lab_vars["renderlab_share_user"]
    assert d.uid == lab_vars["renderlab_share_uid"]
    assert d.mode == 0o2770


def test_authenticated_write_and_read_over_smb(host, lab_vars, lab_secrets, server, share_unc):
    user, password = lab_vars["renderlab_share_user"], lab_secrets["renderlab_share_password"]
    name = f"testinfra-{uuid.uuid4().hex}.txt"
    payload = f"written over SMB by {name}\n"
    smbclient.register_session(server, username=user, password=password, encrypt=True, auth_protocol="ntlm")
    try:
        with smbclient.open_file(rf"{share_unc}\{name}", mode="w") as f:
            f.write(payload)
        with smbclient.open_file(rf"{share_unc}\{name}", mode="r") as f:
            assert f.read() == payload
        with host.sudo():  # the share is closed to others (2770)
            on_disk = host.file(f"{lab_vars['renderlab_share_path']}/{name}")
            assert on_disk.uid == lab_vars["renderlab_share_uid"]
            assert on_disk.mode == 0o660
            assert on_disk.content_string == payload
    finally:
        smbclient.remove(rf"{share_unc}\{name}")
        smbclient.delete_session(server)
    with host.sudo():
        assert not host.file(f"{lab_vars['renderlab_share_path']}/{name}").exists


def test_session_is_smb3_encrypted_and_signed(lab_vars, lab_secrets, server, share_unc):
    conn, session = smb_session(
        server, lab_vars["renderlab_share_user"], lab_secrets["renderlab_share_password"]
    )
    try:
        assert conn.dialect >= Dialects.SMB_3_0_0
        assert conn.require_signing
        # The client did not ask for encryption: the server demanded it.
        assert session.encrypt_data
        tree = TreeConnect(session, share_unc)
        tree.connect()
        tree.disconnect()
    finally:
        conn.disconnect()


def test_wrong_password_refused(lab_vars, server):
    with pytest.raises(SMBResponseException, match="LOGON_FAILURE"):
        smb_session(server, lab_vars["renderlab_share_user"], "not-the-password")


def test_guest_refused(server):
    with pytest.raises(SMBResponseException, match="LOGON_FAILURE"):
        smb_session(server, "guest", "")


def test_anonymous_refused(server, lab_vars):
    # pyspnego will not send an anonymous NTLM logon, so Samba's own client makes the attempt.
    smbclient_bin = shutil.which("smbclient")
    if smbclient_bin is None:
        pytest.fail("smbclient is not installed on this machine; `apt-get install smbclient`", pytrace=False)
    for target in (f"//{server}/IPC$", f"//{server}/{lab_vars['renderlab_share_name']}"):
        proc = subprocess.run(
            [smbclient_bin, "-N", target, "-c", "ls"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode != 0, proc.stdout
        assert "NT_STATUS_ACCESS_DENIED" in proc.stdout + proc.stderr


def test_smb2_below_minimum_refused(lab_vars, lab_secrets, server):
    with pytest.raises((SMBResponseException, SMBAuthenticationError)):
        smb_session(
            server,
            lab_vars["renderlab_share_user"],
            lab_secrets["renderlab_share_password"],
            Dialects.SMB_2_1_0,
        )


def test_smb1_refused(server):
    """An SMB1 NEGOTIATE offering only NT LM 0.12: the server must pick no dialect (0xFFFF) or hang up."""
    dialects = b"\x02NT LM 0.12\x00"
    header = b"\xffSMB" + bytes([0x72]) + bytes(4) + bytes([0x18]) + struct.pack("<H", 0xC853) + bytes(12)
    header += struct.pack("<HHHH", 0, 0xFEFF, 0, 0)
    message = header + b"\x00" + struct.pack("<H", len(dialects)) + dialects
    with socket.create_connection((server, 445), timeout=10) as s:
        s.sendall(struct.pack(">I", len(message)) + message)
        try:
            reply = s.recv(4096)
        except ConnectionResetError:
            return
    if not reply:
        return  # closed: refused
    body = reply[4:]
    assert body[:4] == b"\xffSMB", f"unexpected reply {body[:8]!r}"
    word_count = body[32]
    dialect_index = struct.unpack("<H", body[33:35])[0]
    assert word_count == 1
    assert dialect_index == 0xFFFF, "the server accepted SMB1"
