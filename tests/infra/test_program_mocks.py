"""The Pulumi program under pulumi.runtime.set_mocks, with the example stack's config."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import wait_for_rpcs

from infra import manifests
from infra.cluster import GROUP
from renderlab.lab import ansible_unsafe, lab_ca
from renderlab.lab import host_secrets as hosts_secrets
from renderlab.lab.cluster_names import LAUNCHER_TOKEN
from renderlab.lab.config import ConfigError, parse
from tests.example_stack import own

SECRET_SIG, SECRET_SIG_VALUE = rpc._special_sig_key, rpc._special_secret_sig

ROOT = Path(__file__).resolve().parents[2]
STACK = own()["config"]  # the example with the test's own token and key
SECRET_VALUES = {
    "renderlab:proxmox_api_token": "tok-uuid-0000",
    "renderlab:kubeconfig": "apiVersion: v1\nkind: Config\n",
}


SECRET_INPUTS = manifests.SECRET_INPUTS + manifests.REGISTRY_INPUTS

MOCK_CA = lab_ca.new_ca()  # the host secrets reader checks the CA bundle is one


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[tuple[str, str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append((args.typ, args.name, dict(args.inputs)))
        outs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic/renderlab:GeneratedSecret":
            # A value of the format asked for (the hosts layer's check reads the formats).
            outs["result"] = {
                "fernet": base64.urlsafe_b64encode(b"k" * 32).decode(),
                "key32": base64.b64encode(b"e" * 32).decode(),
                "lab_ca": MOCK_CA,
            }.get(args.inputs.get("format"), f"generated-{args.name}")
        if args.typ == "pulumi-python:dynamic/renderlab:IssuedCertificate":
            outs.update(cert="CERT-PEM", key="KEY-PEM")
        if args.typ == "pulumi-python:dynamic/renderlab:Htpasswd":
            outs["line"] = "renderlab:$2b$hash"
        if args.typ.endswith("ProxmoxVm"):
            outs["ipv4"] = args.inputs["address"].split("/")[0]
        if args.typ == "kubernetes:core/v1:Secret" and args.name.endswith("airflow-launcher-token"):
            outs["data"] = {"token": "c2EtdG9rZW4="}  # base64 of "sa-token"
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    def of(self, typ: str) -> list[tuple[str, dict]]:
        return [(n, i) for t, n, i in self.resources if t == typ]


def run(config: dict, secrets: dict):
    mocks = Mocks()
    # A fresh loop per run: the SDK schedules registrations on the current one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project="renderlab", stack="test", preview=False)
    values = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in config.items()}
    values.update(secrets)
    pulumi.runtime.set_all_config(values, secret_keys=list(secrets))
    from infra.program import main

    outputs = main()
    resolved = loop.run_until_complete(_resolve(outputs))
    return mocks, outputs, resolved


async def _resolve(outputs):
    out = {}
    for key, value in outputs.items():
        if isinstance(value, pulumi.Output):
            out[key] = (await value.future(), await value.is_secret())
        elif isinstance(value, dict):
            out[key] = {k: await v.future() for k, v in value.items()}
        else:
            out[key] = value
    # Every resource registration reaches the mocks before the test looks at them.
    await wait_for_rpcs()
    return out


def unsecret(value):
    """(value, True) for a value the SDK sent as a secret (Pulumi's secret signature), else (value, False)."""
    if isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_SIG_VALUE:
        return value["value"], True
    return value, False


@pytest.fixture
def stack_config():
    return {k: v for k, v in STACK.items() if not isinstance(v, dict) or "secure" not in v}


def test_five_vms_from_config(stack_config):
    mocks, _, resolved = run(stack_config, SECRET_VALUES)
    vms = {name: inputs for name, inputs in mocks.of("pulumi-python:dynamic/renderlab:ProxmoxVm")}
    assert sorted(vms) == ["airflow", "control-plane", "perforce", "storage", "worker"]
    for name, host in STACK["renderlab:hosts"].items():
        vm = vms[name]
        assert (vm["vmid"], vm["cores"], vm["memory_mib"], vm["disk_gib"]) == (
            host["vmid"],
            host["cores"],
            host["memory_mib"],
            host["disk_gib"],
        )
        assert vm["address"] == f"{STACK['renderlab:network']['hosts'][name]}/24"
        assert vm["template_vmid"] == 9000 and vm["bridge"] == "vmbr0" and vm["node"] == "pve"
        assert vm["ssh_keys"] == STACK["renderlab:ssh"]["public_keys"]
        # No credential in any VM input (the token is read by the provider at run time), nor in the
        # serialized provider, which names its class (imported by the provider process) instead of code.
        assert "tok-uuid-0000" not in json.dumps({k: v for k, v in vm.items() if k != "__provider"})
        provider = base64.b64decode(unsecret(vm["__provider"])[0])
        assert b"infra.proxmox.vm" in provider and b"tok-uuid-0000" not in provider and len(provider) < 400
    (tpl,) = [i for _, i in mocks.of("pulumi-python:dynamic/renderlab:CloudInitTemplate")]
    assert tpl["vmid"] == 9000 and tpl["image_url"].endswith(".qcow2") and tpl["adopt"] is False
    assert resolved["addresses"]["storage"] == "10.20.0.13"


def test_service_secrets_are_generated_and_secret(stack_config):
    mocks, _, resolved = run(stack_config, SECRET_VALUES)
    generated = mocks.of("pulumi-python:dynamic/renderlab:GeneratedSecret")
    specs = hosts_secrets.SERVICE_SECRETS.values()
    assert sorted((i["length"], i["format"]) for _, i in generated) == sorted(
        (s.length, s.format) for s in specs
    )
    host_secrets, secret = resolved["host_secrets"]
    assert secret is True
    # Exactly the keys the hosts layer reads, and the hosts layer's own check accepts the map.
    assert sorted(host_secrets) == sorted(hosts_secrets.SECRET_NAMES)
    assert hosts_secrets.check(host_secrets, "output") == host_secrets
    keys = {k for k, spec in hosts_secrets.SERVICE_SECRETS.items() if spec.format != "alphanumeric"}
    assert all(v.startswith("generated-") for k, v in host_secrets.items() if k not in keys)
    assert host_secrets[hosts_secrets.LAB_CA] == MOCK_CA
    assert not [k for k in resolved if "password" in k or k.endswith("token") and k != "launcher_token"]
    token, secret = resolved["launcher_token"]
    assert token == "sa-token" and secret is True


def test_the_stacks_webhook_url_is_handed_to_the_hosts_as_a_secret(stack_config):
    url = "https://hooks.example.test/T0/B0/tok"
    _, _, resolved = run(stack_config, {**SECRET_VALUES, "renderlab:notify_webhook_url": url})
    host_secrets, secret = resolved["host_secrets"]
    assert secret is True and host_secrets[hosts_secrets.WEBHOOK_URL] == url
    assert hosts_secrets.check(host_secrets, "output")[hosts_secrets.WEBHOOK_URL] == url
    assert url not in json.dumps(resolved["inventory"])


def test_the_stacks_s3_backup_keys_are_handed_to_the_hosts_as_secrets(stack_config):
    keys = {
        "renderlab:backup_s3_access_key_id": "AKIAEXAMPLE",
        "renderlab:backup_s3_secret_access_key": "s3cr3t",
    }
    _, _, resolved = run(stack_config, {**SECRET_VALUES, **keys})
    host_secrets, secret = resolved["host_secrets"]
    assert secret is True
    assert host_secrets["renderlab_backup_s3_access_key_id"] == "AKIAEXAMPLE"
    assert host_secrets["renderlab_backup_s3_secret_access_key"] == "s3cr3t"
    assert hosts_secrets.check(host_secrets, "output") == host_secrets
    assert "s3cr3t" not in json.dumps(resolved["inventory"])


def test_inventory_output_is_the_local_labs_inventory(tmp_path, monkeypatch):
    """The same stack file through Pulumi's program and through the local lab's inventory: one shape and
    the same values, except the SSH options only the local lab adds."""
    from renderlab.lab import image_refs
    from renderlab.lab.config import load
    from renderlab.workstation.nspawn_lab import lifecycle
    from renderlab.workstation.nspawn_lab.options import LabOptions

    monkeypatch.setattr(image_refs, "RECORDS", tmp_path / "no-records")  # what this checkout built stays out
    options = LabOptions.from_env({"RENDERLAB_LAB_PREFIX": "seam", "RENDERLAB_LAB_CACHE": str(tmp_path)})
    options.state.mkdir(parents=True)
    lifecycle.write_stack(options, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISeamKey seam@test", ["10.0.0.53"])
    local_stack = yaml.safe_load((options.state / "stack.yaml").read_text())["config"]
    _, _, resolved = run({k: v for k, v in local_stack.items() if "secure" not in str(v)}, SECRET_VALUES)
    pulumi_inv, _ = resolved["inventory"]
    local_inv = lifecycle.lab_inventory(load(options.state / "stack.yaml"), options)
    for key in lifecycle.LOCAL_ONLY_VARS:
        local_inv["all"]["vars"].pop(key)
    for group in local_inv["all"]["children"].values():
        for host_vars in group["hosts"].values():
            for key in lifecycle.LOCAL_ONLY_HOST_VARS:
                host_vars.pop(key, None)
    assert pulumi_inv == ansible_unsafe.mark(local_inv)


def test_inventory_output_has_the_ansible_shape(stack_config):
    _, _, resolved = run(stack_config, SECRET_VALUES)
    marked, secret = resolved["inventory"]
    assert secret is False
    # Every string is marked unsafe for Ansible's templating; what Ansible reads is the plain inventory.
    assert marked == ansible_unsafe.mark(ansible_unsafe.plain(marked))
    inv = ansible_unsafe.plain(marked)
    groups = inv["all"]["children"]
    assert set(groups) == {"control_plane", "worker", "storage", "perforce", "airflow"}
    assert groups["perforce"]["hosts"]["perforce"]["ansible_host"] == "10.20.0.14"
    assert inv["all"]["vars"]["ansible_user"] == resolved["ssh_user"] == "renderlab"
    assert "generated-" not in json.dumps(inv)


def group_objects(mocks: Mocks) -> tuple[dict[str, dict[str, dict]], bool]:
    """The ConfigGroup's objects, kind -> `<namespace>/<name>` (or `<name>`) -> object, and whether the SDK sent
    them as a secret: one input, secret as a whole when any value in it is (the provider then marks each
    Secret's data secret in the state: the cluster lane's Pulumi test reads the state file)."""
    (group,) = [i for _, i in mocks.of("kubernetes:yaml/v2:ConfigGroup")]
    objs, secret = unsecret(group["objs"])
    out: dict[str, dict[str, dict]] = {}
    for obj in objs:
        meta = obj["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        out.setdefault(obj["kind"], {})[name] = obj
    return out, secret


def test_cluster_layer_resources(stack_config, tmp_path, monkeypatch):
    from renderlab.lab import image_refs

    monkeypatch.setattr(image_refs, "RECORDS", tmp_path)
    recorded_docs_tag = "0123456789abcdef"
    recorded_digest = "sha256:" + "d" * 64  # pushed: the nodes pull it by digest
    image_refs.record("Pulumi.test.yaml", "docs", recorded_docs_tag, recorded_digest)
    mocks, _, resolved = run(stack_config, SECRET_VALUES)
    ((_, release),) = mocks.of("kubernetes:helm.sh/v3:Release")
    assert release["chart"] == "csi-driver-smb" and release["version"] == "v1.17.0"
    kinds, secret = group_objects(mocks)
    assert secret
    # The objects go as infra/manifests.py makes them (camelCase, nested as in k8s/), none left out.
    assert sorted((k, n) for k, names in kinds.items() for n in names) == sorted(
        (o["kind"], f"{o['metadata']['namespace']}/{o['metadata']['name']}" if o["metadata"].get("namespace")
         else o["metadata"]["name"])
        for group in manifests.all_objects(parse({"config": STACK}, source="test"), dict.fromkeys(SECRET_INPUTS, "")).values()
        for o in group if o["metadata"]["name"] != LAUNCHER_TOKEN
    )  # fmt: skip
    pvs = {n: o for n, o in kinds["PersistentVolume"].items()}
    assert pvs["renderlab-share"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvs["renderlab-share"]["spec"]["csi"]["volumeAttributes"]["source"] == "//10.20.0.13/render"
    pvcs = {n: o for n, o in kinds["PersistentVolumeClaim"].items()}
    assert pvcs["render/render-share"]["spec"]["volumeName"] == "renderlab-share"
    secrets = kinds["Secret"]
    smb = secrets["render/smb-credentials"]
    assert smb["stringData"] == {"username": "render", "password": "generated-share-password"}
    p4 = secrets["render/renderlab-p4"]
    assert p4["stringData"] == {
        "port": "ssl:10.20.0.14:1666",
        "user": "renderlab",
        "password": "generated-p4-service-password",
        "fingerprint": "",
    }
    role = kinds["Role"]["render/airflow-launcher"]
    assert {r for rule in role["rules"] for r in rule["resources"]} == {
        "jobs",
        "jobs/status",
        "pods",
        "pods/log",
        "events",
    }
    policy = kinds["NetworkPolicy"]["render/render-egress"]
    cidrs = [p["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for p in rule["to"] if "ipBlock" in p]
    assert cidrs == ["10.20.0.13/32", "10.20.0.14/32"]
    registry = kinds["Deployment"]["renderlab-registry/registry"]
    assert registry["spec"]["template"]["spec"]["containers"][0]["image"] == "registry:3.1.1"
    # TLS and htpasswd from the resources made once (infra/issued_certificate.py); deletes off.
    env = {e["name"]: e["value"] for e in registry["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REGISTRY_AUTH"] == "htpasswd" and env["REGISTRY_HTTP_TLS_CERTIFICATE"] == "/certs/tls.crt"
    assert "REGISTRY_STORAGE_DELETE_ENABLED" not in env
    tls = secrets["renderlab-registry/registry-tls"]
    assert tls["stringData"] == {"tls.crt": "CERT-PEM", "tls.key": "KEY-PEM"}
    auth = secrets["renderlab-registry/registry-auth"]
    assert auth["stringData"] == {"htpasswd": "renderlab:$2b$hash"}
    (issued,) = [i for _, i in mocks.of("pulumi-python:dynamic/renderlab:IssuedCertificate")]
    assert issued["sans"] == ["127.0.0.1", "10.20.0.11", "registry.renderlab-registry.svc"]
    services = {n: o for n, o in kinds["Service"].items()}
    assert services["renderlab-registry/registry"]["spec"]["ports"][0]["nodePort"] == 30500
    assert resolved["registry"] == "10.20.0.11:30500"
    # The docs site: the image `make images` recorded for this stack, on its NodePort.
    docs = kinds["Deployment"]["renderlab-docs/docs"]
    image = docs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"127.0.0.1:30500/renderlab-docs:{recorded_docs_tag}@{recorded_digest}"
    assert services["renderlab-docs/docs"]["spec"]["ports"][0]["nodePort"] == 30080
    assert pvs["renderlab-share-gallery"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    # Production: no stand-in of the local lab (host folders, skipped waits).
    assert "hostPath" not in json.dumps(kinds) and "skipAwait" not in json.dumps(kinds)


def test_the_launcher_token_secret_comes_after_the_group(stack_config, monkeypatch):
    """Its ServiceAccount must exist before it (the token controller fills in only a known account's token)."""
    registered = []
    register = MockMonitor.RegisterResource

    def recording(self, request):
        registered.append((request.type, request.name, list(request.dependencies)))
        return register(self, request)

    monkeypatch.setattr(MockMonitor, "RegisterResource", recording)
    mocks, _, resolved = run(stack_config, SECRET_VALUES)
    ((name, token),) = [
        (n, i) for n, i in mocks.of("kubernetes:core/v1:Secret") if i["metadata"]["name"] == LAUNCHER_TOKEN
    ]
    assert name == "secret-render-airflow-launcher-token"  # its name in stacks made before: kept in place
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "airflow-launcher"}
    (deps,) = [d for t, n, d in registered if n == name]
    assert [d.rsplit("::", 1)[-1] for d in deps if "kubernetes:yaml/v2:ConfigGroup" in d] == [GROUP]
    assert "render/airflow-launcher" in group_objects(mocks)[0]["ServiceAccount"]
    assert resolved["launcher_token"] == ("sa-token", True)


def test_no_kubeconfig_no_cluster_layer(stack_config):
    mocks, _, resolved = run(stack_config, {"renderlab:proxmox_api_token": "tok"})
    assert not [t for t, _, _ in mocks.resources if t.startswith("kubernetes:")]
    assert "launcher_token" not in resolved


def test_bad_config_fails_before_any_resource(stack_config):
    stack_config["renderlab:hosts"] = {**stack_config["renderlab:hosts"]}
    stack_config["renderlab:hosts"]["storage"] = {**stack_config["renderlab:hosts"]["storage"], "cores": 0}
    with pytest.raises(ConfigError, match=r"hosts.storage.cores"):
        run(stack_config, SECRET_VALUES)
