"""The cluster layer alone (infra/cluster.py), as the cluster lane's Pulumi test applies it to the local lab.

The whole program (infra/program.py) makes the Proxmox VMs first; the lab's hosts are nspawn containers, so
this program takes what the VMs would hand on from the stack's config instead: the lab config (`renderlab:`,
validated by the one model), the kubeconfig and the Secrets' values as secret config (`layer:`), and the lab's
stand-ins (infra/lab_stand_in.py) with the names of a copy beside the lab's own layer.
"""

import sys
from pathlib import Path

# Pulumi runs this file by path; the repository root holds the renderlab and infra packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import pulumi  # noqa: E402

from infra import manifests, stack  # noqa: E402
from infra.cluster import ClusterLayer  # noqa: E402
from infra.lab_stand_in import LabStandIn, copy_names  # noqa: E402

config, secrets = stack.read()
layer = pulumi.Config("layer")
cluster = ClusterLayer(
    "cluster",
    config,
    kubeconfig=secrets["kubeconfig"],
    secret_values={k: layer.require_secret(k) for k in manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS},
    docs_image=layer.require("docs_image"),
    lab=LabStandIn(
        share_folder=layer.require("share_folder"),
        share_gid=config.share.uid,
        names=copy_names(layer.get("prefix") or ""),
    ),
)
pulumi.export("launcher_token", cluster.launcher_token)
pulumi.export("registry", cluster.registry)
