"""A lab that fails halfway through coming up leaves nothing behind: no containers, bridge, NAT table, state."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from renderlab.workstation.nspawn_lab import lab as locallab
from renderlab.workstation.nspawn_lab import machines, network, rootfs
from renderlab.workstation.nspawn_lab.options import LabError, LabOptions

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


@pytest.fixture
def settings() -> LabOptions:
    # Its own bridge, subnet and prefix, so it never touches a lab that is up.
    return LabOptions.from_env(
        {
            "RENDERLAB_LAB_BRIDGE": "rlbr0t",
            "RENDERLAB_LAB_SUBNET": "10.231.0.192/26",
            "RENDERLAB_LAB_PREFIX": "rl0t",
        }
    )


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _nspawn_running(prefix: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if args[0].endswith(b"systemd-nspawn") and any(
            a.startswith(f"--machine={prefix}-".encode()) for a in args
        ):
            found.append(cmdline.parent.name)
    return found


def test_failure_while_booting_tears_everything_down(settings, lab_preflight, monkeypatch):
    booted: list[str] = []
    real_boot = machines.boot

    def boot_then_fail(m, bridge, log_dir, **options):
        real_boot(m, bridge, log_dir, **options)
        booted.append(m.machine)
        if len(booted) == 2:
            raise LabError("injected failure after two hosts booted")

    monkeypatch.setattr(machines, "boot", boot_then_fail)
    with pytest.raises(LabError, match="injected failure"):
        locallab.up(settings)
    assert booted == [f"rl0t-{n}" for n in ("airflow", "control-plane")]
    assert _nspawn_running("rl0t") == []
    assert not network.bridge_exists(settings)
    assert not network.table_exists(settings)
    assert not settings.state.exists()
    assert Path(settings.cache / "rl0t-last-logs" / "rl0t-airflow.console.log").exists()


def test_down_is_idempotent(settings, lab_preflight):
    locallab.down(settings)
    locallab.down(settings)
    assert not network.bridge_exists(settings)


def test_hard_stop_kills_the_container_not_just_nspawn(settings, lab_preflight):
    """When a container ignores the polite shutdown, nothing of it may survive: no init, no veth."""
    tree = rootfs.ensure(settings.cache, print)
    (settings.state / "machines").mkdir(parents=True)
    (settings.state / "logs").mkdir()
    m = machines.Machine(
        "probe",
        "rl0t-probe",
        str(settings.subnet.network_address + 11),
        settings.state / "machines" / "rl0t-probe",
    )
    network.up(settings)
    try:
        machines.prepare(
            m, tree, prefixlen=settings.subnet.prefixlen, gateway=str(settings.gateway), dns=["10.0.0.53"],
            admin="probe", pubkey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTest0000 t",
        )  # fmt: skip
        machines.boot(m, settings.bridge, settings.state / "logs")
        deadline = time.monotonic() + 60
        inits: list[int] = []
        while not inits and time.monotonic() < deadline:
            time.sleep(0.2)
            inits = [c for c in machines._children(m.pid) if _comm(c) == "systemd"]
        assert inits, "the container's init never started"
        machines.stop(m, grace_s=0)  # straight to the hard kill
        assert not machines.is_ours(m)
        # Gone, or a zombie awaiting its reaper (PID 1 here), which holds no namespace.
        assert all(machines._state(pid) in ("Z", "X") for pid in inits)
    finally:
        locallab._save(settings, [m])
        locallab.down(settings)
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert "rl0t" not in links
    assert _nspawn_running("rl0t") == []
