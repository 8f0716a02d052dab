"""The cluster tests' own tiny image: Debian's static busybox (package busybox-static) in an image of one
layer, built with podman and packed as an air-gap archive the nodes import (no registry is reachable here).

It serves HTTP (`httpd`), probes TCP (`nc`), resolves names (`nslookup`) and sleeps: all the tests need."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

REF = "localhost/renderlab-testbox:1"
PACKAGE = "busybox-static"
# Written into the image: what its web server answers at / (the tests compare against it).
INDEX = "renderlab testbox\n"


def build(cache: Path) -> Path:
    """The image archive (docker-archive, importable with `ctr images import`), built once into cache."""
    archive = cache / "testbox.tar"
    if archive.exists():
        return archive
    if shutil.which("podman") is None:
        raise RuntimeError("podman is not installed; `apt-get install podman` (requirements/apt.txt)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True, capture_output=True)
        (deb,) = work.glob(f"{PACKAGE}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        root = work / "ctx" / "root"
        (root / "bin").mkdir(parents=True)
        (root / "www").mkdir()
        (root / "tmp").mkdir(mode=0o1777)
        (root / "www" / "index.html").write_text(INDEX)
        shutil.copy2(work / "x" / "bin" / "busybox", root / "bin" / "busybox")
        applets = subprocess.run(
            [str(root / "bin" / "busybox"), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (work / "ctx" / "Containerfile").write_text('FROM scratch\nCOPY root/ /\nENTRYPOINT ["/bin/sh"]\n')
        subprocess.run(
            ["podman", "build", "-q", "-t", REF, str(work / "ctx")], check=True, capture_output=True
        )
        partial = cache / "testbox.tar.tmp"
        partial.unlink(missing_ok=True)
        subprocess.run(
            ["podman", "save", "--format", "docker-archive", "-o", str(partial), REF],
            check=True,
            capture_output=True,
        )
        partial.rename(archive)
    return archive
