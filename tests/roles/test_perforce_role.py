"""The perforce role where no p4d can run (its package is a vendor download): the exact key check run by
Ansible over real gpg keys, the unit's listen address before and after configuration, the security settings and
the order of the steps that keeps p4d on loopback until its protections and settings are in place."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "perforce"
GPG = shutil.which("gpg")


def _gpg(home: Path, *args: str) -> str:
    env = {**os.environ, "GNUPGHOME": str(home)}
    return subprocess.run(
        ["gpg", "--batch", "--quiet", *args], env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """A real keyring: the 'vendor' key (with a subkey), another key; their armored exports and fingerprints."""
    if not GPG:
        pytest.fail("gpg is not installed (apt-get install gnupg)", pytrace=False)
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    for uid in ("vendor <vendor@example.invalid>", "intruder <intruder@example.invalid>"):
        _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "0")

    def fpr(uid: str) -> str:
        lines = _gpg(home, "--with-colons", "--list-keys", uid).splitlines()
        return next(line.split(":")[9] for line in lines if line.startswith("fpr:"))

    vendor, intruder = fpr("vendor@example.invalid"), fpr("intruder@example.invalid")
    _gpg(home, "--passphrase", "", "--quick-add-key", vendor, "cv25519", "encr", "0")  # a subkey is fine
    out = tmp_path_factory.mktemp("keys")
    files = {
        "vendor": _gpg(home, "--armor", "--export", vendor),
        "intruder": _gpg(home, "--armor", "--export", intruder),
        "both": _gpg(home, "--armor", "--export", vendor) + _gpg(home, "--armor", "--export", intruder),
        "garbage": "not a key\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = out / f"{name}.asc"
        paths[name].write_text(text)
    return {"vendor": vendor, "intruder": intruder, "files": paths}


def run_key_check(tmp_path: Path, key_file: Path, fingerprint: str) -> subprocess.CompletedProcess:
    """The role's own key.yml tasks, run by ansible-playbook on this machine (reading the file only)."""
    play = [
        {
            "name": "key check",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Check the key",
                    "ansible.builtin.include_role": {"name": "perforce", "tasks_from": "key"},
                    "vars": {"perforce_key_file": str(key_file), "perforce_key_fingerprint": fingerprint},
                }
            ],
        }
    ]
    playbook = tmp_path / "key.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}  # fmt: skip
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(playbook)],
        cwd=ROOT / "ansible", env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_pinned_key_alone_is_accepted(keys, tmp_path):
    proc = run_key_check(tmp_path, keys["files"]["vendor"], keys["vendor"].lower())
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize(
    ("file", "holds"),
    [("both", "{vendor}, {intruder}"), ("intruder", "{intruder}"), ("garbage", "no readable key")],
)
def test_any_other_file_is_refused(keys, tmp_path, file, holds):
    """Today's check accepted 'both': the pinned fingerprint among other keys."""
    proc = run_key_check(tmp_path, keys["files"][file], keys["vendor"])
    assert proc.returncode != 0
    expected = holds.format(vendor=keys["vendor"], intruder=keys["intruder"])
    assert f"must hold exactly Perforce's key {keys['vendor']}; it holds {expected}." in " ".join(
        proc.stdout.split()
    )


def _role_vars(**overrides) -> dict:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(yaml.safe_load((ROLE / "vars" / "main.yml").read_text()))
    # The lab values site.yml hands the role (required: the role's defaults do not repeat them).
    site = {
        "perforce_port": 1666,
        "perforce_ssl": True,
        "perforce_data_root": "/opt/perforce/servers/renderlab",
        "perforce_depot": "depot",
        "perforce_projects_path": "//depot/songs",
        "perforce_service_user": "renderlab",
    }
    variables.update({"ansible_managed": "managed", "perforce_version": "2025.1", **site, **overrides})
    return variables


def render(template: str, **overrides) -> str:
    templar = Templar(loader=DataLoader(), variables=_role_vars(**overrides))
    return templar.template((ROLE / "templates" / template).read_text())


def test_p4d_listens_on_loopback_until_configured_then_on_the_network():
    assert " -p ssl:127.0.0.1:1666 " in render("p4d.service.j2")
    assert " -p ssl:127.0.0.1:1666 " in render("p4d.service.j2", perforce_on_network=False)
    assert " -p ssl:1666 " in render("p4d.service.j2", perforce_on_network=True)
    assert " -p 127.0.0.1:1700 " in render("p4d.service.j2", perforce_ssl=False, perforce_port=1700)


def test_the_security_settings_and_their_mark():
    templar = Templar(loader=DataLoader(), variables=_role_vars())
    settings = {k: int(templar.template(v)) for k, v in _role_vars()["perforce_server_settings"].items()}
    assert settings == {
        "security": 3,
        "dm.user.noautocreate": 2,  # no user comes into being by logging in or submitting: super creates them
        "dm.user.setinitialpasswd": 0,  # only super sets a new user's first password
        "run.users.authorize": 1,  # `p4 users` for logged-in users only
        "ssl.tls.version.min": 12,  # TLS 1.2 at least
    }
    mark = templar.template(_role_vars()["perforce_configured_mark"])
    assert mark.startswith(templar.template("{{ perforce_data_root }}/root/"))  # a wiped P4ROOT loses it


def _task_names(path: Path) -> list[str]:
    """Task names in the order they run, through blocks, imports and includes (the two install blocks in turn)."""

    def walk(tasks: list[dict]) -> list[str]:
        names = []
        for task in tasks:
            nested = task.get("ansible.builtin.import_tasks") or task.get("ansible.builtin.include_tasks")
            if nested:
                names.extend(_task_names(path.parent / nested))
            elif "block" in task:
                names.extend(walk(task["block"]))
            else:
                names.append(task["name"])
        return names

    return walk(yaml.safe_load(path.read_text()))


def test_p4d_reaches_the_network_only_after_every_setting_is_in_place():
    names = _task_names(ROLE / "tasks" / "main.yml")
    first_start = names.index("Start and enable p4d")
    assert (
        names.index("Listen on loopback until configured") < names.index("Install the p4d unit") < first_start
    )
    opened = names.index("Install the p4d unit on the network port")
    for step in (
        "Set up the super user on a new server",
        "Set the security settings that differ",
        "Apply the protections and typemap that differ",
        "Check the protections now match the wanted ones",
        "Create the read-only service user",
        "Set the service user's password",
        "Read the security settings back",
        "Mark the server configured",
    ):
        assert names.index(step) < opened, step
    assert names.index("Wait for p4d on the host's address") > opened
    # The vendor download comes first: where it cannot be had, the host stops before any p4d step.
    assert names.index("Check it is the one pinned key") < first_start
    install = yaml.safe_load((ROLE / "tasks" / "install.yml").read_text())
    rescue = next(t for t in install if "rescue" in t)["rescue"]
    assert (
        rescue[-1]["ansible.builtin.meta"] == "end_host"
        and "perforce_missing" in rescue[0]["ansible.builtin.set_fact"]
    )


def test_the_protections_table_gives_super_to_the_super_user_only():
    lines = [line.split() for line in render("protect.spec.j2").splitlines()[1:] if line.strip()]
    assert [line for line in lines if line[0] == "super"] == [["super", "user", "super", "*", "//..."]]
    assert ["read", "user", "renderlab", "*", "//depot/songs/..."] in lines
