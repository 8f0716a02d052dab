"""The cluster layer's Kubernetes objects, built from the lab config: one source for two consumers.

`infra/cluster.py` applies them with pulumi-kubernetes (secret values are Pulumi secrets there); the plain
YAML in `k8s/` is these same objects rendered for the example stack with empty secret values (the shape of
the Secrets, never their content):

    python -m infra.manifests Pulumi.example.yaml k8s/      # or: make cluster-manifests

A test fails when `k8s/` is out of date with this module.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from renderlab.base import atomic, cli
from renderlab.lab.cluster_names import (
    LAUNCHER,
    LAUNCHER_TOKEN,
    P4_SECRET,
    REGISTRY_NS,
    SHARE_PV,
    SHARE_PVC,
)
from renderlab.lab.config import LabConfig, load
from renderlab.lab.pipeline_settings import p4_port

SMB_DRIVER = "smb.csi.k8s.io"
CSI_SMB_CHART = "csi-driver-smb"
CSI_SMB_REPO = "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-smb/master/charts"
STORAGE_CLASS = "renderlab-smb"
SMB_SECRET = "smb-credentials"

REGISTRY_PORT = 5000
REGISTRY_PVC = "registry-data"
DOCS_NS = "renderlab-docs"
DOCS_PORT = 8080  # nginx's port in images/docs (non-root: above 1024)
DOCS_UID = 2080  # the image's user (images/docs/Dockerfile DOCS_UID)
GALLERY_PV = "renderlab-share-gallery"
GALLERY_PVC = "gallery-share"
# k8s/ renders the docs image with this tag; Pulumi (infra/cluster.py) sets the content tag `make images` built.
DOCS_TAG_EXAMPLE = "example"
PART_OF = {"app.kubernetes.io/part-of": "renderlab"}

# Secret values the cluster layer needs, by name; Pulumi passes Outputs, the YAML renders empty strings.
SECRET_INPUTS = ("renderlab_share_password", "renderlab_p4_service_password")
# The registry's TLS pair from the lab CA and its htpasswd line (infra/issued_certificate.py; Pulumi hands them).
REGISTRY_INPUTS = ("registry_tls_crt", "registry_tls_key", "registry_htpasswd")


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**PART_OF, **labels}
    return meta


def _mount_options(config: LabConfig) -> list[str]:
    uid = config.share.uid
    # Files on the share belong to the render uid, as the pods run as it (see images/).
    return [
        "dir_mode=0775",
        "file_mode=0664",
        f"uid={uid}",
        f"gid={uid}",
        "vers=3.1.1",
        "mfsymlinks",
        "noperm",
    ]


def _one(config: LabConfig, role: str) -> str:
    (name,) = config.hosts_by_role(role)
    return name


def share_source(config: LabConfig) -> str:
    return f"//{config.address(_one(config, 'storage'))}/{config.share.name}"


def _cluster_nodes(config: LabConfig) -> list:
    return [h for h in config.hosts.values() if h.role in ("control_plane", "worker")]


def pod_security(config: LabConfig, enforce: str) -> dict[str, str]:
    """Pod Security admission labels: `enforce` refuses a pod that breaks the level (a privileged pod made with
    the launcher's token included); warn and audit say `restricted` everywhere. Pinned to the cluster's minor
    version, so that an upgrade does not change what is refused."""
    version = "v" + ".".join(config.kubernetes.version.split(".")[:2])
    labels = {"enforce": enforce, "warn": "restricted", "audit": "restricted"}
    out: dict[str, str] = {}
    for mode, level in labels.items():
        out[f"pod-security.kubernetes.io/{mode}"] = level
        out[f"pod-security.kubernetes.io/{mode}-version"] = version
    return out


def namespace(config: LabConfig) -> list[dict]:
    ns = config.pipeline.namespace
    restricted = pod_security(config, "restricted")
    # The registry image runs as root (its upstream image): baseline there, still no privileged pod or host path.
    baseline = pod_security(config, "baseline")
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, **restricted)},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(REGISTRY_NS, **baseline)},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(DOCS_NS, **restricted)},
    ]


def storage(config: LabConfig) -> list[dict]:
    ns = config.pipeline.namespace
    size = f"{config.hosts[_one(config, 'storage')].disk_gib}Gi"
    secret_ref = {
        "csi.storage.k8s.io/provisioner-secret-name": SMB_SECRET,
        "csi.storage.k8s.io/provisioner-secret-namespace": ns,
        "csi.storage.k8s.io/node-stage-secret-name": SMB_SECRET,
        "csi.storage.k8s.io/node-stage-secret-namespace": ns,
    }
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": _meta(STORAGE_CLASS),
            "provisioner": SMB_DRIVER,
            "parameters": {"source": share_source(config), **secret_ref},
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "Immediate",
            "mountOptions": _mount_options(config),
        },
        {
            # The whole share, statically: the fetch and render Jobs see one tree (renderlab/base/share.py).
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": _meta(SHARE_PV),
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "mountOptions": _mount_options(config),
                "claimRef": {"namespace": ns, "name": SHARE_PVC},
                "csi": {
                    "driver": SMB_DRIVER,
                    "volumeHandle": f"{share_source(config).lstrip('/')}#renderlab-share",
                    "volumeAttributes": {"source": share_source(config)},
                    "nodeStageSecretRef": {"name": SMB_SECRET, "namespace": ns},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(SHARE_PVC, ns),
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": STORAGE_CLASS,
                "volumeName": SHARE_PV,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]


def secrets(config: LabConfig, values: dict[str, Any]) -> list[dict]:
    ns = config.pipeline.namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(SMB_SECRET, ns),
            "type": "Opaque",
            "stringData": {"username": config.share.user, "password": values["renderlab_share_password"]},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(P4_SECRET, ns),
            "type": "Opaque",
            "stringData": {
                "port": p4_port(config),
                "user": config.perforce.service_user,
                "password": values["renderlab_p4_service_password"],
                "fingerprint": config.perforce.trust_fingerprint or "",
            },
        },
    ]


def launcher_rbac(config: LabConfig) -> list[dict]:
    """What Airflow's launcher may do: Jobs, their Pods and the Pods' logs, in the render namespace only."""
    ns = config.pipeline.namespace
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(LAUNCHER, ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(LAUNCHER, ns),
            "rules": [
                {
                    "apiGroups": ["batch"],
                    "resources": ["jobs"],
                    "verbs": ["create", "get", "list", "watch", "patch", "delete"],
                },
                # What the cncf-kubernetes Job operator calls besides: the Job's status while it waits, a label
                # patched on the pod it has checked, the namespace's events when a pod fails (the lab rehearsal
                # met each as a 403 on a real cluster).
                {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "patch", "delete"],
                },
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(LAUNCHER, ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LAUNCHER},
            "subjects": [{"kind": "ServiceAccount", "name": LAUNCHER, "namespace": ns}],
        },
        {
            # A long-lived token for the Airflow host's Kubernetes connection (k8s fills in data.token).
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                **_meta(LAUNCHER_TOKEN, ns),
                "annotations": {"kubernetes.io/service-account.name": LAUNCHER},
            },
            "type": "kubernetes.io/service-account-token",
        },
    ]


def limits(config: LabConfig) -> list[dict]:
    """Quota = what the Kubernetes nodes have; render Jobs without resources get sane defaults."""
    ns = config.pipeline.namespace
    nodes = _cluster_nodes(config)
    cores = sum(h.cores for h in nodes)
    mem = sum(h.memory_mib for h in nodes)
    biggest = max(nodes, key=lambda h: (h.cores, h.memory_mib))
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta("render-quota", ns),
            "spec": {
                "hard": {
                    "requests.cpu": str(cores),
                    "requests.memory": f"{mem}Mi",
                    "limits.cpu": str(cores * 2),
                    "limits.memory": f"{mem}Mi",
                    "pods": "100",
                    "count/jobs.batch": "200",
                    "persistentvolumeclaims": "5",
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta("render-limits", ns),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                        "default": {"cpu": "1", "memory": "1Gi"},
                        "max": {"cpu": str(biggest.cores), "memory": f"{biggest.memory_mib}Mi"},
                    }
                ]
            },
        },
    ]


def network_policy(config: LabConfig) -> list[dict]:
    """Render pods reach DNS, the SMB share and Perforce; nothing else, and nothing reaches them."""
    ns = config.pipeline.namespace
    storage_ip = config.address(_one(config, "storage"))
    p4_ip = config.address(_one(config, "perforce"))
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("render-egress", ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": f"{storage_ip}/32"}}],
                        "ports": [{"protocol": "TCP", "port": 445}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": f"{p4_ip}/32"}}],
                        "ports": [{"protocol": "TCP", "port": config.perforce.port}],
                    },
                ],
            },
        }
    ]


def registry(config: LabConfig, values: dict[str, Any]) -> list[dict]:
    """The lab's image registry: pinned image, data on a volume, a NodePort every node pulls from; TLS with a
    certificate from the lab CA, htpasswd authentication for every request, no deletes."""
    reg = config.pipeline.registry
    labels = {"app.kubernetes.io/name": "registry"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("registry-tls", REGISTRY_NS),
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": values["registry_tls_crt"], "tls.key": values["registry_tls_key"]},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("registry-auth", REGISTRY_NS),
            "type": "Opaque",
            "stringData": {"htpasswd": values["registry_htpasswd"]},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(REGISTRY_PVC, REGISTRY_NS),
            # On the share: the SMB CSI driver provisions a folder of its own under the share for the claim
            # (the share's StorageClass). kubeadm installs no default StorageClass, so a claim naming none
            # stayed Pending and `pulumi up` waited 5 minutes on it and failed.
            "spec": {
                "storageClassName": STORAGE_CLASS,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{reg.size_gib}Gi"}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("registry", REGISTRY_NS, **labels),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**PART_OF, **labels}},
                    "spec": {
                        "containers": [
                            {
                                "name": "registry",
                                "image": f"registry:{config.versions.registry}",
                                "ports": [{"containerPort": REGISTRY_PORT, "name": "https"}],
                                # Deletes stay off (the registry's default): a pushed digest never vanishes.
                                "env": [
                                    {"name": "REGISTRY_HTTP_TLS_CERTIFICATE", "value": "/certs/tls.crt"},
                                    {"name": "REGISTRY_HTTP_TLS_KEY", "value": "/certs/tls.key"},
                                    {"name": "REGISTRY_AUTH", "value": "htpasswd"},
                                    {"name": "REGISTRY_AUTH_HTPASSWD_REALM", "value": "renderlab"},
                                    {"name": "REGISTRY_AUTH_HTPASSWD_PATH", "value": "/auth/htpasswd"},
                                ],
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/var/lib/registry"},
                                    {"name": "tls", "mountPath": "/certs", "readOnly": True},
                                    {"name": "auth", "mountPath": "/auth", "readOnly": True},
                                ],
                                # /v2/ answers 401 without a login: a TCP probe tells it is up.
                                "readinessProbe": {"tcpSocket": {"port": "https"}},
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"cpu": "1", "memory": "512Mi"},
                                },
                            }
                        ],
                        "volumes": [
                            {"name": "data", "persistentVolumeClaim": {"claimName": REGISTRY_PVC}},
                            {"name": "tls", "secret": {"secretName": "registry-tls"}},
                            {"name": "auth", "secret": {"secretName": "registry-auth"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("registry", REGISTRY_NS, **labels),
            "spec": {
                "type": "NodePort",
                "selector": labels,
                "ports": [
                    {"name": "https", "port": REGISTRY_PORT, "targetPort": "https", "nodePort": reg.node_port}
                ],
            },
        },
    ]


def docs_image(config: LabConfig, tag: str) -> str:
    """Where the nodes pull the docs image from: the lab registry's NodePort on the node itself."""
    return f"127.0.0.1:{config.pipeline.registry.node_port}/renderlab-docs:{tag}"


def docs(config: LabConfig, image: str | None = None) -> list[dict]:
    """The docs site and render gallery: nginx (images/docs) serving the built site and the share's gallery
    folder read-only, on a NodePort; a NetworkPolicy lets in HTTP to it and lets nothing out.

    `image`: the reference `make images` recorded (renderlab.lab.image_refs.pull_ref); k8s/ shows a placeholder."""
    ns = config.pipeline.namespace
    labels = {"app.kubernetes.io/name": "docs"}
    size = f"{config.hosts[_one(config, 'storage')].disk_gib}Gi"
    return [
        {
            # The same share, read-only, for the docs namespace (a PV binds one claim, so it is its own PV).
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": _meta(GALLERY_PV),
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "mountOptions": _mount_options(config),
                "claimRef": {"namespace": DOCS_NS, "name": GALLERY_PVC},
                "csi": {
                    "driver": SMB_DRIVER,
                    "readOnly": True,
                    "volumeHandle": f"{share_source(config).lstrip('/')}#{GALLERY_PV}",
                    "volumeAttributes": {"source": share_source(config)},
                    "nodeStageSecretRef": {"name": SMB_SECRET, "namespace": ns},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(GALLERY_PVC, DOCS_NS),
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": STORAGE_CLASS,
                "volumeName": GALLERY_PV,
                "resources": {"requests": {"storage": size}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("docs", DOCS_NS, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**PART_OF, **labels}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": DOCS_UID,
                            "runAsGroup": DOCS_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "nginx",
                                "image": image or docs_image(config, DOCS_TAG_EXAMPLE),
                                "ports": [{"containerPort": DOCS_PORT, "name": "http"}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "periodSeconds": 10,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "initialDelaySeconds": 5,
                                    "periodSeconds": 20,
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"cpu": "500m", "memory": "128Mi"},
                                },
                                "securityContext": {
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "tmp", "mountPath": "/tmp"},
                                    {
                                        "name": "share",
                                        "mountPath": "/srv/gallery",
                                        "subPath": "gallery",
                                        "readOnly": True,
                                    },
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                            {
                                "name": "share",
                                "persistentVolumeClaim": {"claimName": GALLERY_PVC, "readOnly": True},
                            },
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("docs", DOCS_NS, **labels),
            "spec": {
                "type": "NodePort",
                "selector": labels,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "nodePort": config.docs.node_port}
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("docs-ingress-only", DOCS_NS),
            "spec": {
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress", "Egress"],
                # HTTP in (through the NodePort from anywhere); nothing out: the server needs no network.
                "ingress": [{"ports": [{"protocol": "TCP", "port": DOCS_PORT}]}],
                "egress": [],
            },
        },
    ]


def csi_smb_release(config: LabConfig) -> dict[str, Any]:
    """The SMB CSI driver's Helm release (pinned chart version from versions.csi_driver_smb)."""
    return {
        "chart": CSI_SMB_CHART,
        "version": config.versions.csi_driver_smb,
        "repository": CSI_SMB_REPO,
        "namespace": "kube-system",
        # The kubeadm nodes run their kubelet with the standard root dir; said explicitly, as the node plugin
        # mounts there.
        "values": {"linux": {"kubelet": "/var/lib/kubelet"}},
    }


# File name in k8s/ -> builder. Order is apply order (namespaces first).
GROUPS = {
    "namespace.yaml": namespace,
    "storage.yaml": storage,
    "secrets.yaml": None,  # needs secret values
    "launcher-rbac.yaml": launcher_rbac,
    "quota.yaml": limits,
    "networkpolicy.yaml": network_policy,
    "registry.yaml": registry,
    "docs.yaml": docs,
}


def all_objects(
    config: LabConfig, values: dict[str, Any], docs_image: str | None = None
) -> dict[str, list[dict]]:
    out = {}
    for file, build in GROUPS.items():
        if build is None:
            out[file] = secrets(config, values)
        elif build is docs:
            out[file] = docs(config, docs_image)
        elif build is registry:
            out[file] = registry(config, values)
        else:
            out[file] = build(config)
    return out


HEADER = (
    "# Generated by `make cluster-manifests` (python -m infra.manifests) from {source}; do not edit.\n"
    "# Pulumi applies the same objects (infra/cluster.py); secret values are empty here by design.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key, as yamllint's default config wants."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _dump(objs: list[dict]) -> str:
    return yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, explicit_start=True)


def render(config: LabConfig, source: str) -> dict[str, str]:
    """File name -> YAML text of k8s/ for this config (Secrets with empty values)."""
    files = {}
    for name, objs in all_objects(config, dict.fromkeys(SECRET_INPUTS + REGISTRY_INPUTS, "")).items():
        files[name] = HEADER.format(source=source) + _dump(objs)
    kustom = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(GROUPS),
    }
    files["kustomization.yaml"] = HEADER.format(source=source) + _dump([kustom])
    return files


def write(files: dict[str, str], out: Path) -> None:
    for name, text in files.items():
        atomic.write_text(out / name, text, mode=0o644)


@cli.command("manifests")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m infra.manifests", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="stack file, e.g. Pulumi.example.yaml")
    parser.add_argument("out", help="folder to write the YAML to, e.g. k8s/")
    args = parser.parse_args(argv)
    config = load(args.config)
    files = render(config, Path(args.config).name)
    write(files, Path(args.out))
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
