"""mkdocs hooks: the pages generated at build time, and mermaid served from the site itself.

- reference/config.md: the lab config reference, from the pydantic model and the example's comments
  (renderlab.lab.reference); never committed.
- reference/config-errors.md: what `make check-config` prints for each invalid fixture, run for real.
- assets/vendor/mermaid.min.js: mermaid from the npm registry at the version and integrity pinned in
  docs/vendor.json (fetched once with `npm pack` into .cache/docs/, verified on every build). Material uses
  a global `mermaid` when one is loaded, so the site never reaches a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]


def _import_path() -> None:
    """The generated pages import renderlab from this checkout (mkdocs runs from anywhere)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


CACHE = REPO / ".cache" / "docs"
MERMAID_URI = "assets/vendor/mermaid.min.js"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def vendored_mermaid() -> bytes:
    pin = json.loads((Path(__file__).with_name("vendor.json")).read_text())["mermaid"]
    tarball = CACHE / f"{pin['package']}-{pin['version']}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise PluginError(
                f"mermaid {pin['version']} is not in {tarball.parent} and npm is not installed; install "
                "Node.js with npm (it fetches the pinned package once)"
            )
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "pack", f"{pin['package']}@{pin['version']}", "--pack-destination", str(CACHE), "--silent"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not tarball.is_file():
            raise PluginError(
                f"`npm pack {pin['package']}@{pin['version']}` failed: {proc.stderr.strip()[-500:]}"
            )
    data = tarball.read_bytes()
    if _integrity(data) != pin["integrity"]:
        tarball.unlink()
        raise PluginError(
            f"{tarball.name}: its digest differs from the pin in docs/vendor.json; removed it, build again"
        )
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(pin["file"])
        if member is None:
            raise PluginError(f"{tarball.name} has no {pin['file']}")
        return member.read()


def config_errors_page() -> str:
    from renderlab.lab import config

    lines = [
        "# Lab config errors",
        "",
        "What `make check-config` (and every command that reads the stack file) prints for each broken",
        "example in `tests/fixtures/config/invalid/`, produced when this site was built by running the check.",
        "Each line names the key, what is wrong, and how to fix it; all problems are listed at once.",
        "",
    ]
    for path in sorted((REPO / "tests" / "fixtures" / "config" / "invalid").glob("*.yaml")):
        try:
            config.load(path)
            problems = ["(accepted)"]
        except config.ConfigError as e:
            problems = e.problems
        lines += [f"## {path.stem.replace('-', ' ')}", "", "```text", *problems, "```", ""]
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    _import_path()
    from renderlab.lab import reference as config_reference

    generated = {
        "reference/config.md": config_reference.markdown(),
        "reference/config-errors.md": config_errors_page(),
    }
    for uri, text in generated.items():
        files.append(File.generated(config, uri, content=text))
    files.append(File.generated(config, MERMAID_URI, content=vendored_mermaid()))
    return files
