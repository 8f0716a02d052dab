"""The local lab's one share folder: nspawn binds it where each host needs the share (no CIFS in this
kernel), and the lab inventory tells the airflow role to bind it rather than mount CIFS."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from renderlab.lab.config import load
from renderlab.workstation.nspawn_lab import lifecycle, machines, share_folder
from renderlab.workstation.nspawn_lab.options import LabOptions


def _lab(tmp_path: Path):
    options = LabOptions.from_env({"RENDERLAB_LAB_PREFIX": "rl9", "RENDERLAB_LAB_CACHE": str(tmp_path)})
    options.state.mkdir(parents=True)
    lifecycle.write_stack(options, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab lab@test", ["10.0.0.53"])
    return options, load(options.state / "stack.yaml")


def test_every_host_that_uses_the_share_binds_the_same_folder(tmp_path):
    options, config = _lab(tmp_path)
    folder = share_folder.host_folder(options.state)
    targets = {}
    for host in config.hosts.values():
        for arg in share_folder.binds(options.state, host.role, config.share.path):
            source, target = arg.removeprefix("--bind=").split(":")
            assert source == str(folder)
            targets[host.role] = target
    # Samba exports the folder; the pods' hostPath and the Airflow host's bind read it at FOLDER.
    assert targets == {
        "storage": config.share.path,
        "control_plane": share_folder.FOLDER,
        "worker": share_folder.FOLDER,
        "airflow": share_folder.FOLDER,
    }
    inv = lifecycle.lab_inventory(config, options)
    assert inv["all"]["vars"]["renderlab_share_bind_source"] == share_folder.FOLDER
    # The lab's file:// depot lies on the same folder: filled here, read by the fetch pod at the share mount.
    assert inv["all"]["vars"]["renderlab_pipeline_overrides"] == {"depot": "file:///share/depot/songs"}
    assert share_folder.depot_folder(options.state) == folder / "depot" / "songs"


def test_a_machine_boots_and_reboots_with_its_binds(tmp_path, monkeypatch):
    ran = []

    class Popen:
        def __init__(self, cmd, **_):
            ran.append(cmd)
            self.pid = 4242

    monkeypatch.setattr(subprocess, "Popen", Popen)
    bind = f"--bind={tmp_path}/share:{share_folder.FOLDER}"
    m = machines.Machine("worker", "rl9-worker", "10.0.0.12", tmp_path / "m", binds=(bind,))
    machines.boot(m, "rlbr9", tmp_path, cluster_node=True)
    # What state.json keeps is what a later re-boot (a node stopped and started) passes again.
    again = machines.Machine(**{**m.as_state(), "directory": Path(m.as_state()["directory"])})
    machines.boot(again, "rlbr9", tmp_path, cluster_node=True)
    assert [bind in cmd for cmd in ran] == [True, True]


def test_a_size_limited_share_fills_up_like_a_real_one_and_is_released(tmp_path):
    import errno
    import os

    import pytest

    options = LabOptions.from_env(
        {
            "RENDERLAB_LAB_PREFIX": "rl9",
            "RENDERLAB_LAB_CACHE": str(tmp_path),
            "RENDERLAB_LAB_SHARE_SIZE": "1G",
        }
    )
    assert options.share_size == 1 << 30
    folder = share_folder.host_folder(options.state)
    folder.mkdir(parents=True)
    share_folder.limit(options.state, options.share_size)
    try:
        assert os.path.ismount(folder) and os.listdir(folder) == []  # no lost+found in the share's root
        usage = os.statvfs(folder)
        assert 0.9 < usage.f_bavail * usage.f_frsize / (1 << 30) <= 1  # all of it, none held back for root
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError) as full:
                os.posix_fallocate(fd, 0, 2 << 30)
        finally:
            os.close(fd)
        assert full.value.errno == errno.ENOSPC
        # Sparse: the image on this machine's disk holds what was written, not the share's size.
        assert (options.state / "share.img").stat().st_blocks * 512 < 128 << 20
    finally:
        assert share_folder.release(options.state)
    assert not os.path.ismount(folder)
    assert share_folder.release(options.state) is False  # a plain folder: nothing to unmount


def test_a_share_size_that_is_not_one_is_refused_by_name():
    import pytest

    from renderlab.workstation.nspawn_lab.options import LabError

    for bad in ("8", "8T", "100M", "1.5G", "-1G"):
        with pytest.raises(LabError, match=f"RENDERLAB_LAB_SHARE_SIZE='{re.escape(bad)}': give a size"):
            LabOptions.from_env({"RENDERLAB_LAB_SHARE_SIZE": bad})
    assert LabOptions.from_env({"RENDERLAB_LAB_SHARE_SIZE": "2048M"}).share_size == 2 << 30
    assert LabOptions.from_env({}).share_size is None


def test_a_share_that_cannot_be_mounted_is_one_error_that_says_what_to_do(tmp_path, monkeypatch):
    import pytest

    from renderlab.workstation.nspawn_lab.options import LabError

    real_run = subprocess.run

    def no_loop_device(cmd, **kw):  # as mount answers where every loop device is taken
        if cmd[0] == "mount":
            return subprocess.CompletedProcess(
                cmd, 32, "", "mount: /x: failed to setup loop device for /y.\n"
            )
        return real_run(cmd, **kw)

    monkeypatch.setattr(subprocess, "run", no_loop_device)
    share_folder.host_folder(tmp_path).mkdir()
    with pytest.raises(LabError) as e:
        share_folder.limit(tmp_path, 1 << 30)
    message = str(e.value)
    assert "mount of the share's image" in message and "failed to setup loop device" in message
    assert "free loop device" in message and "leave RENDERLAB_LAB_SHARE_SIZE unset" in message
