"""A generated service secret: letters and digits, made once on create and kept in the stack state as a secret.

It takes the place of pulumi-random's RandomPassword: that provider's Go module is not served by the Go module
proxy these machines reach, so its plugin cannot be built (README: Build the lab), and a program that needs a
plugin the engine cannot load does not run. This provider runs inside the Python SDK's dynamic provider server
like the Proxmox ones. The value is drawn from `secrets` (the OS CSPRNG) and is registered with
`additional_secret_outputs`, so the engine encrypts it in the state and every Output of it is a secret.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider

ALPHABET = string.ascii_letters + string.digits  # safe in every config file format
MIN_LENGTH, MAX_LENGTH = 16, 256


def generate(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class GeneratedSecretProvider(ResourceProvider):
    serialize_as_secret_always = False  # the provider captures nothing secret

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        length = news.get("length")
        # Numbers cross the engine's gRPC as floats (40 arrives as 40.0): a whole float is a whole number.
        whole = (
            isinstance(length, int | float) and not isinstance(length, bool) and float(length).is_integer()
        )
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
        length = int(props["length"])
        return CreateResult(secrets.token_hex(8), {"length": length, "result": generate(length)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A new length is a new secret; nothing else is an input, so an unchanged config diffs empty.
        changed = float(olds.get("length") or 0) != float(news.get("length") or 0)
        return DiffResult(
            changes=changed, replaces=["length"] if changed else [], delete_before_replace=False
        )

    def update(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ):  # pragma: no cover - diff replaces
        raise NotImplementedError("a generated secret is never updated in place; a new length replaces it")


class GeneratedSecret(Resource, module="renderlab", name="GeneratedSecret"):
    """`result` is the secret (an Output marked secret)."""

    result: pulumi.Output[str]

    def __init__(self, name: str, length: int, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])
        )
        super().__init__(GeneratedSecretProvider(), name, {"length": length, "result": None}, opts)
