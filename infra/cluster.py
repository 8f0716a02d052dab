"""The cluster layer with pulumi-kubernetes: the objects of infra/manifests.py plus the SMB CSI Helm release.

Applied once the kubeconfig exists (`pulumi config set --secret renderlab:kubeconfig < kubeconfig`).

The objects go to the provider as they are, in one `kubernetes:yaml/v2:ConfigGroup`: the provider makes each a
resource of its own kind (kubernetes:core/v1:Namespace, ...), orders them (namespaces before what is in them,
by the dependency graph of kubectl's own cli-utils) and marks every Secret's data secret. So the objects stay
one data structure, the same that renders k8s/ and that the kubectl lane applies, with no kind table, key
conversion or hand-made order here. Typed `*Args` per kind were the other way: they would have meant either a
second copy of every object or converting the dicts into them, which is the key conversion again.

One object is a typed resource of its own, after the group: the launcher's token Secret, the one object whose
live state the program reads (Kubernetes' token controller fills in `data.token`; the provider waits for it).
After the group, its ServiceAccount exists first, or the controller would never fill it in.
"""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import manifests
from infra.lab_stand_in import LabStandIn
from renderlab.lab.config import LabConfig
from renderlab.lab.image_refs import push_registry

GROUP = "objects"


def resource_name(obj: dict[str, Any]) -> str:
    """The name a resource had in stacks made before the ConfigGroup (a child of the layer itself)."""
    meta = obj["metadata"]
    parts = [obj["kind"].lower(), meta.get("namespace"), meta["name"]]
    return "-".join(p for p in parts if p)


def group_name(obj: dict[str, Any]) -> str:
    """The name the ConfigGroup gives an object's resource (no prefix): `<namespace>/<name>` or `<name>`."""
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def type_token(obj: dict[str, Any]) -> str:
    """kubernetes:<group>/<version>:<kind>, the provider's type for an object (core's group is `core`)."""
    api = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return f"kubernetes:{api}:{obj['kind']}"


def is_docs_deployment(obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    return (
        obj["kind"] == "Deployment" and meta["name"] == "docs" and meta.get("namespace") == manifests.DOCS_NS
    )


def is_launcher_token(obj: dict[str, Any]) -> bool:
    return obj["kind"] == "Secret" and obj["metadata"]["name"] == manifests.LAUNCHER_TOKEN


class ClusterLayer(pulumi.ComponentResource):
    """The cluster layer's objects through pulumi-kubernetes. `docs_image` None: no docs Deployment yet (its image is
    built and pushed after this layer). `lab`: the local lab's stand-ins (infra/lab_stand_in.py), for the local
    lab only; never in production."""

    def __init__(
        self,
        name: str,
        config: LabConfig,
        *,
        kubeconfig: pulumi.Input[str],
        secret_values: dict[str, pulumi.Input[str]],
        docs_image: str | None = None,
        lab: LabStandIn | None = None,
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
        after: list[pulumi.Resource] = []
        self.csi_smb: k8s.helm.v3.Release | None = None
        if lab is None:
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
            after.append(self.csi_smb)  # the StorageClass and the PVs name its driver
        groups = manifests.all_objects(config, secret_values, docs_image=docs_image)
        objs = [o for group in groups.values() for o in group]
        if docs_image is None:
            # No docs image pushed yet (`make lab` builds the images after this layer, then rolls them out):
            # a Deployment of an image the registry does not hold would never be ready, and `pulumi up` would
            # wait on it and fail. Its Service and namespace stay; the rollout's `pulumi up` adds it.
            objs = [o for o in objs if not is_docs_deployment(o)]
        if lab is not None:
            objs = [lab.apply(o) for o in objs] + lab.objects(config)
        (token_obj,) = [o for o in objs if is_launcher_token(o)]
        self.objs = [o for o in objs if o is not token_obj]
        self.alias_old_names = self._alias_old_names(
            {(type_token(o), group_name(o)): resource_name(o) for o in self.objs}
        )
        self.group = k8s.yaml.v2.ConfigGroup(
            GROUP,
            objs=self.objs,
            resource_prefix="",  # names `<namespace>/<name>`, as kubectl names them
            opts=pulumi.ResourceOptions(
                parent=self,
                providers={"kubernetes": self.provider},
                depends_on=after,
                transforms=[self.alias_old_names],
            ),
        )
        token = k8s.core.v1.Secret(
            resource_name(token_obj),
            metadata=token_obj["metadata"],
            type=token_obj["type"],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.group])),
        )
        # The launcher's token (filled in by Kubernetes' token controller) for Airflow's k8s connection.
        self.launcher_token = pulumi.Output.secret(
            token.data.apply(lambda d: base64.b64decode((d or {}).get("token", "")).decode() if d else "")
        )
        self.registry = push_registry(config)
        self.register_outputs({"registry": self.registry, "launcher_token": self.launcher_token})

    def _alias_old_names(self, old_names: dict[tuple[str, str], str]):
        """Stacks made before the ConfigGroup hold each object as a child of this layer, named by
        `resource_name`: an alias to that URN keeps it in place (no delete and create of a live object)."""

        def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
            old = old_names.get((args.type_, args.name))
            if old is None:
                return None
            alias = pulumi.Alias(name=old, parent=self)
            opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(aliases=[alias]))
            return pulumi.ResourceTransformResult(props=args.props, opts=opts)

        return transform
