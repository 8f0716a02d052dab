"""The lab CA (a generated host secret) and the service certificates it issues: the CA is a CA, a certificate
carries exactly the names it is asked for, and issuing again keeps a good certificate byte for byte."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import stat
import subprocess

import pytest
from cryptography import x509

from renderlab.lab import host_secrets, lab_ca

SANS = ["airflow", "10.20.0.30", "127.0.0.1", "localhost"]


@pytest.fixture(scope="module")
def ca() -> str:
    return lab_ca.new_ca()


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_the_ca_is_a_generated_host_secret_that_can_only_sign_leaves(ca):
    assert host_secrets.SERVICE_SECRETS[host_secrets.LAB_CA].format == "lab_ca"
    values = host_secrets.generate()
    other = host_secrets.generate()
    assert values[host_secrets.LAB_CA] != other[host_secrets.LAB_CA]  # drawn fresh, never derived
    cert = _cert(lab_ca.ca_cert(values[host_secrets.LAB_CA]))
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature
    assert "PRIVATE KEY" not in lab_ca.ca_cert(ca)  # what clients get is the certificate alone


def test_a_broken_ca_secret_is_refused_with_how_to_fix(ca):
    values = host_secrets.generate()
    with pytest.raises(host_secrets.SecretsError, match="rotate renderlab_lab_ca"):
        host_secrets.check({**values, host_secrets.LAB_CA: "-----BEGIN CERTIFICATE-----\nxx"}, "f")
    other_cert = lab_ca.ca_cert(lab_ca.new_ca())
    key_only = ca[: ca.index("-----BEGIN CERTIFICATE-----")]
    with pytest.raises(lab_ca.LabCAError, match="not the certificate's"):
        lab_ca.load_ca(key_only + other_cert)


def test_a_service_certificate_carries_exactly_its_names_and_chains_to_the_ca(ca):
    got = lab_ca.issue(ca, "airflow", SANS)
    cert = _cert(got.cert)
    assert lab_ca.cert_sans(cert) == set(SANS)
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in ips.get_values_for_type(x509.IPAddress)] == ["10.20.0.30", "127.0.0.1"]
    assert ips.get_values_for_type(x509.DNSName) == ["airflow", "localhost"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(_cert(lab_ca.ca_cert(ca)))
    # And OpenSSL agrees: a context trusting the lab CA alone loads the pair and would verify it.
    ctx = ssl.create_default_context(cadata=lab_ca.ca_cert(ca))
    assert len(ctx.get_ca_certs()) == 1


def test_ensure_keeps_a_good_certificate_and_replaces_every_bad_one(ca):
    first = lab_ca.issue(ca, "registry", SANS)
    again = lab_ca.ensure(ca, "registry", SANS, cert_pem=first.cert, key_pem=first.key)
    assert not again.changed and (again.cert, again.key) == (first.cert, first.key)
    assert not lab_ca.ensure(ca, "registry", SANS[::-1], cert_pem=first.cert, key_pem=first.key).changed
    other = lab_ca.issue(ca, "registry", SANS)
    new_ca = lab_ca.new_ca()
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=lab_ca.CERT_DAYS - 10)
    cases = {  # why: (the CA, the names wanted, the cert and key held, when)
        "other names": (ca, [*SANS, "10.20.0.31"], first.cert, first.key, None),
        "a key that is not the cert's": (ca, SANS, first.cert, other.key, None),
        "a rotated CA": (new_ca, SANS, first.cert, first.key, None),
        "near its end": (ca, SANS, first.cert, first.key, late),
        "garbage": (ca, SANS, "not a cert", "not a key", None),
        "none yet": (ca, SANS, "", "", None),
    }
    for why, (bundle, sans, cert, key, now) in cases.items():
        got = lab_ca.ensure(bundle, "registry", sans, cert_pem=cert, key_pem=key, now=now)
        assert got.changed, why
        assert lab_ca.still_good(bundle, got.cert, got.key, sans, now=now), why
        assert not lab_ca.still_good(bundle, cert, key, sans, now=now) if cert else True, why


def test_the_cli_is_idempotent_a_second_run_prints_the_same_pair(ca, monkeypatch, capsys):
    def run(stdin: dict) -> dict:
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(stdin)))
        args = ["ensure", "--name", "airflow", *(f"--san={s}" for s in SANS)]
        assert lab_ca.main(args) == 0
        return json.loads(capsys.readouterr().out)

    first = run({"ca": ca, "cert": "", "key": ""})
    assert first["changed"]
    second = run({"ca": ca, "cert": first["cert"], "key": first["key"]})
    assert second == {**first, "changed": False}


def test_the_ca_cert_command_prints_the_public_certificate_only(tmp_path, capsys):
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(path)]) == 0
    capsys.readouterr()
    assert lab_ca.main(["ca-cert", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in out
    assert host_secrets.main(["rotate", host_secrets.LAB_CA, "-f", str(path)]) == 0
    capsys.readouterr()
    assert lab_ca.main(["ca-cert", "-f", str(path)]) == 0
    assert capsys.readouterr().out != out  # a rotation is a new CA: site.yml then re-issues every certificate
    assert lab_ca.main(["ca-cert", "-f", str(path), "-o", str(tmp_path / "ca.crt")]) == 0
    assert "PRIVATE" not in (tmp_path / "ca.crt").read_text()
    assert stat.S_IMODE((tmp_path / "ca.crt").stat().st_mode) == 0o644


def test_each_service_certificate_holds_the_names_its_clients_use():
    from renderlab.lab.config import load

    config = load("Pulumi.example.yaml")
    sans = lab_ca.service_sans(config)
    (airflow,) = config.hosts_by_role("airflow")
    (server,) = config.hosts_by_role("control_plane")
    domain = config.network.search_domain
    assert sans["airflow"] == [
        airflow,
        f"{airflow}.{domain}",
        config.address(airflow),
        "127.0.0.1",
        "localhost",
    ]
    # The nodes pull through their own loopback NodePort; the workstation pushes to the control plane's address.
    assert sans["registry"] == ["127.0.0.1", config.address(server), "registry.renderlab-registry.svc"]
    (p4,) = config.hosts_by_role("perforce")
    assert config.address(p4) in sans["perforce"]


def test_p4d_gets_an_rsa_key_and_a_key_of_the_wrong_type_is_replaced(ca):
    from cryptography.hazmat.primitives.asymmetric import rsa

    got = lab_ca.ensure(ca, "perforce", SANS, key_type="rsa")
    assert isinstance(_cert(got.cert).public_key(), rsa.RSAPublicKey)
    assert not lab_ca.ensure(ca, "perforce", SANS, cert_pem=got.cert, key_pem=got.key, key_type="rsa").changed
    assert lab_ca.ensure(ca, "perforce", SANS, cert_pem=got.cert, key_pem=got.key).changed  # EC wanted now


def test_a_log_scan_looks_for_the_ca_key_lines_and_never_matches_an_ordinary_log(tmp_path):
    """The lab lane greps every host's /var/log with `grep -F -f` over the secrets, one per line. A PEM bundle
    joined as one value made a blank pattern (it matched every line of every file) and its armor lines; the
    scan looks for the CA's private key lines (its certificate is public) and each other secret whole."""
    values = {
        **host_secrets.generate(),
        host_secrets.PREVIOUS_FERNET_KEYS: [host_secrets.generate()[host_secrets.FERNET_KEY]],
    }
    needles = host_secrets.log_needles(values)
    assert {name for name, _ in needles} == set(values)
    assert all(text and "\n" not in text and text == text.strip() for _, text in needles)
    bundle = values[host_secrets.LAB_CA]
    key_pem = bundle[: bundle.index("-----BEGIN CERTIFICATE-----")]
    ca_lines = [text for name, text in needles if name == host_secrets.LAB_CA]
    assert ca_lines == sorted(lab_ca.key_lines(bundle)) and "-----" not in "".join(ca_lines)
    # The whole key, line by line.
    assert "".join(lab_ca.key_lines(bundle)) == "".join(key_pem.splitlines()[1:-1])
    assert not any(line in lab_ca.ca_cert(bundle) for line in ca_lines)
    patterns = tmp_path / "patterns"
    patterns.write_text("\n".join(text for _, text in needles) + "\n")
    # An ordinary log: what apt and a TLS client write, with the (public) CA certificate in it.
    log = tmp_path / "history.log"
    log.write_text(
        "Start-Date: 2026-12-06  16:52:30\nInstall: postgresql:amd64 (15)\n\n" + lab_ca.ca_cert(bundle)
    )

    def grep() -> int:
        return subprocess.run(["grep", "-qF", "-f", str(patterns), str(log)], check=False).returncode

    assert grep() == 1
    for name, text in needles:
        log.write_text(f"leaked: {text[:-1]}\n")  # a part of a secret is not a hit ...
        assert grep() == 1, name
        log.write_text(f"leaked: {text}\n")  # ... the secret (or one line of the CA's key) is
        assert grep() == 0, name


def test_key_lines_refuse_a_bundle_without_one_private_key(ca):
    with pytest.raises(lab_ca.LabCAError, match="rotate renderlab_lab_ca"):
        lab_ca.key_lines(lab_ca.ca_cert(ca))
    with pytest.raises(lab_ca.LabCAError, match="rotate renderlab_lab_ca"):
        lab_ca.key_lines(ca + ca)
