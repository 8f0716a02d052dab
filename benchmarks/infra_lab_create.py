"""How long creating the lab's five VMs takes through the provider, against fakepve with network latency.

Three ways, side by side in one run: one VM after another; four at a time (Pulumi's dynamic provider server
has four workers) with clones serialized per node, as shipped; four at a time with the clone slot disabled
(what PVE's own clone lock makes unsafe on a real node; shown only for the cost of serializing).

    PYTHONPATH=. .venv/bin/python benchmarks/infra_lab_create.py [--latency 2] [--disk-secs 30] [--time-scale 0.01]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from fakepve.certs import make_cert
from fakepve.pytest_plugin import _Serving
from fakepve.server import FakePve

from infra.proxmox import client as client_module
from infra.proxmox.client import Timing
from infra.proxmox.guest import ENDPOINTS_ENV
from infra.proxmox.vm import ProxmoxVmProvider
from renderlab.lab.config import load
from tests.infra.conftest import TEMPLATE, TOKEN_ID, TOKEN_SECRET, Guests

ROOT = Path(__file__).resolve().parents[1]


def serve(pki, latency: float, time_scale: float, disk_secs: float) -> tuple[_Serving, FakePve]:
    pve = FakePve(host="127.0.0.1", port=0)
    pve.time_scale = time_scale
    pve.slow_network(latency)
    # Disks on an RBD storage made slow: every clone (and start) spends disk_secs copying / mapping.
    pve.add_ceph_storage("ceph-pool")
    pve.ceph_slow(disk_secs)
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    pve.add_vm(
        TEMPLATE,
        "debian-12-cloudinit",
        node="pve1",
        template=True,
        config={
            "scsi0": "ceph-pool:base-9000-disk-0,size=3G",
            "boot": "order=scsi0",
            "template": 1,
            "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0",
            "agent": "enabled=1",
        },
    )
    for vm_ in pve.vms:
        vm_.start_secs = 10  # a VM takes a while to boot
    return _Serving(pve, *pki), pve


def lab_props(pve, cafile) -> list[dict]:
    from infra.lab import vm_props

    config = load(ROOT / "Pulumi.example.yaml")
    props = []
    for name in sorted(config.hosts):
        p = vm_props(config, name)
        p.update(endpoint=pve.url, node="pve1", template_vmid=TEMPLATE, ca_file=cafile, storage="ceph-pool")
        props.append(p)
    return props


def run(pki, cafile, args, workers: int, serialize: bool) -> tuple[float, int]:
    serving, pve = serve(pki, args.latency, args.time_scale, args.disk_secs)
    agents = Guests(pve)
    timing = Timing(poll=0.05, backoff=0.05, task_timeout=120, boot_timeout=120)
    provider = ProxmoxVmProvider(timing)
    patch = (
        contextlib.nullcontext()
        if serialize
        else mock.patch.object(client_module.Pve, "clone_slot", lambda self, node: contextlib.nullcontext())
    )
    try:
        with (
            patch,
            mock.patch.dict(
                "os.environ",
                {
                    "PROXMOX_API_TOKEN": TOKEN_SECRET,
                    ENDPOINTS_ENV: agents.env,
                    "RENDERLAB_KNOWN_HOSTS": "/dev/null",
                },
            ),
        ):
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(provider.create, lab_props(pve, cafile)))
            took = time.perf_counter() - start
        assert len([v for v in pve.vms if not v.template and v.status == "running"]) == 5
        return took, len(pve.requests)
    finally:
        agents.stop()
        serving.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0, help="PVE seconds added to every API answer")
    parser.add_argument("--disk-secs", type=float, default=30.0, help="PVE seconds a clone spends copying")
    parser.add_argument("--time-scale", type=float, default=0.01, help="real seconds per PVE second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_cert(tmp, hosts=("127.0.0.1",))[:2]
        cafile = pki[0]
        rows = [
            ("sequential (1 worker)", *run(pki, cafile, args, 1, True)),
            ("4 workers, clones serialized (shipped)", *run(pki, cafile, args, 4, True)),
            ("4 workers, clones unserialized (unsafe)", *run(pki, cafile, args, 4, False)),
        ]
    base = rows[0][1]
    print(
        f"5 VMs, latency {args.latency * args.time_scale * 1000:.0f} ms/answer, "
        f"boot {10 * args.time_scale:.2f} s, clone copy {args.disk_secs * args.time_scale:.2f} s each"
    )
    for name, took, requests in rows:
        print(f"  {name:42s} {took:6.2f} s  {requests:4d} requests  x{base / took:4.2f} vs sequential")


if __name__ == "__main__":
    main()
