"""The docs site and the gallery in a real browser (Debian's chromium through Playwright), served by nginx
with the configuration that ships in images/docs: the site built by `mkdocs build --strict` into a tmp dir,
the gallery published by the real gallery Job from a small real run (ffmpeg test frames in place of
Blender's, then the real assemble and validate: see tests/docs/runs.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from renderlab.jobs import gallery
from renderlab.workstation import docs_server
from tests.docs.runs import REPO, make_run

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RUN_ID = "manual__2026-02-03T04-05-06-00-00"


@pytest.fixture(scope="module")
def site(readable_tmp) -> Path:
    out = readable_tmp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=REPO, capture_output=True, text=True, check=False, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def share(readable_tmp) -> tuple[Path, dict]:
    root = readable_tmp("share")
    meta = make_run(root, RUN_ID)
    gallery.publish(root / "runs" / RUN_ID, root / "gallery", meta)
    older = make_run(root, "manual__2026-01-01T00-00-00-00-00", frames=12)
    gallery.publish(
        root / "runs" / older["run_id"], root / "gallery", {**older, "started": "2026-01-01T00:00:00"}
    )
    return root, meta


@pytest.fixture(scope="module")
def url(site, share) -> str:
    with docs_server.serve(site, share[0] / "gallery") as base:
        yield base


def test_landing_page_renders_with_the_call_flow_diagram(browser_page, url):
    page = browser_page.page
    # Material draws each diagram into a *closed* shadow root; open it for the test so the SVG can be read.
    page.add_init_script(
        "const attach = Element.prototype.attachShadow;"
        "Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: 'open'}); };"
    )
    page.goto(url, wait_until="networkidle")
    assert "renderlab" in page.title()
    page.wait_for_function(
        "() => { const d = [...document.querySelectorAll('.mermaid')];"
        " return d.length > 0 && d.every(x => x.shadowRoot && x.shadowRoot.querySelector('svg')); }",
        timeout=20000,
    )
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('.mermaid')].map(d => {
             const svg = d.shadowRoot.querySelector('svg');
             return {w: svg.getBoundingClientRect().width, text: svg.textContent}; })"""
    )
    assert drawn and all(d is not None for d in drawn), drawn
    assert drawn[0]["w"] > 300 and "Airflow" in drawn[0]["text"] and "gallery Job" in drawn[0]["text"]
    # Mermaid came from the site itself, never a CDN.
    scripts = page.evaluate("() => [...document.scripts].map(s => s.src).filter(Boolean)")
    assert any(s.endswith("assets/vendor/mermaid.min.js") for s in scripts)
    assert all(s.startswith(url) for s in scripts), scripts
    browser_page.screenshot("landing")
    browser_page.assert_clean()


def test_config_reference_is_generated_into_the_site(browser_page, url):
    page = browser_page.page
    page.goto(url + "reference/config/", wait_until="networkidle")
    text = page.inner_text("article")
    for key in (
        "proxmox.template.vmid",
        "hosts.<name>.memory_mib",
        "docs.node_port",
        "pipeline.registry.node_port",
    ):
        assert key in text
    browser_page.screenshot("config-reference")
    browser_page.assert_clean()


def test_run_page_plays_the_run_video(browser_page, url, share):
    root, meta = share
    page = browser_page.page
    page.goto(url + "gallery/", wait_until="networkidle")
    rows = page.locator("tr.run")
    assert rows.count() == 2
    assert RUN_ID in rows.nth(0).inner_text()  # newest first
    browser_page.screenshot("gallery-index")
    rows.nth(0).locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{url}gallery/runs/{RUN_ID}/index.html"
    state = page.wait_for_function(
        """() => { const v = document.querySelector('#video-main');
                   return v && v.readyState >= 1 && {duration: v.duration, error: v.error && v.error.code,
                     width: v.videoWidth, src: v.currentSrc}; }""",
        timeout=20000,
    ).json_value()
    record = json.loads((root / "gallery" / "runs" / RUN_ID / "run.json").read_text())
    expected = record["variants"]["main"]["duration_s"]
    assert expected == pytest.approx(36 / 24)  # the run: 36 frames at 24 fps
    assert state["error"] is None and state["width"] == 160
    # The container may be longer by an AAC frame (1024 samples); the validator allows the same.
    assert state["duration"] == pytest.approx(expected, abs=0.05), state
    assert state["src"].endswith("media/tiny_main.mp4")
    loop = page.evaluate("() => { const v = document.querySelector('#video-loop'); return v && v.loop; }")
    assert loop is True
    assert page.locator("#verdict").inner_text() == "passed"
    assert page.locator("#timing-plot circle.note").count() == 24
    browser_page.screenshot("run-page")
    browser_page.assert_clean()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for name in ("href", "src"):
            if a.get(name) and not (tag == "link" and a.get("rel") in ("preconnect", "dns-prefetch")):
                self.links.append(a[name])


def _get(link: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(link, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_every_internal_link_resolves(url, share):
    """Crawl the site and the gallery from the landing page: every same-site href/src answers 200, and every
    #fragment exists on its page."""
    pages: dict[str, _Links] = {}
    todo, seen, broken, checked = [url], {url}, [], 0
    fragments: list[tuple[str, str, str]] = []
    while todo:
        current = todo.pop()
        status, ctype, body = _get(current)
        checked += 1
        if status != 200:
            broken.append(f"{current}: HTTP {status}")
            continue
        if "text/html" not in ctype:
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        pages[current] = parser
        for link in parser.links:
            absolute, frag = urldefrag(urljoin(current, link))
            if urlparse(absolute).netloc != urlparse(url).netloc or absolute.startswith(
                ("mailto:", "javascript:")
            ):
                continue
            if frag:
                fragments.append((current, absolute, frag))
            if absolute not in seen:
                seen.add(absolute)
                todo.append(absolute)
    for source, target, frag in fragments:
        ids = pages[target].ids if target in pages else set()
        if target in pages and frag not in ids:
            broken.append(f"{source}: #{frag} is not on {target}")
    assert not broken, "\n".join(broken)
    assert checked > 20 and f"{url}gallery/runs/{RUN_ID}/index.html" in pages
    assert (
        f"{url}reference/config/" in pages and f"{url}gallery/" in pages and f"{url}render-gallery/" in pages
    )


def test_make_docs_server_prints_its_url_and_stops_cleanly(site, readable_tmp):
    """What `make docs` runs: it prints the URL it serves on 127.0.0.1, and SIGTERM leaves no nginx behind."""
    import os
    import signal

    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "renderlab.workstation.docs_server", "--site", str(site), "--gallery",
         str(readable_tmp("gallery") / "gallery")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        base = re.search(r"at (http://127\.0\.0\.1:\d+/) ", line).group(1)
        status, ctype, _ = _get(base)
        assert status == 200 and "text/html" in ctype
        # No run published yet (an empty gallery folder): a 404 whose page is the site's gallery page.
        status, _, body = _get(base + "gallery/")
        assert status == 404 and b"Every successful run publishes a page" in body
        nginx = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "nginx"]
        assert nginx
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not [p for p in nginx if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
