"""The testinfra suite's own hygiene, checked here without a lab: its failures print no secret, its HTTP client
trusts the lab CA alone whatever the environment says, and it reads an Airflow CLI's JSON after log lines."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from renderlab.lab import host_secrets, lab_ca
from renderlab.workstation.nspawn_lab.options import ROOT
from tests.hosts.cli_output import json_list
from tests.hosts.lab_http import lab_ca_session

# Fails the way the lab's checks did: a login whose HTTP frame holds the password in its body, an assertion
# on a secret, a secret printed, a fixture-like mapping of every secret as a frame's argument.
FAILING_CHECKS = """
import os
from tests.hosts import secret_redaction

SECRETS = secret_redaction.read(os.environ["RENDERLAB_HOST_SECRETS"])


def post(url, body):
    raise ConnectionError("certificate verify failed")


def test_login():
    post("https://airflow:8080/auth/token", ('{"password": "%s"}' % SECRETS["renderlab_airflow_admin_password"]).encode())


def check_share(lab_secrets):
    assert lab_secrets["renderlab_share_password"] == "guess"


def test_compare():
    check_share(SECRETS)


def test_prints():
    print(SECRETS["renderlab_backup_password"], SECRETS["renderlab_lab_ca"])
    assert False
"""


def _run_checks(tmp_path, *plugin: str) -> str:
    secrets_file = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(secrets_file)]) == 0
    (tmp_path / "test_checks.py").write_text(FAILING_CHECKS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RENDERLAB_HOST_SECRETS": str(secrets_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *plugin, str(tmp_path / "test_checks.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "3 failed" in proc.stdout, proc.stdout[-3000:]
    return proc.stdout + proc.stderr


def test_a_failing_check_prints_no_secret(tmp_path):
    out = _run_checks(tmp_path, "-p", "tests.hosts.secret_redaction")
    needles = host_secrets.log_needles(host_secrets.read(tmp_path / "secrets.yml"))
    # Not a secret, nor a piece of one as long as pytest's shortened values keep ('eZyQSOk8Waqh...XxrdIo9awKewd').
    assert [name for name, text in needles if any(text[i : i + 8] in out for i in range(len(text) - 7))] == []
    for name in ("renderlab_airflow_admin_password", "renderlab_share_password", "renderlab_backup_password"):
        assert f"<secret {name}>" in out  # the place is still seen, by the secret's name
    assert "lab_secrets = <lab secrets: renderlab_airflow_admin_password" in out
    assert (
        "E       AssertionError: assert '<secret renderlab_share_password>...<secret renderlab_share_password>' =="
        in out
    )
    assert "-----BEGIN CERTIFICATE-----" in out  # the CA's certificate is public
    assert "FAILED test_checks.py::test_login - ConnectionError: certificate verify failed" in out


def test_without_the_redaction_the_same_checks_leak(tmp_path):
    """What the lab lane's testinfra.log held (the admin and share passwords): the check above is not vacuous."""
    out = _run_checks(tmp_path)
    values = host_secrets.read(tmp_path / "secrets.yml")
    assert values["renderlab_airflow_admin_password"] in out
    assert values["renderlab_share_password"] in out


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args):
        pass


def test_the_suites_client_trusts_the_lab_ca_even_with_a_ca_bundle_in_the_environment(tmp_path, monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE (the system store here) override a Session's verify: every Airflow check
    in the lab failed 'self-signed certificate in certificate chain' for it."""
    bundle = lab_ca.new_ca()
    issued = lab_ca.issue(bundle, "airflow", ["127.0.0.1"])
    (tmp_path / "a.crt").write_text(issued.cert)
    (tmp_path / "a.key").write_text(issued.key)
    (tmp_path / "ca.crt").write_text(lab_ca.ca_cert(bundle))
    (tmp_path / "other.crt").write_text(lab_ca.ca_cert(lab_ca.new_ca()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "a.crt", tmp_path / "a.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/api/v2/monitor/health"
    try:
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.setenv(var, ssl.get_default_verify_paths().openssl_cafile)
        assert lab_ca_session(str(tmp_path / "ca.crt")).get(url, timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):  # another CA is still refused
            lab_ca_session(str(tmp_path / "other.crt")).get(url, timeout=10)
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.setenv(var, str(tmp_path / "ca.crt"))
        with pytest.raises(requests.exceptions.SSLError):  # nor does the environment add the lab CA
            lab_ca_session(str(tmp_path / "other.crt")).get(url, timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def test_the_users_json_is_read_after_the_cli_s_log_lines():
    out = (
        "[warning  ] Using `httpx` with `starlette.testclient` is deprecated [py.warnings] category=Warn\n"
        '[{"username": "admin", "roles": ["Admin"]}]\n'
    )
    assert json_list(out) == [{"username": "admin", "roles": ["Admin"]}]
    assert json_list('[\n  {"username": "admin"}\n]') == [{"username": "admin"}]
    with pytest.raises(AssertionError, match="no JSON list"):
        json_list("[warning  ] no users here [x]\nError: database locked\n")
