"""The lab's own certificate authority and the service certificates it issues (docs/security.md).

The CA is one generated host secret (`renderlab_lab_ca`, renderlab/lab/host_secrets.py): its private key and
its self-signed certificate as one PEM bundle, made once like every other generated secret (Pulumi's
GeneratedSecret in a lab of VMs, `host_secrets generate` in the local lab) and never written to git, a log or
plaintext state. From it each service gets a certificate for exactly its names (`service_sans`): Airflow's API
server, the image registry, p4d. Clients trust the CA's certificate alone (`ca_cert`), never the system store.

`ensure` is what makes issuing idempotent: a certificate that this CA signed, for exactly the wanted names,
that matches its key and is not near its end is kept as it is; anything else is replaced by a fresh one.

    python -m renderlab.lab.lab_ca ensure --name NAME --san A --san B < {"ca": ..., "cert": ..., "key": ...}
    python -m renderlab.lab.lab_ca ca-cert -f SECRETS_FILE [-o FILE]   (the public certificate, for clients)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renderlab.base import atomic, cli
from renderlab.base.errors import CommandError
from renderlab.lab.cluster_names import REGISTRY_SERVICE_DNS
from renderlab.lab.config import LabConfig

CA_NAME = "renderlab lab CA"
CA_DAYS = 3650
CERT_DAYS = 397  # what browsers accept for a leaf; `ensure` renews well before
RENEW_BEFORE = dt.timedelta(days=30)
_CURVE = ec.SECP256R1()
# The service key's type: EC P-256 by default; RSA 2048 for p4d, whose own `p4d -Gc` makes RSA keys (the kind
# its documentation describes for P4SSLDIR).
KEY_TYPES = ("ec", "rsa")


class LabCAError(CommandError):
    pass


@dataclass(frozen=True)
class Issued:
    cert: str  # PEM
    key: str  # PEM (PKCS#8, unencrypted: it lands in a 0600/0640 file the service reads)
    changed: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(_CURVE)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_ca(now: dt.datetime | None = None) -> str:
    """A fresh CA: an EC P-256 key and its self-signed certificate, as one PEM bundle (key first)."""
    now = now or _now()
    key = ec.generate_private_key(_CURVE)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        # pathlen 0: this CA signs service certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key) + _pem_cert(cert)


def load_ca(bundle: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA's key and certificate from its bundle; one clear error if it is not one."""
    try:
        data = bundle.encode()
        key = serialization.load_pem_private_key(data, password=None)
        cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----") :])
    except (ValueError, TypeError, AttributeError):
        raise LabCAError(
            "renderlab_lab_ca is not a CA bundle (a PEM private key, then its certificate); draw a new one with "
            "`python -m renderlab.lab.host_secrets rotate renderlab_lab_ca -f FILE`"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise LabCAError(
            "renderlab_lab_ca: the private key is not the certificate's; rotate renderlab_lab_ca"
        )
    return key, cert


def ca_cert(bundle: str) -> str:
    """The CA's certificate (public) from the bundle: what every client is handed to verify with."""
    return _pem_cert(load_ca(bundle)[1])


_KEY_ARMOR = "PRIVATE KEY-----"


def key_lines(bundle: str) -> list[str]:
    """The secret part of a CA bundle as its text carries it: the private key's base64 lines, one by one.

    What a log scan looks for: the certificate beside it is public (every client and host holds it) and the
    PEM armor lines and blank separators are the same in every bundle, so looking for those finds everything.
    """
    lines = [ln.strip() for ln in bundle.splitlines()]
    begins = [i for i, ln in enumerate(lines) if ln.startswith("-----BEGIN") and ln.endswith(_KEY_ARMOR)]
    ends = [i for i, ln in enumerate(lines) if ln.startswith("-----END") and ln.endswith(_KEY_ARMOR)]
    if len(begins) != 1 or len(ends) != 1 or ends[0] <= begins[0] + 1:
        raise LabCAError(
            "renderlab_lab_ca holds no single PEM private key; draw a new one with "
            "`python -m renderlab.lab.host_secrets rotate renderlab_lab_ca -f FILE`"
        )
    return [ln for ln in lines[begins[0] + 1 : ends[0]] if ln]


def service_sans(config: LabConfig) -> dict[str, list[str]]:
    """The names each service is reached by, from the lab config: its certificate holds exactly these.
    Airflow and p4d: the host's name, its name in the search domain, its address, and loopback (Airflow's own
    components call its execution API there). The registry: loopback (every node pulls through its own
    NodePort), the control plane's address (the workstation pushes there) and its in-cluster name."""
    domain = config.network.search_domain

    def host(role: str) -> list[str]:
        (name,) = config.hosts_by_role(role)
        return [name, f"{name}.{domain}", config.address(name), "127.0.0.1", "localhost"]

    (server,) = config.hosts_by_role("control_plane")
    return {
        "airflow": host("airflow"),
        "perforce": host("perforce"),
        "registry": ["127.0.0.1", config.address(server), REGISTRY_SERVICE_DNS],
    }


def _general_names(sans: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            out.append(x509.DNSName(san))
    return out


def cert_sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)} | set(
        ext.get_values_for_type(x509.DNSName)
    )


def issue(
    bundle: str, name: str, sans: list[str], *, key_type: str = "ec", now: dt.datetime | None = None
) -> Issued:
    """A new certificate and key for `name`, valid for exactly `sans` (DNS names and IP addresses)."""
    if not sans:
        raise LabCAError(f"no names given for {name}'s certificate; give each name it is reached by (--san)")
    now = now or _now()
    ca_key, ca = load_ca(bundle)
    key = _new_key(key_type)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=CERT_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(_pem_cert(cert), _pem_key(key), changed=True)


def still_good(
    bundle: str,
    cert_pem: str,
    key_pem: str,
    sans: list[str],
    *,
    key_type: str = "ec",
    now: dt.datetime | None = None,
) -> bool:
    """Whether a certificate may be kept: signed by this CA, for exactly `sans`, matching `key_pem` (of the
    wanted type), and not within RENEW_BEFORE of its end."""
    now = now or _now()
    _, ca = load_ca(bundle)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    wanted = rsa.RSAPrivateKey if key_type == "rsa" else ec.EllipticCurvePrivateKey
    return (
        isinstance(key, wanted)
        and key.public_key() == cert.public_key()
        and cert_sans(cert) == {str(n.value) for n in _general_names(sans)}
        and cert.not_valid_before_utc <= now
        and now + RENEW_BEFORE < cert.not_valid_after_utc
    )


def ensure(
    bundle: str,
    name: str,
    sans: list[str],
    *,
    cert_pem: str = "",
    key_pem: str = "",
    key_type: str = "ec",
    now: dt.datetime | None = None,
) -> Issued:
    """The existing certificate when it is still good, else a new one (`changed` says which)."""
    if cert_pem and key_pem and still_good(bundle, cert_pem, key_pem, sans, key_type=key_type, now=now):
        return Issued(cert_pem, key_pem, changed=False)
    return issue(bundle, name, sans, key_type=key_type, now=now)


@cli.command("lab_ca")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.lab.lab_ca",
        description="Issue the lab's service certificates from the lab CA (a host secret).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ens = sub.add_parser(
        "ensure",
        help="read {ca, cert, key} as JSON on stdin; print {changed, cert, key, ca_cert}: the same pair if still good",
    )
    ens.add_argument("--name", required=True, help="the service (the certificate's common name)")
    ens.add_argument("--san", action="append", default=[], help="a DNS name or IP address (repeat)")
    ens.add_argument(
        "--key-type", choices=KEY_TYPES, default="ec", help="the service key's type (default ec)"
    )
    pub = sub.add_parser("ca-cert", help="print the CA's certificate from a host secrets file")
    pub.add_argument("-f", "--file", required=True)
    pub.add_argument("-o", "--output", help="write it to this file (else stdout)")
    args = parser.parse_args(argv)
    if args.command == "ca-cert":
        from renderlab.lab import host_secrets

        pem = ca_cert(host_secrets.read(Path(args.file))[host_secrets.LAB_CA])
        if not args.output:
            print(pem, end="")
            return 0
        try:
            atomic.write_text(args.output, pem, mode=0o644)  # public: the certificate only
        except OSError as e:
            raise LabCAError(f"cannot write {args.output}: {e.strerror or e}; pick a writable path") from None
        print(f"{args.output}: the lab CA's certificate (give it as AIRFLOW_CA_FILE)")
        return 0
    # The CA key and the service key pass through stdin and stdout only (Ansible registers them with no_log).
    try:
        given = json.loads(sys.stdin.read())
        bundle = given["ca"]
    except (ValueError, KeyError, TypeError):
        raise LabCAError('stdin must be JSON {"ca": "<bundle>", "cert": "...", "key": "..."}') from None
    got = ensure(
        bundle,
        args.name,
        args.san,
        cert_pem=given.get("cert") or "",
        key_pem=given.get("key") or "",
        key_type=args.key_type,
    )
    print(json.dumps({"changed": got.changed, "cert": got.cert, "key": got.key, "ca_cert": ca_cert(bundle)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
