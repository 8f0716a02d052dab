"""The whole lab from the example config, through the real providers, against fakepve: the props the
Pulumi program builds (infra/vms.py) are accepted by the providers and make five running VMs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra.proxmox.template import CloudInitTemplateProvider
from infra.proxmox.vm import ProxmoxVmProvider
from infra.vms import template_props, vm_props
from renderlab.lab.config import load
from tests.infra.conftest import FAST, assert_schema_clean

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("token_env")


def test_example_lab_builds_in_parallel(pve, fakepve_cafile):
    config = load(ROOT / "Pulumi.example.yaml")
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    pve.add_node("pve")
    pve.vms.remove(pve.vm(9000))  # the fixture's template sits on pve1; this lab builds its own on pve

    def local(props):
        return {**props, "endpoint": pve.url, "ca_file": fakepve_cafile}

    tpl = local(template_props(config))
    tpl["image_sha512"] = "b" * 128  # no download of SHA512SUMS from here
    CloudInitTemplateProvider(timing=FAST).create(tpl)
    assert pve.vm(9000).template and pve.vm(9000).node == "pve"

    vms = ProxmoxVmProvider(timing=FAST)
    props = [local(vm_props(config, name)) for name in sorted(config.hosts)]
    for p in props:
        assert vms.check({}, p).failures == []
    # Four at a time, as Pulumi's dynamic provider server runs them.
    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(vms.create, props))
    assert {c.outs["name"]: c.outs["ipv4"] for c in created} == {n: config.address(n) for n in config.hosts}
    for name, host in config.hosts.items():
        vm = pve.vm(host.vmid)
        assert vm.status == "running" and vm.name == name and vm.config["cores"] == str(host.cores)
        assert f"renderlab;{host.role}" == vm.config["tags"] or sorted(
            vm.config["tags"].split(";")
        ) == sorted(["renderlab", host.role])
    # A second `pulumi up` with the same config: every diff is empty.
    assert all(vms.diff(c.id, c.outs, p).changes is False for c, p in zip(created, props, strict=True))
    assert_schema_clean(pve)
