"""The firewall role on every host: its table is loaded with a drop policy, at boot by its unit, holding exactly
the host's rules from the inventory (the lab lane's probes prove what the rules let through)."""

from __future__ import annotations

import ipaddress

TABLE = "renderlab_firewall"


def loaded(host) -> str:
    with host.sudo():
        return host.check_output(f"nft list table inet {TABLE}")


def test_the_firewall_unit_is_enabled_and_active(host):
    unit = host.service("renderlab-firewall")
    assert unit.is_enabled
    assert unit.is_running or host.run("systemctl is-active renderlab-firewall").stdout.strip() == "active"
    ruleset = host.file("/etc/renderlab/firewall.nft")
    assert ruleset.user == "root" and ruleset.mode == 0o600


def test_inbound_is_dropped_unless_a_rule_lets_it_in(host):
    text = loaded(host)
    assert "type filter hook input priority filter; policy drop;" in text
    assert 'iifname "lo" accept' in text


def test_the_loaded_rules_are_the_hosts_rules(host, lab_vars):
    text = loaded(host)
    for rule in lab_vars["renderlab_firewall_rules"]:
        assert f'comment "{rule["name"]}"' in text, rule["name"]
        for source in rule["sources"]:
            net = ipaddress.IPv4Network(source)
            assert (str(net.network_address) if net.prefixlen == 32 else str(net)) in text, (
                rule["name"],
                source,
            )
    if lab_vars["renderlab_firewall_nodeport_range"]:
        first, last = lab_vars["renderlab_firewall_nodeport_range"]
        assert "chain nodeports" in text and f"tcp dport {first}-{last} drop" in text
    else:
        assert "chain nodeports" not in text


def test_other_tables_survive_a_reload(host):
    """The role replaces only its own table: a table someone else owns (as kube-proxy's) is still there."""
    with host.sudo():
        host.check_output("nft add table inet renderlab_probe_other")
        try:
            host.check_output(
                "nft -f /etc/renderlab/firewall.nft"
            )  # what the unit's ExecStart/ExecReload run
            assert "table inet renderlab_probe_other" in host.check_output("nft list tables")
        finally:
            host.run("nft delete table inet renderlab_probe_other")
