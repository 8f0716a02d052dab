"""Drives the real Pulumi CLI (built by `make tools`) on a throw-away project, state and stack.

The project is a temp folder with the repo's own Pulumi.yaml and links to infra/ and .venv, so the stack
file and the file:// state never land in the repository. PULUMI_HOME is private too (no login or plugin
of the user's is touched or used). The Proxmox token is never in the environment: only the stack's
secret config carries it, as for a real lab.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "engine-lane-passphrase"  # encrypts this throw-away stack's secrets


def tools_bin() -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts/build-tools.sh"), "--print-bin"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def missing_tools() -> str | None:
    """Why the lane cannot run, or None when the engine is built."""
    bin_dir = tools_bin()
    for tool in (
        "pulumi",
        "pulumi-language-python",
        "pulumi-language-python-exec",
        "pulumi-resource-pulumi-python",
    ):
        if not os.access(bin_dir / tool, os.X_OK):
            return f"the Pulumi engine is not built ({bin_dir / tool} is missing): run `make tools`"
    return None


class Engine:
    """One stack of the renderlab project, run through the pulumi CLI."""

    def __init__(self, workdir: Path, stack: str = "engine"):
        self.stack = stack
        self.project = workdir / "project"
        self.state = workdir / "state"
        self.project.mkdir(parents=True)
        self.state.mkdir()
        shutil.copy(ROOT / "Pulumi.yaml", self.project / "Pulumi.yaml")
        (self.project / "infra").symlink_to(ROOT / "infra")
        (self.project / ".venv").symlink_to(ROOT / ".venv")
        self.stack_file = self.project / f"Pulumi.{stack}.yaml"
        bin_dir = tools_bin()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "PROXMOX_"))}
        env.update(
            PATH=f"{ROOT / '.venv/bin'}:{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
            PYTHONPATH=str(ROOT),
            PULUMI_HOME=str(workdir / "pulumi-home"),
            PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_SKIP_CONFIRMATIONS="true",
            NO_COLOR="1",
        )
        self.env = env
        self.pulumi = str(bin_dir / "pulumi")
        self.timings: list[tuple[str, float]] = []

    # ------------------------------------------------------------------ running
    def run(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 600):
        start = time.monotonic()
        proc = subprocess.run(
            [self.pulumi, *args, "--non-interactive", *self._stack_arg(args)],
            cwd=self.project,
            env=self.env,
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.timings.append((" ".join(args[:2]), time.monotonic() - start))
        if check and proc.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{self.tail(proc)}")
        return proc

    def start(self, *args: str) -> subprocess.Popen:
        """Start a command in the background (its own process group, as a shell would)."""
        return subprocess.Popen(
            [self.pulumi, *args, "--non-interactive", *self._stack_arg(args)],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @staticmethod
    def interrupt(proc: subprocess.Popen) -> None:
        """A single Ctrl-C to the CLI only: pulumi puts its plugins in process groups of their own."""
        proc.send_signal(signal.SIGINT)

    def _stack_arg(self, args: tuple[str, ...]) -> list[str]:
        if args[:1] in (("login",), ("logout",)) or args[:2] == ("stack", "init"):
            return []
        return ["--stack", self.stack]

    @staticmethod
    def tail(proc: Any, n: int = 6000) -> str:
        return ((proc.stdout or "") + (proc.stderr or ""))[-n:]

    # -------------------------------------------------------------------- stack
    def init(self, config: dict[str, Any], token: str) -> None:
        self.run("login", f"file://{self.state}")
        self.run("stack", "init", self.stack, "--secrets-provider", "passphrase")
        data = yaml.safe_load(self.stack_file.read_text()) or {}
        data["config"] = config
        self.stack_file.write_text(yaml.safe_dump(data, sort_keys=False))
        # The token goes in through stdin, never on a command line.
        self.run("config", "set", "--secret", "renderlab:proxmox_api_token", stdin=token)

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.stack_file.read_text())["config"]

    def set_config(self, key: str, value: Any) -> None:
        """Change one value of a section: key 'renderlab:hosts.storage.vmid'."""
        section, _, path = key.partition(".")
        data = yaml.safe_load(self.stack_file.read_text())
        node = data["config"][section]
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
        self.stack_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def preview(self, *extra: str) -> dict[str, Any]:
        """`pulumi preview --json`: {'steps': [...], 'changeSummary': {...}}."""
        proc = self.run("preview", "--json", *extra)
        return json.loads(proc.stdout)

    def up(self, *extra: str, check: bool = True):
        return self.run("up", "--yes", "--skip-preview", *extra, check=check)

    def outputs(self, secrets: bool = False) -> dict[str, Any]:
        args = ["stack", "output", "--json"] + (["--show-secrets"] if secrets else [])
        return json.loads(self.run(*args).stdout)

    def resources(self) -> list[dict[str, Any]]:
        """The resources in the state (a `pulumi stack export`, secrets left encrypted)."""
        return json.loads(self.run("stack", "export").stdout)["deployment"].get("resources") or []

    def state_text(self) -> str:
        """Every file of the backend (the stack, its history and backups), as text."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.state.rglob("*")) if p.is_file())


def ops(preview: dict[str, Any]) -> dict[str, str]:
    """resource name -> the step's op, for the steps that change something."""
    out: dict[str, str] = {}
    for step in preview.get("steps", []):
        if step["op"] != "same":
            name = step["urn"].rsplit("::", 1)[-1]
            out[name] = step["op"] if name not in out or step["op"] == "replace" else out[name]
    return out
