"""The lab's private bridge and its NAT rules (one nftables table per bridge, so labs never collide)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from renderlab.workstation.nspawn_lab.options import LabError, LabOptions


def _run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def bridge_exists(s: LabOptions) -> bool:
    return _run(["ip", "link", "show", "dev", s.bridge], check=False).returncode == 0


def table_exists(s: LabOptions) -> bool:
    return _run(["nft", "list", "table", "ip", s.nft_table], check=False).returncode == 0


def up(s: LabOptions) -> None:
    if bridge_exists(s):
        raise LabError(
            f"bridge {s.bridge} already exists; another lab may use it: run `make lab-local-down` or pick "
            "another RENDERLAB_LAB_BRIDGE/RENDERLAB_LAB_SUBNET/RENDERLAB_LAB_PREFIX"
        )
    _run(["ip", "link", "add", s.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{s.gateway}/{s.subnet.prefixlen}", "dev", s.bridge])
    _run(["ip", "link", "set", s.bridge, "up"])
    # Forwarding is a host-wide switch; it is left on at teardown because other labs may rely on it.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    net = str(s.subnet)
    # Traffic between the lab's own hosts stays on the bridge, whatever its addresses: the Kubernetes nodes
    # route pod addresses (outside the lab subnet) to each other, and bridged packets pass this hook too.
    ruleset = f"""
table ip {s.nft_table} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {net} ip daddr != {net} masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{s.bridge}" oifname "{s.bridge}" accept
    iifname "{s.bridge}" ip saddr {net} accept
    oifname "{s.bridge}" ct state established,related accept
    oifname "{s.bridge}" drop
  }}
}}
"""
    _run(["nft", "-f", "-"], input=ruleset)


def down(s: LabOptions) -> list[str]:
    """Remove the NAT table and the bridge; return what was removed (idempotent)."""
    removed = []
    if table_exists(s):
        _run(["nft", "delete", "table", "ip", s.nft_table])
        removed.append(f"nft table {s.nft_table}")
    if bridge_exists(s):
        _run(["ip", "link", "del", s.bridge])
        removed.append(f"bridge {s.bridge}")
    return removed
