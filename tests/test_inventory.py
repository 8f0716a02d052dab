from pathlib import Path

from renderlab.lab.config import load
from renderlab.lab.inventory import inventory
from tests.example_stack import own_text

ROOT = Path(__file__).resolve().parents[1]


def test_inventory_groups_and_addresses_come_from_config():
    config = load(ROOT / "Pulumi.example.yaml")
    inv = inventory(config)
    groups = inv["all"]["children"]
    assert set(groups) == {"control_plane", "worker", "storage", "perforce", "airflow"}
    assert groups["storage"]["hosts"]["storage"]["ansible_host"] == "10.20.0.13"
    assert groups["worker"]["hosts"]["worker"]["renderlab_vmid"] == 212
    assert inv["all"]["vars"]["ansible_user"] == "renderlab"


def test_extra_host_vars_and_user_override():
    config = load(ROOT / "Pulumi.example.yaml")
    inv = inventory(config, ssh_user="root", extra_host_vars={"airflow": {"ansible_port": 2222}})
    assert inv["all"]["vars"]["ansible_user"] == "root"
    assert inv["all"]["children"]["airflow"]["hosts"]["airflow"]["ansible_port"] == 2222


def test_inventory_cli_carries_the_recorded_image_refs_in_the_pipeline_settings(tmp_path, monkeypatch):
    from renderlab.lab import ansible_unsafe, image_refs
    from renderlab.lab import inventory as inventory_cli

    monkeypatch.setattr(image_refs, "RECORDS", tmp_path / "records")
    stack = tmp_path / "Pulumi.lab.yaml"
    stack.write_text(own_text().replace("node_port: 30500", "node_port: 31999"))
    image_refs.record(stack, "blender", "b" * 16)
    image_refs.record(stack, "fetch", "f" * 16, "sha256:" + "2" * 64)
    assert inventory_cli.main([str(stack), "-o", str(tmp_path / "inv.yml")]) == 0
    import yaml

    settings = ansible_unsafe.plain(yaml.safe_load((tmp_path / "inv.yml").read_text()))["all"]["vars"][
        "renderlab_pipeline_settings"
    ]
    assert settings["images"] == {
        "blender": f"127.0.0.1:31999/renderlab-blender:{'b' * 16}",
        "fetch": f"127.0.0.1:31999/renderlab-fetch:{'f' * 16}@sha256:{'2' * 64}",
    }
    # Another stack's record is another file: nothing leaks across stacks.
    assert image_refs.recorded(tmp_path / "Pulumi.other.yaml") == {}
