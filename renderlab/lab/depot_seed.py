"""Seed a depot with the bundled song projects (depot/songs/<project>/), so a fresh lab has something to render.

A file:// depot (the local backend, `make demo`, the tests) is seeded here: each project copied file by file
under a temp name and renamed, a file already equal left alone, so a second seed changes nothing. The lab's
Perforce depot is seeded by the perforce role (ansible/roles/perforce/tasks/seed.yml): the artist user, the
seed workspace, one changelist of these same files, skipped once the depot holds them.

    python -m renderlab.lab.depot_seed DEST     # DEST: the folder a file:// depot URL names
"""

from __future__ import annotations

import filecmp
import os
import sys
from pathlib import Path

from renderlab.base import cli
from renderlab.pipeline.depot_songs import DEFAULT_SONG

BUNDLED = Path(__file__).resolve().parents[2] / "depot" / "songs"


class SeedError(Exception):
    pass


def bundled(source: Path = BUNDLED) -> dict[str, list[Path]]:
    """project -> its files (relative), for every bundled project with a song.mid."""
    projects = {}
    for project in sorted(p for p in source.iterdir() if (p / "song.mid").is_file()):
        projects[project.name] = sorted(f.relative_to(project) for f in project.rglob("*") if f.is_file())
    if DEFAULT_SONG not in projects:
        raise SeedError(f"the default song {DEFAULT_SONG!r} is not among the bundled projects in {source}")
    return projects


def seed_file(dest: Path, source: Path = BUNDLED) -> list[str]:
    """Copy the bundled projects into `dest`; returns the files written (empty on a second seed)."""
    if dest.exists() and not dest.is_dir():
        raise SeedError(f"{dest} is not a folder; pass the folder a file:// depot URL names")
    written = []
    for project, files in bundled(source).items():
        for rel in files:
            src, out = source / project / rel, dest / project / rel
            if out.is_symlink():
                raise SeedError(f"{out} is a symbolic link; remove it (the seed never writes through links)")
            if out.is_file() and filecmp.cmp(src, out, shallow=False):
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.seed-tmp")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, out)
            written.append(f"{project}/{rel}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m renderlab.lab.depot_seed", description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="the folder a file:// depot URL names")
    args = parser.parse_args(argv)
    try:
        written = seed_file(args.dest)
    except (SeedError, OSError) as e:
        print(f"depot_seed: error: {e}", file=sys.stderr)
        return 1
    print(f"depot_seed: {args.dest}: {len(written)} file(s) written; default song {DEFAULT_SONG}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("depot_seed", main))
