"""A generated service secret: letters and digits, a Fernet key (32 random bytes, url-safe base64) or the lab CA
(its key and certificate, renderlab/lab/lab_ca.py), made once
on create and kept in the stack state as a secret. The values come from renderlab.lab.host_secrets.make_value,
which the local lab's `generate` runs too.

It takes the place of pulumi-random's RandomPassword: that provider's Go module is not served by the Go module
proxy these machines reach, so its plugin cannot be built (README: Build the lab), and a program that needs a
plugin the engine cannot load does not run. This provider runs inside the Python SDK's dynamic provider server
like the Proxmox ones. The value is drawn from `secrets` (the OS CSPRNG) and is registered with
`additional_secret_outputs`, so the engine encrypts it in the state and every Output of it is a secret.
"""

from __future__ import annotations

import secrets
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider

from renderlab.lab.host_secrets import FERNET_LENGTH, KEY32_LENGTH, Secret, make_value

MIN_LENGTH, MAX_LENGTH = 16, 256
FORMATS = ("alphanumeric", "fernet", "key32", "lab_ca")


def generate(length: int, fmt: str = "alphanumeric") -> str:
    return make_value(Secret(length, "", fmt))  # type: ignore[arg-type]


def _format(props: dict[str, Any]) -> str:
    return props.get("format") or "alphanumeric"  # state written before formats existed: alphanumeric


class GeneratedSecretProvider(ResourceProvider):
    serialize_as_secret_always = False  # the provider captures nothing secret

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        length = news.get("length")
        # Numbers cross the engine's gRPC as floats (40 arrives as 40.0): a whole float is a whole number.
        whole = (
            isinstance(length, int | float) and not isinstance(length, bool) and float(length).is_integer()
        )
        fmt = news.get("format", "alphanumeric")
        if fmt not in FORMATS:
            return CheckResult(
                news, [CheckFailure("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")]
            )
        if fmt == "lab_ca":  # a PEM bundle (renderlab/lab/lab_ca.py): its size is the key's, not a length
            return CheckResult(news, [])
        if fmt == "fernet" and length != FERNET_LENGTH:
            return CheckResult(news, [CheckFailure("length", f"a Fernet key is {FERNET_LENGTH} characters")])
        if fmt == "key32" and length != KEY32_LENGTH:
            return CheckResult(news, [CheckFailure("length", f"a 32-byte key is {KEY32_LENGTH} characters")])
        if not whole or not MIN_LENGTH <= length <= MAX_LENGTH:
            return CheckResult(
                news,
                [
                    CheckFailure(
                        "length", f"must be a whole number {MIN_LENGTH}..{MAX_LENGTH}, got {length!r}"
                    )
                ],
            )
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        length, fmt = int(props["length"]), _format(props)
        return CreateResult(
            secrets.token_hex(8), {"length": length, "format": fmt, "result": generate(length, fmt)}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A new length or format is a new secret; nothing else is an input, so an unchanged config diffs empty.
        replaces = []
        if float(olds.get("length") or 0) != float(news.get("length") or 0):
            replaces.append("length")
        if _format(olds) != _format(news):
            replaces.append("format")
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def update(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ):  # pragma: no cover - diff replaces
        raise NotImplementedError("a generated secret is never updated in place; a new length replaces it")


class GeneratedSecret(Resource, module="renderlab", name="GeneratedSecret"):
    """`result` is the secret (an Output marked secret)."""

    result: pulumi.Output[str]

    def __init__(
        self, name: str, length: int, opts: pulumi.ResourceOptions | None = None, fmt: str = "alphanumeric"
    ):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])
        )
        super().__init__(
            GeneratedSecretProvider(), name, {"length": length, "format": fmt, "result": None}, opts
        )
