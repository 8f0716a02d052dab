"""Serve the built docs site and a gallery folder on 127.0.0.1 with nginx, as the cluster's image does.

    python -m renderlab.workstation.docs_server --site build/site --gallery out/demo/gallery [--port 0]

The configuration is images/docs/nginx.conf.template, rendered for fixed paths inside a private prefix folder
that links to the site and the gallery (the paths given here never enter the configuration): what `make docs`
and the browser tests serve is the server configuration that ships in images/docs. nginx never runs as root:
started by root, the whole server runs as nobody. Prints the URL, serves until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from renderlab.base import cli

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "images" / "docs" / "nginx.conf.template"
MIME_TYPES = "/etc/nginx/mime.types"
NOBODY = 65534  # nobody / nogroup: who nginx runs as when root starts it
# What may be filled into the configuration: a value outside this set could end a directive (`;`), open a
# block (`{`), split an argument (a space) or start a variable (`$`).
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:-]+")


class DocsServerError(RuntimeError):
    pass


def render_config(*, listen: str, site: Path | str, gallery: Path | str, tmp: Path | str) -> str:
    """The template filled in; DocsServerError when a value holds anything but path or address characters."""
    values = {
        "@LISTEN@": listen,
        "@SITE@": str(site),
        "@GALLERY@": str(gallery).rstrip("/"),
        "@TMP@": str(tmp),
        "@MIME_TYPES@": MIME_TYPES,
    }
    for key, value in values.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise DocsServerError(
                f"{key.strip('@').lower()} {value!r} holds characters nginx would read as configuration; "
                "use a folder whose path has only letters, digits and ._/:- (set TMPDIR for the prefix)"
            )
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _readable_by_nobody(path: Path) -> bool:
    probe = subprocess.run(["test", "-r", str(path)], user=NOBODY, group=NOBODY, extra_groups=[], check=False)
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DocsServerError(
                f"nginx exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "healthz", timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise DocsServerError(f"nginx did not answer on {url} within {timeout:.0f}s")


@contextlib.contextmanager
def serve(site: Path, gallery: Path, port: int = 0) -> Iterator[str]:
    """Run nginx for `site` and `gallery` on 127.0.0.1; yields the base URL, stops it on exit."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise DocsServerError("nginx is not installed; run `make apt` (Debian's nginx-light)")
    if not (site / "index.html").is_file():
        raise DocsServerError(f"{site} has no index.html; build the site first (make docs)")
    gallery.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        for what, path in (("the site", site / "index.html"), ("the gallery", gallery)):
            if not _readable_by_nobody(path):
                raise DocsServerError(
                    f"nginx runs as nobody here (never as root), and nobody cannot read {what} at {path}; "
                    "serve folders others may read (chmod o+rx on the folders above), or run as a normal user"
                )
    with tempfile.TemporaryDirectory(prefix="renderlab-docs-") as tmp:
        # The served folders are linked into the prefix, so the configuration names only fixed paths inside it
        # (`disable_symlinks ... from=$document_root` allows exactly these two links, none below them).
        prefix = Path(tmp)
        (prefix / "site").symlink_to(site.resolve(), target_is_directory=True)
        (prefix / "gallery").symlink_to(gallery.resolve(), target_is_directory=True)
        if as_root:
            os.chown(prefix, NOBODY, NOBODY)
        drop = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_root else {}
        for attempt in range(5):
            chosen = port or free_port()
            conf = prefix / "nginx.conf"
            conf.write_text(
                render_config(listen=f"127.0.0.1:{int(chosen)}", site=prefix / "site", gallery=prefix / "gallery",
                              tmp=prefix),
                encoding="utf-8",
            )  # fmt: skip
            proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", tmp, "-e", "stderr"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                **drop,
            )
            url = f"http://127.0.0.1:{chosen}/"
            try:
                _wait(url, proc)
            except DocsServerError:
                _stop(proc)
                if port or attempt == 4:
                    raise
                continue  # the free port was taken in between: pick another
            try:
                yield url
            finally:
                _stop(proc)
            return


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(prog="python -m renderlab.workstation.docs_server", description=__doc__.split("\n")[0])
    ap.add_argument("--site", type=Path, default=REPO / "build" / "site")
    ap.add_argument("--gallery", type=Path, default=REPO / "out" / "demo" / "gallery")
    ap.add_argument("--port", type=int, default=int(os.environ.get("DOCS_PORT") or 0))
    a = ap.parse_args(argv)
    try:
        with serve(a.site, a.gallery, a.port) as url:
            print(f"docs: serving {a.site} and the gallery {a.gallery} at {url} (gallery: {url}gallery/)")
            print("docs: Ctrl-C stops it", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    signal.pause()
    except DocsServerError as e:
        print(f"docs: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("docs", main))
