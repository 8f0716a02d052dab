"""Names of the cluster objects the pipeline's Jobs use: the cluster layer (infra/manifests.py) creates
them under these names and the lab's pipeline settings hand the same names to the DAG. Typed only here."""

from __future__ import annotations

SHARE_PV = "renderlab-share"
SHARE_PVC = "render-share"  # the Jobs mount the share through it
P4_SECRET = "renderlab-p4"  # the fetch Job reads its keys user, password, fingerprint
LAUNCHER = "airflow-launcher"  # the ServiceAccount Airflow starts Jobs as
LAUNCHER_TOKEN = "airflow-launcher-token"  # its token Secret (site.yml's k8s_connection reads it)
IMAGE_PREFIX = "renderlab-"  # the lab registry's repository of image <name>: renderlab-<name>
REGISTRY_NS = "renderlab-registry"  # the image registry's namespace (infra/manifests.py)
REGISTRY_SERVICE_DNS = (
    f"registry.{REGISTRY_NS}.svc"  # its Service's in-cluster name: a name in its TLS certificate
)
REGISTRY_USER = (
    "renderlab"  # the registry's one htpasswd user: the workstation pushes and the nodes pull as it
)
