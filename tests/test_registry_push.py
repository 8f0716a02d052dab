"""`make images` and the lab registry: a registry answers only over TLS with a certificate from the lab CA (401
counts: it wants the login), and the login a push uses is a 0600 file, never a command-line argument."""

from __future__ import annotations

import json
import ssl
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from renderlab.lab import host_secrets, lab_ca
from renderlab.workstation import images


class _Registry(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(401)  # distribution's /v2/ without a login
        self.send_header("WWW-Authenticate", 'Basic realm="renderlab"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


def _serve(tmp_path, bundle: str) -> ThreadingHTTPServer:
    got = lab_ca.issue(bundle, "registry", ["127.0.0.1"])
    (tmp_path / "r.crt").write_text(got.cert)
    (tmp_path / "r.key").write_text(got.key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "r.crt", tmp_path / "r.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_registry_answers_only_through_the_lab_ca(tmp_path):
    bundle = lab_ca.new_ca()
    server = _serve(tmp_path, bundle)
    hostport = f"127.0.0.1:{server.server_address[1]}"
    try:
        assert images.registry_answers(hostport, lab_ca.ca_cert(bundle))  # 401: there, wants a login
        assert not images.registry_answers(hostport, lab_ca.ca_cert(lab_ca.new_ca()))  # another CA
        assert not images.registry_answers(hostport, None)  # no CA given: nothing is trusted
    finally:
        server.shutdown()
        server.server_close()


def test_the_login_is_a_private_file_and_the_push_verifies_tls(tmp_path):
    secrets_file = tmp_path / "secrets.yml"
    values = host_secrets.generate()
    host_secrets.write(secrets_file, values)
    login = images.RegistryLogin(secrets_file)
    certs, auth = login.write(tmp_path / "push", "10.20.0.11:30500")
    assert (certs / "ca.crt").read_text() == lab_ca.ca_cert(values[host_secrets.LAB_CA])
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert "10.20.0.11:30500" in json.loads(auth.read_text())["auths"]
    cmd = images.push_command(
        "podman", "a:1", "10.20.0.11:30500/x:1", digest_file=tmp_path / "d", certs=certs, auth=auth
    )
    assert cmd[:5] == ["push", "--cert-dir", str(certs), "--authfile", str(auth)]
    assert values["renderlab_registry_password"] not in " ".join(cmd)
    assert not any("tls-verify" in a for a in cmd)
