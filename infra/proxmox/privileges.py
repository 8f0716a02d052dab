"""The PVE privileges the API token needs, and why: names that exist on PVE 8 and PVE 9 alike, so one
`pveum role add` line works on both. docs/building.md lists the same set; tests/infra/test_privileges.py runs
the providers against fakepve with exactly this grant and checks the documented command."""

PRIVILEGES = {
    "VM.Allocate": "create the template VM, clone into new VMIDs, destroy VMs",
    "VM.Clone": "full-clone the template",
    "VM.Audit": "read VM config and status",
    "VM.PowerMgmt": "start, reboot and stop VMs",
    "VM.Config.CPU": "cores",
    "VM.Config.Memory": "memory",
    "VM.Config.Network": "the NIC on the bridge",
    "VM.Config.Disk": "import the image, resize the disk",
    "VM.Config.CDROM": "the cloud-init drive",
    "VM.Config.Cloudinit": "user, SSH keys, address, DNS",
    "VM.Config.Options": "name, tags, onboot, agent",
    "VM.Config.HWType": "serial console, SCSI controller",
    "Datastore.AllocateSpace": "VM disks on the VM storage",
    "Datastore.AllocateTemplate": "download the cloud image to the image storage",
    "Datastore.Audit": "list the image storage's content",
    "Sys.Audit": "node and task status",
    # PVE 8 checks Sys.Audit + Sys.Modify on / for download-url; PVE 9 also accepts Sys.AccessNetwork on
    # /nodes/<node> instead. Neither is needed with template.adopt: true.
    "Sys.Modify": "let PVE download the cloud image (only when building the template)",
    "SDN.Use": "attach NICs to the bridge",
}

# Privileges PVE 8's `pveum role add` refuses ("invalid privilege"): PVE 9 split VM.Monitor into these and
# added the others. None may be in PRIVILEGES (the VMs are waited for over SSH, not the guest agent).
PVE9_ONLY = frozenset(
    {
        "VM.GuestAgent.Audit",
        "VM.GuestAgent.FileRead",
        "VM.GuestAgent.FileWrite",
        "VM.GuestAgent.FileSystemMgmt",
        "VM.GuestAgent.Unrestricted",
        "VM.Replicate",
        "Sys.AccessNetwork",
    }
)
