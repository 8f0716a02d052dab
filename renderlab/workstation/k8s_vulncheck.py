"""`make k8s-vulncheck`: govulncheck, built from its Go module, over every binary `make k8s-artifacts` built.

govulncheck reads its database from its own host first; where that cannot be reached (this project's machines
reach only the package registries), it reads the same database as a Go module: golang.org/x/vulndb's
data/osv (one OSV file per Go vulnerability; govulncheck takes a directory of them with -db file://...),
downloaded through the Go module proxy at the version pinned below and checked against the checksum database.

Binary mode: what each binary links, module versions and the symbols of the vulnerable functions, so a finding
is a vulnerable function the binary contains. The summary (every finding with its module, found and fixed
versions) goes to <artifacts>.parts/vulncheck.json and one line per finding to stdout;
docs/building.md ("Vulnerabilities in the cluster binaries") says why what remains does not apply.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from renderlab.base import atomic, cli
from renderlab.lab.config import ConfigError, load
from renderlab.workstation import k8s_artifacts, k8s_go
from renderlab.workstation.k8s_go import GoBuildError, GoModule

VULN = GoModule(
    "vuln",
    "golang.org/x/vuln",
    "v1.10.0",
    {"govulncheck": "golang.org/x/vuln/cmd/govulncheck"},
    lambda _c, _d: [],
)
# The database as a Go module (its commit of 2026-11-05); raise it with `go list -m golang.org/x/vulndb@latest`.
VULNDB = ("golang.org/x/vulndb", "v0.0.0-20261105234957-e22db6528018")
DEFAULT_DB = "https://vuln.go.dev"


class VulncheckError(Exception):
    pass


def govulncheck(env=None, log=print) -> Path:
    out = k8s_go.tools_cache(env) / f"govulncheck-{VULN.version}"
    k8s_go.build([VULN], out, log, env)
    return out / "govulncheck"


def vulndb(env=None) -> Path:
    genv = k8s_go.go_env(env)
    proc = subprocess.run(
        ["go", "mod", "download", "-json", "@".join(VULNDB)],
        cwd=VULN.dir,
        capture_output=True,
        text=True,
        env=genv,
        check=False,
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or info.get("Error"):
        raise VulncheckError(
            f"go mod download {'@'.join(VULNDB)}: {cli.one_line(info.get('Error') or proc.stderr)}"
        )
    return Path(info["Dir"]) / "data" / "osv"


def scan(tool: Path, binary: Path, db: str) -> tuple[list[dict], str]:
    """(findings, error): each finding {id, module, found, fixed, symbol-level}, from govulncheck's JSON."""
    proc = subprocess.run(
        [str(tool), "-db", db, "-mode", "binary", "-format", "json", str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    findings: dict[str, dict] = {}
    decoder, text, i = json.JSONDecoder(), proc.stdout, 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        msg, i = decoder.raw_decode(text, i)
        f = msg.get("finding")
        if not f:
            continue
        frame = (f.get("trace") or [{}])[0]
        entry = findings.setdefault(
            f["osv"],
            {"id": f["osv"], "module": frame.get("module"), "found": frame.get("version"), "fixed": f.get("fixed_version"),
             "symbol": False},
        )  # fmt: skip
        entry["symbol"] = entry["symbol"] or bool(frame.get("function"))
    error = "" if proc.returncode in (0, 3) else cli.one_line(proc.stderr)[-600:]
    return sorted(findings.values(), key=lambda e: e["id"]), error


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m renderlab.workstation.k8s_vulncheck", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default="Pulumi.example.yaml")
    parser.add_argument(
        "--db", help=f"the database (default: {DEFAULT_DB}, else the golang.org/x/vulndb module)"
    )
    args = parser.parse_args(argv)
    try:
        k = load(args.config).kubernetes
        cache = k8s_artifacts.default_cache(k.version)
        bins = cache.with_name(cache.name + ".parts") / "bin"
        if not (cache / k8s_artifacts.READY).exists():
            raise VulncheckError(f"no artifacts at {cache}; run `make k8s-artifacts` first")
        tool = govulncheck()
        binaries = sorted(
            p for p in bins.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "pause"
        )
        db = args.db
        if db is None:
            _, error = scan(tool, binaries[0], DEFAULT_DB)
            if error:
                print(
                    f"k8s-vulncheck: {DEFAULT_DB} not reachable ({error[:300]}); using the golang.org/x/vulndb module"
                )
                db = "file://" + str(vulndb())
            else:
                db = DEFAULT_DB
        report = {"db": db, "vulndb": "@".join(VULNDB) if db.startswith("file:") else None, "binaries": {}}
        for binary in binaries:
            findings, error = scan(tool, binary, db)
            if error:
                raise VulncheckError(f"govulncheck {binary.name}: {error}")
            report["binaries"][binary.name] = {
                "sha256": hashlib.sha256(binary.read_bytes()).hexdigest(),
                "findings": findings,
            }
            for f in findings:
                kind = "symbol" if f["symbol"] else "module"
                print(
                    f"{binary.name}: {f['id']} {f['module']} {f['found']} fixed {f['fixed'] or '-'} ({kind})"
                )
            if not findings:
                print(f"{binary.name}: no known vulnerability")
        atomic.write_json(bins.parent / "vulncheck.json", report, mode=0o644)
    except (ConfigError, GoBuildError, VulncheckError) as e:
        print(f"k8s-vulncheck: error: {cli.one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("k8s-vulncheck", main))
