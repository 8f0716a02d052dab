"""The perforce role seeds the depot (tasks/seed.yml): no p4d can run here, so this checks the tasks' shape:
the artist user in the writers group, the seed workspace over the projects path, one submit of the bundled
songs (which hold the default song), skipped once the projects path has files, every command from the role's
own variables. The same songs seeded into a file:// depot render in tests/pipeline/test_default_song.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from renderlab.pipeline.depot_songs import DEFAULT_SONG

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "perforce"


def tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def flat(items: list[dict]) -> list[dict]:
    out = []
    for t in items:
        out.append(t)
        out.extend(flat(t.get("block", [])))
    return out


def test_the_role_ends_by_seeding():
    assert tasks("main.yml")[-1]["ansible.builtin.import_tasks"] == "seed.yml"


def test_seed_creates_the_artist_the_workspace_and_submits_the_bundled_songs_once():
    seed = flat(tasks("seed.yml"))
    text = (ROLE / "tasks" / "seed.yml").read_text()
    assert "user -o {{ perforce_artist_user | quote }}" in text and "user -i -f" in text
    assert "group -i" in text and "perforce_writers_group" in text
    assert "client -i" in text and "{{ perforce_projects_path | quote }}" in text
    assert "reconcile -a" in text and "submit" in text
    (block,) = [t for t in seed if "block" in t]
    assert block["when"] == "perforce_seeded.stdout_lines | length == 0"  # never over an artist's work
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    songs = Path(defaults["perforce_seed_songs_dir"].replace("{{ playbook_dir }}", str(ROLE.parents[1])))
    assert (songs / DEFAULT_SONG / "song.mid").is_file()
