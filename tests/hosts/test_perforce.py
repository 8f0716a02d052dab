"""The perforce role: p4d at the pinned version under systemd, SSL only, security level >= 3, the depot with
its typemap, and a service user that can read the projects but not write. Where the p4d package could not be
downloaded and no air-gap packages were given, the role stopped before installing anything; these checks then
skip and say so."""

from __future__ import annotations

import socket
import ssl

import pytest

from renderlab.lab import lab_ca

pytestmark = pytest.mark.group("perforce")

P4D = "/opt/perforce/sbin/p4d"
P4 = "/opt/perforce/bin/p4"


@pytest.fixture(scope="module")
def p4d_installed(host, lab_vars) -> None:
    if not host.file(P4D).exists:
        pytest.skip(
            f"p4d is not installed on {lab_vars['inventory_hostname']}: its package could not be downloaded and "
            "no air-gap packages were given (ansible-playbook -e renderlab_p4d_packages_dir=DIR; see README)"
        )


@pytest.fixture(scope="module")
def p4(host, lab_vars):
    scheme = "ssl:" if lab_vars["renderlab_perforce_ssl"] else ""
    env = (
        f"P4PORT={scheme}127.0.0.1:{lab_vars['renderlab_perforce_port']} P4USER=super "
        "P4TICKETS=/root/.p4tickets P4TRUST=/root/.p4trust P4CONFIG="
    )

    def run(args: str) -> str:
        with host.sudo():
            return host.check_output(f"env {env} {P4} {args}")

    return run


def test_unit_and_pinned_version(host, lab_vars, p4d_installed):
    assert host.service("p4d").is_running and host.service("p4d").is_enabled
    assert f"/{lab_vars['renderlab_p4d_version']}" in host.check_output(f"{P4D} -V")


def test_security_level_at_least_3(p4, p4d_installed):
    out = p4("configure show security")
    level = int(out.split("security=")[1].split()[0])
    assert level >= 3


def test_ssl_only_over_the_network(lab_vars, lab_secrets, p4d_installed):
    if not lab_vars["renderlab_perforce_ssl"]:
        pytest.skip("perforce.ssl is false in the lab config")
    address, port = lab_vars["ansible_host"], lab_vars["renderlab_perforce_port"]
    # p4d's certificate comes from the lab CA (P4SSLDIR, the perforce role's tls.yml) for the config's names:
    # verified with that CA alone, by the address clients use.
    ctx = ssl.create_default_context(cadata=lab_ca.ca_cert(lab_secrets["renderlab_lab_ca"]))
    with (
        socket.create_connection((address, port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=address) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        names = {v for _, v in tls.getpeercert()["subjectAltName"]}
    assert names == set(lab_vars["renderlab_tls_sans"]["perforce"])


def test_p4ssldir_holds_the_lab_pair_private_to_p4d(host, lab_vars, lab_secrets, p4d_installed):
    if not lab_vars["renderlab_perforce_ssl"]:
        pytest.skip("perforce.ssl is false in the lab config")
    ssl_dir = f"{lab_vars['renderlab_perforce_data_root']}/ssl"
    with host.sudo():
        for name in ("certificate.txt", "privatekey.txt"):
            f = host.file(f"{ssl_dir}/{name}")
            assert (f.user, f.mode) == ("perforce", 0o600), name
        cert = host.file(f"{ssl_dir}/certificate.txt").content_string
        key = host.file(f"{ssl_dir}/privatekey.txt").content_string
    assert lab_ca.still_good(
        lab_secrets["renderlab_lab_ca"], cert, key, lab_vars["renderlab_tls_sans"]["perforce"], key_type="rsa"
    )


def test_depot_typemap_and_protections(p4, lab_vars, p4d_installed):
    depots = p4("-ztag -F %name% depots").split()
    assert lab_vars["renderlab_perforce_depot"] in depots
    assert "binary+Fl //....blend" in p4("typemap -o")
    protections = p4("protect -o")
    assert "write user * * //..." not in protections, "the default open-to-all protections are still there"
    svc, path = lab_vars["renderlab_perforce_service_user"], lab_vars["renderlab_perforce_projects_path"]
    assert p4(f"protects -u {svc} -m {path}/...").strip() == "read"
    assert p4(f"protects -u {svc} -m //{lab_vars['renderlab_perforce_depot']}/other/...").strip() == "none"


def test_users_are_made_by_super_only_and_tls_has_a_floor(p4, p4d_installed):
    wanted = {"dm.user.noautocreate": 2, "dm.user.setinitialpasswd": 0, "run.users.authorize": 1,
              "ssl.tls.version.min": 12}  # fmt: skip
    for name, value in wanted.items():
        assert f"{name}={value} " in p4(f"configure show {name}") + " ", name


def test_p4d_reaches_the_network_only_once_configured(host, lab_vars, p4d_installed):
    """The role keeps p4d on loopback until the protections and settings are in place, then writes its mark."""
    assert host.file(f"{lab_vars['renderlab_perforce_data_root']}/root/.renderlab-configured").exists
    assert host.socket(f"tcp://0.0.0.0:{lab_vars['renderlab_perforce_port']}").is_listening
