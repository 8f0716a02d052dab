"""The docs image `make images` built, run the way the docs Deployment runs it: uid 2080, read-only root, a
tmpfs /tmp, the gallery folder bind-mounted read-only, no network but one port published on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest

from infra import manifests

from .conftest import REPO, podman

pytestmark = [pytest.mark.container, pytest.mark.slow]

GALLERY = "/srv/gallery"  # images/docs/Dockerfile's @GALLERY@


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def docs_server(built, tmp_path):
    """The docs container serving a gallery folder with one page in it; yields (base URL, gallery page, name)."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    page = f"<html><body>gallery {uuid.uuid4().hex}</body></html>\n"
    (gallery / "index.html").write_text(page)
    gallery.chmod(0o755)
    (gallery / "index.html").chmod(0o644)
    port = free_port()
    name = f"rl-docs-test-{uuid.uuid4().hex[:10]}"
    podman(
        "run", "-d", "--name", name, "--user", f"{manifests.DOCS_UID}:{manifests.DOCS_UID}", "--read-only",
        "--tmpfs", "/tmp:rw,size=16m,mode=1777", "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--mount", f"type=bind,src={gallery},dst={GALLERY},ro=true",
        "-p", f"127.0.0.1:{port}:{manifests.DOCS_PORT}", built["docs"]["ref"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"{url}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", f"docs container {state}: {podman('logs', name).stderr[-2000:]}"
            assert time.monotonic() < deadline, "the docs server did not answer /healthz within 60 s"
            time.sleep(0.5)
        yield url, page, name
    finally:
        podman("rm", "-f", name, check=False)


def test_docs_image_serves_the_site_and_the_mounted_gallery_as_uid_2080(docs_server):
    url, page, name = docs_server
    title = re.search(r"^# (.+)$", (REPO / "docs" / "index.md").read_text(), re.M).group(1)
    status, body = get(f"{url}/")
    assert status == 200 and f"<title>{title}</title>" in body
    assert "stands up a self-hosted render lab" in body  # docs/index.md's opening line, rendered
    assert get(f"{url}/gallery/") == (200, page)
    assert get(f"{url}/gallery/missing.png")[0] == 404
    # Every nginx process (master and worker) runs as the docs uid, never root.
    procs = podman(
        "exec", name, "sh", "-c", "grep -H '^Uid:' /proc/[0-9]*/status; grep -H . /proc/[0-9]*/comm"
    )
    comm = dict(re.findall(r"^/proc/(\d+)/comm:(.+)$", procs.stdout, re.M))
    uids = {pid: int(u) for pid, u in re.findall(r"^/proc/(\d+)/status:Uid:\s+(\d+)", procs.stdout, re.M)}
    nginx = [pid for pid, c in comm.items() if c.strip() == "nginx"]
    assert len(nginx) >= 2, procs.stdout
    assert {uids[pid] for pid in nginx} == {manifests.DOCS_UID}
    # The gallery is read-only in there, and so is the root filesystem.
    for path in (f"{GALLERY}/x", "/srv/site/x"):
        assert podman("exec", name, "touch", path, check=False).returncode != 0
