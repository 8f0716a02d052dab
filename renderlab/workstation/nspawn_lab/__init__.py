"""The local lab: one `systemd-nspawn -b` Debian 12 host per inventory host, on a private bridge with NAT.

`python -m renderlab.workstation.nspawn_lab up|down|status` (`make lab-local` / `make lab-local-down`). Tests use
`renderlab.workstation.nspawn_lab.lifecycle.running_lab()`, which always tears the lab down, also when a test fails.
"""
