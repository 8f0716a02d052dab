"""The Pod Security `restricted` profile's rules (kubernetes.io/docs/concepts/security/pod-security-standards),
as a checker over a pod spec: the render and docs namespaces enforce it, so a pod the project makes that breaks
one of these rules would be refused by the API server. The cluster lane checks the same against the real one."""

from __future__ import annotations

ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def violations(pod: dict) -> list[str]:
    """What in this pod spec (a dict in the API's camelCase) `restricted` refuses; [] when it is admitted."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for host_ns in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host_ns):
            out.append(f"{host_ns} is on")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']} is {', '.join(sorted(kinds))}")
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {sorted(caps['add'])}")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runs as uid 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile is {seccomp or 'unset'}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{name}: uses a hostPort")
    return out
