"""Boot the local lab, run the real site.yml twice (the second changes nothing), prove the hosts with the
testinfra suite, and tear everything down whatever happens."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from renderlab.locallab import lab as locallab
from renderlab.locallab.settings import ROOT

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1500)]

FIRST_RUN_BUDGET_S = 600
SECOND_RUN_BUDGET_S = 120


@pytest.fixture(scope="module")
def lab(lab_preflight):
    with locallab.running_lab() as running:
        yield running


@pytest.fixture(scope="module")
def first_run(lab):
    return locallab.run_site(lab, "site-1.log")


def _failed_hosts(run: locallab.PlaybookRun) -> list[str]:
    return [h for h, r in run.recap.items() if r["failed"] or r["unreachable"]]


def test_site_first_run_configures_every_host(lab, first_run, say):
    say(
        f"\nsite.yml first run: {first_run.seconds:.0f} s, changed={first_run.changed} (budget {FIRST_RUN_BUDGET_S} s)"
    )
    assert first_run.rc == 0, f"site.yml failed on {_failed_hosts(first_run)}; see {first_run.log}"
    assert set(first_run.recap) == {m.name for m in lab.machines}
    assert first_run.changed > 0
    assert first_run.seconds <= FIRST_RUN_BUDGET_S


def test_site_second_run_changes_nothing(lab, first_run, say):
    assert first_run.rc == 0
    second = locallab.run_site(lab, "site-2.log")
    changed = {h: r["changed"] for h, r in second.recap.items() if r["changed"]}
    say(
        f"\nsite.yml second run: {second.seconds:.0f} s, changed={second.changed} (budget {SECOND_RUN_BUDGET_S} s)"
    )
    assert second.rc == 0, f"see {second.log}"
    assert changed == {}, f"not idempotent: {changed}; see {second.log}"
    assert second.seconds <= SECOND_RUN_BUDGET_S


def test_testinfra_suite_passes_against_the_lab(lab, first_run, say):
    assert first_run.rc == 0
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"),
        "RENDERLAB_HOST_SECRETS": str(lab.secrets),
    }
    cmd = [
        sys.executable, "-m", "pytest", "tests/hosts", "--hosts=ansible://all",
        f"--ansible-inventory={lab.inventory}", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    say(f"\ntestinfra against the local lab: {summary}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 40
    assert "skipped" not in summary
