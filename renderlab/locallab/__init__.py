"""The local lab: one `systemd-nspawn -b` Debian 12 host per inventory host, on a private bridge with NAT.

`python -m renderlab.locallab up|down|status` (`make lab-local` / `make lab-local-down`). Tests use
`renderlab.locallab.lab.running_lab()`, which always tears the lab down, also when a test fails.
"""
