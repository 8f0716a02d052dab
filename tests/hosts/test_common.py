"""The common role on every host: packages, admin user, sshd hardening, time sync, upgrades, guest agent."""

from __future__ import annotations

import subprocess


def sshd_settings(host) -> dict[str, str]:
    with host.sudo():
        out = host.check_output("/usr/sbin/sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_ssh_service_active_and_listening(host):
    ssh = host.service("ssh")
    assert ssh.is_running
    assert ssh.is_enabled
    assert host.socket("tcp://0.0.0.0:22").is_listening or host.socket("tcp://:::22").is_listening


def test_sshd_effective_config_keys_only_no_root(host):
    s = sshd_settings(host)
    assert s["passwordauthentication"] == "no"
    assert s["kbdinteractiveauthentication"] == "no"
    assert s["permitrootlogin"] == "no"
    assert s["permitemptypasswords"] == "no"
    assert s["authenticationmethods"] == "publickey"


def test_sshd_offers_no_password_login_over_the_network(host, lab_vars):
    """Ask the server itself: a client without keys is told which methods remain (publickey only)."""
    address = lab_vars["ansible_host"]
    proc = subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            f"root@{address}",
            "true",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr, proc.stderr


def test_admin_user_has_sudo_and_exactly_the_configured_keys(host, lab_vars):
    admin = lab_vars["renderlab_admin_user"]
    user = host.user(admin)
    assert user.exists
    assert "sudo" in user.groups
    keys_file = host.file(f"/home/{admin}/.ssh/authorized_keys")
    assert keys_file.user == admin
    assert keys_file.mode == 0o600
    keys = [k for k in keys_file.content_string.splitlines() if k and not k.startswith("#")]
    assert keys == lab_vars["renderlab_ssh_public_keys"]
    assert host.run("sudo -n true").rc == 0


def test_base_packages_installed(host):
    for name in ("ca-certificates", "curl", "gnupg", "python3-apt", "sudo"):
        assert host.package(name).is_installed, name


def test_time_sync_configured(host, in_container):
    assert host.package("chrony").is_installed
    chrony = host.service("chrony")
    assert chrony.is_enabled
    conf = host.file("/etc/chrony/conf.d/renderlab.conf").content_string
    assert "pool " in conf
    if in_container:
        # A container shares the host's clock and lacks CAP_SYS_TIME: chronyd is not started there.
        assert not chrony.is_running
    else:
        assert chrony.is_running
        assert host.run("chronyc -n tracking").rc == 0


def test_unattended_upgrades_on(host):
    assert host.package("unattended-upgrades").is_installed
    assert host.service("unattended-upgrades").is_running
    dump = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump


def test_qemu_guest_agent(host, in_container):
    assert host.package("qemu-guest-agent").is_installed
    port = host.file("/dev/virtio-ports/org.qemu.guest_agent.0")
    # In a container --vm reports the machine underneath, so ask about containers first.
    if not in_container and host.run("systemd-detect-virt --vm").stdout.strip() == "kvm":
        assert port.exists, "no guest agent port: enable the QEMU agent option on the Proxmox VM"
        assert host.service("qemu-guest-agent").is_running
    else:
        # A container (the local lab) or not a KVM guest: there is no virtio port, so the agent cannot run.
        assert not port.exists
        assert not host.service("qemu-guest-agent").is_running
