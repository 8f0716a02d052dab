"""Time the airflow role alone on a fresh local lab: its first run and its second run (must be changed=0),
side by side in one run. The other plays run first, untimed, so the role starts from a configured host.

    .venv/bin/python benchmarks/airflow_role_bench.py   (root; lab env: RENDERLAB_LAB_BRIDGE/_SUBNET/_PREFIX)

The lab is torn down at the end, also on failure.
"""

from __future__ import annotations

import sys
import time

from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError


def main() -> int:
    try:
        lifecycle.preflight()
        t0 = time.monotonic()
        with lifecycle.running_lab() as lab:
            boot_s = time.monotonic() - t0
            base = lifecycle.run_site(lab, "bench-airflow-base.log", ["--skip-tags", "airflow"])
            first = lifecycle.run_site(lab, "bench-airflow-1.log", ["--tags", "airflow"])
            second = lifecycle.run_site(lab, "bench-airflow-2.log", ["--tags", "airflow"])
    except LabError as e:
        print(f"airflow_role_bench: {e}", file=sys.stderr)
        return 1
    hosts = [h for h in first.recap if first.recap[h]["ok"] > 5]  # the Airflow host(s) did the work
    print(f"lab boot                          : {boot_s:7.1f} s")
    print(f"site.yml --skip-tags airflow      : {base.seconds:7.1f} s  (setup, not timed for the role)")
    for label, run in (("airflow role, first run ", first), ("airflow role, second run", second)):
        changed = sum(run.recap[h]["changed"] for h in hosts)
        failed = sum(run.recap[h]["failed"] for h in hosts)
        print(
            f"{label}          : {run.seconds:7.1f} s  changed={changed:3d}  failed={failed}  ({run.log.name})"
        )
    print(f"second/first ratio                : {second.seconds / first.seconds:7.2f}")
    ok = all(first.recap[h]["failed"] == 0 and second.recap[h]["changed"] == 0 for h in hosts) and hosts
    print("idempotent" if ok else "NOT idempotent or failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
