#!/usr/bin/env bash
# One-off check (not part of any test lane): does a real kubelet run a pod inside the local lab's k3s-agent
# host with the lab's node settings? k3s's own module is refused by the Go module proxy here, so this builds
# upstream Kubernetes' kubelet from the k8s.io/kubernetes module instead (long: ~50 min cold on 2 shared cores).
#   RENDERLAB_LAB_PREFIX=... make lab-local && make k3s-artifacts; scripts/kubelet-lab-check.sh [v1.34.4]
set -euo pipefail
version=${1:-v1.34.4}
cache=${RENDERLAB_KUBELET_CACHE:-$HOME/.cache/renderlab/kubelet}/$version
state=${RENDERLAB_LAB_CACHE:-$PWD/.cache/lab}/${RENDERLAB_LAB_PREFIX:-rl0}
images=$(ls "${RENDERLAB_K3S_CACHE:-$HOME/.cache/renderlab/k3s}"/*.parts/k3s-airgap-images-amd64.tar.zst | head -1)
ref=$(cat "$images.ref")
[ -f "$state/inventory.yml" ] || { echo "no local lab under $state; run make lab-local first" >&2; exit 1; }

if [ ! -x "$cache/kubelet" ]; then
  mkdir -p "$cache" && cd "$cache"
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging=v0.${version#v1.}
  # The module's replaces point at its own ./staging tree; a dependent must name the published modules.
  { echo "module renderlab.local/kubelet"; grep -m1 '^go ' "$gomod"; echo "require k8s.io/kubernetes $version"
    echo "replace ("; sed -n '/^replace (/,/^)/p' "$gomod" | awk '/=>/ {print "\t" $1 " => " $1 " '"$staging"'"}'; echo ")"
  } > go.mod
  printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kubelet/app"\n\nfunc main() {}\n' > deps.go
  go mod tidy
  nice -n 19 /usr/bin/time -v go build -trimpath -o kubelet.tmp k8s.io/kubernetes/cmd/kubelet 2> build.log
  mv kubelet.tmp kubelet
  cd - >/dev/null
fi

address=$(python3 -c 'import sys,yaml; inv=yaml.safe_load(open(sys.argv[1]));
print(inv["all"]["children"]["k3s_agent"]["hosts"]["k3s-agent"]["ansible_host"])' "$state/inventory.yml")
admin=$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["config"]["renderlab:ssh"]["admin_user"])' "$state/stack.yaml")
ssh_opts=(-i "$state/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o "UserKnownHostsFile=$state/known_hosts")
zstd -dc "$images" > "$state/pause.tar"
cp "$cache/kubelet" "$state/machines/${RENDERLAB_LAB_PREFIX:-rl0}-k3s-agent/usr/local/bin/kubelet"
scp -q "${ssh_opts[@]}" "$state/pause.tar" "$admin@$address:/var/tmp/pause.tar"
ssh "${ssh_opts[@]}" "$admin@$address" sudo bash -s -- "$ref" <<'NODE'
set -euo pipefail
ref=$1
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc >/dev/null
mkdir -p /etc/containerd /etc/kubernetes/manifests
printf '%s\n' 'version = 2' '[plugins."io.containerd.grpc.v1.cri"]' "  sandbox_image = \"$ref\"" \
  '  restrict_oom_score_adj = true' > /etc/containerd/config.toml
systemctl restart containerd
ctr -n k8s.io images import /var/tmp/pause.tar >/dev/null
printf '%s\n' 'apiVersion: v1' 'kind: Pod' 'metadata: {name: probe, namespace: default}' 'spec:' '  hostNetwork: true' \
  '  containers:' "  - {name: pause, image: \"$ref\", imagePullPolicy: Never}" > /etc/kubernetes/manifests/probe.yaml
timeout 60 kubelet --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
  --pod-manifest-path=/etc/kubernetes/manifests --cgroups-per-qos=false --enforce-node-allocatable= \
  --cgroup-driver=cgroupfs --fail-swap-on=false > /var/tmp/kubelet.log 2>&1 || true
grep -E '^E' /var/tmp/kubelet.log | cut -c1-220 || true
running=$(ctr -n k8s.io tasks ls | grep -c RUNNING || true)
echo "kubelet $(kubelet --version): $running pod containers RUNNING (sandbox + container expected: 2)"
# The pod's cgroups sit at the root of the machine's hierarchies (no cgroup namespace here): delete the
# tasks and containers, so runc removes them, before the lab goes down.
rm -f /etc/kubernetes/manifests/probe.yaml
for t in $(ctr -n k8s.io tasks ls -q); do ctr -n k8s.io tasks kill -s KILL "$t" || true; done
sleep 2
for t in $(ctr -n k8s.io tasks ls -q); do ctr -n k8s.io tasks delete "$t" || true; done
for c in $(ctr -n k8s.io containers ls -q); do ctr -n k8s.io containers delete "$c" || true; done
[ "$running" -ge 2 ]
NODE
