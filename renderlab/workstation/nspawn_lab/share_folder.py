"""The local lab's stand-in for the SMB share's reach (this kernel has no CIFS): one folder on this machine,
bind-mounted by nspawn into the storage host at the path Samba exports, and into the Kubernetes nodes and the
Airflow host at FOLDER. The pods reach it through a hostPath PersistentVolume at FOLDER; the airflow role binds
FOLDER at the pipeline settings' share_root (renderlab_share_bind_source). One folder: every host sees the
same files, as they would through the share."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

from renderlab.base.share import SHARE_MOUNT
from renderlab.workstation.nspawn_lab.options import LabError

FOLDER = "/srv/renderlab-share"
# No p4d can be had here: the lab's depot is a file:// folder on the same share folder, which the fetch Job
# reads where its pod mounts the share (the lab's only override of the pipeline settings the lab config derives).
DEPOT = PurePosixPath("depot/songs")
ROLES = ("storage", "control_plane", "worker", "airflow")


def host_folder(state: Path) -> Path:
    return state / "share"


def limit(state: Path, size: int) -> None:
    """The share folder becomes an ext4 filesystem of `size` bytes (a sparse image file mounted over a loop
    device), made before the hosts bind it. No blocks reserved for root: the pods' user meets the same limit."""
    image, folder = state / "share.img", host_folder(state)
    with image.open("wb") as f:
        f.truncate(size)
    for cmd in (
        ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
        ["mount", "-o", "loop", str(image), str(folder)],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise LabError(
                f"RENDERLAB_LAB_SHARE_SIZE: {cmd[0]} of the share's image {image} failed: "
                f"{(done.stderr or done.stdout).strip()}; it needs root and a free loop device "
                "(`losetup -f`), or leave RENDERLAB_LAB_SHARE_SIZE unset for a plain folder"
            )
    (folder / "lost+found").rmdir()  # the share's root holds only what the lab puts there
    folder.chmod(0o755)


def release(state: Path) -> bool:
    """Unmount a size-limited share folder (`limit`); False when it is a plain folder."""
    folder = host_folder(state)
    if not os.path.ismount(folder):
        return False
    if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode:
        # Still busy (a shell's working directory): detached now, freed once nothing uses it.
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True, text=True)
    return True


def binds(state: Path, role: str, share_path: str) -> tuple[str, ...]:
    """nspawn's --bind for a host of this role: the storage host sees the folder where Samba exports it."""
    if role not in ROLES:
        return ()
    return (f"--bind={host_folder(state)}:{share_path if role == 'storage' else FOLDER}",)


def depot_folder(state: Path) -> Path:
    """Where this machine fills the lab's file:// depot (the rehearsal copies the bundled songs there)."""
    return host_folder(state) / DEPOT


def inventory_vars() -> dict:
    return {
        "renderlab_share_bind_source": FOLDER,
        "renderlab_pipeline_overrides": {"depot": f"file://{PurePosixPath(SHARE_MOUNT) / DEPOT}"},
    }
