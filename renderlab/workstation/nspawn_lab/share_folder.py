"""The local lab's stand-in for the SMB share's reach (this kernel has no CIFS): one folder on this machine,
bind-mounted by nspawn into the storage host at the path Samba exports, and into the Kubernetes nodes and the
Airflow host at FOLDER. The pods reach it through a hostPath PersistentVolume at FOLDER; the airflow role binds
FOLDER at the pipeline settings' share_root (renderlab_share_bind_source). One folder: every host sees the
same files, as they would through the share."""

from __future__ import annotations

from pathlib import Path

FOLDER = "/srv/renderlab-share"
ROLES = ("storage", "control_plane", "worker", "airflow")


def host_folder(state: Path) -> Path:
    return state / "share"


def binds(state: Path, role: str, share_path: str) -> tuple[str, ...]:
    """nspawn's --bind for a host of this role: the storage host sees the folder where Samba exports it."""
    if role not in ROLES:
        return ()
    return (f"--bind={host_folder(state)}:{share_path if role == 'storage' else FOLDER}",)


def inventory_vars() -> dict:
    return {"renderlab_share_bind_source": FOLDER}
