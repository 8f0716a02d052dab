"""The image registry's credentials as Pulumi resources made once and kept in the state (as secrets): its TLS
certificate from the lab CA (renderlab/lab/lab_ca.py) and its htpasswd line (bcrypt).

Made once, like GeneratedSecret: a `pulumi up` with nothing changed diffs empty. The certificate is replaced
when the lab CA, the names or the key type no longer fit it, or when it nears its end (`lab_ca.still_good`,
checked at every diff); the htpasswd line when the user changes or the password no longer matches it.
"""

from __future__ import annotations

import secrets
from typing import Any

import bcrypt
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from renderlab.lab import lab_ca


class IssuedCertificateProvider(ResourceProvider):
    serialize_as_secret_always = False  # the provider captures nothing secret

    def create(self, props: dict[str, Any]) -> CreateResult:
        got = lab_ca.issue(props["ca"], props["name"], list(props["sans"]))
        return CreateResult(secrets.token_hex(8), {**props, "cert": got.cert, "key": got.key})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keep = olds.get("name") == news["name"] and lab_ca.still_good(
            news["ca"], olds.get("cert") or "", olds.get("key") or "", list(news["sans"])
        )
        return DiffResult(changes=not keep, replaces=[] if keep else ["sans"], delete_before_replace=False)


class IssuedCertificate(Resource, module="renderlab", name="IssuedCertificate"):
    """`cert` (public) and `key` (secret) for `name`, valid for exactly `sans`, signed by the lab CA `ca`."""

    cert: pulumi.Output[str]
    key: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        ca: pulumi.Input[str],
        name: str,
        sans: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ca", "key"])
        )
        props = {"ca": pulumi.Output.secret(ca), "name": name, "sans": sans, "cert": None, "key": None}
        super().__init__(IssuedCertificateProvider(), resource_name, props, opts)


def htpasswd_line(user: str, password: str) -> str:
    """`user:bcrypt-hash`, the registry's htpasswd format (it accepts bcrypt only)."""
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}"


def htpasswd_matches(line: str, user: str, password: str) -> bool:
    name, _, hashed = (line or "").partition(":")
    try:
        return name == user and bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def registry_values(sans: list[str], ca: str, password: str, user: str) -> dict[str, str]:
    """The registry's inputs made directly (no Pulumi): for a cluster applied without it (the cluster lane)."""
    got = lab_ca.issue(ca, "registry", sans)
    return {
        "registry_tls_crt": got.cert,
        "registry_tls_key": got.key,
        "registry_htpasswd": htpasswd_line(user, password),
    }


class HtpasswdProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        line = htpasswd_line(props["user"], props["password"])
        return CreateResult(secrets.token_hex(8), {**props, "line": line})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keep = htpasswd_matches(olds.get("line") or "", news["user"], news["password"])
        return DiffResult(
            changes=not keep, replaces=[] if keep else ["password"], delete_before_replace=False
        )


class Htpasswd(Resource, module="renderlab", name="Htpasswd"):
    """One htpasswd `line` for `user` with `password` (bcrypt; a fresh salt only when the password changes)."""

    line: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        user: str,
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["password", "line"])
        )
        props = {"user": user, "password": pulumi.Output.secret(password), "line": None}
        super().__init__(HtpasswdProvider(), resource_name, props, opts)
