"""What `make lab` against the local lab adds to the production path, and that a real lab can never take it:
the extra inventory (lifecycle.extra_inventory) and the program's stand-ins from the environment
(infra/lab_stand_in.from_environment). The run itself: tests/lab/test_make_lab.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra import lab_stand_in
from renderlab.lab.config import load
from renderlab.lab.inventory import inventory
from renderlab.workstation.nspawn_lab import lifecycle, share_folder
from renderlab.workstation.nspawn_lab.options import LabOptions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = load(ROOT / "Pulumi.example.yaml")


def _fake_pve(endpoint: str):
    return EXAMPLE.model_copy(update={"proxmox": EXAMPLE.proxmox.model_copy(update={"endpoint": endpoint})})


@pytest.fixture
def options(tmp_path) -> LabOptions:
    s = LabOptions.from_env({"RENDERLAB_LAB_PREFIX": "seam", "RENDERLAB_LAB_CACHE": str(tmp_path)})
    s.state.mkdir(parents=True)
    lifecycle.write_stack(s, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISeamKey seam@test", ["10.0.0.53"])
    return s


def test_the_extra_inventory_holds_only_the_labs_own_vars(options):
    config = load(options.state / "stack.yaml")
    extra = lifecycle.extra_inventory(config, options)
    assert set(extra) == {"all"} and set(extra["all"]) == {"vars", "hosts"}  # no groups, no new hosts
    group_vars = extra["all"]["vars"]
    assert set(group_vars) == (set(lifecycle.LOCAL_ONLY_VARS) - set(lifecycle.PRODUCTION_KEPT)) | {
        lifecycle.WITHOUT_VENDOR
    }
    # The production path's SSH host-key checking and kubeconfig destination are not overridden.
    assert (
        "ansible_ssh_common_args" not in group_vars and "kube_control_plane_kubeconfig_dest" not in group_vars
    )
    assert set(extra["all"]["hosts"]) == {
        n for n, h in config.hosts.items() if h.role in ("control_plane", "worker")
    }
    assert all(set(v) == set(lifecycle.LOCAL_ONLY_HOST_VARS) for v in extra["all"]["hosts"].values())


def test_a_real_labs_inventory_never_says_the_vendor_download_may_be_missing():
    assert lifecycle.WITHOUT_VENDOR not in yaml.safe_dump(inventory(EXAMPLE))
    site = (ROOT / "ansible" / "site.yml").read_text()
    assert f"perforce_missing is defined and not {lifecycle.WITHOUT_VENDOR} | default(false)" in site


def test_the_stand_ins_only_for_a_fake_pve_on_this_machine():
    env = {lab_stand_in.ENV: share_folder.FOLDER}
    assert lab_stand_in.from_environment(EXAMPLE, {}) is None
    for local in ("https://127.0.0.1:8006", "https://localhost:40001", "https://127.0.0.2"):
        got = lab_stand_in.from_environment(_fake_pve(local), env)
        assert (
            got is not None and got.share_folder == share_folder.FOLDER and got.share_gid == EXAMPLE.share.uid
        )
    with pytest.raises(lab_stand_in.StandInError, match="not this machine"):
        lab_stand_in.from_environment(EXAMPLE, env)  # https://pve.lab.internal:8006
    with pytest.raises(lab_stand_in.StandInError, match="not this machine"):
        lab_stand_in.from_environment(_fake_pve("https://10.0.0.5:8006"), env)


@pytest.mark.parametrize("value", ["relative/share", "/srv/../etc", "/srv/share with space", "/" + "x" * 300])
def test_a_stand_in_folder_that_is_not_a_plain_absolute_path_is_refused(value):
    with pytest.raises(lab_stand_in.StandInError, match="absolute path"):
        lab_stand_in.from_environment(_fake_pve("https://127.0.0.1:8006"), {lab_stand_in.ENV: value})
