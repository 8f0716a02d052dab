"""Where the images' references come from: the one owner of "which image does a Job run".

`make images` (renderlab.workstation.images) builds and pushes each image to `push_registry()` and records
the tag it built with `record()`, one record per stack file. The lab's pipeline settings carry `pull_refs()`
(the same repository and tag, as the Kubernetes nodes pull it) to the DAG, which never computes a reference.
"""

from __future__ import annotations

import json
from pathlib import Path

from renderlab.base import atomic
from renderlab.lab.cluster_names import IMAGE_PREFIX
from renderlab.lab.config import LabConfig

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO / ".cache" / "images"  # git-ignored: what this checkout built
IMAGES = ("blender", "fetch", "docs")
JOB_IMAGES = ("blender", "fetch")  # what the DAG's Jobs run; docs is the cluster's docs server


def repository(name: str) -> str:
    return f"{IMAGE_PREFIX}{name}"


def push_registry(config: LabConfig) -> str:
    """Where the workstation pushes: the registry's NodePort on the control-plane node's address."""
    (server,) = config.hosts_by_role("control_plane")
    return f"{config.address(server)}:{config.pipeline.registry.node_port}"


def pull_registry(config: LabConfig) -> str:
    """Where the nodes pull from: their own loopback NodePort (containerd's hosts.toml for it trusts the lab CA)."""
    return f"127.0.0.1:{config.pipeline.registry.node_port}"


def record_path(stack_file: str | Path) -> Path:
    """Pulumi.lab.yaml -> .cache/images/Pulumi.lab.json (build args come from the stack, so tags do too)."""
    return RECORDS / f"{Path(stack_file).stem}.json"


def record(
    stack_file: str | Path, name: str, tag: str, digest: str | None = None, built: dict | None = None
) -> Path:
    """Record what `make images` built for this stack (merged with the other image's entry).

    `digest`: the pushed manifest digest (pins the Jobs' reference); `built`: what the local engine holds
    (image id, local digest, base, size), for the record and the tests, never part of a reference."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; the images are {', '.join(IMAGES)}")
    path = record_path(stack_file)
    entries = recorded(stack_file)
    entries[name] = {
        "tag": tag,
        **({"digest": digest} if digest else {}),
        **({"built": built} if built else {}),
    }
    return atomic.write_json(path, entries)


def recorded(stack_file: str | Path) -> dict[str, dict]:
    path = record_path(stack_file)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e}); delete it and run `make images` again") from e
    return {k: v for k, v in data.items() if k in IMAGES}


def pull_refs(config: LabConfig, entries: dict[str, dict[str, str]]) -> dict[str, str]:
    """The references the Jobs run: <pull registry>/renderlab-<name>:<tag>[@digest]."""
    refs = {}
    for name, entry in sorted(entries.items()):
        ref = f"{pull_registry(config)}/{repository(name)}:{entry['tag']}"
        refs[name] = f"{ref}@{entry['digest']}" if entry.get("digest") else ref
    return refs


def pull_ref(config: LabConfig, stack_file: str | Path, name: str) -> str | None:
    """The one image's reference as the nodes pull it (digest-pinned when pushed); None when none is recorded."""
    entry = recorded(stack_file).get(name)
    return pull_refs(config, {name: entry})[name] if entry else None


def push_ref(config: LabConfig, name: str, tag: str) -> str:
    return f"{push_registry(config)}/{repository(name)}:{tag}"
