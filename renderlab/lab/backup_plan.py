"""The backup plan derived from the lab config's `backup` section: which host backs up what, where to.

The inventory hands it to site.yml as `renderlab_backup`; site.yml maps it onto the backup role's own
variables. Every path comes from the model it belongs to (the share layout, the Perforce data root), so the
role never retypes one.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from renderlab.base.share import ShareLayout
from renderlab.lab.config import BACKUP_DATA_ROLE, BackupToLabHost, BackupToS3, BackupToSftp, LabConfig

# The system user that owns the repositories on a lab_host target; the hosts log in as it with their own key.
TARGET_USER = "renderlab-backup"
# Each host keeps its own repository below the target (no lock shared between hosts' prunes).
DATA_TAGS = tuple(BACKUP_DATA_ROLE)


def data_sets(config: LabConfig) -> dict[str, list[dict[str, Any]]]:
    """host name -> the data sets it backs up, each {name (the snapshot tag), kind, what it needs}."""
    assert config.backup is not None
    share = ShareLayout(PurePosixPath(config.share.path))
    p4root = str(PurePosixPath(config.perforce.data_root) / "root")
    sets: dict[str, list[dict[str, Any]]] = {}
    share_paths = {
        "share_runs": str(share.runs()),
        "share_gallery": str(share.gallery()),
        "share_assets": str(share.root / "assets"),
    }
    for name, on in config.backup.data:
        if not on:
            continue
        for host in config.hosts_by_role(BACKUP_DATA_ROLE[name]):
            if name == "airflow_db":
                item = {"name": name, "kind": "pg_dump"}  # the database: the role's backup_pg_database
            elif name == "perforce":
                item = {
                    "name": name,
                    "kind": "p4d_checkpoint",
                    "p4root": p4root,
                    "ssl_dir": str(PurePosixPath(config.perforce.data_root) / "ssl"),
                }
            else:
                item = {"name": name, "kind": "paths", "paths": [share_paths[name]]}
            sets.setdefault(host, []).append(item)
    return sets


def target(config: LabConfig) -> dict[str, Any]:
    """Where the repositories live, as the role needs it: the restic repository prefix and how to reach it."""
    assert config.backup is not None
    t = config.backup.target
    if isinstance(t, BackupToLabHost):
        return {
            "kind": "lab_host",
            "host": t.host,
            "address": config.address(t.host),
            "port": 22,
            "user": TARGET_USER,
            "path": t.path,
            "repository": f"sftp:{TARGET_USER}@{config.address(t.host)}:{t.path}",
        }
    if isinstance(t, BackupToSftp):
        return {
            "kind": "sftp",
            "host": t.host,
            "address": t.host,
            "port": t.port,
            "user": t.user,
            "path": t.path,
            "host_key": t.host_key,
            "repository": f"sftp:{t.user}@{t.host}:{t.path}",
        }
    assert isinstance(t, BackupToS3)
    return {
        "kind": "s3",
        "endpoint": t.endpoint.rstrip("/"),
        "region": t.region or "",
        "repository": f"s3:{t.endpoint.rstrip('/')}/{t.bucket}/{t.prefix.strip('/')}",
    }


def plan(config: LabConfig) -> dict[str, Any] | None:
    """`renderlab_backup` for the inventory (None without a backup section: site.yml then skips the role)."""
    b = config.backup
    if b is None:
        return None
    return {
        "target": target(config),
        "schedule": b.schedule,
        "check_schedule": b.check_schedule,
        "late_after_hours": b.late_after_hours,
        "retention": b.retention.model_dump(),
        "sets": data_sets(config),
    }
