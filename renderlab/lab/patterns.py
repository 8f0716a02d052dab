"""String rules the lab config and the Proxmox resources' specs share, typed once.

The lab config validates the stack file with them and the dynamic providers (infra/proxmox) validate their
inputs with the same ones, so a value one accepts the other cannot refuse."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

PveEndpoint = Annotated[str, StringConstraints(pattern=r"^https://[^/\s:]+(:\d{1,5})?/?$")]
PveTokenId = Annotated[str, StringConstraints(pattern=r"^[^@\s!]+@[^@\s!]+![A-Za-z0-9_.-]+$")]
PveStorage = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
PveBridge = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")]
# Lab names (hosts, the PVE node, the template): short DNS labels.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
LinuxUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
SshPublicKey = Annotated[str, StringConstraints(pattern=r"^(ssh-(ed25519|rsa)|ecdsa-sha2-\S+)\s+\S+")]
ImageUrl = Annotated[str, StringConstraints(pattern=r"^https://\S+\.(qcow2|img|raw)$")]
Sha512 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]

# name -> regex, for the lab config's errors (renderlab/lab/config.py explains each in words).
PATTERNS = {
    name: next(m.pattern for m in alias.__metadata__ if isinstance(m, StringConstraints))
    for name, alias in {
        "PveEndpoint": PveEndpoint,
        "PveTokenId": PveTokenId,
        "PveStorage": PveStorage,
        "PveBridge": PveBridge,
        "Name": Name,
        "LinuxUser": LinuxUser,
        "SshPublicKey": SshPublicKey,
        "ImageUrl": ImageUrl,
        "Sha512": Sha512,
    }.items()
}
