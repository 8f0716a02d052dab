"""The template provider against fakepve: build from the cloud image, adopt, re-run, delete."""

from __future__ import annotations

import pytest

from infra.proxmox.client import ProxmoxError
from infra.proxmox.template import CloudInitTemplateProvider
from tests.infra.conftest import FAST, TOKEN_ID, assert_schema_clean

pytestmark = pytest.mark.usefixtures("token_env")
IMAGE = "https://images.example/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2"


def props(pve, cafile, **over):
    data = {
        "endpoint": pve.url,
        "token_id": TOKEN_ID,
        "verify_tls": True,
        "ca_file": cafile,
        "node": "pve1",
        "vmid": 9100,
        "name": "debian-12-cloudinit",
        "adopt": False,
        "storage": "local-lvm",
        "image_storage": "local",
        "bridge": "vmbr0",
        "image_url": IMAGE,
        "image_sha512": "a" * 128,
    }
    data.update(over)
    return data


@pytest.fixture
def store(fakepve):
    fakepve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    return fakepve


def test_build_then_rerun_then_delete(pve, store, fakepve_cafile):
    p = CloudInitTemplateProvider(timing=FAST)
    made = p.create(props(pve, fakepve_cafile))
    assert made.outs["built"] is True
    tpl = pve.vm(9100)
    assert tpl.template and tpl.config["agent"] == "enabled=1" and "media=cdrom" in tpl.config["ide2"]
    assert "import-from=local:import/debian-12-genericcloud" in tpl.config["scsi0"]
    downloads = [b for m, path, b in pve.requests if path.endswith("/storage/local/download-url")]
    assert len(downloads) == 1 and b"checksum-algorithm=sha512" in downloads[0]
    # A second create (e.g. after the state was lost) adopts what is there and downloads nothing.
    again = p.create(props(pve, fakepve_cafile))
    assert again.outs["built"] is False
    assert len([1 for _, path, _ in pve.requests if path.endswith("/download-url")]) == 1
    assert p.diff("9100", made.outs, props(pve, fakepve_cafile)).changes is False
    assert p.diff(
        "9100", made.outs, props(pve, fakepve_cafile, image_url=IMAGE.replace("2019.q", "2020.q"))
    ).replaces == ["image_url"]
    p.delete("9100", made.outs)
    assert pve.vm(9100) is None
    assert_schema_clean(pve)


def test_adopt_uses_existing_and_never_deletes_it(pve, fakepve_cafile):
    p = CloudInitTemplateProvider(timing=FAST)
    made = p.create(props(pve, fakepve_cafile, vmid=9000, adopt=True, image_url=None))
    assert made.outs["built"] is False
    p.delete("9000", made.outs)
    assert pve.vm(9000) is not None


def test_adopt_without_template_is_a_clear_error(pve, fakepve_cafile):
    with pytest.raises(ProxmoxError, match="no template at VMID 9200"):
        CloudInitTemplateProvider(timing=FAST).create(props(pve, fakepve_cafile, vmid=9200, adopt=True))


def test_vmid_taken_by_a_plain_vm_is_refused(pve, fakepve_cafile):
    pve.add_vm(9100, "not-a-template", node="pve1")
    with pytest.raises(ProxmoxError, match="is a VM, not a template"):
        CloudInitTemplateProvider(timing=FAST).create(props(pve, fakepve_cafile))


def test_check_reports_bad_inputs(pve, fakepve_cafile):
    p = CloudInitTemplateProvider(timing=FAST)
    assert p.check({}, props(pve, fakepve_cafile)).failures == []
    assert [f.property for f in p.check({}, props(pve, fakepve_cafile, vmid=5)).failures] == ["vmid"]
    missing = p.check({}, props(pve, fakepve_cafile, image_url=None)).failures
    assert [(f.property, f.reason) for f in missing] == [("image_url", "required unless adopt is true")]


@pytest.fixture
def mirror(tmp_path):
    """A loopback HTTP server standing in for the image's publisher (SHA512SUMS beside the image)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "bookworm" / "20250210-2019"
    folder.mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_port}/bookworm/20250210-2019"
    finally:
        server.shutdown()
        server.server_close()


def test_published_digest_is_read_from_sha512sums(mirror):
    from infra.proxmox.template import published_sha512

    folder, base = mirror
    digest = "c" * 128
    (folder / "SHA512SUMS").write_text(f"{'d' * 128}  other.qcow2\n{digest}  debian-12.qcow2\n")
    assert published_sha512(f"{base}/debian-12.qcow2") == digest
    with pytest.raises(
        ProxmoxError, match="lists no SHA-512 for missing.qcow2; set proxmox.template.image_sha512"
    ):
        published_sha512(f"{base}/missing.qcow2")
    with pytest.raises(ProxmoxError, match="cannot read .*/nowhere/SHA512SUMS"):
        published_sha512(f"{base}/nowhere/x.qcow2")
