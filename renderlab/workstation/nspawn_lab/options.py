"""Where and how a local lab lives. Bridge, subnet and machine-name prefix are environment parameters so two
labs can run side by side (e.g. rlbr0/10.231.0.0/24/rl0 and rlbr1/10.232.0.0/24/rl1)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from renderlab.base.errors import CommandError

ROOT = Path(__file__).resolve().parents[3]


class LabError(CommandError):
    """One clear message: what went wrong and how to fix it."""


@dataclass(frozen=True)
class LabOptions:
    bridge: str
    subnet: ipaddress.IPv4Network
    prefix: str
    cache: Path
    base_config: Path
    # RENDERLAB_LAB_SHARE_SIZE: the share a filesystem of this many bytes (a real share fills up; the folder of
    # this machine's disk would not), so the rehearsal can fill it mid-render. None: a plain folder.
    share_size: int | None = None

    @property
    def state(self) -> Path:
        return self.cache / self.prefix

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def nft_table(self) -> str:
        return f"renderlab_{self.bridge}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LabOptions:
        env = dict(os.environ if env is None else env)
        bridge = env.get("RENDERLAB_LAB_BRIDGE", "rlbr0")
        prefix = env.get("RENDERLAB_LAB_PREFIX", "rl0")
        subnet_text = env.get("RENDERLAB_LAB_SUBNET", "10.231.0.0/24")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,14}", bridge):
            raise LabError(f"RENDERLAB_LAB_BRIDGE={bridge!r}: use 1-15 lowercase letters/digits, e.g. rlbr0")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise LabError(f"RENDERLAB_LAB_PREFIX={prefix!r}: use 1-8 lowercase letters/digits, e.g. rl0")
        try:
            subnet = ipaddress.IPv4Network(subnet_text, strict=True)
        except ValueError as e:
            raise LabError(f"RENDERLAB_LAB_SUBNET={subnet_text!r}: {e}; use e.g. 10.231.0.0/24") from e
        if not subnet.is_private or subnet.prefixlen > 26:
            raise LabError(f"RENDERLAB_LAB_SUBNET={subnet}: use a private network of /26 or larger")
        cache = Path(env.get("RENDERLAB_LAB_CACHE", ROOT / ".cache" / "lab"))
        base = Path(env.get("RENDERLAB_LAB_BASE_CONFIG", ROOT / "Pulumi.example.yaml"))
        share_size = _size(env.get("RENDERLAB_LAB_SHARE_SIZE", ""))
        return cls(bridge=bridge, subnet=subnet, prefix=prefix, cache=cache.resolve(), base_config=base,
                   share_size=share_size)  # fmt: skip


SHARE_SIZE_MIN = 1 << 30  # the rehearsal's runs take a few hundred MB; below a GiB the lab itself stops


def _size(text: str) -> int | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d{1,5})([MG])", text)
    size = int(m[1]) << (20 if m[2] == "M" else 30) if m else 0
    if size < SHARE_SIZE_MIN:
        raise LabError(
            f"RENDERLAB_LAB_SHARE_SIZE={text!r}: give a size of at least 1G as a number and M or G, e.g. 8G "
            "(or leave it unset for a plain folder)"
        )
    return size
