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

# name -> regex, for the lab config's errors (renderlab/lab/config.py explains each in words).
PATTERNS = {
    name: m.pattern
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
    for m in alias.__metadata__
    if isinstance(m, StringConstraints)  # the rules checked by a function say their own words
}


# Folders a role must never take over (chown, chmod, create files in): the system's own trees, and the top
# of the ones that hold other things (/srv itself, /opt itself, /var/lib itself ...).
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
                "/run", "/sbin", "/sys", "/tmp", "/usr")  # fmt: skip
SYSTEM_FOLDERS = ("/", "/media", "/mnt", "/opt", "/srv", "/var", "/var/cache", "/var/lib", "/var/local",
                  "/var/log", "/var/mail", "/var/opt", "/var/spool", "/var/tmp", "/var/backups")  # fmt: skip


def data_folder(value: str) -> str:
    """An absolute, normalized folder that a role may own: not a system folder, nothing under /etc, /usr ..."""
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", value):
        raise ValueError("must be an absolute path of letters, digits and _ . / - only")
    parts = value.split("/")[1:]
    if value != "/" and any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"{value!r} is not normalized (an empty, '.' or '..' segment, or a trailing /); write the folder "
            "itself, e.g. /srv/render"
        )
    tree = next((t for t in SYSTEM_TREES if value == t or value.startswith(t + "/")), None)
    if value in SYSTEM_FOLDERS or tree:
        raise ValueError(
            f"{value!r} is {'inside ' + tree if tree and value != tree else 'a system folder'}: the role would "
            "take ownership of it and change its mode; use a folder of its own, e.g. /srv/render"
        )
    return value


DataFolder = Annotated[str, AfterValidator(data_folder)]


def depot_folder(value: str) -> str:
    """A depot path `//depot/dir/...` without '.' or '..' segments (Perforce would not name one folder)."""
    if not re.fullmatch(r"//[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*", value):
        raise ValueError("must look like //depot/dir (letters, digits and _ . - in each folder name)")
    if any(p in (".", "..") or set(p) == {"."} for p in value[2:].split("/")):
        raise ValueError(f"{value!r} holds a '.' or '..' segment; name the folder itself, e.g. //depot/songs")
    return value


DepotFolder = Annotated[str, AfterValidator(depot_folder)]
