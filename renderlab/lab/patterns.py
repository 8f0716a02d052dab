"""String rules the lab config and the Proxmox resources' specs share, typed once.

The lab config validates the stack file with them and the dynamic providers (infra/proxmox) validate their
inputs with the same ones, so a value one accepts the other cannot refuse."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

PveEndpoint = Annotated[str, StringConstraints(pattern=r"^https://[^/\s:]+(:\d{1,5})?/?$")]
PveTokenId = Annotated[str, StringConstraints(pattern=r"^[^@\s!]+@[^@\s!]+![A-Za-z0-9_.-]+$")]
PveStorage = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
PveBridge = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")]
# Lab names (hosts, the PVE node, the template): short DNS labels.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
LinuxUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
SSH_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)  # fmt: skip
_SSH_KEY = re.compile(
    r"(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,2})(?: (?P<comment>[ -z|~]{1,200}))?"
)


def ssh_public_key(value: str) -> str:
    """One line of one OpenSSH public key: `TYPE BASE64 [comment]`, the blob naming the same type.

    The key lands in authorized_keys through a template: a newline would add a second key line, and free
    text is where a template expression would hide, so only this exact shape passes (returned with single
    spaces between its parts)."""
    value = re.sub(r"[ \t]+", " ", value.strip(" \t"))  # runs of blanks are one separator; a newline is not
    m = _SSH_KEY.fullmatch(value) if len(value) <= 16384 else None
    if m is None:
        raise ValueError(
            "not one OpenSSH public key on one line ('TYPE BASE64 [comment]': a comment of printable ASCII "
            "without braces, no newline); "
            "paste the single line of your ~/.ssh/id_*.pub"
        )
    if m["type"] not in SSH_KEY_TYPES:
        raise ValueError(f"key type {m['type']!r} is not one of {', '.join(SSH_KEY_TYPES)}")
    try:
        blob = base64.b64decode(m["blob"] + "=" * (-len(m["blob"]) % 4), validate=True)  # padding optional
    except binascii.Error:
        raise ValueError(
            "the key's base64 part does not decode; paste the whole line of the .pub file"
        ) from None
    size = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + size] != m["type"].encode():
        raise ValueError(
            f"the key's base64 part is not a {m['type']} key; paste the whole line of the .pub file"
        )
    return value


SshPublicKey = Annotated[str, AfterValidator(ssh_public_key)]
ImageUrl = Annotated[str, StringConstraints(pattern=r"^https://\S+\.(qcow2|img|raw)$")]
Sha512 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
