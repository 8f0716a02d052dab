"""Every command-line entry point in the repository, walked over hostile and careless input.

For each: no Python traceback, exactly one line on stderr, and an exit status the command documents --
never 0 and never 70 (70 is the "internal error" every entry point keeps for what it did not foresee: a
bug, which this test is here to find). The list of entry points is checked against the repository, so a
new `__main__` cannot slip past it.
"""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD_UTF8 = os.fsdecode(b"/tmp/renderlab-\xff\xfe-nonexistent")


def _files(tmp: Path) -> dict[str, str]:
    """Hostile files and paths, by name."""
    made = {
        "garbage": (b"\x00\xff" * 300, "garbage.bin"),
        "empty": (b"", "empty.yaml"),
        "non-utf8": (b"config:\n  renderlab:x: \xff\xfe\n", "latin.yaml"),
        "bomb": (None, "bomb.yaml"),
    }
    out = {}
    for name, (data, fname) in made.items():
        path = tmp / fname
        if data is None:
            lines = ["config:", "  renderlab:a0: &a0 [x, x, x, x, x, x, x, x, x]"]
            lines += [
                f"  renderlab:a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
            ]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_bytes(data)
        out[name] = str(path)
    folder = tmp / "a-folder"
    folder.mkdir()
    out["folder"] = str(folder)
    out["missing"] = str(tmp / "does-not-exist.yaml")
    out["proc"] = "/proc/renderlab-hostile/out"
    out["bad-utf8"] = BAD_UTF8
    # Outputs that are not regular files: a link to a file that must survive, and a FIFO.
    (tmp / "victim.txt").write_text("keep me")
    (tmp / "link.out").symlink_to(tmp / "victim.txt")
    out["link"] = str(tmp / "link.out")
    os.mkfifo(tmp / "fifo.out")
    out["fifo"] = str(tmp / "fifo.out")
    return out


def _outputs_untouched(tmp: Path) -> None:
    assert (tmp / "link.out").is_symlink() and (tmp / "victim.txt").read_text() == "keep me"
    assert stat.S_ISFIFO(os.lstat(tmp / "fifo.out").st_mode)


# module -> (exit statuses it documents for failures, argument lists built from the hostile files)
def _cases(f: dict[str, str]) -> dict[str, tuple[set[int], list[list[str]]]]:
    config_cases = [[], ["--bogus"], [f["missing"]], [f["garbage"]], [f["empty"]], [f["non-utf8"]],
                    [f["bomb"]], [f["folder"]], [f["bad-utf8"]]]  # fmt: skip
    return {
        "renderlab.lab.check_config": ({1, 2}, [*config_cases, [f["missing"], "--max-yaml-nodes", "-3"]]),
        "renderlab.lab.inventory": (
            {1, 2},
            [
                [f["garbage"], "-o", f["proc"]],
                [f["bomb"], "-o", "x"],
                ["Pulumi.example.yaml", "-o", f["proc"]],
                ["Pulumi.example.yaml"],
                [str(ROOT / "Pulumi.example.yaml"), "-o", f["link"]],
                [str(ROOT / "Pulumi.example.yaml"), "-o", f["fifo"]],
            ],
        ),
        "infra.manifests": ({1, 2}, [[f["non-utf8"], f["proc"]], [f["bomb"], "out"], []]),
        "renderlab.lab.host_secrets": (
            {1, 2},
            [
                ["generate", "-o", f["proc"]],
                ["generate"],
                ["explode"],
                ["generate", "-o", f["link"]],
                ["generate", "-o", f["fifo"]],
                # The secrets file read back: garbage, not UTF-8, an alias bomb, a folder.
                ["rotate", "renderlab_share_password", "-f", f["garbage"]],
                ["rotate", "renderlab_share_password", "-f", f["non-utf8"]],
                ["rotate", "renderlab_share_password", "-f", f["bomb"]],
                ["retire-fernet", "-f", f["folder"]],
            ],
        ),  # fmt: skip
        # ensure reads its JSON on stdin (empty here: refused with the shape it wants).
        "renderlab.lab.lab_ca": (
            {1, 2},
            [
                ["ca-cert", "-f", f["garbage"]],
                ["ca-cert", "-f", f["missing"]],
                ["ca-cert", "-f", f["bomb"]],
                ["ca-cert", "-f", f["non-utf8"]],
                ["ensure", "--name", "airflow"],
                ["ensure"],
                ["bogus"],
            ],
        ),  # fmt: skip
        # Only argument errors for the passphrase: `ensure` would create the user's own passphrase file.
        "renderlab.lab.passphrase": ({2}, [["bogus"], []]),
        "renderlab.lab.known_hosts": ({1, 2}, [["record", f["garbage"]], ["record", f["bomb"]], ["forget"]]),
        "renderlab.lab.depot_seed": ({1, 2}, [[f["garbage"]], [f["proc"]], []]),
        "renderlab.workstation.prereqs": ({1, 2}, [[f["garbage"]], [f["bomb"]], [f["missing"]], []]),
        "renderlab.lab.stages": ({2}, [["run", "--from", "nosuch"], ["explode"], []]),
        # The kubeconfig the hosts stage fetched: never handed on unless it is a private, sane kubeconfig.
        "renderlab.lab.kubeconfig_secret": (
            {1, 2},
            [
                ["--kubeconfig", f[name], "--pulumi", "/nonexistent/pulumi"]
                for name in ("garbage", "missing", "bomb", "non-utf8", "folder", "fifo", "link", "proc")
            ]
            + [[]],
        ),
        "renderlab.workstation.images": ({1, 2}, [["bogus"], ["tags", "--only", "nope"]]),
        "renderlab.workstation.nspawn_lab": ({1, 2}, [["sideways"], []]),
        "renderlab.jobs.validate": (
            {1, 2, 3},
            [
                ["--spec", "{not json", "--out", "r.json"],
                ["--spec", "[]", "--out", "r.json"],
                ["--spec", '{"variants": {"main": {"frames": 1}}}', "--out", "r.json"],
                [
                    "--spec",
                    '{"variants": {"main": {"frames": "f", "first": 0, "last": 1e12, "fps": 0, "video": "v"}}}',
                    "--out",
                    "r.json",
                ],
                ["--spec", '{"variants": {}}', "--out", f["proc"]],
                ["--spec", '{"variants": {}}', "--out", f["link"]],
                ["--spec", '{"variants": {}}', "--out", f["fifo"]],
            ],
        ),
        "renderlab.jobs.assemble": (
            {1, 2},
            [
                ["--frames", f["folder"], "--first", "1", "--last", "5", "--fps", "0", "--out", "v.mp4"],
                [
                    "--frames",
                    f["folder"],
                    "--first",
                    "0",
                    "--last",
                    "999999999999",
                    "--fps",
                    "30",
                    "--out",
                    "v.mp4",
                ],
                ["--frames", f["bad-utf8"], "--first", "1", "--last", "2", "--fps", "30", "--out", "v.mp4"],
                ["--frames", f["folder"], "--first", "x", "--last", "2", "--fps", "30", "--out", "v.mp4"],
            ],
        ),
        "renderlab.jobs.build_step": (
            {1, 2, 3},
            [
                ["--project", f["folder"], "--out", "o", "--fps", "60"],
                ["--project", f["bad-utf8"], "--out", "o", "--fps", "x"],
            ],
        ),
        "renderlab.workstation.demo": (
            {1, 2},
            [
                ["--frames", "lots"],
                ["--song", "..."],
                ["--fps", "0"],
                ["--bogus"],
                ["--song", "nope", "--airflow-home", f["proc"]],
            ],
        ),
        "renderlab.jobs.fetch": (
            {2, 3, 4, 5, 6},
            [
                [],
                ["--source", "ftp://x", "--dest", "d"],
                ["--source", f"file://{f['bad-utf8']}", "--dest", "d"],
                ["--source", "p4://h:1666//depot/.../...@1", "--dest", "d"],
                ["--source", f"file://{f['folder']}", "--dest", f["proc"]],
                ["--source", "file:///etc", "--dest", "/tmp/x/assets/..."],
                ["--source", "p4://h:1//d/x/...@1", "--dest", "d", "--retry-deadline", "nan"],
            ],
        ),
        "blender_scripts.build": (
            {2, 3},
            [
                [],
                ["--midi", f["garbage"], "--out", "o"],
                ["--midi", f["folder"], "--out", "o"],
                ["--midi", f["bad-utf8"], "--out", "o"],
                ["--midi", f["empty"], "--out", "o"],
                ["--midi", f["garbage"], "--out", "o", "--fps", "nine"],
                ["--midi", f["garbage"], "--out", f["garbage"]],
            ],
        ),
        "blender_scripts.render": (
            {2, 3},
            [
                [],
                ["--blend", f["missing"], "--frames", "1-2", "--out", "o"],
                ["--blend", f["garbage"], "--frames", "9-1", "--out", "o"],
                ["--blend", f["garbage"], "--frames", "1-2", "--out", f["proc"]],
                ["--blend", f["garbage"], "--frames", "1-2", "--out", f["garbage"]],
                ["--blend", f["garbage"], "--frames", "x", "--out", "o"],
            ],
        ),
        "blender_scripts.demo_songs": ({2, 3}, [["--depot", f["proc"]], ["--bogus"]]),
        "blender_scripts.look": (
            {2},
            [
                [],
                ["--blend", f["missing"], "--out", "x.png"],
                ["--blend", f["garbage"], "--out", "x.png", "--positions", "2"],
                ["--blend", f["garbage"], "--out", "x.txt"],
                ["--bogus"],
                ["--blend", f["garbage"], "--out", f["link"]],
            ],
        ),
        "renderlab.jobs.gallery": (
            {1, 2},
            [
                [],
                ["--run", f["folder"], "--out", f["proc"], "--meta", "{not json"],
                ["--run", f["folder"], "--out", f["proc"]],
                ["--run", f["missing"], "--out", "g", "--meta", "[]"],
                ["--run", f["bad-utf8"], "--out", "g"],
            ],
        ),
        "renderlab.lab.reference": (
            {1, 2},
            [["--bogus"], [f["missing"]], [f["folder"]], [f["garbage"]], [f["non-utf8"]], [f["bad-utf8"]]],
        ),
        "renderlab.workstation.docs_server": (
            {1, 2},
            [
                ["--port", "x"],
                ["--site", f["missing"], "--port", "0"],
                ["--site", f["bad-utf8"], "--port", "0"],
            ],
        ),
        "renderlab.workstation.local_airflow": (
            {1, 2},
            [[], ["sideways"], ["start", "--port", "x"], ["start", "--port", "0", "--share", f["proc"]]],
        ),
        "renderlab.workstation.trigger": ({2}, [["--samples", "x"], ["--bogus"], ["--frames", "lots"]]),
        "renderlab.workstation.backup": (
            {1, 2},
            [
                [],
                ["backup", "--repo", f["folder"]],
                ["backup", "--repo", f["folder"], "--file", f["missing"]],
                ["backup", "--repo", f["proc"], "--password-file", f["proc"], "--file", f["garbage"]],
                ["restore", "--repo", f["folder"], "--password-file", f["missing"], "--target", f["folder"]],
                ["restore", "--repo", f["folder"], "--password-file", f["garbage"], "--target", f["folder"]],
            ],
        ),
        "renderlab.workstation.k8s_artifacts": (
            {1, 2},
            [["--config", f["garbage"]], ["--config", f["missing"]], ["--config", f["bomb"]], ["--bogus"]],
        ),
        "renderlab.workstation.real_midi": (
            {1, 2},
            [["--only", "no_such_song"], ["--bogus"], ["--dest", f["garbage"]], ["--dest", f["link"]]],
        ),
        "renderlab.workstation.k8s_vulncheck": (
            {1, 2},
            [["--config", f["garbage"]], ["--config", f["missing"]], ["--config", f["bomb"]], ["--bogus"]],
        ),
    }


# Entry points that are not user commands, and why they are not walked.
NOT_WALKED = {
    "infra/__main__.py": "the Pulumi program: Pulumi runs it, with its own engine protocol on stdin/stdout",
    "infra/program.py": "the Pulumi program's body (infra/__main__.py)",
    "renderlab/jobs/fetch/__init__.py": "the package; `python -m renderlab.jobs.fetch` is walked",
    "renderlab/workstation/nspawn_lab/__main__.py": "walked as renderlab.workstation.nspawn_lab",
}


def _entry_points() -> set[str]:
    found = set()
    for path in ROOT.glob("*/**/*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".venv/", "tests/", "benchmarks/", ".cache/", "build/")):
            continue
        if (
            re.search(r'^if __name__ == "__main__":', path.read_text(encoding="utf-8"), re.M)
            or path.name == "__main__.py"
        ):
            found.add(rel)
    return found


def test_every_entry_point_is_walked_or_says_why_not(tmp_path: Path):
    modules = list(_cases(_files(tmp_path)))
    walked = {m.replace(".", "/") + ".py" for m in modules} | {
        m.replace(".", "/") + "/__main__.py" for m in modules
    }
    missing = _entry_points() - walked - set(NOT_WALKED)
    assert not missing, f"entry points with no hostile-input cases here: {sorted(missing)}"


def _on_the_kit(source: str) -> bool:
    """Whether a module's entry point runs on the one CLI kit: `@cli.command(...)` on a function, or a
    `cli.run_job(...)` call (renderlab/base/cli.py)."""
    for node in ast.walk(ast.parse(source)):
        calls = [d for d in getattr(node, "decorator_list", []) if isinstance(d, ast.Call)]
        if isinstance(node, ast.Call):
            calls.append(node)
        for call in calls:
            f = call.func
            on_cli = isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "cli"
            if on_cli and f.attr in ("command", "run_job"):
                return True
    return False


def test_every_entry_point_runs_on_the_one_cli_kit():
    walked = _entry_points() - set(NOT_WALKED)
    assert walked, "no entry points found"
    off = sorted(rel for rel in walked if not _on_the_kit((ROOT / rel).read_text(encoding="utf-8")))
    assert not off, f"entry points with their own error handling instead of renderlab.base.cli: {off}"
    assert not _on_the_kit("import argparse\ndef main():\n    argparse.ArgumentParser().parse_args()\n")


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RENDERLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
    )


def _assert_one_line(proc: subprocess.CompletedProcess, allowed: set[int], what: str) -> None:
    err = proc.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in err, f"{what}: traceback\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: {len(lines)} stderr lines\n{err[-3000:]}"
    assert proc.returncode in allowed, f"{what}: exit {proc.returncode} not in {sorted(allowed)}: {lines}"


CASES = _cases(
    {
        k: k
        for k in (
            "garbage",
            "empty",
            "non-utf8",
            "bomb",
            "folder",
            "missing",
            "proc",
            "bad-utf8",
            "link",
            "fifo",
        )
    }
)
PARAMS = [(m, i) for m, (_, arg_sets) in CASES.items() for i in range(len(arg_sets))]


@pytest.mark.parametrize(("module", "index"), PARAMS, ids=[f"{m}-{i}" for m, i in PARAMS])
def test_hostile_input_is_one_line_and_a_documented_exit(tmp_path: Path, module: str, index: int):
    allowed, arg_sets = _cases(_files(tmp_path))[module]
    args = arg_sets[index]
    proc = _run(["-m", module, *args], cwd=tmp_path)
    _assert_one_line(proc, allowed, f"python -m {module} {args!r}")
    _outputs_untouched(tmp_path)
