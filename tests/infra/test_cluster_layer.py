"""infra/cluster.py and infra/lab_stand_in.py under Pulumi's mocks: the lab's stand-ins (never in production),
the copy's names, and the aliases that keep a stack made before the ConfigGroup in place."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.stack import wait_for_rpcs

from infra import manifests
from infra.cluster import ClusterLayer, group_name, resource_name, type_token
from infra.lab_stand_in import LabStandIn, copy_names
from renderlab.lab.cluster_names import LAUNCHER_TOKEN, REGISTRY_NS
from renderlab.lab.config import load
from tests.infra.test_program_mocks import Mocks, group_objects

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load(ROOT / "Pulumi.example.yaml")
BLANK = dict.fromkeys(manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS, "")
FOLDER = "/srv/renderlab-share"


def objects(config=CONFIG) -> list[dict]:
    return [o for group in manifests.all_objects(config, BLANK).values() for o in group]


DOCS_IMAGE = manifests.docs_image(CONFIG, "0123abcd")  # a docs image `make images` pushed and recorded


def layer(lab: LabStandIn | None, docs_image: str | None = DOCS_IMAGE) -> tuple[Mocks, ClusterLayer]:
    mocks = Mocks()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project="renderlab", stack="test", preview=False)
    values = {k: pulumi.Output.secret(f"value-of-{k}") for k in BLANK}
    made = ClusterLayer(
        "cluster", CONFIG, kubeconfig="kubeconfig", secret_values=values, docs_image=docs_image, lab=lab
    )
    loop.run_until_complete(made.launcher_token.future())
    loop.run_until_complete(wait_for_rpcs())
    return mocks, made


def test_production_applies_the_chart_and_no_stand_in():
    mocks, made = layer(None)
    assert [n for n, _ in mocks.of("kubernetes:helm.sh/v3:Release")] == ["csi-driver-smb"]
    kinds, _ = group_objects(mocks)
    assert all("csi" in pv["spec"] for pv in kinds["PersistentVolume"].values())
    assert "hostPath" not in json.dumps(kinds) and "skipAwait" not in json.dumps(kinds)


def test_before_the_docs_image_is_pushed_there_is_no_docs_deployment_to_wait_on():
    """`make lab` lays the cluster layer before it builds the images: a Deployment of an image the registry does
    not hold yet never becomes ready, and `pulumi up` waited on it and failed (tests/lab/test_make_lab.py found
    it). Without a recorded image the Deployment waits for the rollout; its Service is there from the start."""
    mocks, _ = layer(None, docs_image=None)
    kinds, _ = group_objects(mocks)
    assert f"{manifests.DOCS_NS}/docs" not in kinds["Deployment"]
    assert f"{manifests.DOCS_NS}/docs" in kinds["Service"]
    mocks, _ = layer(None)
    kinds, _ = group_objects(mocks)
    image = kinds["Deployment"][f"{manifests.DOCS_NS}/docs"]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == DOCS_IMAGE


def test_the_lab_stand_in_leaves_out_the_chart_and_mounts_the_host_folder():
    mocks, made = layer(LabStandIn(FOLDER, CONFIG.share.uid))
    assert mocks.of("kubernetes:helm.sh/v3:Release") == [] and made.csi_smb is None
    kinds, secret = group_objects(mocks)
    assert secret
    registry_pv = f"{REGISTRY_NS}-data"
    for name, pv in kinds["PersistentVolume"].items():
        assert "csi" not in pv["spec"] and "mountOptions" not in pv["spec"], name
        path = f"{FOLDER}/{registry_pv}" if name == registry_pv else FOLDER
        assert pv["spec"]["hostPath"] == {"path": path, "type": "DirectoryOrCreate"}, name
    # The registry's claim (the CSI driver provisions it in production) is bound to a folder under the share's.
    pv = kinds["PersistentVolume"][registry_pv]["spec"]
    claim = kinds["PersistentVolumeClaim"][f"{REGISTRY_NS}/{manifests.REGISTRY_PVC}"]["spec"]
    assert pv["claimRef"] == {"namespace": REGISTRY_NS, "name": manifests.REGISTRY_PVC}
    assert pv["storageClassName"] == claim["storageClassName"] and pv["accessModes"] == claim["accessModes"]
    assert pv["capacity"]["storage"] == claim["resources"]["requests"]["storage"]
    docs = kinds["Deployment"][f"{manifests.DOCS_NS}/docs"]["spec"]["template"]["spec"]
    assert docs["securityContext"]["supplementalGroups"] == [CONFIG.share.uid]
    # Everything is awaited as in production, the registry too: its image is on the nodes (make k8s-artifacts).
    assert "skipAwait" not in json.dumps(kinds)
    assert f"{REGISTRY_NS}/registry" in kinds["Deployment"]


def test_the_copys_names_leave_nothing_of_the_lab_layer_by_name():
    """A new fixed namespace or cluster-scoped object in infra/manifests.py without a name in copy_names()
    would be shared by the copy and the lab's own layer: this fails first."""
    copy = CONFIG.model_copy(
        update={"pipeline": CONFIG.pipeline.model_copy(update={"namespace": "pl-render"})}
    )
    stand_in = LabStandIn(FOLDER, copy.share.uid, copy_names("pl-"))
    for obj in [stand_in.apply(o) for o in objects(copy)] + stand_in.objects(copy):
        meta = obj["metadata"]
        assert (meta.get("namespace") or meta["name"]).startswith("pl-"), (obj["kind"], meta["name"])
        if obj["kind"] == "PersistentVolume":
            assert obj["spec"]["claimRef"]["namespace"].startswith("pl-")
            assert obj["spec"]["storageClassName"] == f"pl-{manifests.STORAGE_CLASS}"
        if obj["kind"] == "PersistentVolumeClaim" and "volumeName" in obj["spec"]:
            assert obj["spec"]["volumeName"].startswith("pl-")
        if obj["kind"] == "RoleBinding":
            assert {s["namespace"] for s in obj["subjects"]} == {"pl-render"}
    # The DNS rule still names kube-system, not a copy of it.
    policy = next(o for o in objects(copy) if o["kind"] == "NetworkPolicy")
    assert "kube-system" in json.dumps(stand_in.apply(policy))


def test_each_object_keeps_the_urn_it_had_before_the_config_group():
    _, made = layer(None)
    transform = made.alias_old_names
    for obj in objects():
        if obj["metadata"]["name"] == LAUNCHER_TOKEN:
            continue  # a typed Secret of its own, under its old name
        args = pulumi.ResourceTransformArgs(
            custom=True, type_=type_token(obj), name=group_name(obj), props={}, opts=pulumi.ResourceOptions()
        )
        got = transform(args)
        assert got is not None, (obj["kind"], obj["metadata"]["name"])
        (alias,) = got.opts.aliases
        assert alias.name == resource_name(obj) and alias.parent is made
    assert resource_name(objects()[0]) == f"namespace-{CONFIG.pipeline.namespace}"
    assert type_token({"apiVersion": "v1", "kind": "Secret"}) == "kubernetes:core/v1:Secret"
    assert type_token({"apiVersion": "apps/v1", "kind": "Deployment"}) == "kubernetes:apps/v1:Deployment"
    group = pulumi.ResourceTransformArgs(
        custom=False,
        type_="kubernetes:yaml/v2:ConfigGroup",
        name="objects",
        props={},
        opts=pulumi.ResourceOptions(),
    )
    assert transform(group) is None


@pytest.mark.parametrize("kind", ["PersistentVolume", "Deployment", "Secret", "Namespace"])
def test_the_stand_in_copies_never_edits_the_object_it_is_given(kind):
    obj = next(o for o in objects() if o["kind"] == kind)
    before = json.dumps(obj, sort_keys=True)
    LabStandIn(FOLDER, 2000, copy_names("pl-")).apply(obj)
    assert json.dumps(obj, sort_keys=True) == before
