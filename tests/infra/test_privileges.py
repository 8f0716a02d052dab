"""The documented token privileges are enough for the whole VM lifecycle (fakepve enforces PVE's ACLs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.proxmox.privileges import PRIVILEGES, PVE9_ONLY
from infra.proxmox.template import CloudInitTemplateProvider
from infra.proxmox.vm import ProxmoxVmProvider
from tests.infra.conftest import FAST
from tests.infra.test_template_provider import props as template_props
from tests.infra.test_vm_provider import spec

pytestmark = pytest.mark.usefixtures("token_env")
ROOT = Path(__file__).resolve().parents[2]


def grant(pve, privs):
    for path in ("/", "/vms", "/storage", "/nodes/pve1", "/sdn/zones/localnetwork"):
        pve.grant("renderlab@pve", path, *privs)


def test_documented_privileges_cover_template_and_vm_lifecycle(pve, fakepve_cafile):
    pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    grant(pve, PRIVILEGES)
    CloudInitTemplateProvider(timing=FAST).create(template_props(pve, fakepve_cafile, vmid=9100))
    p = ProxmoxVmProvider(timing=FAST)
    created = p.create(spec(pve, fakepve_cafile, template_vmid=9100))
    updated = p.update(
        "211", created.outs, spec(pve, fakepve_cafile, template_vmid=9100, cores=4, disk_gib=30)
    )
    p.delete("211", updated.outs)
    assert pve.vm(211) is None


def test_a_missing_privilege_is_reported_by_name(pve, fakepve_cafile):
    grant(pve, [p for p in PRIVILEGES if p != "VM.Clone"])
    with pytest.raises(Exception, match=r"403.*VM.Clone"):
        ProxmoxVmProvider(timing=FAST).create(spec(pve, fakepve_cafile))
    assert pve.vm(211) is None


def test_readme_lists_exactly_these_privileges():
    # The Proxmox prerequisites live in the docs site's "Build the lab" page.
    readme = (ROOT / "docs" / "building.md").read_text()
    for priv in PRIVILEGES:
        assert f"`{priv}`" in readme, priv


def test_the_documented_role_command_works_on_pve_8_and_9():
    """The `pveum role add` line grants exactly PRIVILEGES, none of them PVE 9 only (PVE 8 refuses those)."""
    text = (ROOT / "docs" / "building.md").read_text().replace("\\\n", " ")
    lines = re.findall(r'pveum role add \S+ -privs "([^"]+)"', text)
    assert lines, "docs/building.md has no pveum role add line"
    for privs in lines:
        assert set(privs.split()) == set(PRIVILEGES)
        assert not set(privs.split()) & PVE9_ONLY
    assert not PVE9_ONLY & set(PRIVILEGES)
