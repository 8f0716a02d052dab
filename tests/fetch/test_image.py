"""The fetch image's inputs without a container engine: pins, base, user, file set (tests/containers runs it)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, write_tree

DOCKERFILE = REPO / "images/fetch/Dockerfile"
IMAGE_PACKAGES = {
    "P4", "P4API", "rich", "markdown_it", "mdurl", "pygments",
    "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
}  # fmt: skip


def blocks(text: str) -> dict[str, str]:
    """name -> normalised 'name==version + hashes' of a pip requirements file with hashes."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        lines = [
            ln.strip().rstrip("\\").strip()
            for ln in block.splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        ]
        if lines and "==" in lines[0]:
            out[lines[0].split("==")[0].lower()] = " ".join(lines)
    return out


def test_image_requirements_match_the_lock():
    image = blocks((REPO / "requirements/image-fetch.txt").read_text())
    lock = blocks((REPO / "requirements/lock.txt").read_text())
    assert set(image) == {
        "p4python", "rich", "markdown-it-py", "mdurl", "pygments",
        "pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection",
    }  # fmt: skip
    for name, pin in image.items():
        assert pin == lock[name], f"{name} differs from requirements/lock.txt; copy its block again"


def test_dockerfile_base_user_entrypoint():
    text = DOCKERFILE.read_text()
    [base] = re.findall(r"^ARG BASE=(\S+)", text, re.M)
    assert re.fullmatch(r"debian:12-slim@sha256:[0-9a-f]{64}", base)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}"]
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r'^ENTRYPOINT \["python", "-m", "renderlab.jobs.fetch"\]$', text, re.M)
    assert "--require-hashes" in text


def image_layout(tmp_path: Path) -> Path:
    """Copy exactly what the Dockerfile's COPY lines put under /app."""
    app = tmp_path / "app"
    for sources, target in re.findall(r"^COPY ((?:\S+ )+)(/app/\S*)$", DOCKERFILE.read_text(), re.M):
        dest = app / target.removeprefix("/app/")
        dest.mkdir(parents=True, exist_ok=True)
        for pattern in sources.split():
            for f in REPO.glob(pattern):
                shutil.copy(f, dest)
    return app


def test_image_file_set_runs_a_fetch_and_imports_nothing_else(tmp_path: Path):
    app = image_layout(tmp_path)
    (tmp_path / "share").mkdir()  # the share root: the mount, which the fetch never creates
    src = tmp_path / "src"
    write_tree(src, {"a.mid": b"midi", "b/c.wav": b"wave"})
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['renderlab.jobs.fetch', '--source', sys.argv[1], '--dest', sys.argv[2]]\n"
        "try:\n    runpy.run_module('renderlab.jobs.fetch', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "top = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "print(sorted(top), file=sys.stderr)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, f"file://{src}", str(tmp_path / "share/assets/demo")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["files_transferred"] == 2
    # _sysconfigdata_*: the stdlib's generated sysconfig module (pydantic reads the platform through it).
    imported = {
        m
        for m in ast.literal_eval(res.stderr.strip().splitlines()[-1])
        if not m.startswith("_sysconfigdata_")
    }
    assert imported - {"__main__", "renderlab", "_distutils_hack"} <= IMAGE_PACKAGES


def test_image_file_set_reaches_p4python(tmp_path: Path):
    import socket

    app = image_layout(tmp_path)
    (tmp_path / "share").mkdir()  # the share root: the mount, which the fetch never creates
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "renderlab.jobs.fetch",
            "--retries",
            "0",
            "--quiet",
            "--dest",
            str(tmp_path / "share/assets/demo"),
            "--source",
            f"p4://127.0.0.1:{port}//depot/songs/demo/...@latest",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin", "P4USER": "fetcher", "P4PASSWD": "pw"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 5, res.stderr
    assert "Connect to server failed; check $P4PORT." in res.stderr
