"""The cluster layer applied for real through pulumi-kubernetes: the real Pulumi CLI (tests/infra/engine.py) and
the Kubernetes provider `make k8s-provider` built, against the lab's cluster: `pulumi up`, then `pulumi preview
--expect-no-changes` (an unchanged config diffs empty), the objects checked with kubectl, `pulumi destroy`.

It applies a copy beside the layer the other cluster checks apply with kubectl (and the lab rehearsal uses):
its render namespace, the fixed namespaces and the cluster-scoped objects are prefixed (`pl-`) and its
NodePorts are free ones, so nothing of the lab's own is touched (checked: their uids stay). The program is
tests/cluster/pulumi_layer/ (the cluster layer alone: the lab's hosts are no Proxmox VMs), with the lab's
stand-ins (infra/lab_stand_in.py).

On a lab someone else keeps and uses: `RENDERLAB_CLUSTER_AS_IS=1` (no site.yml runs on it, tests/cluster/conftest.py).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest
import yaml

from infra import manifests
from infra.cluster import group_name, resource_name, type_token
from infra.issued_certificate import registry_values
from infra.lab_stand_in import copy_names
from renderlab.lab import lab_ca
from renderlab.lab.cluster_names import LAUNCHER, LAUNCHER_TOKEN, REGISTRY_NS, REGISTRY_USER, SHARE_PV
from renderlab.lab.config import parse
from renderlab.workstation.nspawn_lab import share_folder
from tests import provider_build
from tests.cluster.conftest import Cluster
from tests.infra.engine import ROOT, Engine, missing_tools, ops

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.k8s_provider, pytest.mark.timeout(3600)]

PREFIX = "pl-"


def _free_node_ports(c: Cluster, count: int) -> list[int]:
    used = {
        p.get("nodePort")
        for svc in c.kjson("get", "services", "--all-namespaces")["items"]
        for p in svc["spec"].get("ports", [])
    }
    return [p for p in range(30000, 32768) if p not in used][:count]


def _node_docs_image(c: Cluster, request) -> str:
    """A docs image every node holds (the lab's own layer runs one); else the one the cluster lane builds,
    imported on every node."""
    held = []
    for m in c.nodes():
        out = c.ssh(m, "sudo ctr -n k8s.io images ls -q")
        assert out.returncode == 0, out.stderr
        held.append({ref for ref in out.stdout.split() if "/renderlab-docs:" in ref and "@" not in ref})
    common = sorted(set.intersection(*held))
    if common:
        return common[0]
    ref = request.getfixturevalue("docs_image")
    archive = c.lab.state / "docs-image.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive), ref], check=True)
    for m in c.nodes():
        c.scp(archive, m, "/tmp/docs-image.tar")
        out = c.ssh(m, "sudo ctr -n k8s.io images import /tmp/docs-image.tar && rm /tmp/docs-image.tar")
        assert out.returncode == 0, out.stderr
    return ref


def _lab_uids(c: Cluster) -> dict[str, str]:
    """The lab's own layer (applied with kubectl by the other checks): what the copy must leave alone."""
    names = [f"namespace/{n}" for n in (c.config.pipeline.namespace, REGISTRY_NS, manifests.DOCS_NS)]
    names += [f"persistentvolume/{n}" for n in (SHARE_PV, manifests.GALLERY_PV)]
    names += [f"storageclass/{manifests.STORAGE_CLASS}"]
    out = {}
    for name in names:
        got = c.k("get", name, "-o", "jsonpath={.metadata.uid}", "--ignore-not-found")
        out[name] = got
    return out


@pytest.fixture(scope="module")
def layer(cluster: Cluster, tmp_path_factory, request):
    """The copy's stack: the lab's config with the copy's names and ports, its secrets as secret config."""
    why = missing_tools()
    if why:
        pytest.skip(why)
    provider_build.ensure()  # skips naming `make k8s-provider`; in CI, built or waited for
    c = cluster
    stack = yaml.safe_load(c.lab.stack_file.read_text())["config"]
    config = {k: v for k, v in stack.items() if not (isinstance(v, dict) and "secure" in v)}
    registry_port, docs_port = _free_node_ports(c, 2)
    pipeline = dict(config.get("renderlab:pipeline") or {})
    pipeline["namespace"] = PREFIX + c.config.pipeline.namespace
    pipeline["registry"] = {**(pipeline.get("registry") or {}), "node_port": registry_port}
    config["renderlab:pipeline"] = pipeline
    config["renderlab:docs"] = {**(config.get("renderlab:docs") or {}), "node_port": docs_port}
    copy = parse(
        {"config": {**config, "renderlab:proxmox_api_token": {"secure": "v1:unused-here"}}}, source="copy"
    )
    lab_secrets = yaml.safe_load(c.lab.secrets.read_text())
    values = {k: lab_secrets[k] for k in manifests.SECRET_INPUTS}
    # Made once here (as the stack's IssuedCertificate and Htpasswd are made once): stable across up and preview.
    values |= registry_values(
        lab_ca.service_sans(copy)["registry"],
        lab_secrets["renderlab_lab_ca"],
        lab_secrets["renderlab_registry_password"],
        REGISTRY_USER,
    )
    work = tmp_path_factory.mktemp("pulumi-layer")
    engine = Engine(work, stack="layer")
    (engine.project / "layer").symlink_to(ROOT / "tests/cluster/pulumi_layer")
    project = yaml.safe_load((engine.project / "Pulumi.yaml").read_text())
    (engine.project / "Pulumi.yaml").write_text(
        yaml.safe_dump({**project, "main": "layer/"}, sort_keys=False)
    )
    engine.init(config, token="unused-here")  # noqa: S106 (no Proxmox in this program)
    engine.run("config", "set", "--secret", "renderlab:kubeconfig", stdin=c.kubeconfig.read_text())
    for key, value in values.items():
        engine.run("config", "set", "--secret", f"layer:{key}", stdin=value)
    engine.run("config", "set", "layer:docs_image", _node_docs_image(c, request))
    engine.run("config", "set", "layer:share_folder", share_folder.FOLDER)
    engine.run("config", "set", "layer:prefix", PREFIX)
    before = _lab_uids(c)
    state = {"engine": engine, "config": copy, "values": values, "before": before, "destroyed": False}
    yield state
    if not state["destroyed"]:  # a check failed midway: the copy goes all the same
        engine.run("destroy", "--yes", "--skip-preview", check=False, timeout=900)
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    if report is not None:
        report.write_line("")
        for what, seconds in engine.timings:
            if what.split()[0] in ("up", "preview", "destroy"):
                report.write_line(f"[pulumi-layer] pulumi {what}: {seconds:.0f} s")


def test_up_then_preview_expects_no_changes_then_destroy(cluster: Cluster, layer):
    c, engine, copy = cluster, layer["engine"], layer["config"]
    t0 = time.monotonic()
    engine.run("up", "--yes", "--skip-preview", timeout=1200)
    print(f"pulumi up: {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    proc = engine.run("preview", "--expect-no-changes", "--json", check=False, timeout=900)
    print(f"pulumi preview --expect-no-changes: {time.monotonic() - t0:.0f} s, exit {proc.returncode}")
    assert proc.returncode == 0, engine.tail(proc)
    assert ops(json.loads(proc.stdout)) == {}

    names = copy_names(PREFIX)
    render, docs_ns, registry_ns = copy.pipeline.namespace, names[manifests.DOCS_NS], names[REGISTRY_NS]
    assert render == f"{PREFIX}{c.config.pipeline.namespace}"
    # The namespaces with their Pod Security labels; the launcher's Role and RoleBinding; both NetworkPolicies.
    for ns in (render, docs_ns, registry_ns):
        labels = c.kjson("get", "namespace", ns)["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "renderlab"
        assert labels["pod-security.kubernetes.io/enforce"] == (
            "baseline" if ns == registry_ns else "restricted"
        )
    role = c.kjson("-n", render, "get", "role", LAUNCHER)
    assert {r for rule in role["rules"] for r in rule["resources"]} >= {"jobs", "pods", "pods/log"}
    binding = c.kjson("-n", render, "get", "rolebinding", LAUNCHER)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": LAUNCHER, "namespace": render}]
    who = f"--as=system:serviceaccount:{render}:{LAUNCHER}"
    assert c.k("auth", "can-i", "create", "jobs.batch", who, "-n", render, check=False).strip() == "yes"
    assert c.k("auth", "can-i", "get", "secrets", who, "-n", render, check=False).strip() == "no"
    policies = {p["metadata"]["name"] for p in c.kjson("-n", render, "get", "networkpolicies")["items"]}
    assert policies == {"render-egress"}
    policies = {p["metadata"]["name"] for p in c.kjson("-n", docs_ns, "get", "networkpolicies")["items"]}
    assert policies == {"docs-ingress-only"}
    # The share through the stand-in: the copy's PVs bound to their claims; the docs server rolled out on it.
    for pv in (names[SHARE_PV], names[manifests.GALLERY_PV]):
        got = c.kjson("get", "persistentvolume", pv)
        assert got["status"]["phase"] == "Bound" and got["spec"]["hostPath"]["path"] == share_folder.FOLDER
    c.k("-n", docs_ns, "rollout", "status", "deployment/docs", "--timeout=60s", timeout=90)
    ready = c.kjson("-n", docs_ns, "get", "deployment", "docs")["status"].get("readyReplicas")
    assert ready == 1

    # The launcher's token: filled in by Kubernetes, a secret output, never in the state in plaintext.
    outputs = engine.outputs()
    assert outputs["launcher_token"] == "[secret]"
    assert outputs["registry"] == f"{c.host('control_plane').address}:{copy.pipeline.registry.node_port}"
    token = engine.outputs(secrets=True)["launcher_token"]
    live = c.kjson("-n", render, "get", "secret", LAUNCHER_TOKEN)["data"]["token"]
    assert token and token == base64.b64decode(live).decode()
    state = engine.state_text()
    plain = {"launcher token": token, **layer["values"], "kubeconfig": c.kubeconfig.read_text()}
    # One line of the key and of the kubeconfig's client key (the whole texts are multi-line).
    plain["registry_tls_key"] = layer["values"]["registry_tls_key"].strip().splitlines()[1]
    plain["kubeconfig"] = yaml.safe_load(plain["kubeconfig"])["users"][0]["user"]["client-key-data"][:60]
    found = [what for what, value in plain.items() if value and value in state]
    assert found == [], f"in the state in plaintext: {found}"
    for value in layer["values"].values():
        assert base64.b64encode(value.encode()).decode() not in state

    # Every object through the layer's own provider (the lab's kubeconfig), none through a default one.
    resources = engine.resources()
    (provider,) = [r["urn"] for r in resources if r["type"] == "pulumi:providers:kubernetes"]
    objects = [r for r in resources if r["type"].startswith("kubernetes:") and r.get("custom")]
    assert len(objects) == sum(1 for _ in _copy_objects(copy))
    assert {r["provider"].rsplit("::", 1)[0] for r in objects} == {provider}

    # A stack made by the layer before the ConfigGroup held each object as a child of the layer itself, named
    # by resource_name(): the same state under those URNs previews empty (the transform's aliases), where
    # without them Pulumi would delete each live object and create it again.
    made_before = _as_made_before(engine, copy)
    assert len(made_before) == sum(1 for _ in _copy_objects(copy)) - 1  # all but the launcher token
    proc = engine.run("preview", "--expect-no-changes", "--json", check=False, timeout=900)
    assert proc.returncode == 0 and ops(json.loads(proc.stdout)) == {}, engine.tail(proc)

    t0 = time.monotonic()
    engine.run("destroy", "--yes", "--skip-preview", timeout=900)
    layer["destroyed"] = True
    print(f"pulumi destroy: {time.monotonic() - t0:.0f} s")
    for what in (
        *(f"namespace/{ns}" for ns in (render, docs_ns, registry_ns)),
        f"persistentvolume/{names[SHARE_PV]}",
        f"persistentvolume/{names[manifests.GALLERY_PV]}",
        f"storageclass/{names[manifests.STORAGE_CLASS]}",
    ):
        assert c.k("get", what, "--ignore-not-found", "-o", "name").strip() == "", what
    # The lab's own layer: the same objects as before (none replaced, none removed).
    assert _lab_uids(c) == layer["before"]


def _as_made_before(engine: Engine, copy) -> dict[str, str]:
    """Rewrite the stack's state as the layer before the ConfigGroup left it: every child of the group a child
    of the layer, under its old name (`pulumi stack export`, edited, `pulumi stack import`). New URN -> old."""
    old_names = {(type_token(o), group_name(o)): resource_name(o) for o in _copy_objects(copy)}
    exported = json.loads(engine.run("stack", "export").stdout)
    resources = exported["deployment"]["resources"]
    layer_urn = next(r["urn"] for r in resources if r["type"] == "renderlab:index:ClusterLayer")
    group_urn = next(r["urn"] for r in resources if r["type"] == "kubernetes:yaml/v2:ConfigGroup")
    head = layer_urn.rsplit("::", 1)[0]
    renamed = {
        r["urn"]: f"{head}${r['type']}::{old_names[(r['type'], r['urn'].rsplit('::', 1)[1])]}"
        for r in resources
        if r.get("parent") == group_urn
    }

    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return renamed.get(value, value) if isinstance(value, str) else value

    for r in resources:
        was_child = r.get("parent") == group_urn
        for key in ("urn", "dependencies", "propertyDependencies"):
            if key in r:
                r[key] = swap(r[key])
        if was_child:
            r["parent"] = layer_urn
    path = engine.project / "made-before.json"
    path.write_text(json.dumps(exported))
    engine.run("stack", "import", "--file", str(path))
    return renamed


def _copy_objects(copy):
    """The copy's objects as the program makes them (names, kinds), with the stand-in's renames."""
    from infra.lab_stand_in import LabStandIn

    stand_in = LabStandIn(share_folder.FOLDER, copy.share.uid, copy_names(PREFIX))
    blank = dict.fromkeys(manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS, "")
    for group in manifests.all_objects(copy, blank).values():
        yield from (stand_in.apply(o) for o in group)
    yield from stand_in.objects(copy)
