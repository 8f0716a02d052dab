"""Time the hosts layer on a fresh local lab: lab boot, site.yml first run, second run (must be changed=0).

    sudo .venv/bin/python benchmarks/lab_bench.py      (or: make lab-bench)

Budgets (the hosts layer's targets): first run <= 600 s, second run <= 120 s with changed=0. The lab is torn down at the end.
"""

from __future__ import annotations

import sys
import time

from renderlab.workstation.nspawn_lab import lifecycle
from renderlab.workstation.nspawn_lab.options import LabError

FIRST_BUDGET_S, SECOND_BUDGET_S = 600, 120


def main() -> int:
    try:
        lifecycle.preflight()
        t0 = time.monotonic()
        with lifecycle.running_lab() as lab:
            boot_s = time.monotonic() - t0
            first = lifecycle.run_site(lab, "bench-site-1.log")
            # Hosts stopped at an unreachable vendor download (p4d) are reported, not failures.
            second = lifecycle.run_site(lab, "bench-site-2.log") if not first.real_failures else None
    except LabError as e:
        print(f"lab_bench: {e}", file=sys.stderr)
        return 1
    hosts = len(first.recap)
    print(f"lab boot ({hosts} hosts, rootfs cached or built): {boot_s:7.1f} s")
    print(
        f"site.yml first run : {first.seconds:7.1f} s  changed={first.changed:3d}  rc={first.rc}  (budget {FIRST_BUDGET_S} s)"
    )
    if first.vendor_blocked:
        print(f"  blocked at a vendor download (no artifacts): {', '.join(first.vendor_blocked)}")
    if second is None:
        print(
            f"first run failed on {sorted(first.real_failures)}; see {first.log} (kept in {lab.settings.prefix}-last-logs)"
        )
        print(first.why())
        return 1
    print(
        f"site.yml second run: {second.seconds:7.1f} s  changed={second.changed:3d}  rc={second.rc}  (budget {SECOND_BUDGET_S} s)"
    )
    print(f"second/first ratio : {second.seconds / first.seconds:7.2f}")
    ok = first.seconds <= FIRST_BUDGET_S and second.seconds <= SECOND_BUDGET_S and second.changed == 0
    print("within budget" if ok else "OVER BUDGET or not idempotent")
    return 0 if ok and not second.real_failures else 1


if __name__ == "__main__":
    sys.exit(main())
