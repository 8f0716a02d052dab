"""docs/building.md as one path a homelab user can follow (the docs findings, each a check that failed
on the old text): the checklist in `make lab`'s order, the hosts before the cluster and the images, commands
that work where they are typed (the kubeconfig path, the Perforce fingerprint on a fresh workstation, Go's
version), and what a user must know: the passphrase and state, host keys, Airflow's password, Docker and the
plain-HTTP registry, the p4 CLI, sizing, a worker node, tear-down."""

from __future__ import annotations

import re
from pathlib import Path

from renderlab.lab import stages

REPO = Path(__file__).resolve().parents[2]
BUILDING = (REPO / "docs" / "building.md").read_text()


def checklist() -> str:
    start = BUILDING.index("## Build the lab, step by step (`make lab`)")
    return BUILDING[start : BUILDING.index("\n## ", start + 1)]


def test_the_checklist_runs_the_stages_in_make_labs_order():
    text = checklist()
    listed = re.findall(r"^\s+\d+\. `make ([a-z-]+)`", text, re.M)
    assert listed == [s.target for s in stages.STAGES]


def test_the_hosts_come_before_the_cluster_layer_and_the_images():
    hosts = BUILDING.index("## Configure the hosts")
    assert hosts < BUILDING.index("## The cluster layer")
    assert hosts < BUILDING.index("### The docs site")  # `make images` is explained there


def test_the_kubeconfig_is_read_from_where_the_hosts_stage_put_it():
    # The role writes it to {{ playbook_dir }}/../kubeconfig: site.yml lives in ansible/, so the repository's
    # root, where `make lab-cluster` reads it (an earlier page sent users to ansible/kubeconfig: never there).
    defaults = (REPO / "ansible/roles/kube_control_plane/defaults/main.yml").read_text()
    assert 'kube_control_plane_kubeconfig_dest: "{{ playbook_dir }}/../kubeconfig"' in defaults
    assert (REPO / "ansible" / "site.yml").is_file()
    assert re.search(r"^LAB_KUBECONFIG \?= kubeconfig$", (REPO / "Makefile").read_text(), re.M)
    assert "ansible/kubeconfig" not in BUILDING
    assert "make lab-cluster" in checklist() and "(`./kubeconfig`, 0600)" in checklist()


def test_the_fingerprint_command_works_on_a_fresh_workstation():
    for text in (BUILDING, (REPO / "Pulumi.example.yaml").read_text()):
        for line in text.splitlines():
            if "trust -l" in line:
                assert "only lists" in line, line  # never given as the way to read the fingerprint
    assert "p4d -Gf" in checklist() and "trust -y" in checklist()


def test_the_go_hint_does_not_install_debians_old_go():
    script = (REPO / "scripts" / "build-tools.sh").read_text()
    assert "apt-get install golang" not in script
    assert "1.26" in script and "go.dev" in script
    assert "Go >= 1.26" in checklist() and "1.19" in checklist()


def test_the_p4_cli_install_is_a_step():
    assert "helix-cli" in checklist() and "`p4` CLI" in checklist()


def test_the_passphrase_and_the_state_are_explained():
    text = checklist()
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" in text
    assert "back up" in text and "generated service password" in text


def test_ssh_host_keys_are_managed():
    text = checklist()
    assert "known_hosts" in text and "StrictHostKeyChecking=yes" in text and "recreates" in text


def test_airflow_password_names_its_secret():
    text = checklist()
    assert "AIRFLOW_PASSWORD" in text and "renderlab_airflow_admin_password" in text


def test_docker_trusts_the_lab_registry_by_its_ca_not_as_insecure():
    text = checklist()
    assert "/etc/docker/certs.d/" in text and "make lab-ca-cert" in text
    assert "insecure-registries" not in text  # the registry speaks TLS from the lab CA now


def test_sizing_a_worker_node_and_tear_down():
    text = checklist()
    assert "**Sizing.**" in text and "seconds per frame" in text
    assert "**Adding a worker node**" in text
    assert "**Tear down**" in text and "It leaves:" in text
