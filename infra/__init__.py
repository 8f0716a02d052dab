"""The lab's VMs (Proxmox VE via proxmoxer dynamic providers) and its cluster layer (pulumi-kubernetes)."""
