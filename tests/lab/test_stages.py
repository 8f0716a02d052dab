"""make lab's stage machinery (renderlab/lab/stages.py): the order, stamps keyed by inputs, a second run that
does nothing, a failed stage that the next run resumes at without redoing the ones before it.

The stages run as targets of a stand-in Makefile that logs each run (the real targets need a PVE, the hosts
and a cluster); `make lab`'s own wiring to the real targets is checked against the repository's Makefile."""

from __future__ import annotations

import io
import re
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
            if "." in path.name or path.name == "kubeconfig":
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
    assert len(re.findall(r"^lab \[\d+/\d+\] \S+ \(.*\): done in \d+ s$", text, re.M)) == len(ran)
    n = len(stages.STAGES)
    assert f"lab [1/{n}] prereqs" in text and f"lab: all {n} stages done" in text
    rc, ran, text = run(lab)
    assert rc == 0 and ran == []
    assert text.count("done (inputs unchanged)") == len(stages.STAGES)


def test_a_failed_stage_is_where_the_next_run_resumes(lab: Path):
    (lab / "fail-lab-hosts").touch()
    rc, ran, text = run(lab)
    assert rc == 1
    assert ran == ["prereqs", "vms", "inventory", "secrets", "known-hosts"]
    assert re.search(
        r"hosts \(site.yml on every VM\): failed \(exit 2\) after \d+ s; fix it and run `make lab` again",
        text,
    )
    (lab / "fail-lab-hosts").unlink()
    rc, ran, text = run(lab)
    assert rc == 0, text
    assert ran == ["hosts", "cluster", "images", "rollout", "airflow", "depot"]  # the VMs not redone


def test_a_changed_input_reruns_its_stage_and_those_after(lab: Path):
    run(lab)
    (lab / "depot" / "songs" / "input.txt").write_text("a new song\n")
    assert run(lab)[1] == ["depot"]
    (lab / "Pulumi.lab.yaml").write_text("changed\n")
    assert run(lab)[1] == [s.name for s in stages.STAGES]


def test_from_reruns_that_stage_and_every_one_after_it(lab: Path):
    """FROM= is "from here on" (a stage's rerun can change what the ones after it act on: a site.yml run
    refetches the kubeconfig the cluster stage hands on); it used to rerun that one stage only."""
    run(lab)
    names = [s.name for s in stages.STAGES]
    assert run(lab, start="images")[1] == names[names.index("images") :]
    assert run(lab)[1] == []
    rc, _, _ = run(lab, start="nosuch")
    assert rc == 2


STACK = """\
config:
  renderlab:lab:
    name: lab
"""


def test_the_kubeconfig_secret_the_cluster_stage_sets_redoes_nothing_before_it(lab: Path):
    stack = lab / "Pulumi.lab.yaml"
    stack.write_text(STACK)
    run(lab)
    # What `pulumi config set --secret renderlab:kubeconfig` leaves (its ciphertext, the file rewritten).
    stack.write_text(STACK + "  renderlab:kubeconfig:\n    secure: v1:AAAA\n")
    assert run(lab)[1] == []
    # A new kubeconfig (the cluster was rebuilt) reruns the cluster stage and the ones after it.
    (lab / "kubeconfig").write_text("another cluster\n")
    assert run(lab)[1] == ["cluster", "images", "rollout", "airflow", "depot"]
    # Any other change to the stack file reruns everything.
    stack.write_text(
        STACK.replace("name: lab", "name: lab2") + "  renderlab:kubeconfig:\n    secure: v1:AAAA\n"
    )
    assert run(lab)[1] == [s.name for s in stages.STAGES]


def test_what_git_ignores_in_a_folder_input_redoes_nothing(lab: Path):
    """The inventory the rollout stage writes lands in ansible/ (git-ignored): the hosts stage is not redone."""
    subprocess.run(["git", "init", "-q", str(lab)], check=True)
    (lab / ".gitignore").write_text("ansible/inventory/generated-*.yml\nran.log\n")
    (lab / "ansible" / "inventory").mkdir()
    run(lab)
    (lab / "ansible" / "inventory" / "generated-lab.yml").write_text("all: {}\n")
    assert run(lab)[1] == []
    (lab / "ansible" / "site.yml").write_text("- hosts: all\n")  # a new, not ignored file: an input
    assert run(lab)[1][0] == "hosts"


def test_every_stage_is_a_target_of_the_makefile():
    missing = []
    for stage in stages.STAGES:
        probe = subprocess.run(
            ["make", "-n", stage.target, "STACK=lab"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if "No rule to make target" in probe.stderr:
            missing.append(stage.target)
    assert missing == []


def test_a_stack_file_that_is_an_alias_bomb_is_hashed_as_bytes_not_expanded(lab: Path):
    levels = ["config:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (lab / "Pulumi.lab.yaml").write_text("\n".join(levels) + "\n")
    rc, ran, _ = run(lab)  # 10**9 nodes if expanded: this would not return
    assert rc == 0 and ran == [s.name for s in stages.STAGES]


def test_to_stops_after_that_stage_and_the_next_run_goes_on(lab: Path):
    out = io.StringIO()
    make = ["make", "--no-print-directory", "-s"]
    assert stages.run("lab", None, make, root=lab, out=out, stop="known-hosts") == 0
    names = [s.name for s in stages.STAGES]
    assert (lab / "ran.log").read_text().split()[::2] == names[: names.index("known-hosts") + 1]
    assert "lab: stages 1-5 of 11 done for stack lab (through known-hosts)" in out.getvalue()
    rc, ran, _ = run(lab)
    assert rc == 0 and ran == names[names.index("known-hosts") + 1 :]


@pytest.mark.parametrize(("start", "stop"), [(None, "nope"), ("nope", None), ("cluster", "hosts")])
def test_a_wrong_from_or_to_is_one_error(lab: Path, capsys, start, stop):
    assert stages.run("lab", start, ["make", "-s"], root=lab, out=io.StringIO(), stop=stop) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("no such stage" in err or "comes before" in err)
    assert not (lab / "ran.log").exists()


def test_make_lab_applies_unattended_and_a_stage_alone_asks():
    """`make lab` passes YES=1 to its stages (a `pulumi up` inside a chain of stages cannot stop at a prompt:
    without a terminal it fails with "--yes or --skip-preview ... must be passed"); a target run alone asks."""

    def up_line(*args: str) -> str:
        dry = subprocess.run(
            ["make", "-n", "lab-up", "STACK=lab", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        (line,) = [part for part in dry.split(";") if '" up ' in part]
        return line

    assert " up --yes --stack lab" in up_line("YES=1")
    assert "--yes" not in up_line()


def test_the_stages_run_with_yes(lab: Path):
    (lab / "Makefile").write_text(
        "".join(f"{s.target}:\n\t@echo {s.name} $(YES) >> ran.log\n" for s in stages.STAGES)
    )
    assert stages.run("lab", None, ["make", "-s"], root=lab, out=io.StringIO()) == 0
    assert {line.split()[1] for line in (lab / "ran.log").read_text().splitlines()} == {"1"}


def test_the_images_stage_always_pushes():
    """`make images` pushes only when the lab registry answers; inside `make lab` an image left unpushed would
    make the rollout wait on a pull that never succeeds, so the stage pushes always (and fails if it cannot)."""

    def dry(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target, "STACK=lab", "LAB_SECRETS=/nonexistent"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    assert "--push always" in dry("lab-images")
    assert "--push auto" in dry("images")


def test_the_secrets_stage_finds_the_pulumi_cli_the_other_stages_use():
    """The VMs stage runs the CLI on PATH, else the one `make tools` built; the secrets stage ran `pulumi` by
    name only and stopped with "not on PATH" right after a VMs stage that had worked."""
    built = subprocess.run(
        ["make", "-s", "print-PULUMI_BIN"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    dry = subprocess.run(
        ["make", "-n", "lab-secrets", "STACK=lab"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert f'PATH="$PATH:{built.strip()}"' in dry
