"""The airflow and perforce roles' TLS tasks run by ansible-playbook on this machine (into a temporary folder):
the service's certificate is issued from the lab CA for exactly its names, a second run changes nothing, and a
rotated CA or new names replace it. The secrets never reach Ansible's output."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from renderlab.lab import lab_ca

ROOT = Path(__file__).resolve().parents[2]
SANS = ["airflow", "airflow.lab.internal", "10.20.0.15", "127.0.0.1", "localhost"]


def run_tls(
    tmp_path: Path, bundle: str, sans: list[str], role: str = "airflow"
) -> subprocess.CompletedProcess:
    role_vars = {
        "airflow": {
            "airflow_tls_dir": str(tmp_path / "tls"),
            "airflow_user": "root",
            "airflow_lab_ca": bundle,
            "airflow_tls_sans": sans,
            "airflow_repo_root": str(ROOT),
            "airflow_components": [],  # the restart handler has no unit to restart here
        },
        "perforce": {
            "perforce_data_root": str(tmp_path / "p4"),
            "perforce_user": "root",
            "perforce_lab_ca": bundle,
            "perforce_tls_sans": sans,
            "perforce_repo_root": str(ROOT),
            "perforce_lab_ca_file": str(tmp_path / "p4-lab-ca.crt"),
        },
    }[role]
    play = [
        {
            "name": "airflow tls",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Issue the service's certificate",
                    "ansible.builtin.include_role": {"name": role, "tasks_from": "tls"},
                    "vars": role_vars,
                }
            ],
        }
    ]
    playbook = tmp_path / "tls.yml"
    playbook.write_text(yaml.safe_dump(play))
    # A systemctl that records what it is asked: the role's restart handler runs here, on no real unit.
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/systemctl.log\n'
        'case "$1" in show) printf "LoadState=loaded\\nActiveState=active\\nUnitFileState=enabled\\n";; esac\n'
    )
    (fake / "systemctl").chmod(0o755)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
           "ANSIBLE_PYTHON_INTERPRETER": str(ROOT / ".venv" / "bin" / "python"),
           "PATH": f"{fake}:{os.environ['PATH']}"}  # fmt: skip
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(playbook)],
        cwd=ROOT / "ansible", env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def changed(proc: subprocess.CompletedProcess) -> int:
    return int(re.search(r"changed=(\d+)", proc.stdout).group(1))


@pytest.fixture(scope="module")
def ca() -> str:
    if os.geteuid() != 0:
        pytest.fail("the role's files are root-owned: run as root (as CI does)", pytrace=False)
    return lab_ca.new_ca()


def _held(tmp_path: Path) -> tuple[str, str, str]:
    tls = tmp_path / "tls"
    return tuple((tls / n).read_text() for n in ("lab-ca.crt", "airflow.crt", "airflow.key"))  # type: ignore[return-value]


def test_issued_once_then_kept_then_replaced_on_a_new_ca_or_new_names(ca, tmp_path):
    first = run_tls(tmp_path, ca, SANS)
    assert changed(first) >= 2  # issued and installed
    ca_cert, cert, key = _held(tmp_path)
    assert ca_cert == lab_ca.ca_cert(ca)
    assert lab_ca.still_good(ca, cert, key, SANS)
    assert lab_ca.cert_sans(x509.load_pem_x509_certificate(cert.encode())) == set(SANS)
    assert (tmp_path / "tls" / "airflow.key").stat().st_mode & 0o777 == 0o640
    for proc in (first,):  # neither key appears in Ansible's output (no_log)
        assert "PRIVATE KEY" not in proc.stdout + proc.stderr

    second = run_tls(tmp_path, ca, SANS)
    assert changed(second) == 0, second.stdout[-3000:]
    assert _held(tmp_path) == (ca_cert, cert, key)

    renamed = run_tls(tmp_path, ca, [*SANS, "10.20.0.99"])
    assert changed(renamed) > 0
    assert _held(tmp_path)[1] != cert

    rotated = lab_ca.new_ca()
    run_tls(tmp_path, rotated, SANS)
    new_ca, new_cert, new_key = _held(tmp_path)
    assert new_ca == lab_ca.ca_cert(rotated) and lab_ca.still_good(rotated, new_cert, new_key, SANS)
    assert "PRIVATE KEY" not in second.stdout + renamed.stdout


def test_p4d_gets_its_p4ssldir_pair_from_the_lab_ca_and_keeps_it(ca, tmp_path):
    """p4d's own TLS: privatekey.txt and certificate.txt (0600, p4d's user) from the lab CA, an RSA key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    (tmp_path / "p4" / "ssl").mkdir(parents=True)
    sans = ["perforce", "10.20.0.14", "127.0.0.1", "localhost"]
    first = run_tls(tmp_path, ca, sans, role="perforce")
    ssl_dir = tmp_path / "p4" / "ssl"
    cert, key = (ssl_dir / "certificate.txt").read_text(), (ssl_dir / "privatekey.txt").read_text()
    assert lab_ca.still_good(ca, cert, key, sans, key_type="rsa")
    assert isinstance(x509.load_pem_x509_certificate(cert.encode()).public_key(), rsa.RSAPublicKey)
    assert {(ssl_dir / n).stat().st_mode & 0o777 for n in ("certificate.txt", "privatekey.txt")} == {0o600}
    assert (tmp_path / "p4-lab-ca.crt").read_text() == lab_ca.ca_cert(ca)
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    assert "restart p4d" in (tmp_path / "systemctl.log").read_text()  # a new pair: p4d restarts
    (tmp_path / "systemctl.log").unlink()
    second = run_tls(tmp_path, ca, sans, role="perforce")
    assert changed(second) == 0, second.stdout[-3000:]
    assert (ssl_dir / "certificate.txt").read_text() == cert
    assert not (tmp_path / "systemctl.log").exists()  # nothing changed: no restart
