"""The docs server as it ships: the image's nginx configuration (the shared template, filled in by the
Dockerfile) is valid, and the cluster objects agree with the image and with the share layout."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath

import pytest

from infra import manifests
from renderlab.base.share import ShareLayout
from renderlab.lab.config import load
from renderlab.workstation import docs_server
from tests.docs.runs import REPO

DOCKERFILE = (REPO / "images" / "docs" / "Dockerfile").read_text()


def dockerfile_values() -> dict[str, str]:
    return dict(re.findall(r"-e 's\|(@[A-Z_]+@)\|([^|]*)\|'", DOCKERFILE))


def test_dockerfile_fills_every_placeholder_of_the_template():
    template = docs_server.TEMPLATE.read_text()
    placeholders = set(re.findall(r"@[A-Z_]+@", template))
    assert placeholders == set(dockerfile_values())
    # The local server fills the same names (so `make docs` serves what the image serves).
    rendered = docs_server.render_config(listen="1", site="/s", gallery="/g", tmp="/t")
    assert not re.search(r"@[A-Z_]+@", rendered)


def test_image_config_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    text = docs_server.TEMPLATE.read_text()
    for key, value in dockerfile_values().items():
        text = text.replace(key, value)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("/tmp", str(tmp_path)))
    proc = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "syntax is ok" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    config = load(REPO / "Pulumi.example.yaml")
    objs = manifests.docs(config, manifests.docs_image(config, "t1"))
    return {o["kind"]: o for o in objs} | {"config": config}  # type: ignore[dict-item]


def test_deployment_matches_the_image_and_is_locked_down(objects):
    values = dockerfile_values()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "127.0.0.1:30500/renderlab-docs:t1"  # the lab registry, as the nodes reach it
    assert c["ports"][0]["containerPort"] == int(values["@LISTEN@"])
    assert f"ARG DOCS_UID={pod['securityContext']['runAsUser']}" in DOCKERFILE
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert (
        c["securityContext"]["readOnlyRootFilesystem"]
        and not c["securityContext"]["allowPrivilegeEscalation"]
    )
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert set(mounts) == {values["@TMP@"], values["@GALLERY@"]}  # the only writable place is the emptyDir
    gallery = mounts[values["@GALLERY@"]]
    # Exactly the share's gallery folder, read-only.
    assert gallery["readOnly"] is True
    assert gallery["subPath"] == str(ShareLayout(PurePosixPath(".")).gallery())
    claim = next(v for v in pod["volumes"] if v["name"] == gallery["name"])["persistentVolumeClaim"]
    assert claim == {"claimName": manifests.GALLERY_PVC, "readOnly": True}
    pv = objects["PersistentVolume"]["spec"]
    assert pv["accessModes"] == ["ReadOnlyMany"] and pv["csi"]["readOnly"] is True


def test_service_and_policy(objects):
    config = objects["config"]
    svc = objects["Service"]["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["nodePort"] == config.docs.node_port
    policy = objects["NetworkPolicy"]["spec"]
    labels = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"] == {"matchLabels": labels} == {"matchLabels": svc["selector"]}
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": manifests.DOCS_PORT}]}]
