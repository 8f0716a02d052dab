"""The VM provider driven through the Pulumi SDK's own dynamic provider server (`python -m pulumi.dynamic`).

This is the process `pulumi up` starts for dynamic resources: the provider is serialized with dill exactly as
the program does, the token arrives only through Configure (the stack config), and every call crosses gRPC.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import proto, rpc

from infra.proxmox.vm import ProxmoxVmProvider
from tests.infra import plugin_server
from tests.infra.conftest import FAST, TOKEN_SECRET
from tests.infra.test_vm_provider import spec

ROOT = Path(__file__).resolve().parents[2]
URN = "urn:pulumi:test::renderlab::pulumi-python:dynamic/renderlab:ProxmoxVm::control-plane"


def struct(props: dict):
    return asyncio.run(rpc.serialize_properties(props, {}))


def plain(message) -> dict:
    return rpc.deserialize_properties(message)


@pytest.fixture
def dynamic_server(tmp_path, pve):  # after pve: the server inherits its RENDERLAB_GUEST_SSH
    env = {k: v for k, v in os.environ.items() if k != "PROXMOX_API_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), PULUMI_PROJECT="renderlab")
    with plugin_server.serve(
        [sys.executable, "-m", "pulumi.dynamic"], tmp_path / "provider.stderr", cwd=ROOT, env=env
    ) as stub:
        yield stub


def test_create_diff_delete_over_grpc(dynamic_server, pve, fakepve_cafile):
    stub = dynamic_server
    stub.Configure(proto.ConfigureRequest(args=struct({"renderlab:proxmox_api_token": TOKEN_SECRET})))
    props = {**spec(pve, fakepve_cafile), "ipv4": None}
    props["__provider"] = serialize_provider(ProxmoxVmProvider(timing=FAST))

    checked = stub.Check(proto.CheckRequest(urn=URN, olds=struct({}), news=struct(props)))
    assert list(checked.failures) == []
    bad = stub.Check(proto.CheckRequest(urn=URN, olds=struct({}), news=struct({**props, "cores": 0})))
    assert [f.property for f in bad.failures] == ["cores"]

    created = stub.Create(proto.CreateRequest(urn=URN, properties=checked.inputs))
    outs = plain(created.properties)
    assert created.id == "211" and outs["ipv4"] == "10.20.0.11"
    assert pve.vm(211).status == "running"
    # The token came through Configure only and is nowhere in what Pulumi would store.
    assert TOKEN_SECRET not in str(created.properties)

    same = stub.Diff(proto.DiffRequest(id="211", urn=URN, olds=created.properties, news=checked.inputs))
    assert same.changes == proto.DiffResponse.DIFF_NONE
    changed = stub.Diff(
        proto.DiffRequest(id="211", urn=URN, olds=created.properties, news=struct({**props, "cores": 4}))
    )
    assert changed.changes == proto.DiffResponse.DIFF_SOME and list(changed.replaces) == []

    stub.Delete(proto.DeleteRequest(id="211", urn=URN, properties=created.properties))
    assert pve.vm(211) is None


def test_provider_error_crosses_grpc_with_its_message(dynamic_server, pve, fakepve_cafile):
    stub = dynamic_server
    stub.Configure(proto.ConfigureRequest(args=struct({"renderlab:proxmox_api_token": TOKEN_SECRET})))
    pve.fail("POST", "/nodes/pve1/qemu/211/status/start", error="qemu_exited_code")
    props = {**spec(pve, fakepve_cafile), "__provider": serialize_provider(ProxmoxVmProvider(timing=FAST))}
    with pytest.raises(grpc.RpcError) as err:
        stub.Create(proto.CreateRequest(urn=URN, properties=struct(props)))
    assert "QEMU exited with code 1" in err.value.details()
    assert pve.vm(211) is None
