"""Read the primary-key fingerprints out of `gpg --show-keys --with-colons` (GnuPG's DETAILS format: a "pub"
record starts a key; the first "fpr" record after it is that key's fingerprint, field 10)."""

from __future__ import annotations


def perforce_primary_fingerprints(lines) -> list[str]:
    found, want = [], False
    for line in lines:
        fields = str(line).split(":")
        if fields[0] in ("pub", "sec"):
            want = True
        elif fields[0] in ("sub", "ssb"):
            want = False
        elif fields[0] == "fpr" and want and len(fields) > 9:
            found.append(fields[9].upper())
            want = False
    return found


class FilterModule:
    def filters(self):
        return {"perforce_primary_fingerprints": perforce_primary_fingerprints}
