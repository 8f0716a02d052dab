"""A lab that fails halfway through coming up leaves nothing behind: no containers, bridge, NAT table, state."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderlab.locallab import lab as locallab
from renderlab.locallab import machines, network
from renderlab.locallab.settings import LabError, Settings

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


@pytest.fixture
def settings() -> Settings:
    # Its own bridge, subnet and prefix, so it never touches a lab that is up.
    return Settings.from_env(
        {
            "RENDERLAB_LAB_BRIDGE": "rlbr0t",
            "RENDERLAB_LAB_SUBNET": "10.231.0.192/26",
            "RENDERLAB_LAB_PREFIX": "rl0t",
        }
    )


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

    def boot_then_fail(m, bridge, log_dir):
        real_boot(m, bridge, log_dir)
        booted.append(m.machine)
        if len(booted) == 2:
            raise LabError("injected failure after two hosts booted")

    monkeypatch.setattr(machines, "boot", boot_then_fail)
    with pytest.raises(LabError, match="injected failure"):
        locallab.up(settings)
    assert booted == [f"rl0t-{n}" for n in ("airflow", "k3s-agent")]
    assert _nspawn_running("rl0t") == []
    assert not network.bridge_exists(settings)
    assert not network.table_exists(settings)
    assert not settings.state.exists()
    assert Path(settings.cache / "rl0t-last-logs" / "rl0t-airflow.console.log").exists()


def test_down_is_idempotent(settings, lab_preflight):
    locallab.down(settings)
    locallab.down(settings)
    assert not network.bridge_exists(settings)


def test_settings_refuse_bad_parameters():
    with pytest.raises(LabError, match="RENDERLAB_LAB_SUBNET"):
        Settings.from_env({"RENDERLAB_LAB_SUBNET": "8.8.8.0/24"})
    with pytest.raises(LabError, match="RENDERLAB_LAB_BRIDGE"):
        Settings.from_env({"RENDERLAB_LAB_BRIDGE": "Bad-Name!"})
    with pytest.raises(LabError, match="RENDERLAB_LAB_SUBNET"):
        Settings.from_env({"RENDERLAB_LAB_SUBNET": "10.231.0.1/24"})
