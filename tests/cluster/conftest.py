"""`make cluster-test`: the local lab's two Kubernetes nodes built by the real `ansible/site.yml` (kubeadm,
kube-router, kube-proxy, CoreDNS), then checked as a cluster from this machine with the kubectl that
`make k8s-artifacts` built.

In one session with the lab lane (CI's `make test`) it is the same lab and the same two site.yml runs
(tests/lab_session.py); alone (`make cluster-test`) the session boots it. A lab already up under the same
RENDERLAB_LAB_PREFIX that this session did not boot (`make lab-local`) is reused and left up. Needs root, the
lab tools and the artifacts folder (`make k8s-artifacts`); without root or the tools the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
import yaml

from renderlab.base import atomic
from renderlab.lab import ansible_unsafe, image_refs
from renderlab.lab.config import LabConfig, load
from renderlab.workstation.nspawn_lab import lifecycle as locallab
from renderlab.workstation.nspawn_lab import machines
from renderlab.workstation.nspawn_lab.machines import Machine
from renderlab.workstation.nspawn_lab.options import ROOT, LabOptions
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


def _as_is() -> bool:
    """RENDERLAB_CLUSTER_AS_IS=1: a kept lab is checked as it is, without this tree's inventory or site.yml runs
    (a lab someone else keeps and uses: only the checks that add objects of their own beside its own belong)."""
    return os.environ.get("RENDERLAB_CLUSTER_AS_IS") == "1"


def _reused(s: LabOptions) -> locallab.Lab | None:
    st = locallab.status(s)
    ms = [Machine(**{**m, "directory": Path(m["directory"])}) for m in st.get("machines", [])]
    if ms and all(machines.is_ours(m) for m in ms) and _as_is():
        return locallab.Lab(s, ms)
    if ms and all(machines.is_ours(m) for m in ms):
        # The inventory again from this tree's code (the firewall rules, the lab-only values may have changed
        # since the lab was booted); the stack file and the secrets stay the lab's own.
        inv = locallab.lab_inventory(load(s.state / "stack.yaml"), s)
        atomic.write_text(s.state / "inventory.yml", ansible_unsafe.dumps(inv), mode=0o644)
        return locallab.Lab(s, ms)
    return None


@pytest.fixture(scope="session")
def cluster(request, lab_preflight, booted) -> Cluster:
    """The session's lab (tests/lab_session.py) after its two site.yml runs: the lab lane's, when both lanes
    run in one session (CI). A lab already up under this prefix and not booted by this session (kept by
    `make lab-local` or RENDERLAB_LAB_KEEP=1) is reused instead, and site.yml runs twice on it here."""
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
    kept = _reused(s) if s.prefix not in booted else None
    if kept is None and _as_is():
        pytest.fail(f"RENDERLAB_CLUSTER_AS_IS=1 but no lab is up under {s.prefix}", pytrace=False)
    lab = kept or request.getfixturevalue("lab")
    c = Cluster(lab, load(lab.stack_file), artifacts / "bin" / "kubectl")
    try:
        if kept and _as_is():
            c.timings["lab reused as it is (RENDERLAB_CLUSTER_AS_IS=1)"] = time.monotonic() - t0
        elif kept:
            c.timings["lab reused"] = time.monotonic() - t0
            for n in (1, 2):
                run = locallab.run_site(lab, f"cluster-site-{n}.log")
                c.runs.append(run)
                c.timings[f"site.yml run {n}"] = run.seconds
                if run.real_failures:
                    break
        else:
            c.runs.append(request.getfixturevalue("first_run"))
            if not c.runs[0].real_failures:
                c.runs.append(request.getfixturevalue("second_run"))
            c.timings.update(
                {f"site.yml run {n} (the session's)": r.seconds for n, r in enumerate(c.runs, 1)}
            )
        yield c
    finally:
        if report is not None:
            report.write_line("")
            for what, seconds in c.timings.items():
                report.write_line(f"[cluster-test] {what}: {seconds:.0f} s")


@pytest.fixture(scope="session")
def built(cluster: Cluster) -> Cluster:
    """The cluster, once site.yml has succeeded (else every check after it fails with the playbook's failure)."""
    if not cluster.runs:  # RENDERLAB_CLUSTER_AS_IS=1: built by whoever keeps the lab
        return cluster
    first = cluster.runs[0]
    if first.real_failures:  # a host stopped at the p4d vendor download is not a cluster failure
        pytest.fail(f"site.yml failed; see {first.log}:\n{first.why()}", pytrace=False)
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


@pytest.fixture(scope="session")
def docs_image(built: Cluster, tmp_path_factory) -> str:
    """The docs image as the lab's nodes name it, built the way `make images --only docs` builds it, recorded
    in this session's own folder (the user's records stay untouched). Nothing is rebuilt when it is up to date
    (the suite's container tests built it earlier in the same session)."""
    records = tmp_path_factory.mktemp("docs-image-records")
    base = built.lab.settings.base_config
    code = (
        "import sys; from pathlib import Path; from renderlab.lab import image_refs; "
        "from renderlab.workstation import images; image_refs.RECORDS = Path(sys.argv[1]); "
        "sys.exit(images.main(sys.argv[2:]))"
    )
    argv = ["build", "--only", "docs", "--push", "never", "--config", str(base)]
    proc = subprocess.run(
        ["nice", "-n", "10", sys.executable, "-c", code, str(records), *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with mock.patch.object(image_refs, "RECORDS", records):
        entry = image_refs.recorded(base).get("docs")
    assert entry, f"no docs image recorded in {records}: {proc.stderr[-2000:]}"
    return image_refs.pull_refs(built.config, {"docs": entry})["docs"]


from tests.browser_support import browser, browser_page  # noqa: E402, F401  (pytest fixtures)
