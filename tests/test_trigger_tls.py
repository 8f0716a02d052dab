"""`make render`'s REST client against a TLS server on loopback: it trusts the lab CA it is given and nothing
else, and never sends a password in clear to another host."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from renderlab.lab import lab_ca
from renderlab.workstation import trigger
from renderlab.workstation.trigger import Api, TriggerError


class _Airflow(BaseHTTPRequestHandler):
    """Just enough of Airflow's API: a token for any login, then one authorized GET."""

    logins: list[str] = []

    def _json(self, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).logins.append(body["password"])
        self._json({"access_token": "tok"})

    def do_GET(self):  # noqa: N802
        self._json({"auth": self.headers.get("Authorization")})

    def log_message(self, *_args):
        pass


def _serve(tmp_path: Path, bundle: str, name: str, sans: tuple[str, ...] = ("127.0.0.1", "localhost")):
    got = lab_ca.issue(bundle, "airflow", list(sans))
    (tmp_path / f"{name}.crt").write_text(got.cert)
    (tmp_path / f"{name}.key").write_text(got.key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Airflow)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def lab(tmp_path):
    """An Airflow-like TLS server whose certificate the lab CA issued; the CA's certificate in a file."""
    bundle = lab_ca.new_ca()
    ca_file = tmp_path / "lab-ca.crt"
    ca_file.write_text(lab_ca.ca_cert(bundle))
    _Airflow.logins = []
    server = _serve(tmp_path, bundle, "lab")
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


def test_the_lab_ca_is_trusted(lab):
    url, ca_file = lab
    api = Api(url, "admin", "pw", ca_file=str(ca_file))
    assert api.get("/api/v2/x") == {"auth": "Bearer tok"}
    assert _Airflow.logins == ["pw"]


def test_a_certificate_from_another_ca_is_refused_before_the_password_is_sent(lab, tmp_path):
    url, _ = lab
    other = tmp_path / "other-ca.crt"
    other.write_text(lab_ca.ca_cert(lab_ca.new_ca()))  # another lab's CA, e.g. after a rotation elsewhere
    with pytest.raises(TriggerError, match=r"certificate that is not trusted .*--ca-file / AIRFLOW_CA_FILE"):
        Api(url, "admin", "pw", ca_file=str(other)).get("/api/v2/x")
    # Without a CA file the system's store is used, which does not hold the lab CA either.
    with pytest.raises(TriggerError, match="not trusted"):
        Api(url, "admin", "pw").get("/api/v2/x")
    assert _Airflow.logins == []


def test_a_lab_certificate_for_another_name_is_refused(tmp_path):
    bundle = lab_ca.new_ca()
    (tmp_path / "ca.crt").write_text(lab_ca.ca_cert(bundle))
    server = _serve(tmp_path, bundle, "other-host", sans=("10.20.0.31",))  # the right CA, another host's name
    try:
        with pytest.raises(TriggerError, match="not trusted.*(mismatch|match)"):
            Api(
                f"https://127.0.0.1:{server.server_address[1]}",
                "admin",
                "pw",
                ca_file=str(tmp_path / "ca.crt"),
            ).get("/x")
    finally:
        server.shutdown()
        server.server_close()


def test_a_password_is_never_sent_in_clear_to_another_host():
    with pytest.raises(
        TriggerError, match=r"refusing to send the password in clear to 10\.20\.0\.30: use https://"
    ):
        Api("http://10.20.0.30:8080", "admin", "pw")
    Api("http://127.0.0.1:8080", "admin", "pw")  # make airflow's own, on loopback
    Api("http://localhost:8080", "admin", "pw")


def test_the_cli_takes_the_ca_file_from_the_environment(lab, monkeypatch, capsys):
    url, ca_file = lab
    monkeypatch.setenv("AIRFLOW_PASSWORD", "pw")
    monkeypatch.setenv("AIRFLOW_CA_FILE", str(tmp := ca_file.parent / "missing.crt"))
    assert trigger.main(["--url", url, "--no-follow"]) == 2
    assert f"cannot load the CA certificate {tmp}" in capsys.readouterr().err


def test_the_password_stays_out_of_the_clients_repr():
    # A failing test prints its arguments (the lab rehearsal's traceback showed the admin password).
    api = Api("https://10.20.0.30:8080", "admin", "s3cret-Password-value")
    assert "s3cret-Password-value" not in repr(api) and "admin" in repr(api)
