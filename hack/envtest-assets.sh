#!/usr/bin/env bash
# Builds the control-plane binaries that envtest needs (kube-apiserver, etcd) and a
# matching kubectl from the Go module proxy, because envtest's usual download is not
# reachable offline. The binaries are cached: a second run only prints the folder.
#
# Usage: hack/envtest-assets.sh            prints the folder to use as KUBEBUILDER_ASSETS
# Env:   ENVTEST_BIN_DIR  cache root (default: <repo>/bin/envtest)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
api_version=$(cd "$repo" && go list -m -f '{{.Version}}' k8s.io/api)   # e.g. v0.37.2
kube_version="v1.${api_version#v0.}"                                    # e.g. v1.37.2
out="${ENVTEST_BIN_DIR:-$repo/bin/envtest}/$kube_version"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -x "$out/kubectl" ]]; then
  echo "$out"
  exit 0
fi

log() { echo "envtest-assets: $*" >&2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kubernetes' own go.mod points every k8s.io staging module at ./staging/...; a module
# that requires k8s.io/kubernetes has to point them at the published v0.X.Y instead.
kube_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module postwarden.local/envtest-build"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes $kube_version"
  echo
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$api_version"'#p' "$kube_mod"
} > "$work/go.mod"

# Without these the binaries call themselves v0.0.0-master, and clients warn about skew.
minor=${kube_version#v1.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

build() { # build <output name> <package> [dir]
  local name=$1 pkg=$2 dir=${3:-$work}
  log "building $name ($pkg), this takes a few minutes the first time"
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
}

if [[ ! -x "$out/kube-apiserver" ]]; then build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver; fi
if [[ ! -x "$out/kubectl" ]]; then build kubectl k8s.io/kubernetes/cmd/kubectl; fi

if [[ ! -x "$out/etcd" ]]; then
  # etcd at the version kubernetes itself requires, through its library entry point.
  etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$kube_mod" | head -n 1)
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<MOD
module postwarden.local/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $etcd_version
MOD
  cat > "$work/etcd/main.go" <<'SRC'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
SRC
  build etcd . "$work/etcd"
fi

echo "$out"
