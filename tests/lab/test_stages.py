"""make lab's stage machinery (renderlab/lab/stages.py): the order, stamps keyed by inputs, a second run that
does nothing, a failed stage that the next run resumes at without redoing the ones before it.

The stages run as targets of a stand-in Makefile that logs each run (the real targets need a PVE, the hosts
and a cluster); `make lab`'s own wiring to the real targets is checked against the repository's Makefile."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from renderlab.lab import stages

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A root with the stages' inputs and a Makefile whose every stage target logs its name; a target fails
    while a file named fail-<target> exists."""
    for stage in stages.STAGES:
        for name in stage.inputs:
            path = tmp_path / name.format(stack="lab")
            if "." in path.name:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{name}\n")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "input.txt").write_text(f"{name}\n")
    rules = "".join(
        f"{s.target}:\n\t@test ! -e fail-{s.target}\n\t@echo {s.name} $(STACK) >> ran.log\n"
        for s in stages.STAGES
    )
    phony = ".PHONY: " + " ".join(s.target for s in stages.STAGES) + "\n"  # `images` is also a folder
    (tmp_path / "Makefile").write_text(phony + rules)
    return tmp_path


def run(lab: Path, start: str | None = None) -> tuple[int, list[str], str]:
    out = io.StringIO()
    log = lab / "ran.log"
    before = log.read_text().splitlines() if log.exists() else []
    rc = stages.run("lab", start, ["make", "--no-print-directory", "-s"], root=lab, out=out)
    after = log.read_text().splitlines() if log.exists() else []
    return rc, [line.split()[0] for line in after[len(before) :]], out.getvalue()


def test_all_stages_in_order_then_a_second_run_does_nothing(lab: Path):
    rc, ran, text = run(lab)
    assert rc == 0, text
    assert ran == [s.name for s in stages.STAGES]
    assert "lab [1/10] prereqs" in text and "lab: all 10 stages done" in text
    rc, ran, text = run(lab)
    assert rc == 0 and ran == []
    assert text.count("done (inputs unchanged)") == len(stages.STAGES)


def test_a_failed_stage_is_where_the_next_run_resumes(lab: Path):
    (lab / "fail-lab-hosts").touch()
    rc, ran, text = run(lab)
    assert rc == 1
    assert ran == ["prereqs", "vms", "inventory", "secrets", "known-hosts"]
    assert "hosts (site.yml on every VM): failed (exit 2); fix it and run `make lab` again" in text
    (lab / "fail-lab-hosts").unlink()
    rc, ran, text = run(lab)
    assert rc == 0, text
    assert ran == ["hosts", "cluster", "images", "airflow-connection", "depot"]  # the VMs not redone


def test_a_changed_input_reruns_its_stage_and_those_after(lab: Path):
    run(lab)
    (lab / "depot" / "songs" / "input.txt").write_text("a new song\n")
    assert run(lab)[1] == ["depot"]
    (lab / "Pulumi.lab.yaml").write_text("changed\n")
    assert run(lab)[1] == [s.name for s in stages.STAGES]


def test_from_reruns_a_stage_that_is_done(lab: Path):
    run(lab)
    assert run(lab, start="images")[1] == ["images"]
    rc, _, _ = run(lab, start="nosuch")
    assert rc == 2


def test_a_stage_whose_target_is_not_there_yet_stops_the_run_and_says_so(lab: Path):
    text = (lab / "Makefile").read_text()
    (lab / "Makefile").write_text(text.replace("cluster:\n", "not-cluster-yet:\n").replace(" cluster ", " "))
    rc, ran, out = run(lab)
    assert rc == 3 and ran[-1] == "hosts"
    assert "`make cluster` is not on this branch yet (issue 26)" in out


def test_every_stage_but_the_pending_ones_is_a_target_of_the_makefile():
    missing = []
    for stage in stages.STAGES:
        probe = subprocess.run(
            ["make", "-n", stage.target, "STACK=lab"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if "No rule to make target" in probe.stderr and not stage.pending:
            missing.append(stage.target)
    assert missing == []
