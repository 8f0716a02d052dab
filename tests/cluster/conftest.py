"""`make cluster-test`: the local lab's two Kubernetes nodes built by the real `ansible/site.yml` (kubeadm,
kube-router, kube-proxy, CoreDNS), then checked as a cluster from this machine with the kubectl that
`make k8s-artifacts` built.

The lab is reused when one is already up under the same RENDERLAB_LAB_PREFIX (and left up); otherwise it is
booted here and torn down at the end (RENDERLAB_LAB_KEEP=1 keeps it). Needs root, the lab tools and the
artifacts folder (`make k8s-artifacts`); without root or the tools the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from renderlab.base import atomic
from renderlab.lab import ansible_unsafe
from renderlab.lab.config import LabConfig, load
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import machines
from renderlab.workstation.nspawn_lab.machines import Machine
from renderlab.workstation.nspawn_lab.options import ROOT, LabError, LabOptions
from tests.cluster import testbox

TEST_NS = "renderlab-cluster-test"


@dataclass
class Cluster:
    lab: locallab.Lab
    config: LabConfig
    kubectl: Path
    runs: list[locallab.PlaybookRun] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.lab.state / "kubeconfig"

    @property
    def admin(self) -> str:
        return self.config.ssh.admin_user

    def host(self, role: str) -> Machine:
        (name,) = self.config.hosts_by_role(role)
        return next(m for m in self.lab.machines if m.name == name)

    def k(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 180) -> str:
        proc = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def kjson(self, *args: str) -> dict:
        return json.loads(self.k(*args, "-o", "json"))

    def apply(self, objs: list[dict]) -> None:
        self.k("apply", "--server-side", "--field-manager=renderlab-tests", "--force-conflicts", "-f", "-",
               stdin=yaml.safe_dump_all(objs))  # fmt: skip

    def ssh(self, m: Machine, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.lab.ssh_base(), f"{self.admin}@{m.address}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def scp(self, src: Path, m: Machine, dest: str) -> None:
        opts = locallab.ssh_options(self.lab.state)
        subprocess.run(
            ["scp", "-q", *opts, str(src), f"{self.admin}@{m.address}:{dest}"], check=True, timeout=300
        )

    def nodes(self) -> list[Machine]:
        return [
            self.host("control_plane"),
            *(self.host_named(n) for n in self.config.hosts_by_role("worker")),
        ]

    def host_named(self, name: str) -> Machine:
        return next(m for m in self.lab.machines if m.name == name)


def _reused(s: LabOptions) -> locallab.Lab | None:
    st = locallab.status(s)
    ms = [Machine(**{**m, "directory": Path(m["directory"])}) for m in st.get("machines", [])]
    if ms and all(machines.is_ours(m) for m in ms):
        # The inventory again from this tree's code (the firewall rules, the lab-only values may have changed
        # since the lab was booted); the stack file and the secrets stay the lab's own.
        inv = locallab.lab_inventory(load(s.state / "stack.yaml"), s)
        atomic.write_text(s.state / "inventory.yml", ansible_unsafe.dumps(inv), mode=0o644)
        return locallab.Lab(s, ms)
    return None


@pytest.fixture(scope="session")
def cluster(request) -> Cluster:
    try:
        locallab.preflight()
    except LabError as e:
        pytest.skip(f"local lab unavailable here: {e}")
    s = LabOptions.from_env()
    base = load(s.base_config)
    artifacts = locallab.k8s_artifacts_dir(base)
    if not (artifacts / ".ready").exists():
        pytest.fail(
            f"no Kubernetes artifacts for {base.kubernetes.version} in {artifacts}: run `make k8s-artifacts` first "
            "(or set RENDERLAB_K8S_CACHE to the folder that holds them)",
            pytrace=False,
        )
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    t0 = time.monotonic()
    lab = _reused(s)
    owned = lab is None
    if owned:
        lab = locallab.up(s)
    c = Cluster(lab, load(lab.stack_file), artifacts / "bin" / "kubectl")
    c.timings["lab up" if owned else "lab reused"] = time.monotonic() - t0
    try:
        extra = ["-e", f"kube_control_plane_kubeconfig_dest={c.kubeconfig}"]
        for n in (1, 2):
            run = locallab.run_site(lab, f"cluster-site-{n}.log", extra)
            c.runs.append(run)
            c.timings[f"site.yml run {n}"] = run.seconds
            if run.real_failures:
                break
        yield c
    finally:
        if report is not None:
            report.write_line("")
            for what, seconds in c.timings.items():
                report.write_line(f"[cluster-test] {what}: {seconds:.0f} s")
        if owned and not os.environ.get("RENDERLAB_LAB_KEEP"):
            locallab.down(s)


@pytest.fixture(scope="session")
def built(cluster: Cluster) -> Cluster:
    """The cluster, once site.yml has succeeded (else every check after it fails with the playbook's failure)."""
    first = cluster.runs[0]
    if first.real_failures:  # a host stopped at the p4d vendor download is not a cluster failure
        pytest.fail(f"site.yml failed ({first.real_failures}); see {first.log}", pytrace=False)
    return cluster


@pytest.fixture(scope="session")
def testbox_image(built: Cluster) -> str:
    """The test image, imported into containerd on every node."""
    archive = testbox.build(ROOT / ".cache" / "cluster-test")
    for m in built.nodes():
        built.scp(archive, m, "/tmp/testbox.tar")
        out = built.ssh(m, "sudo ctr -n k8s.io images import /tmp/testbox.tar && rm /tmp/testbox.tar")
        assert out.returncode == 0, out.stderr
    return testbox.REF


from tests.browser_support import browser, browser_page  # noqa: E402, F401  (pytest fixtures)
