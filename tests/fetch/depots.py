"""Perforce servers for the tests: the P4-shaped fake always; a real p4d (rsh: port, temp root) when on PATH.

Both expose the same surface: `port`, `user`, `password`, `p4_factory`, `submit({path: bytes | None}) -> change`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import fakep4

USER = "fetcher"
PASSWORD = "Fetch-Secret-7f3a"


class FakeDepot:
    kind = "fake"

    def __init__(self, port: str = "perforce.test:1666", fingerprint: str | None = None):
        self.port = port
        self.user, self.password = USER, PASSWORD
        self.server = fakep4.FakeServer(port=port, users={USER: PASSWORD}, fingerprint=fingerprint)
        fakep4.SERVERS[port] = self.server
        self.p4_factory = fakep4.P4

    def submit(self, files: dict[str, bytes | None]) -> int:
        return self.server.submit(files)

    def close(self) -> None:
        fakep4.SERVERS.pop(self.port, None)


class RealDepot:
    """A real p4d on a temporary root, spoken to over an rsh: port (no listening socket)."""

    kind = "p4d"

    def __init__(self, tmp: Path):
        import P4

        self.P4 = P4
        self.root = tmp / "p4root"
        self.root.mkdir()
        self.port = f"rsh:{shutil.which('p4d')} -r {self.root} -L log -J off -i"
        self.user, self.password = USER, PASSWORD
        self.p4_factory = P4.P4
        self.seed_root = tmp / "seed"
        self.seed_root.mkdir()
        p4 = self._admin()
        p4.run_password("", PASSWORD)
        p4.disconnect()

    def _admin(self):
        p4 = self.P4.P4()
        p4.port, p4.user, p4.client = self.port, USER, "seed"
        p4.ticket_file = str(self.seed_root.parent / "seed-tickets")  # keep $HOME out of it
        p4.connect()
        if getattr(self, "_has_password", False):
            p4.password = PASSWORD
            p4.run_login()
        self._has_password = True
        spec = p4.fetch_client("seed")
        spec["Root"] = str(self.seed_root)
        spec["View"] = ["//depot/... //seed/..."]
        p4.save_client(spec)
        return p4

    def submit(self, files: dict[str, bytes | None]) -> int:
        p4 = self._admin()
        p4.exception_level = 1
        p4.run_sync("-q", "//seed/...")
        for depot_path, content in files.items():
            local = self.seed_root / depot_path.removeprefix("//depot/")
            if content is None:
                p4.run_delete(str(local))
                continue
            exists = local.exists()
            if exists:
                p4.run_edit(str(local))
            local.parent.mkdir(parents=True, exist_ok=True)
            if exists:
                local.chmod(0o644)
            local.write_bytes(content)
            if not exists:
                p4.run_add("-t", "binary", str(local))
        result = p4.run_submit("-d", "test change")
        p4.disconnect()
        return int(
            next(r["submittedChange"] for r in result if isinstance(r, dict) and "submittedChange" in r)
        )

    def close(self) -> None:
        pass


def p4d_missing_reason() -> str | None:
    return (
        None
        if shutil.which("p4d")
        else "p4d is not on PATH: the real-server lane runs only where a p4d binary is installed"
    )
