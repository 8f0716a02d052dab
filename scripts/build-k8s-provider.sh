#!/usr/bin/env bash
# make k8s-provider: build the Pulumi Kubernetes provider the cluster layer applies with, from its Go module,
# through the wrapper module tools/pulumi-kubernetes/, into the folder `make tools` puts the engine in:
#
#   <cache>/pulumi-v<pulumi version>/bin/pulumi-resource-kubernetes
#
# Beside the engine because that folder is on PATH wherever the engine runs (the Makefile's PULUMI_RUN, the
# engine lane), and Pulumi takes a resource plugin found on PATH before its plugin cache, which is never filled
# here (plugins are not downloaded). <cache> and the Go module and build caches are build-tools.sh's, so the
# dependencies both builds share (pulumi sdk, grpc, ...) compile once.
#
# The provider's version is the one its wrapper requires (the proxy serves provider/v4 only as a pseudo-version);
# it is stamped where upstream's release build stamps it, in the binary and in the schema it embeds.
# A stamp (hash of go.mod, go.sum, the sources and this script) makes a second run build nothing.
# Usage: scripts/build-k8s-provider.sh [--print-path]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOD="$ROOT/tools/pulumi-kubernetes"
CMD="$MOD/cmd/pulumi-resource-kubernetes"
PROVIDER=github.com/pulumi/pulumi-kubernetes/provider/v4
PULUMI=$(sed -n 's/^pulumi==\([0-9][0-9.]*\) .*/\1/p' "$ROOT/requirements/lock.txt")
# The direct requirement (a line without `// indirect`), in a require block or on its own.
REQUIRED=$(sed -n -E "s#^(require )?[[:space:]]*$PROVIDER (v[^ ]+)[[:space:]]*\$#\2#p" "$MOD/go.mod")
VERSION=${REQUIRED#v}
CACHE=${RENDERLAB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/renderlab/tools}
BIN="$CACHE/pulumi-v$PULUMI/bin"
OUT="$BIN/pulumi-resource-kubernetes"

if [[ ${1:-} == --print-path ]]; then
  echo "$OUT"
  exit 0
fi
if [[ -z $PULUMI ]]; then
  echo "build-k8s-provider: no 'pulumi==X.Y.Z' pin in requirements/lock.txt" >&2
  exit 1
fi
if [[ -z $REQUIRED ]]; then
  echo "build-k8s-provider: tools/pulumi-kubernetes/go.mod does not require $PROVIDER directly;" \
    "fix: cd tools/pulumi-kubernetes && go get $PROVIDER@<version> && go mod tidy" >&2
  exit 1
fi
command -v go >/dev/null || { echo "build-k8s-provider: Go is not installed (Go >= 1.26 from go.dev; Debian 12's golang package is 1.19, too old)" >&2; exit 1; }

# One build at a time: a second run (the cluster lane's check while CI's background build is on) waits for the
# first, then finds its stamp and builds nothing.
mkdir -p "$BIN"
exec 9>"$BIN/.k8s-provider.lock"
if ! flock -n 9; then
  echo "k8s-provider: another build of it is running; waiting for that one to finish"
  flock 9
fi

mapfile -t SOURCES < <(cd "$MOD" && find cmd -name '*.go' | sort)
KEY=$(cd "$MOD" && cat go.mod go.sum "${SOURCES[@]}" "$ROOT/scripts/build-k8s-provider.sh" | sha256sum | cut -c1-16)
STAMP="$BIN/.k8s-provider-$KEY"
if [[ -f $STAMP && -x $OUT ]]; then
  echo "k8s-provider: pulumi-resource-kubernetes $VERSION is built ($OUT)"
  exit 0
fi

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=readonly GOTOOLCHAIN=local
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
LDFLAGS="-s -w -X $PROVIDER/pkg/version.Version=$VERSION"
start=$SECONDS
step() { printf 'k8s-provider: [%4ds] %s\n' $((SECONDS - start)) "$*"; }
tmp=$(mktemp -d "$CMD/.gen.XXXXXX") # inside the module: generate.go's imports resolve through our go.mod
trap 'rm -rf "$tmp" "$OUT.tmp" "$OUT.log"' EXIT

cd "$MOD"
step "downloading the Go modules ($PROVIDER $REQUIRED and its dependencies) into $GOMODCACHE"
go mod download
step "generating schema-embed.json and terraform-mapping-embed.json with upstream's generate.go (version $VERSION)"
SRC=$(go list -m -f '{{.Dir}}' "$PROVIDER")/cmd/pulumi-resource-kubernetes
install -m 0644 "$SRC/schema.json" "$SRC/terraform-mapping.json" "$tmp/"
(cd "$tmp" && VERSION=$VERSION go run "$SRC/generate.go")
mv "$tmp/schema-embed.json" "$tmp/terraform-mapping-embed.json" "$CMD/"
step "building pulumi-resource-kubernetes (cold: ~20 min and ~5 GiB of memory on 2 cores; warm: mostly linking)"
go build -trimpath -ldflags "$LDFLAGS" -o "$OUT.tmp" ./cmd/pulumi-resource-kubernetes
# It serves: a provider prints its gRPC port on its first line, then waits for the engine.
"$OUT.tmp" >"$OUT.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  [[ -s $OUT.log ]] && break
  sleep 0.1
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
port=$(head -n1 "$OUT.log")
[[ $port =~ ^[0-9]+$ ]] || { echo "build-k8s-provider: the built provider did not print its port: $(head -c 300 "$OUT.log")" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"
rm -f "$BIN"/.k8s-provider-*
touch "$STAMP"
step "done: $OUT ($VERSION, $(du -h "$OUT" | cut -f1); it served on port $port; cache $(du -sh "$CACHE" | cut -f1))"
