"""The two-node cluster the local lab's site.yml builds, checked as a cluster (`make cluster-test`).

Each check runs against the real API server from this machine; pods run the busybox test image
(tests/cluster/testbox.py). The last test stops and starts a node, so it stays last."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from infra import manifests
from infra.issued_certificate import registry_values
from infra.lab_stand_in import LabStandIn
from renderlab.lab import lab_ca
from renderlab.lab.cluster_names import LAUNCHER, REGISTRY_USER
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import machines, share_folder
from tests.cluster import testbox
from tests.cluster.conftest import TEST_NS, Cluster

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
]

WEB_PORT = 8080
# One line per probe: open (connected), refused (a reset came back) or dropped (no answer in time).
PROBE = (
    "out=$(echo | timeout 6 nc -w 4 {host} {port} 2>&1); "
    'case "$out" in *refused*) echo refused;; *"timed out"*) echo dropped;; *) echo open;; esac'
)
# Where the stand-in share lives on every node (no CIFS in this kernel: see docs/verification.md).
HOST_SHARE = share_folder.FOLDER  # the lab binds one folder of this machine there on every node


def _pod(name: str, namespace: str, image: str, *, node: str | None, labels: dict, command: str) -> dict:
    spec: dict = {
        "containers": [{
            "name": "box", "image": image, "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", command],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
        # Pod Security `restricted` (the render namespace enforces it): an unprivileged user, the runtime's seccomp.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 1,
    }  # fmt: skip
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec}  # fmt: skip


SERVE = f"httpd -f -p {WEB_PORT} -h /www"


def _wait_ready(c: Cluster, namespace: str, selector: str, timeout: int = 240) -> None:
    c.k("-n", namespace, "wait", "--for=condition=Ready", "pod", "-l", selector, f"--timeout={timeout}s",
        timeout=timeout + 30)  # fmt: skip


def _exec(c: Cluster, namespace: str, pod: str, command: str, timeout: float = 60) -> str:
    return c.k("-n", namespace, "exec", pod, "--", "/bin/sh", "-c", command, timeout=timeout)


def _probe(c: Cluster, namespace: str, pod: str, host: str, port: int) -> str:
    return _exec(c, namespace, pod, PROBE.format(host=host, port=port)).strip()


# The libc resolver with the pod's search domains (busybox's nslookup asks for the name as given, without them):
# ping prints "PING <name> (<address>)" before it sends anything.
RESOLVE = "ping -c1 -W1 {name} 2>&1 | head -1"


def _resolve(c: Cluster, namespace: str, pod: str, name: str) -> str:
    out = _exec(c, namespace, pod, RESOLVE.format(name=name))
    return out.split("(", 1)[1].split(")", 1)[0] if "(" in out else out.strip()


def _http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (the lab's own address)
        return r.read().decode()


def _answers_within(url: str, seconds: float) -> None:
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            _http(url)
            return
        except OSError as e:
            last = e
            time.sleep(2)
    raise AssertionError(f"{url} did not answer within {seconds:.0f} s: {last}")


@pytest.fixture(scope="module")
def web(built: Cluster, testbox_image: str) -> dict[str, dict]:
    """One web pod per node in the test namespace (no policy there) and a NodePort Service over them."""
    c = built
    node_names = [m.name for m in c.nodes()]
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEST_NS}}]
    objs += [
        _pod(f"web-{n}", TEST_NS, testbox_image, node=n, labels={"app": "web"}, command=SERVE)
        for n in node_names
    ]
    objs.append({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": TEST_NS},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": WEB_PORT, "protocol": "TCP"}]},
    })  # fmt: skip
    c.apply(objs)
    _wait_ready(c, TEST_NS, "app=web")
    pods = {p["spec"]["nodeName"]: p for p in c.kjson("-n", TEST_NS, "get", "pods", "-l", "app=web")["items"]}
    return pods


@pytest.fixture(scope="module")
def layer(built: Cluster, docs_image: str) -> dict[str, list[dict]]:
    """The cluster layer (infra/manifests.py) applied server-side, the share's PVs as a host folder."""
    c = built
    secrets = yaml.safe_load((c.lab.secrets).read_text())
    values = {k: secrets[k] for k in manifests.SECRET_INPUTS}
    # The registry's TLS pair and htpasswd line, as Pulumi's resources would make them (infra/issued_certificate.py).
    values |= registry_values(
        lab_ca.service_sans(c.config)["registry"],
        secrets["renderlab_lab_ca"],
        secrets["renderlab_registry_password"],
        REGISTRY_USER,
    )
    objs = manifests.all_objects(c.config, values, docs_image)
    # The lab's stand-ins (infra/lab_stand_in.py), as the Pulumi program takes them (test_pulumi_layer.py).
    stand_in = LabStandIn(HOST_SHARE, c.config.share.uid)
    applied = {f: [stand_in.apply(o) for o in group] for f, group in objs.items()}
    applied["lab-stand-in"] = stand_in.objects(c.config)
    c.apply([o for group in applied.values() for o in group])
    return applied


def test_site_yml_builds_the_cluster_and_a_second_run_changes_nothing(cluster: Cluster):
    # p4d is a vendor download this machine cannot reach: its host stops there (site.yml says so), as in the
    # lab lane; any other failure, or a stop on another host, fails here.
    first = cluster.runs[0]
    assert not first.real_failures and set(first.vendor_blocked) <= {"perforce"}, (
        f"see {first.log}:\n{first.why()}"
    )
    assert len(cluster.runs) == 2
    second = cluster.runs[1]
    assert not second.real_failures and second.vendor_blocked == first.vendor_blocked, (
        f"see {second.log}:\n{second.why()}"
    )
    changed = {h: r["changed"] for h, r in second.recap.items() if r["changed"]}
    assert changed == {}, f"second run changed something; see {second.log}"


def test_both_nodes_ready_at_the_pinned_version(built: Cluster):
    nodes = {n["metadata"]["name"]: n for n in built.kjson("get", "nodes")["items"]}
    assert set(nodes) == {m.name for m in built.nodes()}
    for name, node in nodes.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{built.config.kubernetes.version}"
        assert (
            node["status"]["nodeInfo"]["containerRuntimeVersion"].replace("://v", "://")
            == f"containerd://{built.config.kubernetes.containerd}"
        )
    for worker in built.config.hosts_by_role("worker"):
        assert nodes[worker]["metadata"]["labels"].get("renderlab.io/render-worker") == "true"


def test_a_pod_runs_on_each_node(built: Cluster, web: dict[str, dict]):
    assert set(web) == {m.name for m in built.nodes()}
    assert len({p["status"]["podIP"] for p in web.values()}) == 2
    for p in web.values():
        assert p["status"]["phase"] == "Running"


def test_pod_to_pod_across_the_nodes(built: Cluster, web: dict[str, dict]):
    (a, pa), (b, pb) = web.items()
    for src, dst in ((pa, pb), (pb, pa)):
        got = _exec(
            built, TEST_NS, src["metadata"]["name"], f"wget -qO- http://{dst['status']['podIP']}:{WEB_PORT}/"
        )
        assert got == testbox.INDEX, (src["spec"]["nodeName"], dst["spec"]["nodeName"])


def test_a_service_cluster_ip_and_node_port_answer(built: Cluster, web: dict[str, dict]):
    svc = built.kjson("-n", TEST_NS, "get", "service", "web")
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    pod = next(iter(web.values()))["metadata"]["name"]
    for _ in range(4):  # both endpoints, whichever kube-proxy picks
        assert _exec(built, TEST_NS, pod, f"wget -qO- http://{cluster_ip}/") == testbox.INDEX
    for m in built.nodes():
        # A NodePort no firewall rule opens answers the node's own pods (the firewall's local-pods rule; another
        # node's pods arrive from the lab network and meet nodeports-closed, like any outsider)...
        own = web[m.name]["metadata"]["name"]
        assert _exec(built, TEST_NS, own, f"wget -qO- http://{m.address}:{node_port}/") == testbox.INDEX, (
            m.name
        )
        # ...and is dropped from outside it (the firewall role closes the NodePort range but for its rules).
        with pytest.raises(OSError):
            _http(f"http://{m.address}:{node_port}/")


def test_a_pod_resolves_kubernetes_default(built: Cluster, web: dict[str, dict]):
    api_ip = built.kjson("get", "service", "kubernetes")["spec"]["clusterIP"]
    for p in web.values():
        assert _resolve(built, TEST_NS, p["metadata"]["name"], "kubernetes.default") == api_ip


@pytest.mark.parametrize(
    "case",
    [
        (True, "create", "jobs.batch", "render"),
        (True, "watch", "jobs.batch", "render"),
        (True, "delete", "jobs.batch", "render"),
        (True, "get", "pods", "render"),
        (True, "get", "pods/log", "render"),
        # The Job operator's other calls (the rehearsal met each as a 403): the Job's status, a label on the pod
        # it checked, the events of a failed pod.
        (True, "get", "jobs.batch/status", "render"),
        (True, "patch", "pods", "render"),
        (True, "list", "events", "render"),
        (False, "get", "secrets", "render"),
        (False, "patch", "pods", "kube-system"),
        (False, "update", "jobs.batch/status", "render"),
        (False, "create", "pods", "render"),
        (False, "create", "jobs.batch", "default"),
        (False, "get", "pods", "kube-system"),
        (False, "get", "nodes", None),
    ],
)
def test_launcher_rbac(built: Cluster, layer, case):
    allowed, verb, resource, namespace = case
    ns = built.config.pipeline.namespace if namespace == "render" else namespace
    who = f"system:serviceaccount:{built.config.pipeline.namespace}:{LAUNCHER}"
    args = ["auth", "can-i", verb, resource, f"--as={who}", *(["-n", ns] if ns else [])]
    answer = built.k(*args, check=False).strip()
    assert answer == ("yes" if allowed else "no"), (verb, resource, ns)


def _kubectl(c: Cluster, *args: str, stdin: str, who: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(c.kubectl), f"--kubeconfig={c.kubeconfig}", *([f"--as={who}"] if who else []), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_pod_security_refuses_a_privileged_pod_even_from_the_launcher(
    built: Cluster, layer, testbox_image: str
):
    """Pod Security `restricted` in the render namespace: a compromised Airflow host holding the launcher's token
    can create Jobs, but not one whose pod runs privileged (root on a node)."""
    c, ns = built, built.config.pipeline.namespace
    bad = _pod("psa-probe", ns, testbox_image, node=None, labels={"app": "psa-probe"}, command="sleep 60")
    bad["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    # Made directly, even by the cluster admin: refused at admission.
    direct = _kubectl(c, "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad))
    assert direct.returncode != 0 and 'violates PodSecurity "restricted' in direct.stderr, direct.stderr
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "psa-probe", "namespace": ns},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 60,
                 "template": {"metadata": {"labels": {"app": "psa-probe"}},
                              "spec": {**bad["spec"], "restartPolicy": "Never"}}},
    }  # fmt: skip
    made = _kubectl(
        c, "create", "-f", "-", stdin=yaml.safe_dump(job), who=f"system:serviceaccount:{ns}:{LAUNCHER}"
    )
    try:
        assert made.returncode == 0, made.stderr  # the launcher may make Jobs: their pods are what is refused
        assert "would violate PodSecurity" in made.stderr  # warn=restricted says so at once
        reasons = ""
        for _ in range(60):
            events = c.kjson("-n", ns, "get", "events", "--field-selector", "involvedObject.name=psa-probe")
            reasons = " ".join(
                e.get("message", "") for e in events["items"] if e.get("reason") == "FailedCreate"
            )
            if reasons:
                break
            time.sleep(2)
        assert 'violates PodSecurity "restricted' in reasons, reasons
        assert c.kjson("-n", ns, "get", "pods", "-l", "app=psa-probe")["items"] == []
    finally:
        c.k("-n", ns, "delete", "job", "psa-probe", "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def listeners(built: Cluster):
    """Something listening on Perforce's port (p4d is a vendor download the lab cannot get), so 'reached' is
    an open connection; stopped afterwards."""
    p4 = built.host("perforce")
    port = built.config.perforce.port
    start = (
        f"ss -Hltn 'sport = :{port}' | grep -q . || "
        f"(sudo setsid python3 -m http.server {port} >/dev/null 2>&1 & echo $! > /tmp/rl-listener.pid); sleep 1"
    )
    assert built.ssh(p4, start).returncode == 0
    yield
    built.ssh(
        p4,
        "test -f /tmp/rl-listener.pid && sudo kill $(cat /tmp/rl-listener.pid); rm -f /tmp/rl-listener.pid",
    )


def test_network_policy_is_enforced(
    built: Cluster, layer, web: dict[str, dict], testbox_image: str, listeners
):
    c, ns = built, built.config.pipeline.namespace
    worker = sorted(c.config.hosts_by_role("worker"))[0]
    c.apply(
        [_pod("policy-probe", ns, testbox_image, node=worker, labels={"app": "policy-probe"}, command=SERVE)]
    )
    _wait_ready(c, ns, "app=policy-probe")
    probe_ip = c.kjson("-n", ns, "get", "pod", "policy-probe")["status"]["podIP"]
    api = c.kjson("get", "service", "kubernetes")["spec"]["clusterIP"]
    storage, p4, airflow = (c.host(r).address for r in ("storage", "perforce", "airflow"))
    cp = c.host("control_plane").address
    web_ip = web[worker]["status"]["podIP"]
    control = web[worker]["metadata"]["name"]
    targets = {
        "share": (storage, 445, True),
        "perforce": (p4, c.config.perforce.port, True),
        "other pod": (web_ip, WEB_PORT, False),
        # A node's own port the firewall lets pods reach (kube-router's BGP): closed to the render pod by its
        # policy alone. (The Airflow host is not here: its firewall already drops the nodes, whatever the policy.)
        "node bgp": (cp, 179, False),
        "api server": (cp, 6443, False),
        "api service": (api, 443, False),
    }
    seen, unrestricted = {}, {}
    for what, (host, port, _) in targets.items():
        seen[what] = _probe(c, ns, "policy-probe", host, port)
        unrestricted[what] = _probe(c, TEST_NS, control, host, port)
    print(f"\nrender pod: {seen}\nunrestricted pod: {unrestricted}")
    # The network itself reaches every target: only the policy stops the render pod.
    assert set(unrestricted.values()) == {"open"}, unrestricted
    assert {w for w, (_, _, ok) in targets.items() if ok} == {w for w, r in seen.items() if r == "open"}, seen
    # The Airflow host admits no node (SSH from the workstation only): neither pod reaches it.
    assert _probe(c, ns, "policy-probe", airflow, 22) != "open"
    assert _probe(c, TEST_NS, control, airflow, 22) != "open"
    assert _resolve(c, ns, "policy-probe", "kubernetes.default") == api  # DNS is let through
    # Nothing reaches a render pod either (ingress: []).
    assert _probe(c, TEST_NS, control, probe_ip, WEB_PORT) != "open"
    assert (
        _exec(c, TEST_NS, control, f"wget -qO- http://{probe_ip}:{WEB_PORT}/ 2>&1 || true") != testbox.INDEX
    )


def test_docs_deployment_serves_on_its_node_port_on_either_node(built: Cluster, layer, browser_page):
    c = built
    (deployment,) = [o for o in layer["docs.yaml"] if o["kind"] == "Deployment"]
    docs_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    # The lab's registry is not pushed to here: the docs image built on this machine is imported on each node.
    archive = c.lab.state / "docs-image.tar"
    subprocess.run(
        ["podman", "save", "--format", "docker-archive", "-o", str(archive), docs_image], check=True
    )
    for m in c.nodes():
        c.scp(archive, m, "/tmp/docs-image.tar")
        out = c.ssh(m, "sudo ctr -n k8s.io images import /tmp/docs-image.tar && rm /tmp/docs-image.tar")
        assert out.returncode == 0, out.stderr
    c.k("-n", manifests.DOCS_NS, "rollout", "status", "deployment/docs", "--timeout=240s", timeout=270)
    for m in c.nodes():
        url = f"http://{m.address}:{c.config.docs.node_port}/"
        # Rolled out is not yet routed: until each kube-proxy has the new endpoints, a NodePort without any
        # rejects (connection refused, met here once under load). Wait for an answer, then look in Chromium.
        _answers_within(url, 60)
        page = browser_page.page
        page.goto(url, wait_until="networkidle")
        assert "renderlab" in page.title(), m.name
        browser_page.screenshot(f"docs-{m.name}")
    browser_page.assert_clean()


def test_cluster_testinfra_checks_run(built: Cluster):
    env = {
        **os.environ,
        "PATH": f"{locallab.ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(locallab.ROOT / "ansible" / "ansible.cfg"),
        "RENDERLAB_HOST_SECRETS": str(built.lab.secrets),
        "RENDERLAB_KUBECONFIG": str(built.kubeconfig),
    }
    proc = subprocess.run(
        [str(locallab.ROOT / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "tests/hosts/test_kubernetes.py",
         "--hosts=ansible://all", f"--ansible-inventory={built.lab.inventory}", "-rs"],
        cwd=locallab.ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    tail = proc.stdout[-3000:]
    print(tail)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, tail
    # Every check ran on its group's hosts, none skipped: 7 per control plane, 2 per worker.
    expected = 7 * len(built.config.hosts_by_role("control_plane")) + 2 * len(
        built.config.hosts_by_role("worker")
    )
    assert summary.startswith(f"{expected} passed") and "skipped" not in summary, summary


MACHINE_PANIC = Path("/proc/sys/kernel/panic").read_text().strip()  # read before the lab is up


def test_machine_kernel_values_untouched(built: Cluster, web):
    # The nodes read the kubelet's values from node-local stand-ins; this machine keeps its own.
    node = built.ssh(built.host("worker"), "cat /proc/sys/kernel/panic /proc/sys/vm/overcommit_memory").stdout
    assert node.split() == ["10", "1"]
    assert Path("/proc/sys/kernel/panic").read_text().strip() == MACHINE_PANIC


def test_a_node_stopped_and_started_comes_back_ready_with_its_pods(built: Cluster, web: dict[str, dict]):
    c = built
    m = c.host_named(sorted(c.config.hosts_by_role("worker"))[0])
    pod = web[m.name]["metadata"]["name"]
    before = c.kjson("-n", TEST_NS, "get", "pod", pod)["status"]["containerStatuses"][0]["restartCount"]
    t0 = time.monotonic()
    machines.stop(m)
    machines.boot(m, c.lab.settings.bridge, c.lab.state / "logs", cluster_node=True)
    locallab._save(c.lab.settings, c.lab.machines)
    machines.wait_ssh(m, c.lab.ssh_base(), c.admin, locallab.SSH_BOOT_TIMEOUT_S, c.lab.state / "logs")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = c.kjson("-n", TEST_NS, "get", "pod", pod)["status"]
        restarted = status["containerStatuses"][0]["restartCount"] > before
        if restarted and status["containerStatuses"][0].get("ready"):
            break
        time.sleep(3)
    else:
        raise AssertionError(f"{pod} did not come back on {m.name}: {status}")
    c.k("wait", "--for=condition=Ready", f"node/{m.name}", "--timeout=120s")
    c.timings["node stop + start until its pod serves again"] = time.monotonic() - t0
    other = next(p for n, p in web.items() if n != m.name)["metadata"]["name"]
    # The pod's new sandbox may take a moment to show its new address in the pod's status.
    got = ""
    for _ in range(20):
        ip = c.kjson("-n", TEST_NS, "get", "pod", pod)["status"]["podIP"]
        got = _exec(c, TEST_NS, other, f"wget -qO- http://{ip}:{WEB_PORT}/ 2>&1 || true")
        if got == testbox.INDEX:
            break
        time.sleep(3)
    assert got == testbox.INDEX, (ip, got)
