"""The Jobs' images on the lab's nodes without the lab registry (the rehearsal predates its air-gap image; the push
and a node's pull are checked by tests/lab/test_make_lab.py): each
image `make images` built here is saved from the local engine once and imported into every Kubernetes node's
containerd (`k8s.io`, the namespace the kubelet's CRI reads) under exactly the reference the Jobs run, as the
cluster lane imports its test and docs images.

That is honest only for references without a digest: the Jobs run `image_pull_policy="IfNotPresent"`
(renderlab/pipeline/backends/kubernetes.py), so a tag the node holds is run as it is, never pulled; a reference
pinned to a pushed digest names a registry manifest that an imported archive does not reproduce, and the kubelet
would try to pull it. `--push never` records tags only (renderlab/workstation/images.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from renderlab.lab import image_refs

BUILD = ".venv/bin/python -m renderlab.workstation.images build --only blender --only fetch --push never"


class NotImportable(ValueError):
    """The recorded references cannot be put on the nodes by import: the message says how to rebuild them."""


@dataclass(frozen=True)
class Import:
    name: str  # the image (blender, fetch)
    ref: str  # exactly as the Jobs name it
    nodes: tuple[str, ...]  # the nodes that do not hold it yet


def check(refs: dict[str, str], config: str) -> None:
    """Refuse references that cannot be imported (none recorded, or digest-pinned), naming the build that makes
    importable ones. `config`: the stack file the images are recorded for."""
    missing = [name for name in image_refs.JOB_IMAGES if name not in refs]
    if missing:
        raise NotImportable(
            f"no {' and '.join(missing)} image recorded for {config}: run `{BUILD} --config {config}`"
        )
    pinned = sorted(name for name in image_refs.JOB_IMAGES if "@" in refs[name])
    if pinned:
        raise NotImportable(
            f"the recorded {' and '.join(pinned)} reference is pinned to a pushed digest ({refs[pinned[0]]}), which "
            f"an imported image cannot satisfy and no lab registry serves here: run `{BUILD} --config {config}`"
        )


def plan(refs: dict[str, str], present: dict[str, set[str]], config: str) -> list[Import]:
    """Which image goes to which node: every Job image to every node (`present`: node -> the references its
    containerd holds) that lacks that exact reference. Tags are content hashes, so a node holding the reference
    holds the image and nothing is imported twice."""
    check(refs, config)
    steps = []
    for name in image_refs.JOB_IMAGES:
        nodes = tuple(node for node in sorted(present) if refs[name] not in present[node])
        if nodes:
            steps.append(Import(name, refs[name], nodes))
    return steps


def listed(ctr_output: str) -> set[str]:
    """The references in `ctr -n k8s.io images ls -q`'s output."""
    return {line.strip() for line in ctr_output.splitlines() if line.strip()}


def save_command(tool: str, ref: str, archive: str) -> list[str]:
    """A docker-archive, with the reference in it: what `ctr images import` reads (the cluster lane's format)."""
    if tool == "podman":
        return ["podman", "save", "--format", "docker-archive", "-o", archive, ref]
    return [tool, "save", "-o", archive, ref]
