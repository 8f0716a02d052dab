"""The firewall role without a lab: the rules derived from the lab config say what the issue asks (who may reach
what), the role's filters refuse values that are not what they claim, and the template renders (with Ansible's
own Templar) a ruleset nftables accepts, for every host of the example lab."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from renderlab.lab import firewall
from renderlab.lab.config import ROLES, load
from renderlab.lab.inventory import inventory

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "firewall"
CONFIG = load(ROOT / "Pulumi.example.yaml")


def _filters():
    spec = importlib.util.spec_from_file_location("firewall_filters", ROLE / "filter_plugins" / "firewall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F = _filters()


def addr(name: str) -> str:
    return f"{CONFIG.address(name)}/32"


def sources(host: str, rule: str) -> set[str]:
    (found,) = [r for r in firewall.host_rules(CONFIG)[host] if r.name == rule]
    return set(found.sources)


def test_every_lab_role_is_placed():
    assert firewall.unplaced_roles() == []
    assert set(firewall.NODE_ROLES) | set(firewall.SERVICE_ROLES) == set(ROLES)


def test_workstation_defaults_to_the_gateway():
    assert firewall.workstation(CONFIG) == ["10.20.0.1/32"]


def test_each_service_is_open_only_to_the_hosts_that_need_it():
    ws = {"10.20.0.1/32"}
    nodes = {addr("control-plane"), addr("worker")}
    assert sources("storage", "smb") == nodes | ws
    assert sources("perforce", "perforce") == nodes | ws
    assert sources("airflow", "airflow-api") == ws
    assert sources("control-plane", "kube-api") == nodes | {addr("airflow")} | ws
    assert sources("control-plane", "kubelet") == sources("worker", "kubelet") == {addr("control-plane")}
    assert sources("worker", "registry") == nodes | ws
    # The LAN may read the docs (the workstation is inside it here, so the merged set is the LAN alone).
    assert sources("worker", "docs") == {"10.20.0.0/24"}
    for overlay in ("overlay-bgp", "overlay-ipip"):
        assert sources("worker", overlay) == nodes
    # The example's backup target is a lab host (the worker): the backed-up hosts reach its SSH for SFTP.
    assert CONFIG.backup.target.host == "worker"
    sftp = {f"{a}/32" for net in sources("worker", "backup-sftp") for a in ipaddress.IPv4Network(net)}
    assert sftp == {addr("storage"), addr("perforce"), addr("airflow")}
    names = {h: sorted(r.name for r in rs) for h, rs in firewall.host_rules(CONFIG).items()}
    assert (
        names["storage"] == ["smb"]
        and names["perforce"] == ["perforce"]
        and names["airflow"] == ["airflow-api"]
    )
    assert "kube-api" not in names["worker"]
    ports = {r.name: r.ports for r in firewall.host_rules(CONFIG)["worker"]}
    assert ports["docs"] == (CONFIG.docs.node_port,) and ports["registry"] == (
        CONFIG.pipeline.registry.node_port,
    )


def test_the_inventory_hands_each_host_its_rules():
    inv = inventory(CONFIG)
    assert inv["all"]["vars"]["renderlab_workstation"] == ["10.20.0.1/32"]
    storage = inv["all"]["children"]["storage"]["hosts"]["storage"]
    assert [r["name"] for r in storage["renderlab_firewall_rules"]] == ["smb"]
    assert (
        storage["renderlab_firewall_nodeport_range"] == []
        and storage["renderlab_firewall_local_networks"] == []
    )
    agent = inv["all"]["children"]["worker"]["hosts"]["worker"]
    assert agent["renderlab_firewall_nodeport_range"] == list(firewall.NODEPORT_RANGE)


@pytest.mark.parametrize(
    "bad",
    ["10.0.0.1; flush ruleset", "10.0.0.1 }", "10.0.0.1/24", "::1", "10.0.0.256", "", "any"],
)
def test_a_source_that_is_not_an_ipv4_network_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match=r"firewall: .*not an IPv4 address or network"):
        F.firewall_checked_rules([{"name": "x", "proto": "tcp", "ports": [1], "sources": [bad]}])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": 'x" accept', "proto": "tcp", "ports": [1], "sources": []}, "name"),
        ({"name": "x", "proto": "sctp", "ports": [1], "sources": []}, "proto"),
        ({"name": "x", "proto": "tcp", "ports": ["22 accept"], "sources": []}, "not a port"),
        ({"name": "x", "proto": "tcp", "ports": [0], "sources": []}, "not a port"),
        ({"name": "x", "proto": "tcp", "ports": [True], "sources": []}, "not a port"),
        ({"name": "x", "proto": "tcp", "ports": [], "sources": []}, "need ports"),
        ({"name": "x", "proto": "udp", "ports": [1], "sources": [], "before_nat": True}, "before_nat"),
        ({"name": "x", "proto": "tcp", "ports": [1], "sources": [], "extra": 1}, "unknown keys"),
    ],
)
def test_a_malformed_rule_is_refused(rule, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.firewall_checked_rules([rule])


def test_overlapping_sources_are_merged_and_an_empty_rule_stays_closed():
    rules = F.firewall_checked_rules(
        [
            {
                "name": "a-b",
                "proto": "tcp",
                "ports": [2, 1, 2],
                "sources": ["10.0.0.5", "10.0.0.0/24", "10.0.1.0/24"],
            },
            {"name": "closed", "proto": "tcp", "ports": [3], "sources": []},
        ]
    )
    assert rules == [
        {"name": "a-b", "set": "src_a_b", "proto": "tcp", "ports": [1, 2], "sources": ["10.0.0.0/23"],
         "before_nat": False}
    ]  # fmt: skip
    assert F.firewall_allows("10.0.1.9", ["10.0.0.0/23"]) and not F.firewall_allows(
        "10.0.2.1", ["10.0.0.0/23"]
    )
    assert not F.firewall_allows("garbage", ["10.0.0.0/23"])


def render(host: str) -> str:
    hv = firewall.host_vars(CONFIG)[host]
    variables = {
        "ansible_managed": "managed",
        "firewall_table": "renderlab_firewall",
        "firewall_ssh_port": 22,
        "firewall_ssh_networks": F.firewall_networks(firewall.workstation(CONFIG)),
        "firewall_checked": F.firewall_checked_rules(hv["renderlab_firewall_rules"]),
        "firewall_local_nets": F.firewall_networks(hv["renderlab_firewall_local_networks"]),
        "firewall_nodeports": F.firewall_port_range(hv["renderlab_firewall_nodeport_range"]),
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template((ROLE / "templates" / "firewall.nft.j2").read_text(), escape_backslashes=False)


@pytest.mark.parametrize("host", sorted(CONFIG.hosts))
def test_the_rendered_ruleset_drops_by_default_and_opens_each_rule(host):
    text = render(host)
    assert "type filter hook input priority filter; policy drop;" in text
    assert 'tcp dport 22 ip saddr @src_ssh accept comment "ssh"' in text
    assert "flush ruleset" not in text  # Kubernetes' tables must survive a reload
    for rule in firewall.host_rules(CONFIG)[host]:
        set_name = "src_" + rule.name.replace("-", "_")
        assert f"set {set_name} {{" in text
        assert f'ip saddr @{set_name} accept comment "{rule.name}"' in text
    node = firewall.is_node(CONFIG, host)
    assert ("chain nodeports" in text) == node
    assert ("local-pods" in text) == node


NFT = shutil.which("nft")
UNSHARE = shutil.which("unshare")


@pytest.mark.skipif(os.geteuid() != 0 or not NFT or not UNSHARE, reason="nft -c needs root, nft and unshare")
@pytest.mark.parametrize("host", sorted(CONFIG.hosts))
def test_nftables_accepts_the_rendered_ruleset(host, tmp_path):
    path = tmp_path / "firewall.nft"
    path.write_text(render(host))
    # Checked in a network namespace of its own (nothing on this machine is touched), and without /etc/protocols
    # and /etc/services, as on a minimal host (a protocol name nft cannot resolve there failed in the lab).
    hide = "mount --bind /dev/null /etc/protocols && mount --bind /dev/null /etc/services"
    proc = subprocess.run(
        [UNSHARE, "-n", "-m", "sh", "-c", f"{hide} && {NFT} -c -f {path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = subprocess.run(
        [UNSHARE, "-n", "sh", "-c", f"{NFT} -f {path} && {NFT} -f {path} && {NFT} list ruleset"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr  # loads twice: the delete-then-create is re-runnable
    assert "policy drop" in loaded.stdout
    for rule in firewall.host_rules(CONFIG)[host]:
        for src in rule.sources:
            net = ipaddress.IPv4Network(src)
            assert (str(net.network_address) if net.prefixlen == 32 else str(net)) in loaded.stdout


def test_the_security_page_lists_every_rule():
    page = (ROOT / "docs" / "security.md").read_text()
    names = {r.name for rules in firewall.host_rules(CONFIG).values() for r in rules} | {"ssh"}
    assert {n for n in names if f"`{n}`" not in page} == set()
