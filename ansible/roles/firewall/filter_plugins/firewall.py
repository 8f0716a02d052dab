"""Filters of the firewall role: every value that reaches the nftables template is parsed here first (addresses by
Python's ipaddress, names and ports by exact rules), so nothing is pasted into nft syntax unchecked."""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
PROTOS = ("tcp", "udp", "ipip")


def _fail(where: str, what: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"firewall: {where}: {what}")


def firewall_networks(values, where: str = "sources") -> list[str]:
    """IPv4 addresses/networks -> merged, sorted 'a.b.c.d/n' (nftables refuses overlapping set intervals)."""
    if not isinstance(values, list | tuple):
        raise _fail(where, f"expected a list of IPv4 addresses or networks, got {type(values).__name__}")
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.IPv4Network(str(v), strict=True))
        except ValueError as e:
            raise _fail(
                where, f"{v!r} is not an IPv4 address or network ({e}); e.g. 10.20.0.15 or 10.20.0.0/24"
            ) from None
    return [str(n) for n in sorted(ipaddress.collapse_addresses(nets))]


def _port(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(where, f"{value!r} is not a port (a whole number 1-65535)")
    return value


def firewall_checked_rules(rules) -> list[dict]:
    """The rules with every field checked and normalized; a rule with no sources stays closed (dropped)."""
    if not isinstance(rules, list):
        raise _fail("firewall_rules", "expected a list of rules")
    out, seen = [], set()
    for i, rule in enumerate(rules):
        where = f"firewall_rules[{i}]"
        if not isinstance(rule, dict):
            raise _fail(where, "expected a mapping {name, proto, ports, sources, before_nat}")
        unknown = sorted(set(rule) - {"name", "proto", "ports", "sources", "before_nat"})
        if unknown:
            raise _fail(where, f"unknown keys {unknown}")
        name = str(rule.get("name", ""))
        if not NAME.fullmatch(name) or name in seen:
            raise _fail(where, f"name {name!r} must be unique, lowercase letters, digits and '-' (max 31)")
        seen.add(name)
        proto = rule.get("proto")
        if proto not in PROTOS:
            raise _fail(where, f"proto {proto!r} is not one of {', '.join(PROTOS)}")
        ports = [_port(p, f"{where}.ports") for p in rule.get("ports") or []]
        if (proto == "ipip") != (not ports):
            raise _fail(where, "tcp and udp rules need ports; an ipip rule has none")
        before_nat = rule.get("before_nat", False)
        if not isinstance(before_nat, bool) or (before_nat and proto != "tcp"):
            raise _fail(where, "before_nat is a boolean, for tcp NodePorts only")
        sources = firewall_networks(rule.get("sources") or [], f"{where}.sources")
        if sources:
            out.append(
                {
                    "name": name,
                    "set": "src_" + name.replace("-", "_"),
                    "proto": proto,
                    "ports": sorted(set(ports)),
                    "sources": sources,
                    "before_nat": before_nat,
                }
            )
    return out


def firewall_port_range(value) -> list[int]:
    if not value:
        return []
    if not isinstance(value, list) or len(value) != 2:
        raise _fail("firewall_nodeport_range", f"{value!r}: give [first, last] or []")
    first, last = (_port(p, "firewall_nodeport_range") for p in value)
    if first > last:
        raise _fail("firewall_nodeport_range", f"{first} is above {last}")
    return [first, last]


def firewall_allows(address: str, networks) -> bool:
    """`address | firewall_allows(networks)`: is the address inside one of the networks?"""
    try:
        ip = ipaddress.IPv4Address(str(address))
    except ValueError:
        return False
    return any(ip in ipaddress.IPv4Network(n) for n in networks)


class FilterModule:
    def filters(self):
        return {
            "firewall_networks": firewall_networks,
            "firewall_checked_rules": firewall_checked_rules,
            "firewall_port_range": firewall_port_range,
            "firewall_allows": firewall_allows,
        }
