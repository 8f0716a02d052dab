from pathlib import Path

from renderlab.lab.config import load
from renderlab.lab.inventory import inventory

ROOT = Path(__file__).resolve().parents[1]


def test_inventory_groups_and_addresses_come_from_config():
    config = load(ROOT / "Pulumi.example.yaml")
    inv = inventory(config)
    groups = inv["all"]["children"]
    assert set(groups) == {"k3s_server", "k3s_agent", "storage", "perforce", "airflow"}
    assert groups["storage"]["hosts"]["storage"]["ansible_host"] == "10.20.0.13"
    assert groups["k3s_agent"]["hosts"]["k3s-agent"]["renderlab_vmid"] == 212
    assert inv["all"]["vars"]["ansible_user"] == "renderlab"


def test_extra_host_vars_and_user_override():
    config = load(ROOT / "Pulumi.example.yaml")
    inv = inventory(config, ssh_user="root", extra_host_vars={"airflow": {"ansible_port": 2222}})
    assert inv["all"]["vars"]["ansible_user"] == "root"
    assert inv["all"]["children"]["airflow"]["hosts"]["airflow"]["ansible_port"] == 2222
