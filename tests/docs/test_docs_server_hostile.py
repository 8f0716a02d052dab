"""The local docs server over a hostile gallery (issue 28, class 3): it serves nothing a link points at, never
runs as root, takes no configuration from a path, and keeps the security headers on every location."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from renderlab.workstation import docs_server

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
    reason="nginx is not installed (make apt)",
)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def roots() -> Iterator[Path]:
    """A site and a gallery that other users may read (as a server dropping root needs), with hostile links."""
    top = Path(tempfile.mkdtemp(prefix="rl-docs-hostile-"))
    try:
        top.chmod(0o755)
        (top / "site").mkdir()
        (top / "site" / "index.html").write_text("<p>site</p>")
        (top / "site" / "render-gallery").mkdir()
        (top / "site" / "render-gallery" / "index.html").write_text("<p>no gallery yet</p>")
        secret = top / "secret"
        secret.mkdir()
        (secret / "key.html").write_text("TOP SECRET")
        gallery = top / "gal lery;evil"  # a space and a ';' in the path: nginx must never read it as config
        gallery.mkdir()
        (gallery / "index.html").write_text("<p>gallery</p>")
        (gallery / "leak.html").symlink_to(secret / "key.html")
        (gallery / "runs").symlink_to(secret)
        (top / "site" / "leak.html").symlink_to(secret / "key.html")
        for p in top.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        yield top
    finally:
        shutil.rmtree(top)


def test_links_out_of_the_roots_are_never_served_and_headers_hold_everywhere(roots: Path):
    with docs_server.serve(roots / "site", roots / "gal lery;evil") as url:
        status, headers, body = get(url + "gallery/index.html")
        assert status == 200 and b"<p>gallery</p>" in body  # the odd path is served as a path
        for path in ("gallery/leak.html", "gallery/runs/key.html", "leak.html"):
            status, _headers, body = get(url + path)
            assert status in (403, 404) and b"TOP SECRET" not in body, (path, status)
        for path in ("", "gallery/", "gallery/index.html", "gallery/missing.html", "missing.html"):
            status, headers, _body = get(url + path)
            assert headers.get("X-Content-Type-Options") == "nosniff", (path, headers)
            assert headers.get("Referrer-Policy") == "same-origin", (path, headers)
        assert "no-cache" in get(url + "gallery/index.html")[1].get("Cache-Control", "")


def test_nginx_never_runs_as_root(roots: Path):
    with docs_server.serve(roots / "site", roots / "gal lery;evil") as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        listeners = [
            c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid
        ]
        assert listeners
        for pid in listeners:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
            if proc.parent() and proc.parent().name().startswith("nginx"):
                family.append(proc.parent())
            for p in family:
                assert 0 not in p.uids(), (p.pid, p.name(), p.uids())


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server drops privileges")
def test_a_private_site_is_refused_with_one_line_as_root(tmp_path: Path):
    site = tmp_path / "private" / "site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("x")
    (tmp_path / "private").chmod(0o700)
    with (
        pytest.raises(docs_server.DocsServerError, match="nobody cannot read the site"),
        docs_server.serve(site, tmp_path / "gallery"),
    ):
        pass


@pytest.mark.parametrize(
    "bad", ["/srv/x; include /etc/passwd", "/srv/a b", "/srv/{x}", "/srv/$uri", "/s\nuser root;"]
)
def test_configuration_values_that_nginx_would_parse_are_refused(bad: str):
    with pytest.raises(docs_server.DocsServerError, match="nginx would read as configuration"):
        docs_server.render_config(listen="127.0.0.1:1", site=bad, gallery="/g", tmp="/t")
