#!/usr/bin/env bash
# Install the Debian packages listed in the given files, only those not installed yet (idempotent).
set -euo pipefail
want=()
for f in "$@"; do
  while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
  done <"$f"
done
if [[ ${#want[@]} -eq 0 ]]; then
  echo "apt: all packages present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "apt: missing packages: ${want[*]}; run 'sudo make apt' (installing them needs root)" >&2
  exit 1
fi
echo "apt: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages with a service (nginx-light) must not start it on install: the project starts what it needs itself.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
