#!/usr/bin/env bash
# make tools: build the Pulumi engine the lab runs with from its Go modules, into a cache outside the repo.
#
#   <cache>/pulumi-v<version>/bin/pulumi                          the CLI (module pulumi/pkg/v3)
#   <cache>/pulumi-v<version>/bin/pulumi-language-python          the language host (tools/pulumi/cmd/..)
#   <cache>/pulumi-v<version>/bin/pulumi-language-python-exec     } scripts shipped in the sdk module, which the
#   <cache>/pulumi-v<version>/bin/pulumi-resource-pulumi-python   } engine expects beside the binaries
#
# <version> is the `pulumi` pin in requirements/lock.txt; tools/pulumi/go.mod must require the same version.
# <cache> is $RENDERLAB_TOOLS_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/renderlab/tools (it survives a fresh
# clone, so CI on the same machine finds it); the Go module and build caches live under it too.
# A stamp (hash of go.mod, go.sum, the sources and this script) makes a second run build nothing.
# Usage: scripts/build-tools.sh [--print-bin]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOD="$ROOT/tools/pulumi"
VERSION=$(sed -n 's/^pulumi==\([0-9][0-9.]*\) .*/\1/p' "$ROOT/requirements/lock.txt")
CACHE=${RENDERLAB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/renderlab/tools}
DEST="$CACHE/pulumi-v$VERSION"
BIN="$DEST/bin"

if [[ ${1:-} == --print-bin ]]; then
  echo "$BIN"
  exit 0
fi
if [[ -z $VERSION ]]; then
  echo "build-tools: no 'pulumi==X.Y.Z' pin in requirements/lock.txt" >&2
  exit 1
fi
for mod in pkg sdk; do
  if ! grep -Eq "github.com/pulumi/pulumi/$mod/v3 v${VERSION//./\\.}( |\$)" "$MOD/go.mod"; then
    echo "build-tools: requirements/lock.txt pins pulumi==$VERSION but tools/pulumi/go.mod requires" \
      "$(grep -o "github.com/pulumi/pulumi/$mod/v3 v[0-9.]*" "$MOD/go.mod" || echo "no $mod/v3")." >&2
    echo "  Align them: cd tools/pulumi && go get github.com/pulumi/pulumi/pkg/v3@v$VERSION" \
      "github.com/pulumi/pulumi/sdk/v3@v$VERSION && go mod tidy" >&2
    exit 1
  fi
done
command -v go >/dev/null || { echo "build-tools: Go is not installed (Go >= 1.26 from go.dev; Debian 12's golang package is 1.19, too old)" >&2; exit 1; }

KEY=$(cd "$MOD" && cat go.mod go.sum $(find cmd -name '*.go' | sort) "$ROOT/scripts/build-tools.sh" | sha256sum | cut -c1-16)
STAMP="$DEST/.built-$KEY"
TOOLS=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)
built() {
  [[ -f $STAMP ]] || return 1
  for t in "${TOOLS[@]}"; do [[ -x $BIN/$t ]] || return 1; done
}
if built; then
  echo "tools: Pulumi v$VERSION is built ($BIN)"
  exit 0
fi

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=readonly GOTOOLCHAIN=local
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION"
start=$SECONDS
step() { printf 'tools: [%4ds] %s\n' $((SECONDS - start)) "$*"; }

cd "$MOD"
step "downloading the Go modules (pulumi pkg/sdk v$VERSION and their dependencies) into $GOMODCACHE"
go mod download
step "building pulumi (the CLI and engine; the long part: 10-40 min on 2 cores)"
go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
step "building pulumi-language-python"
go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/pulumi-language-python.tmp" ./cmd/pulumi-language-python
SDK=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$SDK/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
install -m 0755 "$SDK/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
mv "$BIN/pulumi.tmp" "$BIN/pulumi"
mv "$BIN/pulumi-language-python.tmp" "$BIN/pulumi-language-python"
rm -f "$DEST"/.built-*
touch "$STAMP"
got=$("$BIN/pulumi" version)
[[ $got == "v$VERSION" ]] || { echo "build-tools: built pulumi says $got, expected v$VERSION" >&2; exit 1; }
step "done: $BIN (pulumi $got; cache $(du -sh "$CACHE" | cut -f1) with the Go module and build caches)"
