"""The pipeline settings the lab config determines, derived once, here (contract 1).

The inventory carries the result as ``renderlab_pipeline_settings``; site.yml hands it unchanged to the
Airflow Variable ``renderlab``; the DAG validates it with the same model (renderlab.pipeline.settings).
"""

from __future__ import annotations

from typing import Any

from renderlab.lab import cluster_names, image_refs
from renderlab.lab.config import LabConfig
from renderlab.pipeline.settings import Settings


def p4_port(config: LabConfig) -> str:
    """P4PORT of the lab's Perforce server: [ssl:]address:port."""
    (host,) = config.hosts_by_role("perforce")
    p4 = config.perforce
    return f"{'ssl:' if p4.ssl else ''}{config.address(host)}:{p4.port}"


def depot_url(config: LabConfig) -> str:
    """The fetch CLI's source base: p4://[ssl:]host:port//depot/path (renderlab/jobs/fetch/source.py parses it)."""
    return f"p4://{p4_port(config)}{config.perforce.projects_path}"


def gallery_url(config: LabConfig) -> str:
    """Where the docs site (infra.manifests.docs: a NodePort on every Kubernetes node) serves the share's gallery."""
    (server,) = config.hosts_by_role("control_plane")
    return f"http://{config.address(server)}:{config.docs.node_port}/gallery/"


def airflow_share_root(config: LabConfig) -> str:
    """Where the Airflow host sees the share: the airflow role mounts it here (site.yml maps this value, from
    the Variable, onto the role), and the DAG writes run records and notifications under it."""
    return f"/mnt/{config.share.name}"


def pipeline_settings(config: LabConfig, images: dict[str, str] | None = None) -> dict[str, Any]:
    """The Airflow Variable's value for this lab (JSON-ready, validated by the pipeline's own model).

    `images`: name -> reference, from image_refs.pull_refs() over what `make images` recorded; none yet
    means the kubernetes Jobs refuse to start with a clear message (the DAG never computes a tag)."""
    p = config.pipeline
    values = {
        "backend": p.backend,
        "share_root": airflow_share_root(config),
        "depot": depot_url(config),
        "namespace": p.namespace,
        "share_pvc": cluster_names.SHARE_PVC,
        "p4_secret": cluster_names.P4_SECRET,
        "run_as_uid": config.share.uid,
        "images": dict(images or {}),
        "notify": p.notify,
        "preset": p.preset,
        "fps": p.fps,
        "samples": p.samples,
        "frames_per_chunk": p.frames_per_chunk,
        "cpu": p.cpu,
        "memory": p.memory,
        "gallery_url": gallery_url(config),
    }
    return Settings.model_validate(values).model_dump(mode="json", exclude_defaults=False)


def recorded_images(config: LabConfig, stack_file: str) -> dict[str, str]:
    """The references `make images` recorded for this stack file, as the nodes pull them."""
    entries = {k: v for k, v in image_refs.recorded(stack_file).items() if k in image_refs.JOB_IMAGES}
    return image_refs.pull_refs(config, entries)
