"""The cluster layer with pulumi-kubernetes: the objects of infra/manifests.py plus the SMB CSI Helm release.

Applied once the kubeconfig exists (`pulumi config set --secret renderlab:kubeconfig < kubeconfig`).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import manifests
from renderlab.lab.config import LabConfig
from renderlab.lab.image_refs import push_registry

KINDS = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def resource_name(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    parts = [obj["kind"].lower(), meta.get("namespace"), meta["name"]]
    return "-".join(p for p in parts if p)


class ClusterLayer(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: LabConfig,
        *,
        kubeconfig: pulumi.Input[str],
        secret_values: dict[str, pulumi.Input[str]],
        docs_image: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("renderlab:index:ClusterLayer", name, None, opts)
        # Named "k3s" by stacks made before kubeadm: the alias keeps their provider (and every object) in place.
        self.provider = k8s.Provider(
            "cluster",
            kubeconfig=kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name="k3s")]),
        )
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        release = manifests.csi_smb_release(config)
        self.csi_smb = k8s.helm.v3.Release(
            "csi-driver-smb",
            chart=release["chart"],
            version=release["version"],
            namespace=release["namespace"],
            repository_opts={"repo": release["repository"]},
            values=release["values"],
            opts=child,
        )
        self.objects: dict[str, pulumi.CustomResource] = {}
        groups = manifests.all_objects(config, secret_values, docs_image=docs_image)
        namespaces: list[pulumi.Resource] = []
        for file, objs in groups.items():
            # Within a file, objects go in order: the ServiceAccount before its token Secret (the provider
            # waits for the token to be filled in), the PV before its claim, the claim before the registry.
            earlier: list[pulumi.Resource] = []
            for obj in objs:
                deps = [*(namespaces if file != "namespace.yaml" else []), *earlier]
                if obj["kind"] in ("StorageClass", "PersistentVolume"):
                    deps.append(self.csi_smb)
                res = self._apply(obj, child, deps)
                earlier.append(res)
                if obj["kind"] == "Namespace":
                    namespaces.append(res)
        token = self.objects[resource_name(_find(groups, "Secret", manifests.LAUNCHER_TOKEN))]
        # The launcher's token (filled in by Kubernetes' token controller) for Airflow's k8s connection.
        self.launcher_token = pulumi.Output.secret(
            token.data.apply(lambda d: base64.b64decode((d or {}).get("token", "")).decode() if d else "")
        )
        self.registry = push_registry(config)
        self.register_outputs({"registry": self.registry, "launcher_token": self.launcher_token})

    def _apply(self, obj: dict[str, Any], opts: pulumi.ResourceOptions, deps: list) -> pulumi.CustomResource:
        cls = KINDS[(obj["apiVersion"], obj["kind"])]
        kwargs = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        extra = {}
        if obj["kind"] == "Secret":
            extra["additional_secret_outputs"] = ["data", "stringData"]
        name = resource_name(obj)
        res = cls(
            name,
            **kwargs,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=deps, **extra)),
        )
        self.objects[name] = res
        return res


def _find(groups: dict[str, list[dict]], kind: str, name: str) -> dict:
    for objs in groups.values():
        for obj in objs:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
    raise KeyError(f"{kind}/{name}")
