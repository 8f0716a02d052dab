"""The firewall pairs the lab proves: for every TCP rule of every host, one source the rule lets in and one it
does not, and the probe that tries them (a TCP connect from a lab host, the workstation or an outsider).

A probe's outcome: "open" (connected), "refused" (the host's stack answered with a reset: the packet got
through the firewall, nothing listens) or "dropped" (no answer within the probe's wait). An allowed pair must
not be dropped; a refused pair must be. Each target is also reached by an allowed pair in the same run, so a
drop is the firewall's, not a host that is down.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from renderlab.lab import firewall
from renderlab.lab.config import LabConfig

WAIT_S = 3

# Run as `python3 - SOURCE_ADDRESS JSON_TARGETS` (the script on stdin); prints {"addr:port": outcome}.
PROBE = r"""
import errno, json, socket, sys
from concurrent.futures import ThreadPoolExecutor
source, targets = sys.argv[1], json.loads(sys.argv[2])
def probe(t):
    addr, port = t
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(WAIT_S)
    try:
        if source:
            s.bind((source, 0))
        s.connect((addr, port))
        return "open"
    except socket.timeout:
        return "dropped"
    except OSError as e:
        return "refused" if e.errno == errno.ECONNREFUSED else "error: " + str(e)
    finally:
        s.close()
with ThreadPoolExecutor(len(targets) or 1) as pool:
    print(json.dumps({f"{a}:{p}": r for (a, p), r in zip(targets, pool.map(probe, targets))}))
""".replace("WAIT_S", str(WAIT_S))


@dataclass(frozen=True)
class Pair:
    target: str  # host name
    rule: str
    port: int
    source: str  # a host name, "workstation" or "outsider"
    allowed: bool


def sources(config: LabConfig, outsider: str) -> dict[str, str]:
    """Who can send a probe, name -> address: every lab host, the workstation (the bridge), an outsider."""
    found = {name: config.address(name) for name in sorted(config.hosts)}
    found["workstation"] = str(config.network.workstation_networks[0].network_address)
    found["outsider"] = outsider
    return found


def pairs(config: LabConfig, outsider: str) -> list[Pair]:
    """Every sender against every TCP rule of every other host: allowed where a source of the rule holds the
    sender's address, refused (to be dropped) everywhere else."""
    senders = sources(config, outsider)
    out = []
    for host, rules in firewall.host_rules(config).items():
        ssh = firewall.Rule("ssh", "tcp", (firewall.SSH,), tuple(firewall.workstation(config)))
        # Two rules may open one port to different senders (SSH: the workstation; SFTP backups: the backed-up
        # hosts): a sender is allowed where any of them holds it.
        by_port: dict[int, list] = {}
        for rule in [ssh, *rules]:
            if rule.proto == "tcp":
                for port in rule.ports:
                    by_port.setdefault(port, []).extend(ipaddress.IPv4Network(s) for s in rule.sources)
        for rule in [ssh, *rules]:
            if rule.proto != "tcp":
                continue  # udp and ipip: the testinfra suite checks they are in the loaded ruleset
            nets = by_port[rule.ports[0]]
            mine = []
            for sender, address in senders.items():
                if sender != host:  # a host reaches itself over loopback, which is always open
                    allowed = any(ipaddress.IPv4Address(address) in net for net in nets)
                    mine.append(Pair(host, rule.name, rule.ports[0], sender, allowed))
            if not any(p.allowed for p in mine):  # e.g. the control plane's own kubelet: from itself only
                mine.append(Pair(host, rule.name, rule.ports[0], host, True))
            out.extend(mine)
    return out


def probe_args(source_address: str, targets: list[tuple[str, int]]) -> list[str]:
    return [source_address, json.dumps(targets)]
