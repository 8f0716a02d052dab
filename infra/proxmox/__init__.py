"""Proxmox VE: the API client with all waiting and retrying (client.py) and the Pulumi dynamic providers
that use it (vm.py, template.py). Resource logic never sleeps or retries by itself."""
