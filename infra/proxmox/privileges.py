"""The PVE privileges the API token needs (PVE 9 names), and why. README "Build the lab" lists the same
set; tests/infra/test_privileges.py runs the providers against fakepve with exactly this grant."""

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
    "VM.GuestAgent.Audit": "read the guest's addresses (PVE 8: VM.Monitor)",
    "Datastore.AllocateSpace": "VM disks on the VM storage",
    "Datastore.AllocateTemplate": "download the cloud image to the image storage",
    "Datastore.Audit": "list the image storage's content",
    "Sys.Audit": "node and task status",
    # PVE 8 checks Sys.Audit + Sys.Modify on / for download-url; PVE 9 also accepts Sys.AccessNetwork on
    # /nodes/<node> instead. Neither is needed with template.adopt: true.
    "Sys.Modify": "let PVE download the cloud image (only when building the template)",
    "SDN.Use": "attach NICs to the bridge",
}
