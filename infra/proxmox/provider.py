"""The base the Proxmox dynamic providers share (infra/proxmox/vm.py, template.py): where the API token comes
from, a client per call, and pydantic errors as Pulumi's check failures."""

from __future__ import annotations

import os
from typing import Any

from pulumi.dynamic import CheckFailure, ConfigureRequest, ResourceProvider
from pydantic import ValidationError

from infra.proxmox.client import TOKEN_ENV, Pve, Timing


def problems(err: ValidationError) -> str:
    return "\n".join(
        f"  - {'.'.join(str(p) for p in e['loc']) or 'inputs'}: {e['msg'].removeprefix('Value error, ')}"
        for e in err.errors(include_url=False)
    )


def check_failures(err: ValidationError) -> list[CheckFailure]:
    """Pydantic's errors as Pulumi check failures: the input's name and what is wrong with it."""
    return [
        CheckFailure(".".join(str(p) for p in e["loc"]) or "inputs", e["msg"].removeprefix("Value error, "))
        for e in err.errors(include_url=False)
    ]


class TokenSource:
    """Where the API token secret comes from: the environment, else the stack's Pulumi secret."""

    def __init__(self) -> None:
        self._secret: str | None = None

    def configure(self, req: ConfigureRequest) -> None:
        value = req.config.get("renderlab:proxmox_api_token")
        if isinstance(value, str) and value:
            self._secret = value

    def secret(self) -> str:
        return os.environ.get(TOKEN_ENV) or self._secret or ""


class PveProvider(ResourceProvider):
    """Shared by the Proxmox providers: the token arrives through Configure (or the environment) and a
    client is built per call, so no credential is ever part of the provider's state."""

    serialize_as_secret_always = False

    def __init__(self, timing: Timing | None = None):
        super().__init__()
        self.timing = timing  # for tests; the lab uses the defaults
        self.tokens = TokenSource()

    def configure(self, req: ConfigureRequest) -> None:
        self.tokens.configure(req)

    def _client(self, spec: Any) -> Pve:
        return Pve(spec.connection, self.tokens.secret(), self.timing)
