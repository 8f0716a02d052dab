"""The Pulumi program: config -> Lab (template + five VMs + generated secrets) -> cluster layer."""

from __future__ import annotations

from typing import Any

import pulumi

from infra import lab_stand_in, manifests, stack
from infra.cluster import ClusterLayer
from infra.issued_certificate import Htpasswd, IssuedCertificate
from infra.vms import Lab
from renderlab.lab import image_refs, lab_ca
from renderlab.lab.cluster_names import REGISTRY_USER, SHARE_PVC
from renderlab.lab.host_secrets import FROM_STACK, LAB_CA, WEBHOOK_URL
from renderlab.lab.pipeline_settings import recorded_images


def registry_credentials(config, lab_secrets: dict[str, pulumi.Output[str]]) -> dict[str, pulumi.Output[str]]:
    """The registry's TLS pair from the lab CA and its htpasswd line, each made once and kept in the state."""
    cert = IssuedCertificate(
        "registry-tls", ca=lab_secrets[LAB_CA], name="registry", sans=lab_ca.service_sans(config)["registry"]
    )
    htpasswd = Htpasswd(
        "registry-htpasswd", user=REGISTRY_USER, password=lab_secrets["renderlab_registry_password"]
    )
    return {"registry_tls_crt": cert.cert, "registry_tls_key": cert.key, "registry_htpasswd": htpasswd.line}


def main() -> dict[str, Any]:
    """Build the stack and export its outputs; returns them too (the mock tests read them)."""
    config, secrets = stack.read()
    stack_file = f"Pulumi.{pulumi.get_stack()}.yaml"
    # The image references `make images` recorded for this stack travel in the inventory's pipeline settings.
    lab = Lab(
        "lab",
        config,
        images=recorded_images(config, stack_file),
        webhook_url=secrets.get("notify_webhook_url"),
        stack_secrets={
            name: secrets[key] for key, name in FROM_STACK.items() if key in secrets and name != WEBHOOK_URL
        },
    )
    outputs: dict[str, Any] = {
        # Read by ansible/: `pulumi stack output inventory --json > inventory.json` (JSON is YAML).
        "inventory": lab.inventory,
        "addresses": lab.addresses,
        "ssh_user": config.ssh.admin_user,
    }
    # One secret map for the hosts layer: `python -m renderlab.lab.host_secrets from-pulumi -o FILE`.
    outputs["host_secrets"] = lab.host_secrets
    if "kubeconfig" in secrets:
        # The docs server runs the image `make images` recorded for this stack (build/site inside it).
        docs_image = image_refs.pull_ref(config, stack_file, "docs")
        if docs_image is None:
            pulumi.log.warn(
                f"no docs image recorded for {stack_file}: the docs Deployment waits for it (`make lab` builds "
                f"and pushes the images after this layer, then rolls them out; alone: `make lab-images lab-rollout`)"
            )
        stand_in = lab_stand_in.from_environment(config)
        if stand_in is not None:
            pulumi.log.warn(
                f"the local lab's stand-ins apply ({lab_stand_in.ENV}): this is not a production lab"
            )
        cluster = ClusterLayer(
            "cluster",
            config,
            kubeconfig=secrets["kubeconfig"],
            secret_values={
                **{k: lab.secrets[k] for k in manifests.SECRET_INPUTS},
                **registry_credentials(config, lab.secrets),
            },
            docs_image=docs_image,
            lab=stand_in,
            opts=pulumi.ResourceOptions(depends_on=list(lab.vms.values())),
        )
        outputs["launcher_token"] = cluster.launcher_token
        outputs["registry"] = cluster.registry
        outputs["share_pvc"] = SHARE_PVC
    else:
        pulumi.log.info(
            "cluster layer skipped: no renderlab:kubeconfig yet. After Ansible built the cluster (kubeadm) run "
            "`pulumi config set --secret renderlab:kubeconfig < <kubeconfig>` and `pulumi up` again"
        )
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
