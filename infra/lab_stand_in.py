"""Lab only: what the local lab changes in the cluster layer's objects, for what it cannot have.

- CIFS: this kernel has none, so a PersistentVolume that mounts the SMB share by CSI becomes the folder the lab
  binds on every node (the share's own files), and the SMB CSI driver's Helm chart is not installed (a host
  folder needs no driver; its chart repository cannot be reached from the lab either).
- The registry's claim: production's SMB CSI driver provisions it a folder under the share; here a static
  PersistentVolume bound to that claim is a folder under the same host folder (`objects`). Its image is the
  air-gap one `make k8s-artifacts` builds and the nodes import, so the registry runs and is awaited as in
  production (and `make lab`'s images stage pushes to it).

Production never applies any of it: `ClusterLayer` takes a `LabStandIn` only when a caller passes one: the
cluster lane's tests, and the whole program (infra/program.py) when `make lab` runs against the local lab
(`from_environment`: RENDERLAB_LAB_STAND_IN, honoured only for a Proxmox endpoint on this machine, i.e. the
fake PVE; a real PVE is another machine, so a production stack fails loudly if the variable is left set).
The kubectl lane (tests/cluster/test_cluster.py) applies the same edits.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from infra import manifests
from renderlab.lab.cluster_names import REGISTRY_NS, SHARE_PV

ENV = "RENDERLAB_LAB_STAND_IN"  # the share's folder on the local lab's nodes


def copy_names(prefix: str) -> dict[str, str]:
    """The names that must differ for a second copy of the layer in one cluster (besides the config's render
    namespace and NodePorts): the fixed namespaces and the cluster-scoped objects."""
    fixed = (REGISTRY_NS, manifests.DOCS_NS, SHARE_PV, manifests.GALLERY_PV, manifests.STORAGE_CLASS)
    return {name: f"{prefix}{name}" for name in fixed}


def _renamed(value: Any, names: Mapping[str, str]) -> Any:
    """A copy of the object's dicts and lists (its values may be Outputs: shared, never copied), every string
    equal to a name replaced (a namespace, a claimRef, a volumeName, a storageClassName)."""
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


@dataclass(frozen=True)
class LabStandIn:
    # Where the lab binds the share on every node (renderlab.workstation.nspawn_lab.share_folder).
    share_folder: str
    # The share's group: the host folder shows its own modes (2770), where SMB shows 0775 to every uid.
    share_gid: int
    # copy_names(): a second copy of the layer beside the lab's own (the cluster lane's Pulumi test).
    names: Mapping[str, str] = field(default_factory=dict)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = _renamed(obj, self.names)
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "PersistentVolume":
            obj["spec"].pop("csi")
            obj["spec"].pop("mountOptions", None)
            obj["spec"]["hostPath"] = {"path": self.share_folder, "type": "DirectoryOrCreate"}
        if kind == "Deployment" and meta["name"] == "docs":
            # The docs server (uid 2080) reads the gallery through the mount: here it needs the share's group.
            pod = obj["spec"]["template"]["spec"].setdefault("securityContext", {})
            pod["supplementalGroups"] = sorted({*pod.get("supplementalGroups", []), self.share_gid})
        return obj

    def objects(self, config) -> list[dict[str, Any]]:
        """What the lab adds to the layer: the registry claim's volume, a folder under the share's host folder
        (named after the volume, as the CSI driver names the folder it provisions), bound to that claim only."""
        namespace = self.names.get(REGISTRY_NS, REGISTRY_NS)
        name = f"{namespace}-data"
        return [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": dict(manifests.PART_OF)},
                "spec": {
                    "capacity": {"storage": f"{config.pipeline.registry.size_gib}Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": self.names.get(manifests.STORAGE_CLASS, manifests.STORAGE_CLASS),
                    "claimRef": {"namespace": namespace, "name": manifests.REGISTRY_PVC},
                    "hostPath": {"path": f"{self.share_folder}/{name}", "type": "DirectoryOrCreate"},
                },
            }
        ]


class StandInError(ValueError):
    """RENDERLAB_LAB_STAND_IN set where it must not be, or to something that is not a folder."""


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def from_environment(config, env: Mapping[str, str] = os.environ) -> LabStandIn | None:
    """The local lab's stand-ins for the whole program, when `make lab` runs against the local lab: None unless
    RENDERLAB_LAB_STAND_IN names the share's folder on the nodes (an absolute path); refused for a Proxmox
    endpoint that is not this machine."""
    value = env.get(ENV, "")
    if not value:
        return None
    endpoint = str(config.proxmox.endpoint)
    if not _loopback(urlsplit(endpoint).hostname):
        raise StandInError(
            f"{ENV} is set but renderlab:proxmox.endpoint is {endpoint}, not this machine: the local lab's "
            f"stand-ins (no SMB driver, the share as a node folder) are for the fake PVE only; unset {ENV}"
        )
    path = PurePosixPath(value)
    if len(value) > 200 or not path.is_absolute() or ".." in path.parts or any(c.isspace() for c in value):
        raise StandInError(
            f"{ENV}={value[:80]!r}: give the share's folder on the lab's nodes, an absolute path"
        )
    return LabStandIn(share_folder=str(path), share_gid=config.share.uid)
