"""No arrow runs back up: the ground floor (renderlab/base) imports nothing of the project, and only the
content package itself, the tests, the benchmarks and the code that runs Blender import the content package
(blender_scripts). Derived from the imports each tracked .py file actually makes (parsed with ast), so a new
module or a new import is checked without anyone listing it here.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUND = "renderlab.base"
CONTENT = "blender_scripts"
# Who may import the content package (path prefixes): itself, the tests, the benchmarks (they time Blender),
# and the Job that runs the Blender build in-process (runpy) inside the Blender image.
CONTENT_USERS = ("blender_scripts/", "tests/", "benchmarks/", "renderlab/jobs/build_step.py")
# Calls that import a module named by a string: they count as imports too.
IMPORTING_CALLS = {"import_module", "run_module", "find_spec"}


def tracked_python() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(p for p in out.split() if (ROOT / p).is_file())


def project_packages(files: list[str]) -> set[str]:
    """The project's own top-level names: every top-level folder holding Python, plus `images` (a folder of
    image definitions, never again a package)."""
    return {f.split("/")[0] for f in files if "/" in f} | {"images"}


def module_name(path: str) -> str:
    parts = path[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: str, source: str) -> set[str]:
    """Every module name the file imports: import statements (relative ones resolved), and importlib/runpy
    calls whose module is a string constant."""
    package = module_name(path) if path.endswith("__init__.py") else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            # `from a.b import c`: a.b.c (a module or a name in a.b: either way it lies within a.b)
            found.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if name in IMPORTING_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def arrows() -> list[tuple[str, str]]:
    """(file, imported module) for every import in the tree."""
    return [
        (path, name)
        for path in tracked_python()
        for name in sorted(imports_of(path, (ROOT / path).read_text(encoding="utf-8")))
    ]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def upward_from_ground(pairs: list[tuple[str, str]], project: set[str]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, name in pairs
        if path.startswith(GROUND.replace(".", "/") + "/")
        and name.split(".")[0] in project
        and not _within(name, GROUND)
    ]


def into_content(pairs: list[tuple[str, str]]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, name in pairs
        if _within(name, CONTENT) and not path.startswith(CONTENT_USERS)
    ]


def test_the_ground_floor_imports_nothing_of_the_project():
    pairs = arrows()
    assert any(path.startswith("renderlab/base/") for path, _ in pairs), (
        "no imports seen under renderlab/base"
    )
    bad = upward_from_ground(pairs, project_packages(tracked_python()))
    assert not bad, "renderlab/base must import only the stdlib and third-party libraries:\n" + "\n".join(bad)


def test_only_blender_code_imports_the_content_package():
    pairs = arrows()
    assert any(_within(name, CONTENT) for _, name in pairs), "no import of blender_scripts seen at all"
    bad = into_content(pairs)
    assert not bad, f"only {', '.join(CONTENT_USERS)} may import {CONTENT}:\n" + "\n".join(bad)


def test_the_walk_sees_each_kind_of_bad_arrow():
    """The checks above catch the arrows they name, written in each way Python can write them."""
    project = {"renderlab", "blender_scripts", "infra", "dags", "images"}
    cases = {
        "renderlab/base/x.py": "from renderlab.lab import config\n",
        "renderlab/base/y.py": "import infra.stack\n",
        "renderlab/base/z.py": "from .. import pipeline\n",
        "renderlab/base/w.py": "import importlib\nimportlib.import_module('dags.render')\n",
    }
    pairs = [(p, n) for p, src in cases.items() for n in imports_of(p, src)]
    assert {line.split()[0] for line in upward_from_ground(pairs, project)} == set(cases)
    fine = {"renderlab/base/a.py": "import os\nfrom . import errors\nfrom renderlab import base\n"}
    assert not upward_from_ground([(p, n) for p, src in fine.items() for n in imports_of(p, src)], project)
    content = {
        "renderlab/pipeline/steps.py": "from blender_scripts.presets import PRESETS\n",
        "dags/render.py": "import blender_scripts\n",
        "renderlab/workstation/demo.py": "import runpy\nrunpy.run_module('blender_scripts.look')\n",
        "tests/blender/test_x.py": "from blender_scripts import song\n",
    }
    pairs = [(p, n) for p, src in content.items() for n in imports_of(p, src)]
    assert {line.split()[0] for line in into_content(pairs)} == set(content) - {"tests/blender/test_x.py"}
