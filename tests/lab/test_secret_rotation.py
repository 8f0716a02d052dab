"""Host secrets: each drawn on its own with full entropy, a Fernet key that is one, and the rotation paths
(`host_secrets rotate`, `retire-fernet`, a key Pulumi replaced) -- the Fernet one proven with Airflow itself."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import yaml

from renderlab.lab import host_secrets
from renderlab.lab.host_secrets import FERNET_KEY, PREVIOUS_FERNET_KEYS, SERVICE_SECRETS


def test_every_secret_is_drawn_on_its_own_with_full_entropy():
    draws = [host_secrets.generate() for _ in range(3)]
    for values in draws:
        assert set(values) == set(SERVICE_SECRETS)
        assert len(set(values.values())) == len(values)  # no value derived from another
        for name, spec in SERVICE_SECRETS.items():
            if spec.format == "fernet":
                assert len(base64.urlsafe_b64decode(values[name])) == 32
            elif spec.format == "lab_ca":  # its own key pair (tests/lab/test_lab_ca.py)
                assert "PRIVATE KEY" in values[name] and "BEGIN CERTIFICATE" in values[name]
            elif spec.format == "key32":
                assert len(base64.b64decode(values[name], validate=True)) == 32
            else:
                assert len(values[name]) == spec.length >= 40 and values[name].isalnum()
    for name in SERVICE_SECRETS:  # fresh every time
        assert len({d[name] for d in draws}) == 3
    # The Airflow keys are three secrets now (they were cut from one digest).
    assert {"renderlab_airflow_api_secret_key", "renderlab_airflow_jwt_secret", FERNET_KEY} <= set(
        SERVICE_SECRETS
    )


def test_the_fernet_key_is_what_cryptography_accepts():
    from cryptography.fernet import Fernet

    key = host_secrets.generate()[FERNET_KEY]
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    assert host_secrets.is_fernet_key(key)
    for bad in ("x" * 44, key[:-2], key + "A", "é" * 44):
        assert not host_secrets.is_fernet_key(bad)
    values = {**host_secrets.generate(), FERNET_KEY: "not-a-key"}
    with pytest.raises(host_secrets.SecretsError, match="must be Fernet keys"):
        host_secrets.check(values, "file")


def _read(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("bad", ["k" * 44, base64.b64encode(b"short").decode(), "é" * 44])
def test_the_cluster_encryption_key_must_be_32_random_bytes(bad):
    values = host_secrets.generate()
    assert host_secrets.check(values, "f") == values
    with pytest.raises(
        host_secrets.SecretsError, match="renderlab_kube_encryption_key must be 32 random bytes"
    ):
        host_secrets.check({**values, "renderlab_kube_encryption_key": bad}, "f")


def test_rotate_draws_a_new_value_and_keeps_a_replaced_fernet_key_until_retired(tmp_path, capsys):
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(path)]) == 0
    first = _read(path)
    assert host_secrets.main(["rotate", "renderlab_share_password", "-f", str(path)]) == 0
    second = _read(path)
    assert second["renderlab_share_password"] != first["renderlab_share_password"]
    assert {k: v for k, v in second.items() if k != "renderlab_share_password"} == {
        k: v for k, v in first.items() if k != "renderlab_share_password"
    }
    assert PREVIOUS_FERNET_KEYS not in second
    assert host_secrets.main(["rotate", FERNET_KEY, "-f", str(path)]) == 0
    third = _read(path)
    assert third[FERNET_KEY] != first[FERNET_KEY] and third[PREVIOUS_FERNET_KEYS] == [first[FERNET_KEY]]
    assert "1 previous Fernet key(s) kept" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert host_secrets.main(["retire-fernet", "-f", str(path)]) == 0
    fourth = _read(path)
    assert PREVIOUS_FERNET_KEYS not in fourth and fourth[FERNET_KEY] == third[FERNET_KEY]


def test_rotate_adds_a_generated_secret_a_file_older_than_it_lacks(tmp_path, capsys):
    # A secrets file written before the cluster encryption key existed: read refuses it and names the fix.
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(path)]) == 0
    old = {k: v for k, v in _read(path).items() if k != "renderlab_kube_encryption_key"}
    host_secrets.write(path, old)
    with pytest.raises(host_secrets.SecretsError, match="rotate renderlab_kube_encryption_key"):
        host_secrets.read(path)
    # Rotating another secret does not paper over the missing one.
    assert host_secrets.main(["rotate", "renderlab_share_password", "-f", str(path)]) == 1
    assert "missing renderlab_kube_encryption_key" in capsys.readouterr().err
    assert _read(path) == old
    assert host_secrets.main(["rotate", "renderlab_kube_encryption_key", "-f", str(path)]) == 0
    new = host_secrets.read(path)  # complete now
    assert host_secrets.is_key32(new["renderlab_kube_encryption_key"])
    assert {k: v for k, v in new.items() if k != "renderlab_kube_encryption_key"} == old
    # A Fernet key drawn where none was keeps no empty previous key.
    del old[FERNET_KEY]
    host_secrets.write(path, {**old, "renderlab_kube_encryption_key": new["renderlab_kube_encryption_key"]})
    assert host_secrets.main(["rotate", FERNET_KEY, "-f", str(path)]) == 0
    assert PREVIOUS_FERNET_KEYS not in _read(path) and host_secrets.is_fernet_key(_read(path)[FERNET_KEY])


def test_rotate_refuses_an_unknown_name_and_a_broken_file(tmp_path, capsys):
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["rotate", "renderlab_nope", "-f", str(path)]) == 2  # a usage error
    path.write_text("- a list\n")
    assert host_secrets.main(["rotate", FERNET_KEY, "-f", str(path)]) == 1
    assert "holds no mapping" in capsys.readouterr().err
    assert path.read_text() == "- a list\n"  # nothing half-written


def test_a_fernet_key_pulumi_replaced_stays_readable():
    old = host_secrets.generate()
    new = {**old, FERNET_KEY: host_secrets.generate()[FERNET_KEY]}
    kept = host_secrets.keep_replaced_fernet_key(new, old)
    assert kept[PREVIOUS_FERNET_KEYS] == [old[FERNET_KEY]]
    assert host_secrets.keep_replaced_fernet_key(old, old) == old  # unchanged: nothing kept
    assert PREVIOUS_FERNET_KEYS not in host_secrets.keep_replaced_fernet_key(new, {})


# One process (Airflow's import alone takes seconds): its own CLI commands, as the role runs them, against a
# SQLite database; the keys come from the real `host_secrets generate` / `rotate`.
ROTATION = textwrap.dedent(
    """
    import json, os, sys
    from airflow.cli import cli_parser
    from airflow.models.crypto import get_fernet

    keys = json.loads(sys.argv[1])
    parser = cli_parser.get_parser()

    def cli(*argv, fernet):
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = fernet
        get_fernet.cache_clear()
        args = parser.parse_args(list(argv))
        args.func(args)

    def password(fernet):
        from airflow.models import Connection
        from airflow.utils.session import create_session
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = fernet
        get_fernet.cache_clear()
        try:
            with create_session() as session:
                conn = session.query(Connection).filter(Connection.conn_id == "rotation_probe").one()
                return conn.password
        except Exception as e:
            return type(e).__name__

    cli("db", "migrate", fernet=keys["old"])
    cli("connections", "add", "rotation_probe", "--conn-uri", "http://user:s3cret-pw@host", fernet=keys["old"])
    result = {"new_only_before": password(keys["new"])}
    cli("rotate-fernet-key", fernet=keys["new"] + "," + keys["old"])
    result["new_only_after"] = password(keys["new"])
    result["old_only_after"] = password(keys["old"])
    print(json.dumps(result))
    """
)


@pytest.mark.slow
def test_fernet_rotation_as_airflow_supports_it(tmp_path):
    """fernet_key = new,old then `airflow rotate-fernet-key`: afterwards the new key alone reads what the old one
    encrypted, and the old key alone no longer does (so it can be retired)."""
    path = tmp_path / "secrets.yml"
    assert host_secrets.main(["generate", "-o", str(path)]) == 0
    assert host_secrets.main(["rotate", FERNET_KEY, "-f", str(path)]) == 0
    values = _read(path)
    keys = {"new": values[FERNET_KEY], "old": values[PREVIOUS_FERNET_KEYS][0]}
    home = tmp_path / "airflow"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    proc = subprocess.run(
        [sys.executable, "-c", ROTATION, json.dumps(keys)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "new_only_before": "InvalidToken",
        "new_only_after": "s3cret-pw",
        "old_only_after": "InvalidToken",
    }
