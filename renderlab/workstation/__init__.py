"""Tools run on the workstation only: the image builder, `make demo`, the systemd-nspawn test lab."""
