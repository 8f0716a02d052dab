"""Perforce credentials from the environment or a mounted Secret folder; never printed.

Environment: P4USER, P4PASSWD (a password, or a ticket), P4TRUST_FINGERPRINT (for ssl: ports).
Secret folder (--secret-dir, or RENDERLAB_P4_SECRET_DIR): files `user`, `password` or `ticket`,
`fingerprint` -- the keys of a Kubernetes Secret mounted as a volume. Environment values win.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AuthError, UsageError

_TICKET = re.compile(r"^[0-9A-F]{32}$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){19,63}$")


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: str = field(repr=False)  # password or ticket
    fingerprint: str | None = None

    @property
    def is_ticket(self) -> bool:
        """A P4 ticket is 32 upper-case hex digits; it is used as P4PASSWD directly, without `p4 login`."""
        return bool(_TICKET.fullmatch(self.secret))


def _read(folder: Path | None, *names: str) -> str | None:
    if folder is None:
        return None
    for name in names:
        path = folder / name
        if path.is_file():
            try:
                return path.read_text().strip() or None
            except OSError as e:
                raise UsageError(f"cannot read secret file {path}: {e.strerror or e}") from e
    return None


def load(secret_dir: str | None, env: dict[str, str] | None = None) -> Credentials:
    env = dict(os.environ) if env is None else env
    folder_name = secret_dir or env.get("RENDERLAB_P4_SECRET_DIR")
    folder = Path(folder_name) if folder_name else None
    if folder is not None and not folder.is_dir():
        raise UsageError(
            f"secret folder {folder} does not exist; mount the Perforce Secret there or fix the path"
        )
    user = env.get("P4USER") or _read(folder, "user")
    secret = env.get("P4PASSWD") or _read(folder, "password", "ticket")
    fingerprint = env.get("P4TRUST_FINGERPRINT") or _read(folder, "fingerprint")
    if not user:
        raise AuthError("no Perforce user: set P4USER or put a `user` file in the secret folder")
    if not secret:
        raise AuthError(
            f"no password or ticket for Perforce user {user}: set P4PASSWD or put a `password` "
            "(or `ticket`) file in the secret folder"
        )
    if fingerprint is not None:
        fingerprint = fingerprint.upper()
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise UsageError(
                "the SSL fingerprint is not in `p4 trust -l` form (hex pairs joined by ':'); "
                "copy it from the server's `p4d -Gf` output"
            )
    return Credentials(user=user, secret=secret, fingerprint=fingerprint)
